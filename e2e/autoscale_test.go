package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/store"
)

// TestAutoscale runs the test app with two autoscaled resources
// (docs/autoscaling.md): edge (LB, REQUEST_COUNT 1, 1-3 replicas, idle 2 s)
// and back (QB, QUEUE_DELAY, 0-2 replicas, idle 1 s).
//
//   - back scales to zero once idle, and the first call, through the
//     gateway or from front (child to child), starts a replica and is
//     answered;
//   - a load ramp of concurrent POST /sleep through the gateway takes edge
//     from 1 replica to 3, and once the ramp ends edge drains back to 1
//     while a light load goes on: no call fails in the whole run.
func TestAutoscale(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.testapp, "testapp")
	mf := w.appManifest(t)
	res := object(t, mf, "resources")
	edge := object(t, res, "edge")
	edge["scalerType"], edge["scalerValue"], edge["workersMin"], edge["workersMax"], edge["idleTimeout"] = "REQUEST_COUNT", 1, 1, 3, 2
	back := object(t, res, "back")
	back["scalerType"], back["scalerValue"], back["workersMin"], back["workersMax"], back["idleTimeout"] = "QUEUE_DELAY", 1, 0, 2, 1
	w.writeDesired(t, mf)
	ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
	ms.waitDeployed(t, 30*time.Second, "front", "edge")

	idle := func(t *testing.T) {
		t.Helper()
		eventually(t, 15*time.Second, "back scaled to zero", func() error {
			if r := ms.status(t).Resources["back"]; r.Status != "idle" || r.Replicas != 0 {
				return fmt.Errorf("back is %s with %d replicas", r.Status, r.Replicas)
			}
			return nil
		})
	}
	step(t, "scale from zero through the gateway", func(t *testing.T) {
		idle(t)
		start := time.Now()
		var out struct {
			Finished bool `json:"finished"`
		}
		runsync(t, ms.url+"/v2/back/runsync", "slow", map[string]int{"ms": 10}).result(t, &out)
		if !out.Finished {
			t.Fatalf("slow answered %+v", out)
		}
		t.Logf("first call to back at zero replicas answered in %s", time.Since(start).Round(time.Millisecond))
		if r := ms.status(t).Resources["back"]; r.Replicas != 1 {
			t.Fatalf("back has %d replicas after the call, want 1", r.Replicas)
		}
	})
	step(t, "scale from zero child to child", func(t *testing.T) {
		idle(t)
		var out struct {
			Finished bool `json:"finished"`
		}
		runsync(t, ms.url+"/v2/front/runsync", "relay", map[string]int{"ms": 10}).result(t, &out)
		if !out.Finished {
			t.Fatalf("relay answered %+v", out)
		}
	})

	step(t, "a load ramp scales edge from 1 to 3 and back with no failed call", func(t *testing.T) {
		if n := ms.status(t).Resources["edge"].Replicas; n != 1 {
			t.Fatalf("edge starts with %d replicas, want 1", n)
		}
		var calls, failed atomic.Int64
		var mu sync.Mutex
		var failures []string
		sleepURL := ms.url + "/edge/sleep"
		client := func(stop <-chan struct{}, pause int) {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := send(http.MethodPost, sleepURL, apiKey, map[string]int{"ms": pause})
				calls.Add(1)
				if err != nil || r.Code != http.StatusOK {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v %v", time.Now().Format(time.StampMilli), r, err))
					mu.Unlock()
				}
			}
		}
		var wg sync.WaitGroup
		light, ramp := make(chan struct{}), make(chan struct{})
		stopLight, stopRamp := sync.OnceFunc(func() { close(light) }), sync.OnceFunc(func() { close(ramp) })
		wg.Go(func() { client(light, 50) }) // goes on through the scale-down
		for range 6 {
			wg.Go(func() { client(ramp, 300) })
		}
		defer func() {
			stopRamp()
			stopLight()
			wg.Wait()
		}()
		eventually(t, 20*time.Second, "edge at 3 replicas", func() error {
			if n := ms.status(t).Resources["edge"].Replicas; n != 3 {
				return fmt.Errorf("%d replicas", n)
			}
			return nil
		})
		time.Sleep(500 * time.Millisecond) // the new replicas serve part of the ramp
		stopRamp()
		eventually(t, 20*time.Second, "edge back at 1 replica", func() error {
			if n := ms.status(t).Resources["edge"].Replicas; n != 1 {
				return fmt.Errorf("%d replicas", n)
			}
			return nil
		})
		stopLight()
		wg.Wait()
		if f := failed.Load(); f > 0 {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%d of %d calls failed:\n%s", f, calls.Load(), failures[:min(len(failures), 10)])
		}
		t.Logf("%d calls, none failed", calls.Load())
		eventually(t, 10*time.Second, "one edge record left", func() error {
			recs, err := w.endpoints()
			if n := countOf(recs, "edge"); err != nil || n != 1 {
				return fmt.Errorf("%d records (%v)", n, err)
			}
			return nil
		})
	})
}

// countOf counts the endpoint records of resource.
func countOf(recs []store.Endpoint, resource string) int {
	n := 0
	for _, e := range recs {
		if e.Resource == resource {
			n++
		}
	}
	return n
}
