package child

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"
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
			"after", wait, "status", a.status, "error", err)
		if !sleep(ctx, wait) {
			return a, t.ctxError(ctx)
		}
		i = next
	}
}
