package mothership

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/store"
)

// Several motherships on one store (SPEC §4.6). Every one serves the manifest,
// the status and the gateway from the shared store; one of them, elected
// through the store's Leaser, reconciles and calls the provider. Every write it
// makes goes through its leadership's fenced store, so a leader that was paused
// or cut off past its lease cannot publish or record anything when it wakes:
// the write fails with store.ErrFenced and it steps down.

// ErrNotLeader is a write asked of a mothership that does not lead. It wraps
// store.ErrFenced.
var ErrNotLeader = fmt.Errorf("mothership: not the leader: %w", store.ErrFenced)

// Fenced is the store of a mothership that shares it with other motherships:
// reads and child reports go to the shared store, every other write goes
// through the current leadership (store.Leadership.Store) and fails with
// ErrNotLeader when there is none. Give it as Config.Store, and to the
// provider, so that what a deposed leader's provider records is refused too.
type Fenced struct {
	store.Store
	leaser store.Leaser
	lead   atomic.Pointer[leadership]
}

type leadership struct{ store.Leadership }

// NewFenced returns st fenced when st can elect a leader (a store.Leaser, such
// as etcd); ok is false otherwise (SQLite: one mothership leads alone).
func NewFenced(st store.Store) (f *Fenced, ok bool) {
	lsr, ok := st.(store.Leaser)
	if !ok {
		return nil, false
	}
	return &Fenced{Store: st, leaser: lsr}, true
}

func (f *Fenced) writer() (store.Store, error) {
	if l := f.lead.Load(); l != nil {
		return l.Store(), nil
	}
	return nil, ErrNotLeader
}

func (f *Fenced) set(l store.Leadership) {
	if l == nil {
		f.lead.Store(nil)
		return
	}
	f.lead.Store(&leadership{l})
}

// Publish publishes through the leadership.
func (f *Fenced) Publish(ctx context.Context, prev int64, mf []byte) (store.Published, error) {
	w, err := f.writer()
	if err != nil {
		return store.Published{}, err
	}
	return w.Publish(ctx, prev, mf)
}

// PutDesired records the desired state through the leadership.
func (f *Fenced) PutDesired(ctx context.Context, prev int64, mf []byte, artifact string) (store.Desired, error) {
	w, err := f.writer()
	if err != nil {
		return store.Desired{}, err
	}
	return w.PutDesired(ctx, prev, mf, artifact)
}

// PutDeployment records through the leadership.
func (f *Fenced) PutDeployment(ctx context.Context, d store.Deployment) error {
	w, err := f.writer()
	if err != nil {
		return err
	}
	return w.PutDeployment(ctx, d)
}

// DeleteDeployment deletes through the leadership.
func (f *Fenced) DeleteDeployment(ctx context.Context, resource string) error {
	w, err := f.writer()
	if err != nil {
		return err
	}
	return w.DeleteDeployment(ctx, resource)
}

// PutEndpoint records through the leadership.
func (f *Fenced) PutEndpoint(ctx context.Context, e store.Endpoint) error {
	w, err := f.writer()
	if err != nil {
		return err
	}
	return w.PutEndpoint(ctx, e)
}

// DeleteEndpoint deletes through the leadership.
func (f *Fenced) DeleteEndpoint(ctx context.Context, id string) error {
	w, err := f.writer()
	if err != nil {
		return err
	}
	return w.DeleteEndpoint(ctx, id)
}

// Watch follows the shared store's versions when it notifies; otherwise the
// channel only closes when ctx ends (the TTL re-read remains).
func (f *Fenced) Watch(ctx context.Context, after int64) <-chan int64 {
	if w, ok := f.Store.(store.Watcher); ok {
		return w.Watch(ctx, after)
	}
	ch := make(chan int64)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}

// Close does nothing: the shared store belongs to whoever opened it.
func (f *Fenced) Close() error { return nil }

// Timings of leadership.
const (
	campaignRetry = time.Second      // after a failed campaign (store unreachable)
	resignTimeout = 2 * time.Second  // a clean shutdown hands the lead over at once
	heartbeat     = 2 * time.Second  // how often a mothership says it is up
	upWithin      = 10 * time.Second // a mothership not heard from for longer is down
	forgetAfter   = 10 * time.Minute // and not shown any more after this
)

// motherResource is the resource name under which motherships report
// themselves among child instances; it cannot name a resource.
const motherResource = ":mothership"

// Lead runs work each time this mothership becomes the leader, with a context
// that ends when the leadership does, until ctx ends. With a store of its own
// (Config.Store not *Fenced) it leads alone: work runs once. With a Fenced
// store it campaigns, runs work, keeps leading until the leadership is lost
// (then steps down and campaigns again) or ctx ends (then resigns, so that
// another mothership leads at once). It also says it is up, every few
// seconds, for the status of every mothership.
func (m *Mothership) Lead(ctx context.Context, work func(ctx context.Context)) {
	f := m.fence
	if f == nil {
		work(ctx)
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	wg.Go(func() { m.heartbeats(hbCtx) })
	me := store.LeaderInfo{ID: m.cfg.URL, URL: m.cfg.URL}
	for ctx.Err() == nil {
		lead, err := f.leaser.Campaign(ctx, me)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("leader election failed; campaigning again", "err", err)
				sleep(ctx, campaignRetry)
			}
			continue
		}
		m.log.Info("leading", "since", lead.Info().Since)
		lctx, cancel := context.WithCancel(ctx)
		wg.Go(func() {
			select {
			case <-lead.Done():
				cancel()
			case <-lctx.Done():
			}
		})
		f.set(lead)
		m.leaderCtx.Store(&lctx)
		work(lctx)
		<-lctx.Done()
		m.leaderCtx.Store(nil)
		f.set(nil)
		cancel()
		if ctx.Err() != nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), resignTimeout)
			if err := lead.Resign(rctx); err != nil {
				m.log.Warn("cannot resign the leadership; it ends with its lease", "err", err)
			}
			rcancel()
			return
		}
		m.log.Warn("leadership lost; stepped down", "since", lead.Info().Since)
	}
}

// leading reports whether this mothership may reconcile: it leads, or it
// does not share its store.
func (m *Mothership) leading() bool {
	if m.fence == nil {
		return true
	}
	l := m.leaderCtx.Load()
	return l != nil && (*l).Err() == nil
}

// whileLeading returns ctx ended also when the current leadership ends (as
// is when the store is not shared).
func (m *Mothership) whileLeading(ctx context.Context) (context.Context, context.CancelFunc) {
	if m.fence == nil {
		return ctx, func() {}
	}
	c, cancel := context.WithCancel(ctx)
	if l := m.leaderCtx.Load(); l != nil {
		stop := context.AfterFunc(*l, cancel)
		return c, func() { stop(); cancel() }
	}
	cancel()
	return c, cancel
}

// toLeader answers a deploy this mothership must not run itself: 307 to the
// leader's URL, which clients follow with the same body, or 503 while nobody
// leads. It returns false when this mothership leads.
func (m *Mothership) toLeader(w http.ResponseWriter, r *http.Request) bool {
	if m.leading() {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	l, err := m.fence.leaser.Leader(ctx)
	if err != nil || l.URL == "" || l.URL == m.cfg.URL {
		w.Header().Set(wire.HeaderRetryAfter, "1")
		detail := "no leader is elected right now"
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			detail = "cannot read who leads: " + err.Error()
		}
		wire.WriteError(w, http.StatusServiceUnavailable, "this mothership does not lead; retry", "detail", detail)
		return true
	}
	w.Header().Set("Location", l.URL+r.URL.RequestURI())
	wire.WriteError(w, http.StatusTemporaryRedirect, "this mothership does not lead: deploy to the leader", "leader", l.URL)
	return true
}

// heartbeats reports this mothership as up, with the version it serves.
func (m *Mothership) heartbeats(ctx context.Context) {
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, heartbeat)
		err := m.fence.Store.ReportInstances(sctx, []store.Instance{{Resource: motherResource, Instance: m.cfg.URL,
			AppliedVersion: m.snap.Load().version, LastSeen: m.cfg.Now()}})
		cancel()
		if err != nil && ctx.Err() == nil {
			m.log.Debug("cannot report this mothership as up", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// MothershipStatus is one mothership sharing the store, in Status.
type MothershipStatus struct {
	URL     string    `json:"url"`
	Up      bool      `json:"up"`
	Leader  bool      `json:"leader"`
	Since   time.Time `json:"since,omitzero"` // when it became leader
	Version int64     `json:"version"`        // the version it served when last heard from
	// LastSeen is when it last said it was up.
	LastSeen time.Time `json:"last_seen"`
}

// motherships lists the motherships heard from recently, from their reports
// among the instances, and who leads. Nil when the store is not shared.
func (m *Mothership) motherships(ctx context.Context, reports []store.Instance) []MothershipStatus {
	if m.fence == nil {
		return nil
	}
	leader, err := m.fence.leaser.Leader(ctx)
	if err != nil {
		leader = store.LeaderInfo{}
	}
	now := m.cfg.Now()
	out := []MothershipStatus{}
	for _, i := range reports {
		if i.Resource != motherResource || now.Sub(i.LastSeen) > forgetAfter {
			continue
		}
		s := MothershipStatus{URL: i.Instance, Up: now.Sub(i.LastSeen) <= upWithin, Version: i.AppliedVersion,
			LastSeen: i.LastSeen.UTC()}
		if i.Instance == leader.URL {
			s.Leader, s.Since = true, leader.Since.UTC()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b MothershipStatus) int { return cmp.Compare(a.URL, b.URL) })
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
