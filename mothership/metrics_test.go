package mothership

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/telemetry/telemetrytest"
)

// TestMetrics: reconcile steps, deploy outcomes and parked long polls show
// in the metrics when they happen.
func TestMetrics(t *testing.T) {
	metrics := telemetry.NewMetrics("mothership", time.Now)
	h := newHarness(t, func(c *Config) { c.Metrics = metrics })
	h.run(t)
	value := func(name string, labels ...string) float64 { return telemetrytest.Value(t, metrics, name, labels...) }

	mustReconcile(t, h.m, buildManifest(t, res{name: "api", lb: true}, res{name: "embedder"}))
	if got := value("flash_deploys_total", "outcome", "ok"); got != 1 {
		t.Fatalf("ok deploys = %v after one, want 1", got)
	}
	for step, want := range map[string]float64{"discover": 1, "deploy": 2, "publish": 2} {
		if got := value("flash_reconcile_step_duration_seconds", "step", step); got != want {
			t.Errorf("%s steps = %v, want %v", step, got, want)
		}
	}

	h.prov.mu.Lock()
	h.prov.fail["worker"] = errors.New("no capacity")
	h.prov.mu.Unlock()
	mustReconcile(t, h.m, buildManifest(t, res{name: "api", lb: true}, res{name: "embedder"}, res{name: "worker"}))
	if got := value("flash_deploys_total", "outcome", "failed"); got != 1 {
		t.Fatalf("failed deploys = %v after one, want 1", got)
	}

	// A long poll on the current version parks until the next publish.
	resp, _ := h.get(t, "/manifest", nil)
	version := resp.Header.Get("X-Flash-Manifest-Version")
	if _, err := strconv.Atoi(version); err != nil {
		t.Fatalf("manifest version %q", version)
	}
	done := make(chan int, 1)
	go func() { // not h.get: t.Fatal belongs to the test's goroutine
		resp, err := h.srv.Client().Get(h.srv.URL + "/manifest?version=" + version + "&wait=30")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	eventually(t, "one parked poll", func() bool { return value("flash_manifest_polls_parked") == 1 })
	mustReconcile(t, h.m, buildManifest(t, res{name: "api", lb: true}))
	if code := <-done; code != http.StatusOK {
		t.Fatalf("the parked poll answered %d, want 200 with the new manifest", code)
	}
	if got := value("flash_manifest_polls_parked"); got != 0 {
		t.Fatalf("parked polls = %v after the answer", got)
	}
	if got := value("flash_reconcile_step_duration_seconds", "step", "undeploy") + value("flash_reconcile_step_duration_seconds", "step", "remove"); got == 0 {
		t.Errorf("no remove step timed after resources were dropped")
	}
}
