package mothership

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/spanring"
)

// TestTraceRoutes: a collecting mothership keeps what is exported to
// /v1/traces and serves it at /flash/traces; one that does not collect has
// none of these routes.
func TestTraceRoutes(t *testing.T) {
	off := newHarness(t)
	for _, path := range []string{"/flash/traces", "/flash/traces/x"} {
		if resp, _ := off.get(t, path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("not collecting: GET %s → %d, want 404", path, resp.StatusCode)
		}
	}
	resp, err := off.srv.Client().Post(off.srv.URL+PathTraces, "application/x-protobuf", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("not collecting: POST %s → %d", PathTraces, resp.StatusCode)
	}

	ring := spanring.New(100, 1<<20)
	h := newHarness(t, func(c *Config) { c.Traces = ring })
	t0 := time.Unix(1000, 0).UTC()
	ring.Add([]spanring.Span{
		{TraceID: "t1", SpanID: "a", Service: "api", Name: "POST /process", Kind: "server", Start: t0, End: t0.Add(time.Second)},
		{TraceID: "t1", SpanID: "b", ParentID: "a", Service: "api", Name: "call embed", Kind: "client", Start: t0.Add(time.Millisecond), End: t0.Add(time.Second), Error: true},
	})
	resp, body := h.get(t, "/flash/traces", nil)
	var list struct{ Traces []spanring.Summary }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Traces) != 1 ||
		list.Traces[0].Root != "POST /process" || list.Traces[0].Errors != 1 || list.Traces[0].Spans != 2 {
		t.Fatalf("GET /flash/traces: %d %s", resp.StatusCode, body)
	}
	resp, body = h.get(t, "/flash/traces/t1", nil)
	var one struct{ Spans []spanring.Span }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &one) != nil || len(one.Spans) != 2 || one.Spans[1].ParentID != "a" {
		t.Fatalf("GET /flash/traces/t1: %d %s", resp.StatusCode, body)
	}
	for path, want := range map[string]int{"/flash/traces/nope": 404, "/flash/traces?limit=0": 400, "/flash/traces?limit=x": 400, "/flash/traces?limit=1": 200} {
		if resp, body := h.get(t, path, nil); resp.StatusCode != want {
			t.Errorf("GET %s: %d %s, want %d", path, resp.StatusCode, body, want)
		}
	}
	// The export route answers OTLP (the receiver's own test covers its content).
	resp, err = h.srv.Client().Post(h.srv.URL+PathTraces, "application/x-protobuf", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s (empty export): %d", PathTraces, resp.StatusCode)
	}
	if st := h.m.uiTraces(); st == nil || len(st.Recent) != 1 || len(st.Notable.Errors) != 1 {
		t.Fatalf("dashboard's traces: %+v", st)
	}
	if off.m.uiTraces() != nil {
		t.Fatal("a mothership that does not collect shows traces")
	}
}

// TestUntraced: polling and the dashboard's traffic get no span; the
// rest does.
func TestUntraced(t *testing.T) {
	for path, want := range map[string]bool{
		"/v1/traces": true, "/flash/edges": true, "/manifest": true, "/flash/status": true,
		"/flash/ui": true, "/flash/ui/events": true, "/flash/traces/abc": true,
		"/flash/deploy": false, "/api/process": false, "/v2/embedder/runsync": false,
	} {
		r, _ := http.NewRequest(http.MethodGet, path, nil)
		if got := Untraced(r); got != want {
			t.Errorf("Untraced(%s) = %v, want %v", path, got, want)
		}
	}
}
