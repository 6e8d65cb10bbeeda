package mothership

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// ErrSuperseded means a newer desired state was recorded (by another
// mothership sharing the store) while a reconciliation ran: it stopped
// publishing, and the newer deploy's reconciliation takes over.
var ErrSuperseded = errors.New("mothership: a newer desired state was recorded")

// ReconcileOptions varies one reconciliation.
type ReconcileOptions struct {
	// Artifact is the digest ("sha256:<hex>") of a binary uploaded with
	// POST /flash/deploy and kept in ArtifactDir; empty means the provider's
	// default (the mothership's own binary).
	Artifact string
	// Progress, when set, is called for each step of each resource. Calls are
	// serialised, never concurrent.
	Progress func(Event)
}

// Reconcile records desired (with opts.Artifact) as the desired state, then
// makes the deployed endpoints match it (SPEC §4.3), publishing each outcome
// as it happens. Only one reconciliation runs at a time; a second waits
// (bounded by ctx). The error is non-nil only when nothing could be
// attempted: an invalid desired manifest, a store that cannot be read or
// written, or another deploy recorded at the same time (store.ErrConflict).
// Per-resource failures are in the Report.
func (m *Mothership) Reconcile(ctx context.Context, desired *manifest.Manifest, opts ReconcileOptions) (Report, error) {
	if err := m.checkDesired(desired); err != nil {
		return Report{}, err
	}
	if err := m.lockDeploy(ctx); err != nil {
		return Report{}, err
	}
	defer m.unlockDeploy()
	d, err := m.recordDesired(ctx, desired, opts.Artifact)
	if err != nil {
		return Report{}, err
	}
	return m.reconcileLocked(ctx, d, desired, opts)
}

// ReconcileStored reconciles toward the stored desired state, as every boot
// does. When the store holds none yet, seed (the binary's own manifest, or
// FLASH_MANIFEST_PATH's) is recorded first; otherwise seed is ignored, so a
// binary older than the last deploy never rolls it back.
func (m *Mothership) ReconcileStored(ctx context.Context, seed *manifest.Manifest, opts ReconcileOptions) (Report, error) {
	if err := m.lockDeploy(ctx); err != nil {
		return Report{}, err
	}
	defer m.unlockDeploy()
	d, err := m.loadDesired(ctx, seed)
	if err != nil {
		return Report{}, err
	}
	desired, err := manifest.Parse(d.Manifest)
	if err != nil {
		return Report{}, fmt.Errorf("mothership: reconcile: stored desired state %d: %w", d.Version, err)
	}
	opts.Artifact = d.Artifact
	return m.reconcileLocked(ctx, d, desired, opts)
}

func (m *Mothership) lockDeploy(ctx context.Context) error {
	select {
	case m.deploying <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mothership: reconcile: %w", ctx.Err())
	}
}

// tryLockDeploy takes the deploy lock when it is free.
func (m *Mothership) tryLockDeploy() bool {
	select {
	case m.deploying <- struct{}{}:
		return true
	default:
		return false
	}
}

func (m *Mothership) unlockDeploy() { <-m.deploying }

// reconcileLocked reconciles toward the recorded desired state d (decoded:
// desired); the caller holds the deploy lock.
func (m *Mothership) reconcileLocked(ctx context.Context, d store.Desired, desired *manifest.Manifest, opts ReconcileOptions) (Report, error) {
	persisted, err := m.readPersisted(ctx)
	if err != nil {
		return Report{}, err
	}
	artifact, err := m.artifactPath(opts.Artifact)
	if err != nil {
		return Report{}, fmt.Errorf("mothership: reconcile aborted, nothing deployed: %w", err)
	}
	rc := &reconciler{
		m:              m,
		opts:           opts,
		artifact:       artifact,
		desired:        desired,
		desiredVersion: d.Version,
		persisted:      persisted,
		changes:        manifest.Diff(desired, persisted),
		state:          make(map[string]*resState),
		keep:           make(map[string]bool),
	}
	ctx, span := m.cfg.Tracer.Start(ctx, "reconcile", telemetry.AttrVersion.Int64(d.Version))
	defer span.End()
	if m.prov == nil {
		rc.publishOnly(ctx)
	} else {
		rc.run(ctx)
	}
	m.removeUnusedArtifacts(ctx)
	report := rc.report()
	m.cfg.Metrics.Deploy(report.Failed())
	return report, nil
}

// readPersisted returns the store's latest manifest, nil when none. Any other
// failure aborts the reconciliation: nothing is deployed blind.
func (m *Mothership) readPersisted(ctx context.Context) (*manifest.Manifest, error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	p, err := m.store.Latest(sctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mothership: reconcile aborted, nothing deployed: cannot read the published manifest: %w", err)
	}
	mf, err := manifest.Decode(p.Manifest)
	if err != nil {
		return nil, fmt.Errorf("mothership: reconcile aborted, nothing deployed: published version %d: %w", p.Version, err)
	}
	return mf, nil
}

type reconciler struct {
	m              *Mothership
	opts           ReconcileOptions
	artifact       string // the binary to deploy (path); "" = the provider's default
	desired        *manifest.Manifest
	desiredVersion int64 // the recorded desired state this reconciliation works for
	persisted      *manifest.Manifest
	changes        manifest.Changes

	live      []provider.Endpoint
	liveKnown bool

	mu         sync.Mutex // guards state, keep, orphans, errs, superseded
	state      map[string]*resState
	keep       map[string]bool // endpoint ids the outcome references
	orphans    []string
	errs       []string
	superseded error // set once a newer desired state is recorded: publish no more
	eventMu    sync.Mutex
	deploys    atomic.Int64
	undeploys  atomic.Int64
}

func (rc *reconciler) now() time.Time { return rc.m.cfg.Now() }

// publishOnly is reconciliation without a provider: publish desired, keeping
// the runtime keys of unchanged resources that desired does not set itself.
func (rc *reconciler) publishOnly(ctx context.Context) {
	for _, name := range rc.desired.ResourceNames() {
		st := &resState{action: rc.actionOf(name), asDesired: true}
		d := rc.desired.Resources[name]
		rt := runtimeOf(d)
		if p := rc.persistedRes(name); p != nil && st.action == ActionUnchanged && !hasRuntime(d) {
			rt = runtimeOf(p)
			st.rt, st.asDesired = &rt, false
		}
		st.report = ResourceReport{Name: name, Action: st.action, Status: rt.Status, EndpointURLs: rt.EndpointURLs}
		rc.state[name] = st
	}
	for _, name := range rc.changes.Removed {
		rc.state[name] = &resState{action: ActionRemoved, removal: removalDropped,
			report: ResourceReport{Name: name, Action: ActionRemoved, Status: StatusRemoved}}
	}
	rc.step(ctx, "publish", "", rc.publishOrFail)
	for _, name := range rc.changes.Removed {
		rc.m.inst.forget(name)
		rc.deleteDeployment(ctx, name)
	}
}

// run reconciles through the provider.
func (rc *reconciler) run(ctx context.Context) {
	m := rc.m
	rc.step(ctx, "discover", "", rc.discover)

	type task func(context.Context)
	var tasks []task
	for _, name := range rc.desired.ResourceNames() {
		st := &resState{action: rc.actionOf(name), start: rc.now()}
		st.report = ResourceReport{Name: name, Action: st.action}
		rc.state[name] = st
		d, p := rc.desired.Resources[name], rc.persistedRes(name)
		eps := rc.liveOf(name)
		cur := matchEndpoint(p, eps)
		if !rc.needsDeploy(st.action, d, p, cur) {
			rt := runtimeOf(p)
			if cur != nil {
				rt.EndpointURLs = cur.URLs
				st.ep = *cur
				rc.keep[cur.ID] = true
				m.setDeployed(name, *cur)
				for _, e := range eps {
					if e.ID != cur.ID {
						tasks = append(tasks, func(ctx context.Context) {
							rc.step(ctx, "undeploy", e.Resource, func(ctx context.Context) { rc.undeployOrphan(ctx, e) })
						})
					}
				}
			}
			st.rt = &rt
			st.report.Status, st.report.EndpointURLs = rt.Status, rt.EndpointURLs
			rc.emit(Event{Resource: name, Action: st.action, Step: StepUnchanged, Status: rt.Status, EndpointURLs: rt.EndpointURLs})
			continue
		}
		tasks = append(tasks, func(ctx context.Context) {
			rc.step(ctx, "deploy", name, func(ctx context.Context) { rc.deploy(ctx, name, d, p, cur, eps) })
		})
	}
	for _, name := range rc.changes.Removed {
		st := &resState{action: ActionRemoved, start: rc.now()}
		st.report = ResourceReport{Name: name, Action: ActionRemoved}
		rc.state[name] = st
		eps := rc.liveOf(name)
		tasks = append(tasks, func(ctx context.Context) {
			rc.step(ctx, "remove", name, func(ctx context.Context) { rc.remove(ctx, name, eps) })
		})
	}
	for _, e := range rc.live {
		if _, ok := rc.state[e.Resource]; !ok {
			tasks = append(tasks, func(ctx context.Context) {
				rc.step(ctx, "undeploy", e.Resource, func(ctx context.Context) { rc.undeployOrphan(ctx, e) })
			})
		}
	}

	// Publish the intent first: new resources as pending, changed ones still
	// on their old endpoints. A new child becomes ready (/ping 200) only once
	// it knows some manifest, and callers of what is still deploying get a
	// clear not-ready error instead of a missing route.
	rc.step(ctx, "publish", "", rc.publishOrFail)

	var (
		g       errgroup.Group
		skipped atomic.Int64
	)
	g.SetLimit(m.cfg.Parallelism)
	for _, t := range tasks {
		g.Go(func() error {
			if rc.supersededBy() != nil || ctx.Err() != nil {
				skipped.Add(1) // the newer deploy (or the next leader) decides what runs
				return nil
			}
			t(ctx)
			return nil
		})
	}
	g.Wait()
	if n := skipped.Load(); n > 0 {
		rc.fail("%d provider calls not made: %v", n, cmp.Or(rc.supersededBy(), ctx.Err()))
	}

	// Publish the final state too: top-level keys of desired, and unchanged
	// resources whose live URLs moved, may not have been published yet.
	rc.step(ctx, "publish", "", rc.publishOrFail)
}

// step runs one reconcile step (about resource, "" for all) in a span of
// its own and records its duration.
func (rc *reconciler) step(ctx context.Context, step, resource string, fn func(context.Context)) {
	start := time.Now()
	ctx, span := rc.m.cfg.Tracer.Start(ctx, "reconcile "+step, telemetry.AttrStep.String(step), telemetry.AttrResource.String(resource))
	fn(ctx)
	span.End()
	rc.m.cfg.Metrics.Step(step, time.Since(start))
}

// publishOrFail publishes, recording a failure in the report.
func (rc *reconciler) publishOrFail(ctx context.Context) {
	if _, err := rc.publish(ctx); err != nil {
		rc.fail("publish: %v", err)
	}
}

// publish publishes what the reconciliation knows now when it differs from
// what is served, and returns the served version. When another writer
// published first, it re-reads the stored desired state: when that is still
// the one this reconciliation works for, it composes again from what it
// knows and retries; when a newer one was recorded, it stops publishing for
// good (ErrSuperseded), leaving the newer deploy to publish.
func (rc *reconciler) publish(ctx context.Context) (int64, error) {
	for attempt := 1; ; attempt++ {
		if err := rc.supersededBy(); err != nil {
			return rc.m.snap.Load().version, err
		}
		v, err := rc.m.publish(ctx, func(*manifest.Manifest) (*manifest.Manifest, error) { return rc.compose(), nil })
		if !isConflict(err) || attempt == maxConflicts {
			return v, err
		}
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		d, derr := rc.m.store.Desired(sctx)
		cancel()
		switch {
		case derr != nil && !errors.Is(derr, store.ErrNotFound):
			return v, errors.Join(err, fmt.Errorf("re-reading the desired state: %w", derr))
		case d.Version != rc.desiredVersion:
			rc.mu.Lock()
			rc.superseded = fmt.Errorf("%w (version %d; this deploy recorded %d): %w", ErrSuperseded, d.Version, rc.desiredVersion, err)
			err = rc.superseded
			rc.mu.Unlock()
			rc.m.log.Warn("reconcile: stopped, a newer desired state was recorded", "desired", d.Version, "ours", rc.desiredVersion)
			return v, err
		}
		rc.m.log.Warn("reconcile: another writer published meanwhile; composing again", "served", v)
	}
}

// supersededBy is non-nil once a newer desired state was recorded.
func (rc *reconciler) supersededBy() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.superseded
}

func (rc *reconciler) stateOf(name string) *resState {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.state[name]
}

func (rc *reconciler) setRemoval(name string, r removal, errMsg string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	st := rc.state[name]
	st.removal = r
	st.report.Error = errMsg
}

// record writes a deployment record; a failure is logged, not fatal: the
// published manifest is the authority children follow.
func (rc *reconciler) record(ctx context.Context, d store.Deployment) {
	d.UpdatedAt = rc.now()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := rc.m.store.PutDeployment(sctx, d); err != nil {
		rc.m.log.Warn("reconcile: cannot record a deployment", "resource", d.Resource, "err", err)
	}
}

func (rc *reconciler) deleteDeployment(ctx context.Context, name string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := rc.m.store.DeleteDeployment(sctx, name); err != nil {
		rc.m.log.Warn("reconcile: cannot delete a deployment record", "resource", name, "err", err)
	}
}
