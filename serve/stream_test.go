package serve

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flash-go/flash/flasherr"
)

// streamServer serves POST /count: 1..n, failing at fail (0: never), and
// GET /quiet: one value, then silence until release closes, then a second.
func streamServer(t *testing.T, cfg Config, release <-chan struct{}) *httptest.Server {
	t.Helper()
	cfg.Logger = discard()
	count := func(ctx context.Context, in struct{ N, Fail int }) (any, error) {
		return Stream(func(yield func(any, error) bool) {
			for i := 1; i <= in.N; i++ {
				if i == in.Fail {
					yield(nil, flasherr.Errorf(flasherr.CodeOutOfRange, "no %d <here>", i))
					return
				}
				if !yield(i, nil) {
					return
				}
			}
		}), nil
	}
	quiet := func(ctx context.Context, _ struct{}) (any, error) {
		return Stream(func(yield func(any, error) bool) {
			if !yield("a", nil) {
				return
			}
			select {
			case <-release:
			case <-ctx.Done():
				return
			}
			yield("b", nil)
		}), nil
	}
	s, err := New(cfg, []Func{
		{Name: "count", Method: "POST", Path: "/count", Bind: bindJSON(count)},
		{Name: "quiet", Method: "GET", Path: "/quiet", Bind: bindJSON(quiet)},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		s.Shutdown(context.Background())
	})
	return srv
}

func post(t *testing.T, url, body, accept string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestStreamFormats: NDJSON by default (and for Accept: */* or JSON), SSE
// for Accept: text/event-stream, each with its error and end.
func TestStreamFormats(t *testing.T) {
	srv := streamServer(t, Config{}, nil)
	errLine := `{"error":"no 3 \u003chere\u003e","error_type":"Error","code":"out_of_range"}`
	for _, tc := range []struct {
		accept, body, ct, want string
	}{
		{"", `{"N":2}`, "application/x-ndjson", "{\"output\":1}\n{\"output\":2}\n"},
		{"*/*", `{"N":4,"Fail":3}`, "application/x-ndjson", "{\"output\":1}\n{\"output\":2}\n" + errLine + "\n"},
		{"text/event-stream", `{"N":2}`, "text/event-stream",
			"data: 1\n\ndata: 2\n\nevent: end\ndata: {\"values\":2}\n\n"},
		{"text/event-stream", `{"N":4,"Fail":3}`, "text/event-stream",
			"data: 1\n\ndata: 2\n\nevent: error\ndata: " + errLine + "\n\n"},
		{"text/event-stream", `{"N":0}`, "text/event-stream", "event: end\ndata: {\"values\":0}\n\n"},
		{"application/x-ndjson, text/event-stream", `{"N":1}`, "application/x-ndjson", "{\"output\":1}\n"},
	} {
		resp, got := post(t, srv.URL+"/count", tc.body, tc.accept)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.ct || got != tc.want {
			t.Errorf("Accept %q, %s: %d %s %q, want %s %q", tc.accept, tc.body, resp.StatusCode, resp.Header.Get("Content-Type"), got, tc.ct, tc.want)
		}
		if tc.ct == "text/event-stream" && resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("SSE answer without Cache-Control: no-cache")
		}
	}
}

// TestStreamHeartbeat: an SSE stream whose producer is silent gets comment
// lines, and goes on with its values after them; NDJSON gets none.
func TestStreamHeartbeat(t *testing.T) {
	release := make(chan struct{})
	srv := streamServer(t, Config{SSEHeartbeat: 5e6}, release)
	req, _ := http.NewRequest("GET", srv.URL+"/quiet", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	var lines []string
	for len(lines) == 0 || lines[len(lines)-1] != ": keep-alive" {
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		if l = strings.TrimSuffix(l, "\n"); l != "" {
			lines = append(lines, l)
		}
	}
	close(release)
	rest, err := io.ReadAll(rd)
	if err != nil || lines[0] != `data: "a"` || !strings.HasSuffix(string(rest), "data: \"b\"\n\nevent: end\ndata: {\"values\":2}\n\n") {
		t.Fatalf("stream %q then %q (%v)", lines, rest, err)
	}
}

func TestWantsEvents(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                 false,
		"*/*":                              false,
		"application/json":                 false,
		"text/event-stream":                true,
		"Text/Event-Stream; charset=utf-8": true,
		"text/event-stream;q=0":            false,
		"text/event-stream;q=bad":          false,
		"text/event-stream;q=2":            false,
		"application/x-ndjson, text/event-stream":             false, // a tie keeps the default
		"application/x-ndjson;q=0.5, text/event-stream":       true,
		"text/event-stream;q=0.4, application/x-ndjson;q=0.5": false,
		"text/html, text/event-stream;q=0.9, */*;q=0.8":       true,
	} {
		if got := wantsEvents(accept); got != want {
			t.Errorf("wantsEvents(%q) = %v, want %v", accept, got, want)
		}
	}
}

func FuzzWantsEvents(f *testing.F) {
	for _, s := range []string{"text/event-stream", "application/x-ndjson;q=0.5, text/event-stream;q=0.6", "text/event-stream;q=;;=,", ",,;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		got := wantsEvents(accept)
		if got && !strings.Contains(strings.ToLower(accept), "text/event-stream") {
			t.Fatalf("wantsEvents(%q) without text/event-stream", accept)
		}
		// Preferring NDJSON at the top weight always keeps NDJSON.
		if wantsEvents(accept + ",application/x-ndjson;q=1") {
			t.Fatalf("wantsEvents(%q + NDJSON at q=1) chose events", accept)
		}
	})
}
