package serve

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// GET /flash/load reports the jobs queued and running and how long the
// oldest queued one has waited: the autoscaler's signal.
func TestLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		s := newServer(t, Config{Workers: 1}, g)
		read := func() wire.Load {
			t.Helper()
			r := do(t, s, "GET", wire.PathLoad, "")
			if r.Code != 200 {
				t.Fatalf("%d %s", r.Code, r.Body)
			}
			m := r.json(t)
			return wire.Load{Queued: int(m["queued"].(float64)), Running: int(m["running"].(float64)), OldestWaitMs: int64(m["oldest_wait_ms"].(float64))}
		}
		if l := read(); l != (wire.Load{}) {
			t.Fatalf("idle load %+v", l)
		}
		for range 3 {
			do(t, s, "POST", "/run", envelopeFor("block", map[string]any{"tag": "t"}))
		}
		<-g.started
		time.Sleep(1500 * time.Millisecond)
		if l := read(); l != (wire.Load{Queued: 2, Running: 1, OldestWaitMs: 1500}) {
			t.Fatalf("load %+v, want 2 queued for 1.5 s and 1 running", l)
		}
		close(g.release)
		synctest.Wait()
		if l := read(); l != (wire.Load{}) {
			t.Fatalf("load after the work %+v", l)
		}
	})
}
