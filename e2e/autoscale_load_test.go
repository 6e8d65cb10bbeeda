//go:build load

// Scale-up reaction under a step load (issue 18), not part of CI:
//
//	go test -tags load -run TestLoadAutoscaleReaction -v ./e2e/
//
// E2E_SCALE_TRIALS (default 5) is the number of steps.

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadAutoscaleReaction steps edge (REQUEST_COUNT 1, 1-4 replicas,
// idle 1 s) from no load to 8 concurrent 500 ms calls through the gateway,
// and measures from the step to the first new replica published (it serves
// from then on: it answered /ping before) and to workersMax; the baseline
// of the same run is what the provider's start of those replicas took (the
// "took" of the mothership's "resource scaled up" line). Between steps the
// load stops and edge drains back to 1.
func TestLoadAutoscaleReaction(t *testing.T) {
	trials := 5
	if v := os.Getenv("E2E_SCALE_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			t.Fatalf("E2E_SCALE_TRIALS=%q: want 1 to 50", v)
		}
		trials = n
	}
	w := newWorld(t, bins.testapp, "testapp")
	mf := w.appManifest(t)
	edge := object(t, object(t, mf, "resources"), "edge")
	edge["scalerType"], edge["scalerValue"], edge["workersMin"], edge["workersMax"], edge["idleTimeout"] = "REQUEST_COUNT", 1, 1, 4, 1
	w.writeDesired(t, mf)
	ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
	ms.waitDeployed(t, 30*time.Second, "front", "edge")

	replicas := func() int { return ms.status(t).Resources["edge"].Replicas }
	var first, full []time.Duration
	var failed, calls atomic.Int64
	for trial := range trials {
		eventually(t, 20*time.Second, "edge at 1 replica", func() error {
			if n := replicas(); n != 1 {
				return fmt.Errorf("%d replicas", n)
			}
			return nil
		})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		start := time.Now()
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					r, err := send(http.MethodPost, ms.url+"/edge/sleep", apiKey, map[string]int{"ms": 500})
					calls.Add(1)
					if err != nil || r.Code != http.StatusOK {
						failed.Add(1)
					}
				}
			})
		}
		var f time.Duration
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			n := replicas()
			if n > 1 && f == 0 {
				f = time.Since(start)
			}
			if n == 4 {
				full = append(full, time.Since(start))
				break
			}
		}
		close(stop)
		wg.Wait()
		if f == 0 || len(full) != trial+1 {
			t.Fatalf("trial %d: edge did not reach 4 replicas in 20 s", trial)
		}
		first = append(first, f)
	}
	took := startTimes(t, ms.proc.log)
	t.Logf("%d steps, %d calls, %d failed", trials, calls.Load(), failed.Load())
	t.Logf("step → first new replica published: %s", spread(first))
	t.Logf("step → workersMax (4) published:    %s", spread(full))
	t.Logf("baseline, provider start of the added replicas (took): %s", spread(took))
	if failed.Load() > 0 {
		t.Fatalf("%d calls failed", failed.Load())
	}
}

// startTimes reads the took= of every "resource scaled up" line of a log.
func startTimes(t *testing.T, path string) []time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Duration
	for _, m := range regexp.MustCompile(`resource scaled up.* took=(\S+)`).FindAllSubmatch(b, -1) {
		if d, err := time.ParseDuration(string(m[1])); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// spread is "p50 X, min Y, max Z (n)" of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Sorted(slices.Values(ds))
	return fmt.Sprintf("p50 %s, min %s, max %s (n=%d)", s[len(s)/2].Round(time.Millisecond),
		s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}
