package child

import (
	"math/rand/v2"

	"github.com/flash-go/flash/internal/wire"
)

// call is one Invoke in progress.
type call struct {
	t       *Target
	meta    wire.Meta // what every send of the call carries
	idem    string    // Idempotency-Key of the first request ("" for none)
	idx     int       // replica counted in flight, -1 for none
	base    string    // URL of the replica in use
	attempt int       // requests sent so far, the span attribute flash.attempt

	moved <-chan struct{} // closed when the manifest changes (nil: never); see send
}

// use moves the call to replica i, counting it there as in flight.
func (c *call) use(i int) {
	if c.base == c.t.URLs[i] && (c.idx == i || c.idx < 0) {
		return
	}
	c.release()
	c.base = c.t.URLs[i]
	if len(c.t.URLs) > 1 && len(c.t.inflight) == len(c.t.URLs) {
		c.t.inflight[i].Add(1)
		c.idx = i
	}
}

func (c *call) release() {
	if c.idx >= 0 {
		c.t.inflight[c.idx].Add(-1)
		c.idx = -1
	}
}

// choose picks a replica of t: by the power of two random choices on calls
// in flight, among those whose breaker would let a request through, and
// other than avoid (the one that just failed) when there is another.
func (iv *Invoker) choose(t *Target, avoid int) int {
	n := len(t.URLs)
	if n == 1 {
		return 0
	}
	if avoid < 0 && !iv.brk.any() {
		return t.pick2(nil)
	}
	var buf [16]int
	cand := buf[:0]
	iv.brk.mu.Lock()
	now := iv.brk.now()
	for pass := 0; pass < 3 && len(cand) == 0; pass++ {
		for j, u := range t.URLs {
			switch {
			case pass == 0 && (j == avoid || !iv.brk.availableLocked(u, now)):
			case pass == 1 && !iv.brk.availableLocked(u, now):
			case pass == 2 && j == avoid && n > 1:
			default:
				cand = append(cand, j)
			}
		}
	}
	iv.brk.mu.Unlock()
	return t.pick2(cand)
}

// pick2 chooses among cand (nil: every replica) by the power of two random
// choices on calls in flight.
func (t *Target) pick2(cand []int) int {
	at := func(k int) int {
		if cand == nil {
			return k
		}
		return cand[k]
	}
	n := len(t.URLs)
	if cand != nil {
		n = len(cand)
	}
	if n == 1 {
		return at(0)
	}
	a, b := rand.IntN(n), rand.IntN(n-1)
	if b >= a {
		b++
	}
	i, j := at(a), at(b)
	if len(t.inflight) == len(t.URLs) && t.inflight[j].Load() < t.inflight[i].Load() {
		i = j
	}
	return i
}
