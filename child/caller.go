package child

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/manifest"
)

// rerouteWait bounds how long a call whose endpoint vanished waits for a
// fresher manifest.
const rerouteWait = 2 * time.Second

// maxReroutes bounds how often one call follows its function elsewhere.
const maxReroutes = 3

// Caller owns a call from routing to its answer: it routes a function by
// the manifest in use, invokes it where it runs, and when the endpoint
// vanished (a redeploy moved it) follows the function to its new place.
// It is safe for concurrent use.
type Caller struct {
	router  *Router
	invoker *Invoker
	sync    *Sync              // nil without a mothership
	prev    *manifest.Manifest // the manifest applied last; only applied touches it
}

// NewCaller returns a Caller routing with r and calling with iv. When s is
// not nil, a call whose endpoint vanished waits for s's newer manifests,
// and a manifest that shows an endpoint restarted or moved closes that
// endpoint's circuit breakers.
func NewCaller(r *Router, iv *Invoker, s *Sync) *Caller {
	c := &Caller{router: r, invoker: iv, sync: s}
	if s != nil {
		s.subscribe(c.applied)
	}
	return c
}

// applied forgets the breakers of every resource whose endpoints the new
// manifest changed (URLs, status, error or config hash): a restarted or
// moved endpoint starts with a clean record instead of waiting out a probe.
func (c *Caller) applied(m *manifest.Manifest, _ int64) {
	prev := c.prev
	c.prev = m
	if prev == nil {
		return
	}
	for name, old := range prev.Resources {
		res := m.Resources[name]
		if res != nil && res.Status == old.Status && res.Error == old.Error &&
			res.ConfigHash == old.ConfigHash && slices.Equal(res.URLs(), old.URLs()) {
			continue
		}
		c.invoker.brk.forget(trimURLs(old.URLs()))
		if res != nil {
			c.invoker.brk.forget(trimURLs(res.URLs()))
		}
	}
}

// Route says where fn runs: (nil, nil) in-process, a target to Invoke, or
// the error the call fails with (see Router.Route).
func (c *Caller) Route(ctx context.Context, fn string) (*Target, error) {
	return c.router.Route(ctx, fn)
}

// Invoker returns the Invoker the Caller calls with, for calls the Router
// does not route (an object's instance, pinned to one replica).
func (c *Caller) Invoker() *Invoker { return c.invoker }

// Table returns the routing table in use (Router.Table).
func (c *Caller) Table() *Table { return c.router.Table() }

// Invoke calls t's function with in and decodes the result into out, as
// Invoker.Invoke does, and follows the function when the manifest moves
// it: a call whose endpoint vanished (or is draining) waits for a newer
// manifest; one refused by an overloaded endpoint or an open breaker takes
// a newer route only when there is one already.
func (c *Caller) Invoke(ctx context.Context, t *Target, in, out any) error {
	return c.follow(ctx, t, func(t *Target, moved <-chan struct{}) error {
		return c.invoker.invoke(ctx, t, in, out, moved)
	}, nil)
}

// Stream calls t's streaming function as Invoker.Stream does, and follows
// the function as Invoke does while no value has reached each (after one,
// a failure ends the stream: elsewhere the values would come again).
func (c *Caller) Stream(ctx context.Context, t *Target, in any, each func(json.RawMessage) bool) error {
	started := false
	counted := func(v json.RawMessage) bool {
		started = true
		return each(v)
	}
	return c.follow(ctx, t, func(t *Target, moved <-chan struct{}) error {
		return c.invoker.stream(ctx, t, in, counted, moved)
	}, func() bool { return !started })
}

// follow runs op on t and, when it failed because the endpoint vanished or
// refused (and movable, when not nil, says the call may still move), on
// the function's newer route.
func (c *Caller) follow(ctx context.Context, t *Target, op func(*Target, <-chan struct{}) error, movable func() bool) error {
	for n := 0; ; {
		var changed <-chan struct{}
		if c.sync != nil {
			changed = c.sync.Changed()
		}
		err := op(t, changed)
		gone := errors.Is(err, flasherr.ErrEndpointNotReady)
		if err == nil || n >= maxReroutes || movable != nil && !movable() ||
			(!gone && !errors.Is(err, flasherr.ErrOverloaded) && !errors.Is(err, flasherr.ErrCircuitOpen)) {
			return err
		}
		again := c.reroute(ctx, t, gone)
		if again == nil {
			return err
		}
		if !slices.Equal(again.URLs, t.URLs) {
			n++ // a move; a new version with the same URLs is the same endpoint
		}
		t = again
	}
}

// reroute returns a newer route to old's function than old, or nil: from
// the manifest in use, else (with wait) from a newer one, since the sync
// may be in backoff after a mothership outage, unaware that the endpoint
// moved.
func (c *Caller) reroute(ctx context.Context, old *Target, wait bool) *Target {
	var changed <-chan struct{}
	if c.sync != nil {
		changed = c.sync.Changed() // before Route: no apply slips in between
	}
	if t := c.moved(ctx, old); t != nil || c.sync == nil {
		return t
	}
	c.sync.Nudge()
	if !wait {
		return nil
	}
	timeout := time.NewTimer(rerouteWait)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timeout.C:
			return nil
		case <-changed:
		}
		changed = c.sync.Changed()
		if t := c.moved(ctx, old); t != nil {
			return t
		}
	}
}

// moved returns the current route to old's function when a newer manifest
// gave it one (the same URLs may serve again: a restarted endpoint), else nil.
func (c *Caller) moved(ctx context.Context, old *Target) *Target {
	t, err := c.router.Route(ctx, old.Function)
	if err != nil || t == nil || t == old {
		return nil
	}
	return t
}
