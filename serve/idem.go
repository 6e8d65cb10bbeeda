package serve

import (
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

// idemEntry is the outcome of one keyed submission, settled once: answer
// (runsync) or jobID (run) set when kept, both empty when the first attempt
// left nothing to reuse (it was refused, cancelled or timed out), in which
// case a waiter submits anew. Entries live in a list of the table, oldest
// first; done exists only once a repeat waits (most keys are never
// repeated, so most entries never need one).
type idemEntry struct {
	key        idemKey
	settled    bool
	done       chan struct{} // closed when settled; nil until a repeat waits
	answer     []byte        // the /runsync answer body, as sent
	jobID      string        // the /run job
	expires    time.Time
	prev, next *idemEntry
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

	mu         sync.Mutex
	byKey      map[idemKey]*idemEntry
	head, tail *idemEntry // oldest, newest
	bytes      int
}

func newIdemTable(ttl time.Duration, entries, maxBytes int, now func() time.Time) *idemTable {
	return &idemTable{ttl: ttl, maxEntries: entries, maxBytes: maxBytes, maxAnswer: maxBytes / 16,
		now: now, byKey: make(map[idemKey]*idemEntry)}
}

// keyOf returns the idempotency key of a job submission, if the request
// carries one: an Idempotency-Key header (what flash callers send, one per
// call), else an explicit X-Request-Id. Generated request ids do not
// count: they are new for every request.
func keyOf(r *http.Request, route, fn string, body []byte) (idemKey, bool) {
	src, id := "k", wire.HeaderGet(r.Header, wire.HeaderIdempotencyKey)
	if !validRequestID(id) {
		src, id = "r", wire.HeaderGet(r.Header, wire.HeaderRequestID)
		if !validRequestID(id) {
			return idemKey{}, false
		}
	}
	h := sha256.New() // inlined and devirtualized: its state stays on the stack
	for _, part := range [...]string{route, fn, src, id} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(body)
	var k idemKey
	h.Sum(k[:0])
	return k, true
}

// claim returns the entry of k and, unless the caller leads, the channel
// to wait on before reading its outcome. wait is nil when there was no
// entry (or only an expired one): the caller runs the submission and must
// settle the entry with keep or drop.
func (t *idemTable) claim(k idemKey) (e *idemEntry, wait <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.evictLocked(now)
	if e := t.byKey[k]; e != nil {
		if e.done == nil {
			e.done = make(chan struct{})
			if e.settled {
				close(e.done)
			}
		}
		return e, e.done
	}
	e = &idemEntry{key: k, expires: now.Add(t.ttl)}
	t.pushLocked(e)
	t.byKey[k] = e
	if len(t.byKey) > t.maxEntries {
		t.removeLocked(t.head) // the oldest, not e: maxEntries is at least 1
	}
	return e, nil
}

// settleLocked marks e settled and wakes its waiters.
func settleLocked(e *idemEntry) {
	if e.settled {
		return
	}
	e.settled = true
	if e.done != nil {
		close(e.done)
	}
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
	settleLocked(e)
	if t.byKey[e.key] != e { // evicted (or too large): nothing to account
		return
	}
	now := t.now()
	t.bytes += len(answer)
	e.expires = now.Add(t.ttl)
	t.unlinkLocked(e)
	t.pushLocked(e)
	t.evictLocked(now)
}

// drop settles e empty and forgets it, so that the next request with its
// key runs the submission again.
func (t *idemTable) drop(e *idemEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	settleLocked(e)
	t.removeLocked(e)
}

func (t *idemTable) removeLocked(e *idemEntry) {
	if t.byKey[e.key] != e {
		return
	}
	delete(t.byKey, e.key)
	t.unlinkLocked(e)
	t.bytes -= len(e.answer)
}

// pushLocked appends e, not in the list, as the newest entry.
func (t *idemTable) pushLocked(e *idemEntry) {
	e.prev, e.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = e
	} else {
		t.head = e
	}
	t.tail = e
}

// unlinkLocked takes e, in the list, out of it.
func (t *idemTable) unlinkLocked(e *idemEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// evictLocked drops expired entries and, beyond the bounds, the oldest. An
// entry still running when it expires is kept (moved to the back): its
// waiters need it; only the count bound removes it.
func (t *idemTable) evictLocked(now time.Time) {
	for e := t.head; e != nil; e = t.head {
		switch {
		case len(t.byKey) > t.maxEntries || t.bytes > t.maxBytes:
			t.removeLocked(e) // its waiters still hold it
		case now.Before(e.expires):
			return
		case !e.settled:
			e.expires = now.Add(t.ttl)
			if e == t.tail {
				return // the only entry
			}
			t.unlinkLocked(e)
			t.pushLocked(e)
		default:
			t.removeLocked(e)
		}
	}
}

// size reports the entries and answer bytes held (tests).
func (t *idemTable) size() (entries, bytes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey), t.bytes
}
