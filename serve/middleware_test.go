package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// TestExpectContinueKeepsStatus sends real requests with "Expect:
// 100-continue" through a reverse proxy registered on a Server (as the
// mothership's gateway is): the backend's 100 Continue is relayed to the
// client, and the final status that follows must reach the client and the
// metrics unchanged.
func TestExpectContinueKeepsStatus(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // reading the body makes the backend send 100 Continue
		switch r.URL.Path {
		case "/missing":
			wire.WriteError(w, http.StatusNotFound, "no such thing")
		case "/busy":
			w.Header().Set(wire.HeaderRetryAfter, "1")
			wire.WriteError(w, http.StatusTooManyRequests, "busy")
		default:
			wire.WriteJSON(w, http.StatusOK, map[string]bool{"ok": true})
		}
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)

	s := newServer(t, Config{Logger: discard()}, newGate())
	s.Handle("POST /proxy/{rest...}", http.StripPrefix("/proxy", httputil.NewSingleHostReverseProxy(target)))
	front := httptest.NewServer(s)
	defer front.Close()

	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10e9}}
	defer client.CloseIdleConnections()
	for _, tc := range []struct {
		path string
		want int
	}{{"/proxy/missing", 404}, {"/proxy/busy", 429}, {"/proxy/ok", 200}} {
		req, _ := http.NewRequest("POST", front.URL+tc.path, strings.NewReader(strings.Repeat("x", 2<<20)))
		req.Header.Set("Expect", "100-continue")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d (body %s), want %d", tc.path, resp.StatusCode, body, tc.want)
		}
	}
	r := do(t, s, "GET", "/metrics", "")
	for _, want := range []string{`code="404",resource="standalone",route="POST /proxy/{rest...}"} 1`,
		`code="429",resource="standalone",route="POST /proxy/{rest...}"} 1`} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(r.Body), `code="100"`) {
		t.Error("/metrics recorded an informational status as the answer")
	}
}

// TestResponseControllerThroughMiddleware checks that a handler added with
// Handle reaches the connection through the middleware's writer: Flush and
// deadlines work, and a flush before any write counts as a 200.
func TestResponseControllerThroughMiddleware(t *testing.T) {
	s := newServer(t, Config{Logger: discard()}, newGate())
	errs := make(chan error, 3)
	s.Handle("GET /stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		errs <- rc.SetWriteDeadline(time.Now().Add(time.Minute))
		errs <- rc.SetReadDeadline(time.Now().Add(time.Minute))
		errs <- rc.Flush()
		io.WriteString(w, "{}")
	}))
	front := httptest.NewServer(s)
	defer front.Close()
	resp, err := http.Get(front.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("ResponseController through the middleware: %v", err)
		}
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestRequestLogLevels: at the default level (Info), successful requests
// leave no line; client errors and slow requests log at Info, server errors
// at Warn, overload answers at Debug.
func TestRequestLogLevels(t *testing.T) {
	var buf syncBuffer
	g := newGate()
	s := newServer(t, Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), Workers: 1, QueueSize: 1,
		Limits: Limits{SlowRequest: 30 * time.Millisecond}}, g)
	do(t, s, "POST", "/runsync", envelopeFor("echo", 1))                       // 200: nothing
	do(t, s, "GET", "/ping", "")                                               // 200: nothing
	do(t, s, "GET", "/nope", "")                                               // 404: Info
	do(t, s, "POST", "/runsync", envelopeFor("echo", 1), "X-Flash-Timeout: x") // 400: Info
	do(t, s, "GET", "/items/1", "", "X-Flash-Hops: 99")                        // 508: Warn
	do(t, s, "POST", "/slow", "{}", "X-Flash-Timeout: 50")                     // 504 after 50 ms: Warn
	do(t, s, "POST", "/runsync", envelopeFor("meta", 1), "X-Flash-Timeout: 60000")
	submitAsync(t, s, "block", map[string]any{"tag": 1})
	wait(t, g.started, "worker busy")
	submitAsync(t, s, "block", map[string]any{"tag": 2})
	do(t, s, "POST", "/run", envelopeFor("echo", 1)) // 429: Debug
	close(g.release)

	got := map[string]string{}
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil && m["msg"] == "request" {
			got[fmt.Sprintf("%v %v", m["path"], m["status"])] = m["level"].(string)
		}
	}
	want := map[string]string{"/nope 404": "INFO", "/runsync 400": "INFO", "/items/1 508": "WARN", "/slow 504": "WARN"}
	for k, lvl := range want {
		if got[k] != lvl {
			t.Errorf("%s logged at %q, want %s", k, got[k], lvl)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected request line %s at %s", k, got[k])
		}
	}
	if requestLogLevel("/runsync", 200, time.Second, time.Second) != slog.LevelInfo ||
		requestLogLevel("/manifest", 200, time.Minute, time.Second) != slog.LevelDebug {
		t.Error("slow requests: want Info, except manifest long polls")
	}
}
