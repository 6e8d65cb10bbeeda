package mothership

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/scaler"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
)

// The autoscaler (docs/autoscaling.md). While this mothership leads and its
// provider is a provider.Scaler, every ScaleTick it reads the load of each
// autoscaled resource (a resource entry with a scalerType) from its replicas
// (GET /flash/load) and from the gateway's callers waiting for a replica,
// asks internal/scaler how many replicas the resource wants, and adds or
// drains replicas, one operation per resource at a time. Replicas reach
// callers, and leave them, through the published manifest.

// DefaultScaleTick is how often the autoscaler looks at the load.
const DefaultScaleTick = 500 * time.Millisecond

// Bounds of the autoscaler's requests and waits.
const (
	loadTimeout   = time.Second            // one replica's answer to GET /flash/load
	drainPoll     = 50 * time.Millisecond  // how often a draining replica's load is read
	scaleBackoff  = 5 * time.Second        // pause after a failed scale-up
	maxLoadAnswer = 4 << 10                // bytes of a load answer read
	coldWaitPoll  = 250 * time.Millisecond // safety net of a gateway wait for a replica
)

// autoscaler is the autoscaling state of one mothership. Its mutex is a
// leaf: nothing else is locked while it is held.
type autoscaler struct {
	wake chan struct{} // capacity 1: "a caller waits for a replica"
	ops  sync.WaitGroup

	mu  sync.Mutex
	res map[string]*scaled
}

// scaled is what the autoscaler keeps of one resource.
type scaled struct {
	busy     bool                 // an add or a drain runs
	retryAt  time.Time            // no scale-up before (after a failure)
	lastBusy map[string]time.Time // per replica URL: when it last held work
	waiting  []time.Time          // arrival of each gateway call waiting for a replica

	// peak is the demand seen of the current replica set (urls).
	urls []string
	peak scaler.Peak
}

func newAutoscaler() *autoscaler {
	return &autoscaler{wake: make(chan struct{}, 1), res: make(map[string]*scaled)}
}

func (a *autoscaler) of(name string) *scaled {
	s := a.res[name]
	if s == nil {
		s = &scaled{lastBusy: make(map[string]time.Time)}
		a.res[name] = s
	}
	return s
}

// kick runs the autoscaler now rather than at its next tick.
func (a *autoscaler) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// waiter counts a gateway call waiting for a replica of name since at; the
// returned function ends the wait.
func (a *autoscaler) waiter(name string, at time.Time) func() {
	a.mu.Lock()
	s := a.of(name)
	s.waiting = append(s.waiting, at)
	a.mu.Unlock()
	a.kick()
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if i := slices.Index(s.waiting, at); i >= 0 {
			s.waiting = slices.Delete(s.waiting, i, i+1)
		}
	}
}

// autoscale runs the autoscaler until ctx ends, then waits for the
// operations it started.
func (m *Mothership) autoscale(ctx context.Context) {
	sc, ok := m.prov.(provider.Scaler)
	if !ok {
		return
	}
	defer m.scale.ops.Wait()
	t := time.NewTicker(m.cfg.ScaleTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.scale.wake:
		}
		if m.leading() {
			m.scaleOnce(ctx, sc)
		}
	}
}

// scaleOnce looks at every autoscaled resource once.
func (m *Mothership) scaleOnce(ctx context.Context, sc provider.Scaler) {
	mf, _ := m.Current()
	if mf == nil {
		return
	}
	m.scale.mu.Lock()
	for name, s := range m.scale.res {
		if mf.Resources[name] == nil && !s.busy && len(s.waiting) == 0 {
			delete(m.scale.res, name) // removed from the app
		}
	}
	m.scale.mu.Unlock()
	var wg sync.WaitGroup
	for _, name := range mf.ResourceNames() {
		res := mf.Resources[name]
		cfg, ok, err := scaler.FromEntry(res.Raw(), m.cfg.MaxReplicas)
		if !ok || err != nil {
			continue // fixed replicas; a bad config was refused at deploy
		}
		ep, known := m.deployedOf(name)
		if !known || (res.Status != manifest.StatusDeployed && res.Status != manifest.StatusUpdated && res.Status != manifest.StatusIdle) {
			continue
		}
		m.scale.mu.Lock()
		busy := m.scale.of(name).busy
		m.scale.mu.Unlock()
		if hasObjects(res) {
			// Objects live in a replica's memory (docs/objects.md): it
			// grows, but a replica is never stopped under them.
			cfg.Min = max(cfg.Min, len(ep.URLs), 1)
		}
		if !busy {
			wg.Go(func() { m.scaleResource(ctx, sc, name, cfg, ep) })
		}
	}
	wg.Wait()
}

// hasObjects reports whether r serves stateful objects (class entries).
func hasObjects(r *manifest.Resource) bool {
	return slices.ContainsFunc(r.Functions, func(f manifest.Function) bool { return f.IsClass })
}

// scaleResource reads the load of one resource and starts the operation the
// scaler asks for, if any.
func (m *Mothership) scaleResource(ctx context.Context, sc provider.Scaler, name string, cfg scaler.Config, ep provider.Endpoint) {
	loads := make([]*wire.Load, len(ep.URLs))
	var wg sync.WaitGroup
	for i, u := range ep.URLs {
		wg.Go(func() { loads[i] = m.readLoad(ctx, u) })
	}
	wg.Wait()

	now := m.cfg.Now()
	l := scaler.Load{Workers: len(ep.URLs)}
	ws := make([]scaler.Worker, len(ep.URLs))
	m.scale.mu.Lock()
	s := m.scale.of(name)
	if s.busy { // an operation started meanwhile
		m.scale.mu.Unlock()
		return
	}
	lastBusy := make(map[string]time.Time, len(ep.URLs))
	for i, u := range ep.URLs {
		ld := loads[i]
		// A replica that does not answer counts as busy: it is never
		// drained blind. A new one starts its idle time now.
		busy := ld == nil || ld.Queued+ld.Running > 0
		last, seen := s.lastBusy[u]
		if busy || !seen {
			last = now
		}
		if ld != nil {
			l.Queued += ld.Queued
			l.InProgress += ld.Running
			l.OldestWait = max(l.OldestWait, time.Duration(ld.OldestWaitMs)*time.Millisecond)
		}
		lastBusy[u] = last
		ws[i] = scaler.Worker{Busy: busy, IdleFor: now.Sub(last)}
	}
	s.lastBusy = lastBusy
	if len(s.waiting) > 0 {
		l.Queued += len(s.waiting)
		l.OldestWait = max(l.OldestWait, now.Sub(s.waiting[0]))
	}
	want := cfg.Desired(l)
	if !slices.Equal(s.urls, ep.URLs) {
		s.urls, s.peak = slices.Clone(ep.URLs), scaler.Peak{}
	}
	peak, observed := s.peak.Add(now, cfg.Idle, cfg.Demand(l))
	var drain []string
	switch {
	case want > len(ep.URLs) && !now.Before(s.retryAt):
	case want > len(ep.URLs):
		want = len(ep.URLs)
	default:
		surplus := cfg.Surplus(ws, cfg.Idle)
		if len(surplus) == 0 && observed && peak < len(ep.URLs) {
			// Calls reach every replica round robin, so none is ever idle
			// under a light load: fewer would have done for the whole
			// idle timeout, so the idlest go (drain lets their work end).
			surplus = scaler.Idlest(ws, len(ep.URLs)-peak)
		}
		for _, i := range surplus {
			drain = append(drain, ep.URLs[i])
		}
	}
	if want == len(ep.URLs) && len(drain) == 0 {
		m.scale.mu.Unlock()
		return
	}
	s.busy = true
	m.scale.mu.Unlock()

	why := fmt.Sprintf("%d queued, %d running, oldest waited %s; %s %v", l.Queued, l.InProgress,
		l.OldestWait.Round(time.Millisecond), cfg.Kind, cfg.Value)
	m.scale.ops.Go(func() {
		defer func() {
			m.scale.mu.Lock()
			s.busy = false
			m.scale.mu.Unlock()
		}()
		if len(drain) > 0 {
			m.drain(ctx, sc, ep, drain, cfg.Idle)
		} else {
			m.grow(ctx, sc, ep, want-len(ep.URLs), why)
		}
	})
}

// readLoad asks one replica for its load; nil when it does not answer.
func (m *Mothership) readLoad(ctx context.Context, base string) *wire.Load {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+wire.PathLoad, nil)
	if err != nil {
		return nil
	}
	if m.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+m.cfg.APIKey)
	}
	resp, err := m.transport.RoundTrip(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLoadAnswer))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	var l wire.Load
	if json.Unmarshal(body, &l) != nil || l.Queued < 0 || l.Running < 0 {
		return nil
	}
	return &l
}

// grow adds n replicas to ep and publishes them.
func (m *Mothership) grow(ctx context.Context, sc provider.Scaler, ep provider.Endpoint, n int, why string) {
	start := m.cfg.Now()
	dctx, cancel := context.WithTimeout(ctx, m.cfg.DeployTimeout)
	up, err := sc.AddReplicas(dctx, ep, n)
	cancel()
	if err != nil {
		m.scale.mu.Lock()
		m.scale.of(ep.Resource).retryAt = m.cfg.Now().Add(scaleBackoff)
		m.scale.mu.Unlock()
		m.cfg.Metrics.Scaled(ep.Resource, true, true, len(ep.URLs))
		if ctx.Err() == nil {
			m.log.Warn("scale up failed", "resource", ep.Resource, "replicas", len(ep.URLs), "want", len(ep.URLs)+n,
				"err", RedactURLs(err.Error()))
		}
		return
	}
	v, _ := m.publishURLs(ctx, up)
	m.cfg.Metrics.Scaled(ep.Resource, true, false, len(up.URLs))
	m.log.Info("resource scaled up", "resource", ep.Resource, "from", len(ep.URLs), "to", len(up.URLs),
		"load", why, "took", m.cfg.Now().Sub(start).Round(time.Millisecond), "version", v)
}

// drain takes the replicas at urls out of ep without failing a call: it
// publishes ep without them (the gateway stops at once), waits for every
// child to apply that version, then for the replicas to hold no work, and
// only then stops them.
func (m *Mothership) drain(ctx context.Context, sc provider.Scaler, ep provider.Endpoint, urls []string, idle time.Duration) {
	rest := provider.Endpoint{ID: ep.ID, Resource: ep.Resource, ConfigHash: ep.ConfigHash,
		URLs: slices.DeleteFunc(slices.Clone(ep.URLs), func(u string) bool { return slices.Contains(urls, u) })}
	v, ok := m.publishURLs(ctx, rest)
	if !ok {
		return // still published: keep serving with them
	}
	if v > 0 {
		m.waitApplied(ctx, v)
	}
	dctx, cancel := context.WithTimeout(ctx, m.cfg.DeployTimeout)
	defer cancel()
	var gone []string
	for _, u := range urls {
		if id := m.waitIdle(dctx, u); id != "" {
			gone = append(gone, id)
		}
	}
	if _, err := sc.RemoveReplicas(dctx, ep, urls); err != nil {
		m.cfg.Metrics.Scaled(ep.Resource, false, true, len(rest.URLs))
		m.log.Warn("scale down: stopping a drained replica failed", "resource", ep.Resource, "err", RedactURLs(err.Error()))
		return
	}
	for _, id := range gone {
		m.inst.instanceGone(ep.Resource, id)
	}
	m.cfg.Metrics.Scaled(ep.Resource, false, false, len(rest.URLs))
	m.log.Info("resource scaled down", "resource", ep.Resource, "from", len(ep.URLs), "to", len(rest.URLs),
		"idle", idle, "version", v)
}

// waitIdle waits until the replica at u holds no work (or does not answer,
// or ctx ends): callers that picked it before it left the manifest finish.
// It returns the replica's instance id when it said it.
func (m *Mothership) waitIdle(ctx context.Context, u string) (instance string) {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		l := m.readLoad(ctx, u)
		if l != nil {
			instance = l.Instance
		}
		if l == nil || l.Queued+l.Running == 0 {
			return instance
		}
		select {
		case <-ctx.Done():
			return instance
		case <-t.C:
		}
	}
}

// waitReplica holds a gateway call to a resource scaled to zero until the
// manifest publishes a replica of it, ctx ends or DeployTimeout passes; it
// counts as load meanwhile. It returns the replicas' URLs, nil when none
// came.
func (m *Mothership) waitReplica(ctx context.Context, name string) []string {
	done := m.scale.waiter(name, m.cfg.Now())
	defer done()
	limit := time.NewTimer(m.cfg.DeployTimeout)
	defer limit.Stop()
	poll := time.NewTicker(coldWaitPoll)
	defer poll.Stop()
	for {
		s := m.snap.Load()
		var res *manifest.Resource
		if s.mf != nil {
			res = s.mf.Resources[name]
		}
		if res == nil || (res.Status != manifest.StatusIdle && len(res.URLs()) == 0) {
			return nil
		}
		if urls := res.URLs(); len(urls) > 0 {
			return urls
		}
		select {
		case <-s.changed:
		case <-poll.C:
		case <-ctx.Done():
			return nil
		case <-limit.C:
			return nil
		}
	}
}
