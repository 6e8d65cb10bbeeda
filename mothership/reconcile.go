package mothership

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// Actions: the §2.4 diff category of a resource.
const (
	ActionNew       = "new"
	ActionChanged   = "changed"
	ActionRemoved   = "removed"
	ActionUnchanged = "unchanged"
)

// Steps reported through ReconcileOptions.Progress.
const (
	StepDeploying   = "deploying"   // Deploy called
	StepDeployed    = "deployed"    // the new endpoint is healthy
	StepPublished   = "published"   // a version naming the new state is served
	StepUndeploying = "undeploying" // Undeploy of old or removed endpoints called
	StepUndeployed  = "undeployed"  // old endpoints are gone
	StepRemoved     = "removed"     // a removed resource's entry is dropped
	StepUnchanged   = "unchanged"   // nothing to do
	StepFailed      = "failed"      // see Event.Error
	StepOrphan      = "orphan"      // a live endpoint no published resource references was undeployed
)

// Resource statuses in a report beyond manifest.Status values.
const statusRemoved = "removed"

// ReconcileOptions varies one reconciliation.
type ReconcileOptions struct {
	// Artifact is the app binary to deploy (provider.Spec.Artifact); empty
	// means the provider's default.
	Artifact string
	// Progress, when set, is called for each step of each resource. Calls are
	// serialised, never concurrent.
	Progress func(Event)
}

// Event is one step of one resource during a reconciliation.
type Event struct {
	Resource     string   `json:"resource"`
	Action       string   `json:"action"`
	Step         string   `json:"step"`
	Status       string   `json:"status,omitempty"`
	EndpointURLs []string `json:"endpoint_urls,omitempty"`
	Error        string   `json:"error,omitempty"`
	Version      int64    `json:"version,omitempty"` // with StepPublished
}

// ResourceReport is the outcome of one resource.
type ResourceReport struct {
	Name         string        `json:"name"`
	Action       string        `json:"action"`
	Status       string        `json:"status"` // deployed | updated | failed | removed (or the published status)
	EndpointURLs []string      `json:"endpoint_urls"`
	Error        string        `json:"error,omitempty"`
	Duration     time.Duration `json:"-"`
}

// MarshalJSON adds duration_ms.
func (r ResourceReport) MarshalJSON() ([]byte, error) {
	type plain ResourceReport
	return json.Marshal(struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}{plain(r), r.Duration.Milliseconds()})
}

// UnmarshalJSON reads what MarshalJSON writes, duration_ms included.
func (r *ResourceReport) UnmarshalJSON(data []byte) error {
	type plain ResourceReport
	var v struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*r = ResourceReport(v.plain)
	r.Duration = time.Duration(v.DurationMS) * time.Millisecond
	return nil
}

// Report is the outcome of a reconciliation.
type Report struct {
	Version   int64            `json:"version"` // served when reconciliation ended
	Resources []ResourceReport `json:"resources"`
	Orphans   []string         `json:"orphans,omitempty"` // ids of unreferenced endpoints undeployed
	Deploys   int              `json:"deploys"`           // provider Deploy calls
	Undeploys int              `json:"undeploys"`         // provider Undeploy calls
	Errors    []string         `json:"errors,omitempty"`  // failures not tied to one resource's deploy
}

// Failed reports whether any resource failed or anything else went wrong.
func (r Report) Failed() bool {
	if len(r.Errors) > 0 {
		return true
	}
	for _, rr := range r.Resources {
		if rr.Status == string(manifest.StatusFailed) || rr.Error != "" {
			return true
		}
	}
	return false
}

// adopter is implemented by providers that can take over endpoints a
// previous mothership left running (provider/local).
type adopter interface {
	Adopt(ctx context.Context) ([]provider.Endpoint, error)
}

// Reconcile makes the deployed endpoints match desired (SPEC §4.3) and
// publishes each outcome as it happens. Only one reconciliation runs at a
// time; a second waits (bounded by ctx). The error is non-nil only when
// nothing could be attempted: an invalid desired manifest, or the store's
// latest version unreadable. Per-resource failures are in the Report.
func (m *Mothership) Reconcile(ctx context.Context, desired *manifest.Manifest, opts ReconcileOptions) (Report, error) {
	if desired == nil {
		return Report{}, errors.New("mothership: reconcile: no desired manifest")
	}
	if err := desired.Validate(); err != nil {
		return Report{}, fmt.Errorf("mothership: reconcile: desired manifest: %w", err)
	}
	select {
	case m.deploying <- struct{}{}:
	case <-ctx.Done():
		return Report{}, fmt.Errorf("mothership: reconcile: %w", ctx.Err())
	}
	defer func() { <-m.deploying }()
	return m.reconcileLocked(ctx, desired, opts)
}

func (m *Mothership) reconcileLocked(ctx context.Context, desired *manifest.Manifest, opts ReconcileOptions) (Report, error) {
	persisted, err := m.readPersisted(ctx)
	if err != nil {
		return Report{}, err
	}
	rc := &reconciler{
		m:         m,
		opts:      opts,
		desired:   desired,
		persisted: persisted,
		changes:   manifest.Diff(desired, persisted),
		state:     make(map[string]*resState),
		keep:      make(map[string]bool),
	}
	if m.prov == nil {
		rc.publishOnly(ctx)
	} else {
		rc.run(ctx)
	}
	return rc.report(), nil
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

// resState is what a reconciliation knows of one resource.
type resState struct {
	action string
	rt     *manifest.Runtime // decided runtime; nil: carry the persisted one (or pending)
	ep     provider.Endpoint // the endpoint rt describes, when known
	phase  string            // removed resources: "", "removing", "failed", "dropped"

	report ResourceReport
	start  time.Time
}

type reconciler struct {
	m         *Mothership
	opts      ReconcileOptions
	desired   *manifest.Manifest
	persisted *manifest.Manifest
	changes   manifest.Changes

	live      []provider.Endpoint
	liveKnown bool

	mu        sync.Mutex // guards state, keep, orphans, errs
	state     map[string]*resState
	keep      map[string]bool // endpoint ids the outcome references
	orphans   []string
	errs      []string
	eventMu   sync.Mutex
	deploys   atomic.Int64
	undeploys atomic.Int64
}

func (rc *reconciler) now() time.Time { return rc.m.cfg.Now() }

func (rc *reconciler) emit(e Event) {
	if rc.opts.Progress == nil {
		return
	}
	rc.eventMu.Lock()
	defer rc.eventMu.Unlock()
	rc.opts.Progress(e)
}

func (rc *reconciler) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	rc.m.log.Error("reconcile: " + msg)
	rc.mu.Lock()
	rc.errs = append(rc.errs, msg)
	rc.mu.Unlock()
}

func (rc *reconciler) actionOf(name string) string {
	switch {
	case slices.Contains(rc.changes.New, name):
		return ActionNew
	case slices.Contains(rc.changes.Changed, name):
		return ActionChanged
	case slices.Contains(rc.changes.Removed, name):
		return ActionRemoved
	}
	return ActionUnchanged
}

func (rc *reconciler) persistedRes(name string) *manifest.Resource {
	if rc.persisted == nil {
		return nil
	}
	return rc.persisted.Resources[name]
}

// runtimeOf is the runtime an entry carries.
func runtimeOf(r *manifest.Resource) manifest.Runtime {
	return manifest.Runtime{ConfigHash: r.ConfigHash, EndpointURLs: r.URLs(), Status: r.Status, Error: r.Error}
}

func hasRuntime(r *manifest.Resource) bool {
	return r.ConfigHash != "" || len(r.URLs()) > 0 || r.Status != "" || r.Error != ""
}

// publishOnly is reconciliation without a provider: publish desired, keeping
// the runtime keys of unchanged resources that desired does not set itself.
func (rc *reconciler) publishOnly(ctx context.Context) {
	out := rc.desired
	for _, name := range rc.desired.ResourceNames() {
		d := rc.desired.Resources[name]
		if p := rc.persistedRes(name); p != nil && rc.actionOf(name) == ActionUnchanged && !hasRuntime(d) {
			out = out.WithRuntime(name, runtimeOf(p))
		}
	}
	for _, name := range rc.desired.ResourceNames() {
		r := out.Resources[name]
		rc.state[name] = &resState{action: rc.actionOf(name), report: ResourceReport{Name: name,
			Action: rc.actionOf(name), Status: string(r.Status), EndpointURLs: r.URLs()}}
	}
	for _, name := range rc.changes.Removed {
		rc.state[name] = &resState{action: ActionRemoved, phase: "dropped",
			report: ResourceReport{Name: name, Action: ActionRemoved, Status: statusRemoved}}
	}
	rc.m.publishMu.Lock()
	defer rc.m.publishMu.Unlock()
	if _, err := rc.publishIfChangedLocked(ctx, out); err != nil {
		rc.fail("publish: %v", err)
	}
	for _, name := range rc.changes.Removed {
		rc.deleteDeployment(ctx, name)
	}
}

// run reconciles through the provider.
func (rc *reconciler) run(ctx context.Context) {
	m := rc.m
	rc.discover(ctx)

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
						tasks = append(tasks, func(ctx context.Context) { rc.undeployOrphan(ctx, e) })
					}
				}
			}
			st.rt = &rt
			st.report.Status, st.report.EndpointURLs = string(rt.Status), rt.EndpointURLs
			rc.emit(Event{Resource: name, Action: st.action, Step: StepUnchanged, Status: string(rt.Status), EndpointURLs: rt.EndpointURLs})
			continue
		}
		tasks = append(tasks, func(ctx context.Context) { rc.deploy(ctx, name, d, p, cur, eps) })
	}
	for _, name := range rc.changes.Removed {
		st := &resState{action: ActionRemoved, start: rc.now()}
		st.report = ResourceReport{Name: name, Action: ActionRemoved}
		rc.state[name] = st
		eps := rc.liveOf(name)
		tasks = append(tasks, func(ctx context.Context) { rc.remove(ctx, name, eps) })
	}
	for _, e := range rc.live {
		if _, ok := rc.state[e.Resource]; !ok {
			tasks = append(tasks, func(ctx context.Context) { rc.undeployOrphan(ctx, e) })
		}
	}

	// Publish the intent first: new resources as pending, changed ones still
	// on their old endpoints. A new child becomes ready (/ping 200) only once
	// it knows some manifest, and callers of what is still deploying get a
	// clear not-ready error instead of a missing route.
	if _, err := rc.publish(ctx); err != nil {
		rc.fail("publish: %v", err)
	}

	var g errgroup.Group
	g.SetLimit(m.cfg.Parallelism)
	for _, t := range tasks {
		g.Go(func() error { t(ctx); return nil })
	}
	g.Wait()

	// Publish the final state too: top-level keys of desired, and unchanged
	// resources whose live URLs moved, may not have been published yet.
	m.publishMu.Lock()
	defer m.publishMu.Unlock()
	if _, err := rc.publishIfChangedLocked(ctx, rc.compose()); err != nil {
		rc.fail("publish: %v", err)
	}
}

// discover learns which endpoints of this app are live: Adopt first (take
// over what a previous mothership left), then List. When List fails, the
// endpoints this process deployed stand in and nothing counts as orphaned.
func (rc *reconciler) discover(ctx context.Context) {
	m := rc.m
	if a, ok := m.prov.(adopter); ok {
		actx, cancel := context.WithTimeout(ctx, m.cfg.DeployTimeout)
		if _, err := a.Adopt(actx); err != nil {
			m.log.Warn("reconcile: adopting running endpoints failed", "err", err)
		}
		cancel()
	}
	lctx, cancel := context.WithTimeout(ctx, m.cfg.DeployTimeout)
	live, err := m.prov.List(lctx)
	cancel()
	if err == nil {
		rc.live, rc.liveKnown = live, true
		return
	}
	m.log.Warn("reconcile: cannot list live endpoints; trusting the published state", "err", err)
	m.mu.Lock()
	for _, e := range m.deployed {
		rc.live = append(rc.live, e)
	}
	m.mu.Unlock()
}

func (rc *reconciler) liveOf(name string) []provider.Endpoint {
	var out []provider.Endpoint
	for _, e := range rc.live {
		if e.Resource == name {
			out = append(out, e)
		}
	}
	return out
}

// matchEndpoint returns the live endpoint that serves the published entry p:
// one of its URLs, else (restarted on new ports) its config hash.
func matchEndpoint(p *manifest.Resource, eps []provider.Endpoint) *provider.Endpoint {
	if p == nil {
		return nil
	}
	urls := p.URLs()
	for i, e := range eps {
		for _, u := range e.URLs {
			if slices.Contains(urls, u) {
				return &eps[i]
			}
		}
	}
	if p.ConfigHash != "" {
		for i, e := range eps {
			if e.ConfigHash == p.ConfigHash {
				return &eps[i]
			}
		}
	}
	return nil
}

// needsDeploy: new and changed resources always; an unchanged one when what
// is published does not describe a working endpoint of its config.
func (rc *reconciler) needsDeploy(action string, d, p *manifest.Resource, cur *provider.Endpoint) bool {
	if action != ActionUnchanged || p == nil {
		return true
	}
	switch p.Status {
	case manifest.StatusFailed, manifest.StatusPending, manifest.StatusRemoving:
		return true
	}
	if len(p.URLs()) == 0 || (p.ConfigHash != "" && p.ConfigHash != d.Hash()) {
		return true
	}
	return rc.liveKnown && cur == nil
}

func replicas(r *manifest.Resource) int {
	if r.WorkersMin > 1 {
		return r.WorkersMin
	}
	return 1
}

// deploy brings up d, publishes it, then undeploys the endpoints it replaces
// (make-before-break). cur is the live endpoint of the published entry p.
func (rc *reconciler) deploy(ctx context.Context, name string, d, p *manifest.Resource, cur *provider.Endpoint, old []provider.Endpoint) {
	m := rc.m
	st := rc.stateOf(name)
	rc.emit(Event{Resource: name, Action: st.action, Step: StepDeploying})
	spec := provider.Spec{Resource: name, ConfigHash: d.Hash(), Replicas: replicas(d), Env: d.Env,
		Config: d.Raw(), Artifact: rc.opts.Artifact}
	dctx, cancel := context.WithTimeout(ctx, m.cfg.DeployTimeout)
	ep, err := m.prov.Deploy(dctx, spec)
	cancel()
	rc.deploys.Add(1)
	if err != nil {
		rc.deployFailed(ctx, name, d, p, cur, err)
		return
	}
	if ep.Resource == "" {
		ep.Resource = name
	}
	status := manifest.StatusDeployed
	if st.action == ActionChanged || len(old) > 0 {
		status = manifest.StatusUpdated
	}
	rt := manifest.Runtime{ConfigHash: d.Hash(), EndpointURLs: ep.URLs, Status: status}
	m.setDeployed(name, ep)
	rc.mu.Lock()
	st.rt, st.ep = &rt, ep
	rc.keep[ep.ID] = true
	rc.mu.Unlock()
	rc.record(ctx, store.Deployment{Resource: name, ConfigHash: rt.ConfigHash, Status: string(rt.Status),
		EndpointURLs: rt.EndpointURLs})
	rc.emit(Event{Resource: name, Action: st.action, Step: StepDeployed, Status: string(status), EndpointURLs: ep.URLs})

	v, err := rc.publish(ctx)
	if err != nil {
		// Children cannot know the new URLs: the old endpoints must stay.
		rc.finish(name, string(manifest.StatusFailed), ep.URLs, fmt.Sprintf("deployed but not published: %v", err))
		return
	}
	rc.emit(Event{Resource: name, Action: st.action, Step: StepPublished, Status: string(status), EndpointURLs: ep.URLs, Version: v})

	if len(old) > 0 {
		// Make-before-break: a child that still routes by the previous version
		// would call the old endpoint after it is gone.
		m.waitApplied(ctx, v)
	}
	var undeployErr []string
	for _, e := range old {
		if e.ID == ep.ID {
			continue
		}
		rc.emit(Event{Resource: name, Action: st.action, Step: StepUndeploying, EndpointURLs: e.URLs})
		if err := rc.undeploy(ctx, e); err != nil {
			undeployErr = append(undeployErr, fmt.Sprintf("old endpoint %s not undeployed: %v", e.ID, err))
			continue
		}
		rc.emit(Event{Resource: name, Action: st.action, Step: StepUndeployed, EndpointURLs: e.URLs})
	}
	msg := ""
	if len(undeployErr) > 0 {
		msg = fmt.Sprint(undeployErr)
		m.log.Error("reconcile: "+msg, "resource", name)
	}
	rc.finish(name, string(status), ep.URLs, msg)
}

// deployFailed records a failed deploy. When the published entry describes a
// working older endpoint, that one keeps serving (its URLs stay published,
// with the error); otherwise the resource is published as failed.
func (rc *reconciler) deployFailed(ctx context.Context, name string, d, p *manifest.Resource, cur *provider.Endpoint, err error) {
	msg := err.Error()
	rt := manifest.Runtime{Status: manifest.StatusFailed, Error: msg}
	working := p != nil && len(p.URLs()) > 0 && (!rc.liveKnown || cur != nil)
	if working {
		switch p.Status {
		case manifest.StatusFailed, manifest.StatusPending, manifest.StatusRemoving:
			working = false
		}
	}
	var keep provider.Endpoint
	if working {
		rt = runtimeOf(p)
		if cur != nil {
			rt.EndpointURLs = cur.URLs
			keep = *cur
		}
		rt.Error = "update to " + shortHash(d.Hash()) + " failed: " + msg
	}
	rc.mu.Lock()
	st := rc.state[name]
	st.rt, st.ep = &rt, keep
	if keep.ID != "" {
		rc.keep[keep.ID] = true
	}
	rc.mu.Unlock()
	rc.m.log.Error("reconcile: deploy failed", "resource", name, "err", err, "old_endpoint_kept", working)
	rc.record(ctx, store.Deployment{Resource: name, ConfigHash: d.Hash(),
		Status: string(manifest.StatusFailed), EndpointURLs: rt.EndpointURLs, Error: msg})
	rc.emit(Event{Resource: name, Action: st.action, Step: StepFailed, Status: string(manifest.StatusFailed), Error: msg})
	if _, perr := rc.publish(ctx); perr != nil {
		msg += fmt.Sprintf("; publishing the failure: %v", perr)
	}
	rc.finish(name, string(manifest.StatusFailed), rt.EndpointURLs, msg)
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// remove publishes a removed resource as removing, undeploys it, then drops it.
func (rc *reconciler) remove(ctx context.Context, name string, eps []provider.Endpoint) {
	rc.setPhase(name, "removing", "")
	rc.emit(Event{Resource: name, Action: ActionRemoved, Step: StepUndeploying})
	if _, err := rc.publish(ctx); err != nil {
		rc.setPhase(name, "failed", err.Error())
		rc.finish(name, string(manifest.StatusFailed), nil, fmt.Sprintf("publishing removal: %v", err))
		return
	}
	var errs []error
	for _, e := range eps {
		if err := rc.undeploy(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("undeploy %s: %w", e.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		rc.setPhase(name, "failed", err.Error())
		rc.record(ctx, store.Deployment{Resource: name, Status: string(manifest.StatusFailed), Error: err.Error()})
		rc.emit(Event{Resource: name, Action: ActionRemoved, Step: StepFailed, Status: string(manifest.StatusFailed), Error: err.Error()})
		msg := err.Error()
		if _, perr := rc.publish(ctx); perr != nil {
			msg += fmt.Sprintf("; publishing the failure: %v", perr)
		}
		rc.finish(name, string(manifest.StatusFailed), nil, msg)
		return
	}
	rc.m.clearDeployed(name)
	rc.deleteDeployment(ctx, name)
	rc.setPhase(name, "dropped", "")
	msg := ""
	if _, err := rc.publish(ctx); err != nil {
		msg = fmt.Sprintf("undeployed but its entry is still published: %v", err)
	}
	rc.emit(Event{Resource: name, Action: ActionRemoved, Step: StepRemoved, Status: statusRemoved})
	rc.finish(name, statusRemoved, nil, msg)
}

// undeployOrphan removes a live endpoint that no published resource references
// (left by a mothership that died mid-deploy, or a duplicate).
func (rc *reconciler) undeployOrphan(ctx context.Context, e provider.Endpoint) {
	rc.m.log.Warn("reconcile: undeploying an endpoint no resource references", "id", e.ID, "resource", e.Resource, "urls", e.URLs)
	if err := rc.undeploy(ctx, e); err != nil {
		rc.fail("orphan endpoint %s (%s) not undeployed: %v", e.ID, e.Resource, err)
		return
	}
	rc.mu.Lock()
	rc.orphans = append(rc.orphans, e.ID)
	rc.mu.Unlock()
	rc.emit(Event{Resource: e.Resource, Step: StepOrphan, EndpointURLs: e.URLs})
}

func (rc *reconciler) undeploy(ctx context.Context, e provider.Endpoint) error {
	uctx, cancel := context.WithTimeout(ctx, rc.m.cfg.DeployTimeout)
	defer cancel()
	rc.undeploys.Add(1)
	return rc.m.prov.Undeploy(uctx, e)
}

func (rc *reconciler) stateOf(name string) *resState {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.state[name]
}

func (rc *reconciler) setPhase(name, phase, errMsg string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	st := rc.state[name]
	st.phase = phase
	st.report.Error = errMsg
}

func (rc *reconciler) finish(name, status string, urls []string, errMsg string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	st := rc.state[name]
	st.report.Status, st.report.EndpointURLs, st.report.Error = status, urls, errMsg
	st.report.Duration = rc.now().Sub(st.start)
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

// publish composes the current state and publishes it when it differs from
// what is served. It returns the served version.
func (rc *reconciler) publish(ctx context.Context) (int64, error) {
	rc.m.publishMu.Lock()
	defer rc.m.publishMu.Unlock()
	return rc.publishIfChangedLocked(ctx, rc.compose())
}

func (rc *reconciler) publishIfChangedLocked(ctx context.Context, mf *manifest.Manifest) (int64, error) {
	cur := rc.m.snap.Load()
	body, err := mf.MarshalJSON()
	if err != nil {
		return cur.version, err
	}
	if cur.version > 0 && sameJSON(body, cur.body) {
		return cur.version, nil
	}
	pctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return rc.m.publishLocked(pctx, mf)
}

// sameJSON reports whether a and b are the same JSON value: edited manifests
// serialise with sorted keys, so equal content may differ in bytes.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	decode := func(data []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	va, okA := decode(a)
	vb, okB := decode(b)
	return okA && okB && reflect.DeepEqual(va, vb)
}

// compose builds the manifest to publish from desired and what is known now:
// decided runtimes, else the persisted runtime (old URLs keep serving during a
// redeploy), else pending; removed resources stay, marked, until dropped.
func (rc *reconciler) compose() *manifest.Manifest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.desired
	for _, name := range rc.desired.ResourceNames() {
		out = out.WithRuntime(name, rc.runtimeLocked(name))
	}
	base := out
	for _, name := range rc.changes.Removed {
		st := rc.state[name]
		if st == nil || st.phase == "dropped" {
			continue
		}
		p := rc.persistedRes(name)
		out = out.WithResourceFrom(rc.persisted, name)
		rt := runtimeOf(p)
		switch st.phase {
		case "removing":
			rt.Status, rt.Error = manifest.StatusRemoving, ""
		case "failed":
			rt.Status, rt.Error = manifest.StatusFailed, st.report.Error
		}
		out = out.WithRuntime(name, rt)
	}
	if out != base && out.Validate() != nil {
		// A removed entry clashes with desired (a function moved elsewhere):
		// publish without the entries still being removed.
		return base
	}
	return out
}

func (rc *reconciler) runtimeLocked(name string) manifest.Runtime {
	st := rc.state[name]
	if st != nil && st.rt != nil {
		rt := *st.rt
		if st.ep.ID != "" {
			if d, ok := rc.m.deployedOf(name); ok && d.ID == st.ep.ID && len(d.URLs) > 0 {
				rt.EndpointURLs = d.URLs // moved since (EndpointChanged)
			}
		}
		return rt
	}
	if p := rc.persistedRes(name); p != nil {
		return runtimeOf(p)
	}
	return manifest.Runtime{Status: manifest.StatusPending}
}

func (rc *reconciler) report() Report {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := Report{Version: rc.m.snap.Load().version, Resources: []ResourceReport{},
		Deploys: int(rc.deploys.Load()), Undeploys: int(rc.undeploys.Load()),
		Orphans: slices.Sorted(slices.Values(rc.orphans)), Errors: rc.errs}
	for _, st := range rc.state {
		rr := st.report
		if rr.EndpointURLs == nil {
			rr.EndpointURLs = []string{}
		}
		r.Resources = append(r.Resources, rr)
	}
	slices.SortFunc(r.Resources, func(a, b ResourceReport) int { return strings.Compare(a.Name, b.Name) })
	return r
}

func (m *Mothership) setDeployed(name string, e provider.Endpoint) {
	m.mu.Lock()
	m.deployed[name] = e
	m.mu.Unlock()
}

func (m *Mothership) clearDeployed(name string) {
	m.mu.Lock()
	delete(m.deployed, name)
	m.mu.Unlock()
}

func (m *Mothership) deployedOf(name string) (provider.Endpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.deployed[name]
	return e, ok
}

// EndpointChanged is told that a provider restarted ep on new URLs. When ep
// is the resource's published deployment, the new URLs are published at once.
// It calls the store: from a provider callback that must stay short, run it
// in its own goroutine.
func (m *Mothership) EndpointChanged(ctx context.Context, ep provider.Endpoint) {
	m.publishMu.Lock()
	defer m.publishMu.Unlock()
	mf, _ := m.Current()
	if mf == nil {
		return
	}
	r, ok := mf.Resources[ep.Resource]
	if !ok {
		return
	}
	m.mu.Lock()
	d, known := m.deployed[ep.Resource]
	current := (known && d.ID == ep.ID) || (!known && ep.ConfigHash != "" && ep.ConfigHash == r.ConfigHash)
	if current {
		m.deployed[ep.Resource] = ep
	}
	m.mu.Unlock()
	if !current || len(ep.URLs) == 0 || slices.Equal(r.URLs(), ep.URLs) {
		return
	}
	next := mf.WithRuntime(ep.Resource, manifest.Runtime{ConfigHash: r.ConfigHash, EndpointURLs: ep.URLs,
		Status: r.Status, Error: r.Error})
	pctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	v, err := m.publishLocked(pctx, next)
	if err != nil {
		m.log.Error("cannot publish an endpoint's new URLs", "resource", ep.Resource, "urls", ep.URLs, "err", err)
		return
	}
	m.log.Info("endpoint moved; new URLs published", "resource", ep.Resource, "urls", ep.URLs, "version", v)
}

// Bounds of waitApplied.
const (
	// applyWait bounds the wait for children to apply a version: a live child
	// applies within a long-poll round trip (milliseconds); the bound only
	// matters for instances that died without saying so.
	applyWait = 3 * time.Second
	// instanceRecent is how recently an instance must have reported to be
	// waited for: children re-poll at least every MaxPollWait.
	instanceRecent = 2 * time.Minute
)

// waitApplied waits until every child instance that reported recently has
// applied (or rejected) version v or a newer one, at most applyWait.
func (m *Mothership) waitApplied(ctx context.Context, v int64) {
	deadline := time.NewTimer(applyWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		behind := m.inst.behind(v, m.cfg.Now().Add(-instanceRecent))
		if len(behind) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			m.log.Warn("reconcile: children did not report the new version in time; undeploying the old endpoint anyway",
				"version", v, "behind", strings.Join(behind, ", "))
			return
		case <-tick.C:
		}
	}
}

// behind lists the instances seen since `since` that have neither applied nor
// rejected version v or a newer one.
func (in *instances) behind(v int64, since time.Time) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for k, i := range in.all {
		if i.LastSeen.Before(since) || i.AppliedVersion >= v || i.RejectedVersion >= v {
			continue
		}
		out = append(out, k.resource+"/"+k.instance)
	}
	return out
}
