package child

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/telemetry/telemetrytest"
	"github.com/flash-go/flash/internal/wire"
)

// TestInvokerMetrics: each outgoing call, retry and breaker change shows in
// the metrics at the moment it happens.
func TestInvokerMetrics(t *testing.T) {
	var mode atomic.Value // "ok", "fail", "busy"
	mode.Store("ok")
	ep := &scripted{answer: func(_ int, w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "fail":
			wire.WriteError(w, 500, "internal")
		case "busy":
			mode.Store("ok") // once
			w.Header().Set("Retry-After", "0")
			wire.WriteError(w, 429, "busy")
		default:
			completed(w)
		}
	}}
	srv, client := startServer(t, ep)
	clk := &clock{now: time.Unix(1000, 0)}
	m := telemetry.NewMetrics("api", clk.Now)
	iv := fastRetries(NewInvoker(InvokerConfig{APIKey: "k", Client: client, Logger: quietLogger(), Now: clk.Now, Metrics: m}))
	tg := qbTarget("embed", srv.URL)
	tg.Resource = "embedder"
	call := func() error { return iv.Invoke(context.Background(), tg, embedIn{}, nil) }
	value := func(name string, labels ...string) float64 { return telemetrytest.Value(t, m, name, labels...) }
	calls := func(outcome string) float64 {
		return value("flash_outgoing_calls_total", "target", "embedder", "function", "embed", "outcome", outcome)
	}

	if err := call(); err != nil {
		t.Fatal(err)
	}
	if calls("ok") != 1 || value("flash_outgoing_call_duration_seconds", "target", "embedder", "function", "embed") != 1 {
		t.Fatalf("after one call: ok=%v", calls("ok"))
	}

	mode.Store("busy")
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if got := value("flash_outgoing_call_retries_total", "target", "embedder", "function", "embed"); got != 1 {
		t.Fatalf("retries = %v after a 429 then success, want 1", got)
	}

	mode.Store("fail")
	for range DefaultBreakerFailures {
		if err := call(); err == nil {
			t.Fatal("a failing call succeeded")
		}
	}
	if got := value("flash_breaker_transitions_total", "state", "open"); got != 1 {
		t.Fatalf("open transitions = %v after %d failures, want 1", got, DefaultBreakerFailures)
	}
	if err := call(); !errors.Is(err, flasherr.ErrCircuitOpen) {
		t.Fatalf("got %v, want ErrCircuitOpen", err)
	}
	if calls("circuit_open") != 1 {
		t.Fatalf("circuit_open calls = %v, want 1", calls("circuit_open"))
	}

	clk.advance(DefaultBreakerOpenFor)
	mode.Store("ok")
	if err := call(); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if h, c := value("flash_breaker_transitions_total", "state", "half_open"), value("flash_breaker_transitions_total", "state", "closed"); h != 1 || c != 1 {
		t.Fatalf("half_open = %v, closed = %v after a good probe, want 1 and 1", h, c)
	}
	if calls("ok") != 3 {
		t.Fatalf("ok calls = %v, want 3", calls("ok"))
	}
}

// TestSyncMetrics: an applied manifest sets the version and its age; a
// failed fetch counts as a sync error.
func TestSyncMetrics(t *testing.T) {
	ms := newFakeMothership()
	ms.publish(fixture(t, "valid/pipeline-runtime.json"))
	srv, client := startServer(t, ms)
	clk := &clock{now: time.Unix(1000, 0)}
	m := telemetry.NewMetrics("api", clk.Now)
	// A short long poll: the failure shows at the next poll, not in a minute.
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, PollWait: 100 * time.Millisecond,
		HTTPClient: client, Logger: quietLogger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(s)
	if v := telemetrytest.Value(t, m, "flash_manifest_applied_version"); v != 0 {
		t.Fatalf("version before any apply = %v", v)
	}
	runSync(t, s)
	eventually(t, "the first apply", func() bool { return s.Version() > 0 })
	if v := telemetrytest.Value(t, m, "flash_manifest_applied_version"); v != float64(s.Version()) {
		t.Fatalf("applied version metric = %v, want %d", v, s.Version())
	}
	clk.advance(time.Hour)
	if age := telemetrytest.Value(t, m, "flash_manifest_applied_age_seconds"); age < 3600 {
		t.Fatalf("age = %v an hour after the apply", age)
	}

	ms.setStatus(http.StatusInternalServerError)
	eventually(t, "a sync error counted", func() bool {
		return telemetrytest.Value(t, m, "flash_manifest_sync_errors_total") > 0
	})
}
