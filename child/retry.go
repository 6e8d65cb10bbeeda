package child

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/flash-go/flash/flasherr"
)

// Defaults of RetryPolicy.
const (
	DefaultMaxAttempts = 4
	DefaultRetryBase   = 25 * time.Millisecond
	DefaultRetryCap    = time.Second
)

// RetryPolicy says when a call is sent again. Only sends that are safe to
// repeat are retried: a transport error where the request provably did not
// reach the endpoint (the connection was never made), and the answers 429
// and 503 (the endpoint refused before doing any work), plus 408, 502 and 504
// for queue-based calls (the endpoint keeps one outcome per idempotency key,
// so a repeat joins the first run) and for idempotent LB methods. Waits are
// exponential with full jitter; a Retry-After from the endpoint about to be
// asked again is honoured. No attempt starts after the caller's deadline.
// With replicas, a retry goes to another replica when there is one.
type RetryPolicy struct {
	// MaxAttempts bounds the sends of one call, the first included;
	// default 4. 1 disables retries.
	MaxAttempts int
	// Base is the first backoff step; default 25 ms. Step n waits a random
	// time in [0, min(Cap, Base·2ⁿ⁻¹)).
	Base time.Duration
	// Cap bounds a backoff step; default 1 s. A Retry-After may be longer
	// (when it fits in the caller's remaining time).
	Cap time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.Base <= 0 {
		p.Base = DefaultRetryBase
	}
	if p.Cap <= 0 {
		p.Cap = DefaultRetryCap
	}
	return p
}

// backoff is the full-jitter wait before attempt n+1 (n ≥ 1 attempts made).
func (p RetryPolicy) backoff(n int) time.Duration {
	step := p.Cap
	if n-1 < 30 {
		step = min(p.Cap, p.Base<<(n-1))
	}
	if step <= 0 {
		return 0
	}
	return rand.N(step)
}

// notSent reports whether a transport error proves the request never
// reached the endpoint: the connection could not be made.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// retryableStatus reports whether an answer with this status may be asked
// again (see RetryPolicy).
func retryableStatus(t *Target, method string, code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusRequestTimeout:
		return true
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return !t.LB || idempotent(method)
	}
	return false
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
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

// send makes the first request of a call (the /runsync post or the LB
// route), retrying as the RetryPolicy allows, and records each outcome in
// the breakers. c.base and c.idx name the replica that gave the answer.
func (iv *Invoker) send(ctx context.Context, c *call, method, path string, body []byte) (answer, error) {
	t := c.t
	i := iv.choose(t, -1)
	var (
		last    answer
		lastErr error
	)
	for attempt := 1; ; attempt++ {
		c.use(i)
		probe, err := iv.brk.allow(c.base)
		if err != nil {
			if lastErr != nil || last.status != 0 {
				return last, lastErr // the real failure says more than the breaker
			}
			return answer{}, t.errorf("%w", err)
		}
		a, err := iv.do(ctx, c, method, c.base+path, body)
		iv.brk.record(c.base, health(ctx, t, a, err), probe)
		last, lastErr = a, err
		switch {
		case err == nil && !retryableStatus(t, method, a.status):
			return a, nil
		case err != nil && (ctx.Err() != nil || !notSent(err)):
			return a, err
		case attempt >= iv.retry.MaxAttempts:
			return a, err
		}
		next := iv.choose(t, i)
		wait := iv.retry.backoff(attempt)
		if next == i && a.retryAfter > 0 {
			wait = max(wait, a.retryAfter) // the same endpoint asked us to wait
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return a, err // no time left for another attempt
		}
		iv.log.Debug("retrying a call", "function", t.Function, "resource", t.Resource, "attempt", attempt+1,
			"after", wait, "status", a.status, "err", err)
		if !sleep(ctx, wait) {
			return a, t.ctxError(ctx)
		}
		i = next
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

// redactURL hides a password in a URL's user info, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
