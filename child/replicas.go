package child

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// ProbeTimeout bounds a background probe of a replica whose breaker is due
// for one; a replica that does not answer /ping within it stays open.
const ProbeTimeout = time.Second

// call is one Invoke in progress.
type call struct {
	t       *Target
	meta    wire.Meta // what every send of the call carries
	idem    string    // Idempotency-Key of the first request ("" for none)
	idx     int       // replica counted in flight, -1 for none
	base    string    // URL of the replica in use
	attempt int       // requests sent so far, the span attribute flash.attempt
	stream  bool      // an LB stream: ask for NDJSON, hand a 2xx body over unread

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
// in flight, among the replicas whose breaker is closed, other than avoid
// (the one that just failed) when there is another. A replica whose breaker
// is due for a probe gets no caller's request while a closed one is left:
// it is probed in the background with GET /ping instead, so that a hung
// replica never costs a caller its deadline. Without a closed replica, those
// due for a probe are candidates too (the request is the probe).
func (iv *Invoker) choose(t *Target, avoid int) int {
	n := len(t.URLs)
	if n == 1 {
		return 0
	}
	if avoid < 0 && !iv.brk.any() {
		return t.pick2(nil)
	}
	var buf, due [16]int
	cand, probes := buf[:0], due[:0]
	iv.brk.mu.Lock()
	now := iv.brk.now()
	for pass := 0; pass < 4 && len(cand) == 0; pass++ {
		for j, u := range t.URLs {
			switch {
			case pass == 0 && !iv.brk.closedLocked(u):
				if j != avoid && iv.brk.availableLocked(u, now) && len(probes) < cap(probes) {
					probes = append(probes, j)
				}
			case pass == 0 && j == avoid:
			case pass == 1 && (j == avoid || !iv.brk.availableLocked(u, now)):
			case pass == 2 && !iv.brk.availableLocked(u, now):
			case pass == 3 && j == avoid:
			default:
				cand = append(cand, j)
			}
		}
		if pass == 0 && len(cand) == 0 {
			probes = probes[:0] // the request itself will probe
		}
	}
	for _, j := range probes {
		iv.brk.m[t.URLs[j]].probing = true
	}
	iv.brk.mu.Unlock()
	for _, j := range probes {
		go iv.probe(t.URLs[j])
	}
	return t.pick2(cand)
}

// probe asks the replica at base for GET /ping on behalf of its half-open
// breaker (marked probing by choose): any answer below 500 closes the
// breaker, no answer within ProbeTimeout opens it again for longer.
func (iv *Invoker) probe(base string) {
	ctx, cancel := context.WithTimeout(context.Background(), ProbeTimeout)
	defer cancel()
	v := failing
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ping", nil)
	if err == nil {
		var resp *http.Response
		if resp, err = iv.client.Do(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if resp.StatusCode < 500 {
				v = healthy
			}
		}
	}
	iv.brk.record(base, v, true)
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
