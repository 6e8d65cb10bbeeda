package mothership

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// clock is a settable time for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func postEdges(t *testing.T, h *harness, body []byte) int {
	t.Helper()
	resp, err := h.srv.Client().Post(h.srv.URL+wire.PathEdges, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func report(t *testing.T, h *harness, resource, instance string, edges ...wire.EdgeCount) {
	t.Helper()
	body, _ := json.Marshal(wire.EdgeReport{Resource: resource, Instance: instance, Edges: edges})
	if code := postEdges(t, h, body); code != http.StatusNoContent {
		t.Fatalf("report: %d", code)
	}
}

func edge(t *testing.T, views []EdgeView, from, to string) EdgeView {
	t.Helper()
	for _, v := range views {
		if v.From == from && v.To == to {
			return v
		}
	}
	t.Fatalf("no edge %s → %s in %+v", from, to, views)
	return EdgeView{}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestEdgeRates: totals sum over a caller's instances; rates are the
// difference of reports over the window; a counter that went down is a
// restart whose past is kept; idle callers are forgotten.
func TestEdgeRates(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	h := newHarness(t, func(cfg *Config) { cfg.Now = c.now })
	view := func() []EdgeView { return h.m.edges.view(c.now()) }

	report(t, h, "api", "a1", wire.EdgeCount{Target: "embedder", Calls: 10, Errors: 1, Seconds: 1})
	report(t, h, "api", "a2", wire.EdgeCount{Target: "embedder", Calls: 5})
	if e := edge(t, view(), "api", "embedder"); e.Calls != 15 || e.Errors != 1 || e.Instances != 2 || e.Rate != 0 {
		t.Fatalf("first reports: %+v (no rate from one report each)", e)
	}
	c.advance(5 * time.Second)
	report(t, h, "api", "a1", wire.EdgeCount{Target: "embedder", Calls: 30, Errors: 6, Seconds: 3},
		wire.EdgeCount{Target: "summarizer", Calls: 2})
	// a1: 20 calls and 5 errors in 5 s, taking 2 s in all.
	e := edge(t, view(), "api", "embedder")
	if e.Calls != 35 || e.Errors != 6 || !near(e.Rate, 4) || !near(e.ErrorRate, 1) || !near(e.LatencyMS, 100) {
		t.Fatalf("after 5 s: %+v, want 35 calls, 4/s, 1 error/s, 100 ms", e)
	}
	// A window later with no report, the counters held: no more calls.
	c.advance(20 * time.Second)
	if e := edge(t, view(), "api", "embedder"); e.Rate != 0 || e.Calls != 35 {
		t.Fatalf("idle: %+v", e)
	}
	// a1 restarted under the same name: its counters start again, its past stays.
	report(t, h, "api", "a1", wire.EdgeCount{Target: "embedder", Calls: 4})
	if e := edge(t, view(), "api", "embedder"); e.Calls != 39 || e.Errors != 6 {
		t.Fatalf("after a restart: %+v, want 39 calls and 6 errors in all", e)
	}
	// Unheard for edgeForget, an instance goes.
	c.advance(edgeForget - 10*time.Second)
	report(t, h, "api", "a1", wire.EdgeCount{Target: "embedder", Calls: 4})
	c.advance(20 * time.Second)
	if e := edge(t, view(), "api", "embedder"); e.Instances != 1 || e.Calls != 39-5 {
		t.Fatalf("a2 should be forgotten: %+v", e)
	}
}

// TestEdgeReportsRefused: bad reports are refused with 400 or 413 and
// change nothing; past the bound on instances, new ones get 429.
func TestEdgeReportsRefused(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat("x", maxLabelLen+1)
	many := make([]wire.EdgeCount, maxEdgeTargets+1)
	for i := range many {
		many[i] = wire.EdgeCount{Target: fmt.Sprint("t", i)}
	}
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"not json", `{`, http.StatusBadRequest},
		{"no resource", `{"edges":[{"target":"b","calls":1}]}`, http.StatusBadRequest},
		{"long resource", `{"resource":"` + long + `","edges":[]}`, http.StatusBadRequest},
		{"long target", `{"resource":"a","edges":[{"target":"` + long + `"}]}`, http.StatusBadRequest},
		{"empty target", `{"resource":"a","edges":[{"target":""}]}`, http.StatusBadRequest},
		{"twice the target", `{"resource":"a","edges":[{"target":"b"},{"target":"b"}]}`, http.StatusBadRequest},
		{"errors above calls", `{"resource":"a","edges":[{"target":"b","calls":1,"errors":2}]}`, http.StatusBadRequest},
		{"negative latency", `{"resource":"a","edges":[{"target":"b","seconds":-1}]}`, http.StatusBadRequest},
		{"too big", `{"resource":"a","instance":"` + strings.Repeat("x", maxEdgeBody) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		if got := postEdges(t, h, []byte(tc.body)); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	body, _ := json.Marshal(wire.EdgeReport{Resource: "a", Edges: many})
	if got := postEdges(t, h, body); got != http.StatusBadRequest {
		t.Errorf("too many targets: %d", got)
	}
	if v := h.m.edges.view(time.Now()); len(v) != 0 {
		t.Fatalf("refused reports left edges: %+v", v)
	}

	for i := range maxEdgeSources {
		report(t, h, "api", fmt.Sprint("i", i), wire.EdgeCount{Target: "b", Calls: 1})
	}
	body, _ = json.Marshal(wire.EdgeReport{Resource: "api", Instance: "one-more", Edges: []wire.EdgeCount{{Target: "b"}}})
	if got := postEdges(t, h, body); got != http.StatusTooManyRequests {
		t.Fatalf("instance past the bound: %d, want 429", got)
	}
	report(t, h, "api", "i0", wire.EdgeCount{Target: "b", Calls: 2}) // known ones still report
}

// FuzzEdgeReport: any body is refused, or kept within the bounds.
func FuzzEdgeReport(f *testing.F) {
	f.Add([]byte(`{"resource":"api","instance":"i","edges":[{"target":"b","calls":3,"errors":1,"seconds":0.5}]}`))
	f.Add([]byte(`{"resource":"api","edges":[{"target":"b","calls":18446744073709551615}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var rep wire.EdgeReport
		if json.Unmarshal(body, &rep) != nil || checkReport(rep) != nil {
			return
		}
		es := newEdgeStats()
		now := time.Unix(1000, 0)
		if err := es.record(rep, now); err != nil {
			t.Fatal(err)
		}
		es.record(rep, now.Add(time.Second))
		for _, v := range es.view(now.Add(2 * time.Second)) {
			if v.Errors > v.Calls && len(rep.Edges) == 1 || v.Rate < 0 || math.IsNaN(v.LatencyMS) {
				t.Fatalf("view %+v of %+v", v, rep)
			}
		}
	})
}
