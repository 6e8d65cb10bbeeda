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
	DefaultWaitRefused = 10 * time.Second
)

// RetryPolicy says when a call is sent again. Only sends that are safe to
// repeat are retried: a transport error where the request provably did not
// reach the endpoint (see notSent and WaitRefused), and the answers 429
// and 503 (the endpoint refused before doing any work), plus 408, 502 and 504
// for queue-based calls (the endpoint keeps one outcome per idempotency key,
// so a repeat joins the first run) and for idempotent LB methods. Waits are
// exponential with full jitter; a Retry-After from the endpoint about to be
// asked again is honoured. No attempt starts after the caller's deadline.
// With replicas, a retry goes to another replica when there is one.
type RetryPolicy struct {
	// MaxAttempts bounds the sends of one call, the first included, that
	// reached an endpoint (refused ones are bounded by WaitRefused);
	// default 4. 1 disables retries.
	MaxAttempts int
	// Base is the first backoff step; default 25 ms. Step n waits a random
	// time in [0, min(Cap, Base·2ⁿ⁻¹)).
	Base time.Duration
	// Cap bounds a backoff step; default 1 s. A Retry-After may be longer
	// (when it fits in the caller's remaining time).
	Cap time.Duration
	// WaitRefused is how long a call keeps trying endpoints that refuse
	// connections (restarting ones: that takes 0.5-2 s), within its
	// deadline; default 10 s. Such retries do not count against
	// MaxAttempts. An endpoint refusing for longer is taken as gone.
	WaitRefused time.Duration
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
	if p.WaitRefused <= 0 {
		p.WaitRefused = DefaultWaitRefused
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
// reached the endpoint's code: the connection could not be made, or it was
// reset with the request unread. A reset is what a process that dies with
// connections in its accept backlog, or a stale pooled connection to it,
// gives; a server that read the request and then died closes with a FIN
// (io.EOF), which is not repeated.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
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
//
// An endpoint that refuses connections is restarting, or gone: the call
// keeps trying it (and waits out its open breaker) for up to WaitRefused
// within the caller's deadline, so that a call across a restart succeeds.
// It stops early when c.moved fires: the manifest changed, and the Caller
// routes again.
func (iv *Invoker) send(ctx context.Context, c *call, method, path string, body []byte) (answer, error) {
	t := c.t
	i := iv.choose(t, -1)
	var (
		last         answer
		lastErr      error
		counted      int       // attempts that count against MaxAttempts
		refusedSince time.Time // start of a streak of undelivered sends; zero while endpoints answer
	)
	for attempt := 1; ; attempt++ {
		c.use(i)
		var wait time.Duration
		probe, err := iv.brk.allow(c.base)
		if err != nil {
			var open *openError
			if refusedSince.IsZero() || !errors.As(err, &open) {
				if lastErr != nil || last.status != 0 {
					return last, lastErr // the real failure says more than the breaker
				}
				return answer{}, t.errorf("%w", err) // a fresh call fails fast
			}
			wait = max(open.wait, iv.retry.backoff(attempt)) // until the next probe is due
		} else {
			a, err := iv.do(ctx, c, method, c.base+path, body)
			iv.brk.record(c.base, health(ctx, t, a, err), probe)
			last, lastErr = a, err
			refused := err != nil && ctx.Err() == nil && notSent(err)
			if !refused {
				counted++
			}
			if err == nil {
				refusedSince = time.Time{}
			}
			switch {
			case err == nil && (!retryableStatus(t, method, a.status) || t.LB && codedAnswer(a.data)):
				return a, nil
			case err != nil && (!refused || t.Pinned), iv.retry.MaxAttempts <= 1:
				return a, err
			case refused && refusedSince.IsZero():
				refusedSince = time.Now()
			case !refused && counted >= iv.retry.MaxAttempts:
				return a, err
			}
			wait = iv.retry.backoff(attempt)
		}
		next := iv.choose(t, i)
		if next == i && last.retryAfter > 0 {
			wait = max(wait, last.retryAfter) // the same endpoint asked us to wait
		}
		if !refusedSince.IsZero() && time.Since(refusedSince)+wait > iv.retry.WaitRefused {
			return last, lastErr // refused for too long: gone, not restarting
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return last, lastErr // no time left for another attempt
		}
		iv.metrics.Retry(t.Resource, t.Function)
		iv.log.Debug("retrying a call", "function", t.Function, "resource", t.Resource, "attempt", attempt+1,
			"after", wait, "status", last.status, "err", lastErr)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return last, t.ctxError(ctx)
		case <-c.moved:
			timer.Stop()
			return last, lastErr // the manifest changed: the Caller routes again
		}
		i = next
	}
}
