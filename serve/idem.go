package serve

import (
	"container/list"
	"crypto/sha256"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// Defaults of the idempotency table (Config.Idempotency*).
const (
	DefaultIdempotencyTTL      = 10 * time.Minute
	DefaultIdempotencyEntries  = 10000
	DefaultIdempotencyMaxBytes = 64 << 20
)

// idemKey names one submission: the route (run or runsync), the function,
// where the key came from and its value, and the request body, hashed to a
// fixed size so that an entry's memory does not depend on what the caller sent.
type idemKey [sha256.Size]byte

// idemEntry is the outcome of one keyed submission. done is closed once
// the outcome is settled: answer (runsync) or jobID (run) set when kept,
// both empty when the first attempt left nothing to reuse (it was refused,
// cancelled or timed out), in which case a waiter submits anew.
type idemEntry struct {
	key     idemKey
	done    chan struct{}
	answer  []byte // the /runsync answer body, as sent
	jobID   string // the /run job
	expires time.Time
	elem    *list.Element
}

// idemTable keeps, per key, the outcome of a submission for a while, so
// that a repeated request (a retry) gets the first one's outcome instead of
// running the function again. Memory is bounded by entry count and answer
// bytes; the oldest entries go first. Entries are ordered by last update,
// which with a fixed TTL is expiry order.
type idemTable struct {
	ttl        time.Duration
	maxEntries int
	maxBytes   int
	maxAnswer  int // larger answers are not kept
	now        func() time.Time

	waiting atomic.Int64 // repeats waiting for a first request to finish

	mu    sync.Mutex
	byKey map[idemKey]*idemEntry
	order list.List // of *idemEntry, oldest first
	bytes int
}

func newIdemTable(ttl time.Duration, entries, maxBytes int, now func() time.Time) *idemTable {
	t := &idemTable{ttl: ttl, maxEntries: entries, maxBytes: maxBytes, maxAnswer: maxBytes / 16,
		now: now, byKey: make(map[idemKey]*idemEntry)}
	t.order.Init()
	return t
}

// keyOf returns the idempotency key of a job submission, if the request
// carries one: an Idempotency-Key header (what flash callers send, one per
// call), else an explicit X-Request-Id. Generated request ids do not
// count: they are new for every request.
func keyOf(r *http.Request, route, fn string, body []byte) (idemKey, bool) {
	src, id := "k", r.Header.Get(wire.HeaderIdempotencyKey)
	if !validRequestID(id) {
		src, id = "r", r.Header.Get(wire.HeaderRequestID)
		if !validRequestID(id) {
			return idemKey{}, false
		}
	}
	h := sha256.New()
	for _, part := range []string{route, fn, src, id} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(body)
	var k idemKey
	h.Sum(k[:0])
	return k, true
}

// claim returns the entry of k. leader is true when there was none (or only
// an expired one): the caller runs the submission and must settle the
// entry with keep or drop. Otherwise the caller waits on the entry's done.
func (t *idemTable) claim(k idemKey) (e *idemEntry, leader bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.evictLocked(now)
	if e := t.byKey[k]; e != nil {
		return e, false
	}
	e = &idemEntry{key: k, done: make(chan struct{}), expires: now.Add(t.ttl)}
	e.elem = t.order.PushBack(e)
	t.byKey[k] = e
	return e, true
}

// keep settles e with its outcome (an answer body or a job id). Requests
// already waiting get it; an answer too large to keep is then forgotten.
func (t *idemTable) keep(e *idemEntry, answer []byte, jobID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(answer) > t.maxAnswer {
		t.removeLocked(e) // before answer is set: its bytes were never counted
	}
	e.answer, e.jobID = answer, jobID
	close(e.done)
	if t.byKey[e.key] != e { // evicted (or too large): nothing to account
		return
	}
	t.bytes += len(answer)
	e.expires = t.now().Add(t.ttl)
	t.order.MoveToBack(e.elem)
	t.evictLocked(t.now())
}

// drop settles e empty and forgets it, so that the next request with its
// key runs the submission again.
func (t *idemTable) drop(e *idemEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropLocked(e)
}

func (t *idemTable) dropLocked(e *idemEntry) {
	select {
	case <-e.done:
	default:
		close(e.done)
	}
	t.removeLocked(e)
}

func (t *idemTable) removeLocked(e *idemEntry) {
	if t.byKey[e.key] != e {
		return
	}
	delete(t.byKey, e.key)
	t.order.Remove(e.elem)
	t.bytes -= len(e.answer)
}

// evictLocked drops expired entries and, beyond the bounds, the oldest. An
// entry still running when it expires is kept (moved to the back): its
// waiters need it; only the count bound removes it.
func (t *idemTable) evictLocked(now time.Time) {
	for t.order.Len() > 0 {
		e := t.order.Front().Value.(*idemEntry)
		switch {
		case t.order.Len() > t.maxEntries || t.bytes > t.maxBytes:
			t.removeLocked(e) // its waiters still hold it
		case now.Before(e.expires):
			return
		case !settled(e):
			e.expires = now.Add(t.ttl)
			t.order.MoveToBack(e.elem)
			if t.order.Front().Value.(*idemEntry) == e {
				return // the only entry
			}
		default:
			t.removeLocked(e)
		}
	}
}

func settled(e *idemEntry) bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// size reports the entries and answer bytes held (tests).
func (t *idemTable) size() (entries, bytes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey), t.bytes
}
