package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// FuzzHandler feeds the whole handler random requests: it must never panic,
// never answer 5xx except where documented (508 for hops, 500 from an LB
// function that fails or panics), and every body it writes must be JSON.
func FuzzHandler(f *testing.F) {
	g := newGate()
	close(g.release)
	var funcs []Func
	for _, fn := range testFuncs(g) {
		if fn.Name != "block" && fn.Name != "lbslow" { // they wait for a release or a deadline
			funcs = append(funcs, fn)
		}
	}
	s, err := New(Config{Logger: discard(), MaxBody: 4096, Workers: 2, QueueSize: 8}, funcs)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			f.Error(err)
		}
	})

	for _, seed := range []struct{ method, path, body, hops, timeout string }{
		{"POST", "/runsync", envelopeFor("add", map[string]int{"A": 1}), "", ""},
		{"POST", "/v2/x/run", envelopeFor("echo", []int{1}), "3", "100"},
		{"POST", "/runsync", `{"input":{"function_name":"boom","kwargs":{"a":1}}}`, "", "0"},
		{"GET", "/status/AAAAAAAAAAAAAAAAAAAAAA", "", "", ""},
		{"POST", "/cancel/x", "", "17", ""},
		{"POST", "/stats/abc", `{"a":[1,2]}`, "", ""},
		{"PUT", "/panic", `{}`, "", ""},
		{"GET", "/items/%2F", "", "", ""},
		{"DELETE", "/things/", "", "x", ""},
		{"GET", "/health", "", "", ""},
		{"GET", "/ping", "", "", ""},
		{"OPTIONS", "//run/../runsync", "{", "", "-1"},
	} {
		f.Add(seed.method, seed.path, []byte(seed.body), seed.hops, seed.timeout)
	}
	f.Fuzz(func(t *testing.T, method, path string, body []byte, hops, timeout string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://flash.test"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		for k, v := range map[string]string{"X-Flash-Hops": hops, "X-Flash-Timeout": timeout} {
			if v != "" {
				req.Header[k] = []string{v}
			}
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)

		code := rec.Code
		lbFailure := code == 500 && (req.URL.Path == "/fail" || req.URL.Path == "/panic")
		if code >= 500 && code != http.StatusLoopDetected && !lbFailure {
			t.Fatalf("%s %q: %d %s", method, path, code, rec.Body)
		}
		if rec.Body.Len() > 0 && !strings.HasSuffix(req.URL.Path, "/metrics") {
			if !json.Valid(rec.Body.Bytes()) || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("%s %q: %d non-JSON answer %q (%s)", method, path, code, rec.Body, rec.Header().Get("Content-Type"))
			}
		}
	})
}

// FuzzJobID drives /status/{id} and /cancel/{id} with arbitrary ids: the
// answer is 404 JSON (or 200 for a real job), short whatever the id, and
// the job table is never searched for an id that cannot be one.
func FuzzJobID(f *testing.F) {
	s, err := New(Config{Logger: discard()}, []Func{{Name: "echo", Bind: bindJSON(func(_ context.Context, in any) (any, error) { return in, nil })}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Shutdown(context.Background()) })
	real := submitAsync(f, s, "echo", 1)
	for _, id := range []string{real, "", "x", "AAAAAAAAAAAAAAAAAAAAAA", "a%2Fb", "..", strings.Repeat("z", 200), "é", "a b", "%00"} {
		f.Add(id, false)
		f.Add(id, true)
	}
	f.Fuzz(func(t *testing.T, id string, cancel bool) {
		method, path := "GET", "/status/"
		if cancel && id != real {
			method, path = "POST", "/cancel/"
		}
		req, err := http.NewRequest(method, "http://flash.test"+path+id, nil)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusOK && id == real:
		case rec.Code == http.StatusNotFound, rec.Code == http.StatusMovedPermanently, rec.Code == http.StatusTemporaryRedirect,
			rec.Code == http.StatusMethodNotAllowed:
		default:
			t.Fatalf("%s %q: %d %s", method, id, rec.Code, rec.Body)
		}
		if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %q: %d non-JSON body %.100s", method, id, rec.Code, rec.Body)
		}
		// Redirects name the cleaned path; every other refusal is short
		// and never repeats an id that cannot be one.
		redirect := rec.Code == http.StatusMovedPermanently || rec.Code == http.StatusTemporaryRedirect
		if !redirect && rec.Code != http.StatusOK {
			if rec.Body.Len() > 512 {
				t.Fatalf("%s %q: %d body of %d bytes", method, id, rec.Code, rec.Body.Len())
			}
			if len(id) > wire.MaxJobIDLen && strings.Contains(rec.Body.String(), id[:wire.MaxJobIDLen+1]) {
				t.Fatalf("%s: an over-long id was echoed", method)
			}
		}
	})
}
