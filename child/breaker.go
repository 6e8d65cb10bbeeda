package child

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/telemetry"
)

// Defaults of BreakerPolicy.
const (
	DefaultBreakerFailures   = 5
	DefaultBreakerOpenFor    = 250 * time.Millisecond
	DefaultBreakerMaxOpenFor = 5 * time.Second
	maxBreakers              = 4096 // URLs tracked at once
)

// BreakerPolicy configures the circuit breaker the Invoker keeps per
// endpoint URL. Zero values mean the defaults.
type BreakerPolicy struct {
	// Failures is how many consecutive failures (transport errors, no
	// answer before the call's deadline, 5xx answers other than a
	// function's own error) open the breaker; default 5. A negative value
	// disables the breaker.
	Failures int
	// OpenFor is how long a breaker that just opened fails calls fast
	// before it lets one probe through (half-open); default 250 ms. Each
	// failed probe doubles the wait, up to MaxOpenFor: an endpoint that is
	// back after a restart is found within a fraction of its outage, one
	// that stays down costs one request per MaxOpenFor.
	OpenFor time.Duration
	// MaxOpenFor bounds the wait between probes; default 5 s.
	MaxOpenFor time.Duration
}

// verdict is what one request says about an endpoint's health.
type verdict int8

const (
	neutral verdict = iota // says nothing: the caller gave up, or the breaker refused
	healthy                // answered as a working endpoint does (2xx, 4xx, a function's error)
	failing                // transport error or a server failure
)

// breakerState is one URL's breaker. Only URLs that failed since their last
// success have one: a healthy URL costs nothing.
type breakerState struct {
	fails     int           // consecutive failures
	openUntil time.Time     // zero: closed
	openFor   time.Duration // the wait that set openUntil; doubles at each failed probe
	probing   bool          // half-open: the one probe is in flight
}

// breakers holds the breakers of every URL an Invoker calls, shared by all
// targets (keyed by URL) and bounded in size.
type breakers struct {
	failures   int
	openFor    time.Duration
	maxOpenFor time.Duration
	now        func() time.Time
	metrics    *telemetry.Metrics // counts state changes

	tracked atomic.Int32 // len(m): zero lets the happy path skip the lock
	mu      sync.Mutex
	m       map[string]*breakerState
}

func newBreakers(p BreakerPolicy, now func() time.Time) *breakers {
	if p.Failures == 0 {
		p.Failures = DefaultBreakerFailures
	}
	if p.OpenFor <= 0 {
		p.OpenFor = DefaultBreakerOpenFor
	}
	if p.MaxOpenFor <= 0 {
		p.MaxOpenFor = DefaultBreakerMaxOpenFor
	}
	p.MaxOpenFor = max(p.MaxOpenFor, p.OpenFor)
	return &breakers{failures: p.Failures, openFor: p.OpenFor, maxOpenFor: p.MaxOpenFor, now: now,
		m: make(map[string]*breakerState)}
}

func (b *breakers) enabled() bool { return b.failures > 0 }

// any reports whether some URL has a breaker that is not plainly closed
// and healthy; without one, every URL is available.
func (b *breakers) any() bool { return b.tracked.Load() != 0 }

// allow says whether a request to url may go out now. probe is true when it
// is the single request of a half-open breaker; its outcome must be
// recorded. An open breaker answers an error matching flasherr.ErrCircuitOpen.
func (b *breakers) allow(url string) (probe bool, err error) {
	if !b.enabled() || !b.any() {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.m[url]
	if st == nil || st.openUntil.IsZero() {
		return false, nil
	}
	now := b.now()
	if now.Before(st.openUntil) || st.probing {
		return false, &openError{fails: st.fails, wait: max(st.openUntil.Sub(now), 0)}
	}
	st.probing = true
	b.metrics.Breaker("half_open")
	return true, nil
}

// openError is a request an open breaker refused. It matches
// flasherr.ErrCircuitOpen.
type openError struct {
	fails int
	wait  time.Duration // until the next probe may go; 0 while one is in flight
}

func (e *openError) Error() string {
	return fmt.Sprintf("%v: the endpoint failed %d times in a row; next probe in %v",
		flasherr.ErrCircuitOpen, e.fails, e.wait.Round(time.Millisecond))
}

// Is makes errors.Is(err, flasherr.ErrCircuitOpen) true.
func (e *openError) Is(target error) bool { return target == flasherr.ErrCircuitOpen }

// closedLocked reports whether url's breaker is closed (or untracked).
func (b *breakers) closedLocked(url string) bool {
	st := b.m[url]
	return st == nil || st.openUntil.IsZero()
}

// availableLocked reports whether a request to url would be let through.
func (b *breakers) availableLocked(url string, now time.Time) bool {
	st := b.m[url]
	return st == nil || st.openUntil.IsZero() || (!st.probing && !now.Before(st.openUntil))
}

// record notes the outcome of a request to url.
func (b *breakers) record(url string, v verdict, probe bool) {
	if !b.enabled() || (v != failing && !probe && !b.any()) {
		return // the happy path: nothing tracked, nothing to do
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.m[url]
	switch v {
	case healthy:
		if st != nil {
			if !st.openUntil.IsZero() {
				b.metrics.Breaker("closed")
			}
			delete(b.m, url)
			b.tracked.Store(int32(len(b.m)))
		}
	case neutral:
		if st != nil && probe {
			st.probing = false // let another request probe
		}
	case failing:
		if st == nil {
			if len(b.m) >= maxBreakers && !b.evictLocked() {
				return // full of open breakers: this URL goes untracked
			}
			st = &breakerState{}
			b.m[url] = st
			b.tracked.Store(int32(len(b.m)))
		}
		st.fails++
		switch {
		case probe:
			st.openFor, st.probing = min(2*st.openFor, b.maxOpenFor), false
			st.openUntil = b.now().Add(st.openFor)
			b.metrics.Breaker("open")
		case st.openUntil.IsZero() && st.fails >= b.failures:
			st.openFor = b.openFor
			st.openUntil = b.now().Add(st.openFor)
			b.metrics.Breaker("open")
		}
	}
}

// forget closes the breakers of urls: the manifest says their endpoint
// restarted or moved, so what they learnt no longer holds.
func (b *breakers) forget(urls []string) {
	if !b.any() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range urls {
		delete(b.m, u)
	}
	b.tracked.Store(int32(len(b.m)))
}

// evictLocked drops one closed breaker (a URL with a few recent failures)
// to make room; open ones are kept.
func (b *breakers) evictLocked() bool {
	for url, st := range b.m {
		if st.openUntil.IsZero() {
			delete(b.m, url)
			return true
		}
	}
	return false
}

// health judges one send for the breaker: transport errors, no answer
// before the call's deadline (a hung endpoint looks like this) and 5xx
// answers fail, except a function's own error (an LB 500 carrying
// error_type) and a loop report (508), which a working endpoint gives. A
// caller that cancelled says nothing.
func health(ctx context.Context, t *Target, a answer, err error) verdict {
	switch {
	case err != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return failing
		}
		if ctx.Err() != nil || errors.Is(err, flasherr.ErrSerialization) {
			return neutral
		}
		return failing
	case a.status < 500 || a.status == http.StatusLoopDetected:
		return healthy
	case a.status == http.StatusInternalServerError && t.LB && functionError(a.data):
		return healthy
	}
	return failing
}

// functionError reports whether an error body names the function's error
// type, as a serving endpoint does for a function that failed.
func functionError(body []byte) bool {
	var e struct {
		ErrorType string `json:"error_type"`
	}
	return json.Unmarshal(body, &e) == nil && e.ErrorType != ""
}
