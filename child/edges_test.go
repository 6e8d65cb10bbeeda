package child

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// TestReportEdges: the reporter posts the counts with its identity and the
// key while they change, skips unchanged ones, moves to the next mothership
// when one fails, and stops with its context.
func TestReportEdges(t *testing.T) {
	var (
		mu      sync.Mutex
		reports []wire.EdgeReport
	)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep wire.EdgeReport
		if r.Method != http.MethodPost || r.URL.Path != wire.PathEdges || r.Header.Get("Authorization") != "Bearer k" ||
			json.NewDecoder(r.Body).Decode(&rep) != nil {
			t.Errorf("bad report: %s %s %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
		}
		mu.Lock()
		reports = append(reports, rep)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer good.Close()
	var failed atomic.Int32
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failed.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	s, err := NewSync(Config{Identity: "api", Instance: "i1", MothershipURL: bad.URL + "," + good.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Uint64
	counts := func() []wire.EdgeCount {
		if n := calls.Load(); n > 0 {
			return []wire.EdgeCount{{Target: "embedder", Calls: n, Errors: 1}}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.ReportEdges(ctx, 10*time.Millisecond, counts) }()
	waitReports := func(n int) []wire.EdgeReport {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			got := append([]wire.EdgeReport(nil), reports...)
			mu.Unlock()
			if len(got) >= n {
				return got
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("fewer than %d reports", n)
		return nil
	}
	calls.Store(3)
	got := waitReports(1)
	if r := got[0]; r.Resource != "api" || r.Instance != "i1" || len(r.Edges) != 1 || r.Edges[0].Calls != 3 {
		t.Fatalf("report %+v", r)
	}
	// Unchanged counts are not sent again (within the keep-alive).
	time.Sleep(100 * time.Millisecond)
	if n := len(waitReports(1)); n != 1 {
		t.Fatalf("%d reports of unchanged counts, want 1", n)
	}
	calls.Store(5)
	if got := waitReports(2); got[1].Edges[0].Calls != 5 {
		t.Fatalf("second report %+v", got[1])
	}
	cancel()
	<-done
	// Where it started depends on the instance's name; it ended on the good one.
	if f := failed.Load(); f > 1 {
		t.Errorf("%d reports to the failing mothership, want at most 1 before moving on", f)
	}
}
