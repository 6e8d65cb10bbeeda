package mothership

import (
	"context"
	"errors"
	"fmt"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// The provider calls of a reconciliation: discover what is live, deploy,
// remove, undeploy orphans. Each call is bounded by Config.DeployTimeout.

// adopter is implemented by providers that can take over endpoints a
// previous mothership left running (provider/local).
type adopter interface {
	Adopt(ctx context.Context) ([]provider.Endpoint, error)
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

// deploy brings up d, publishes it, then undeploys the endpoints it replaces
// (make-before-break). cur is the live endpoint of the published entry p.
func (rc *reconciler) deploy(ctx context.Context, name string, d, p *manifest.Resource, cur *provider.Endpoint, old []provider.Endpoint) {
	m := rc.m
	st := rc.stateOf(name)
	rc.emit(Event{Resource: name, Action: st.action, Step: StepDeploying})
	spec := provider.Spec{Resource: name, ConfigHash: d.Hash(), Replicas: replicas(d), Env: d.Env,
		Config: d.Raw(), Artifact: rc.artifact}
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
	rc.emit(Event{Resource: name, Action: st.action, Step: StepDeployed, Status: status, EndpointURLs: ep.URLs})

	v, err := rc.publish(ctx)
	if err != nil {
		// Children cannot know the new URLs: the old endpoints must stay.
		rc.finish(name, manifest.StatusFailed, ep.URLs, fmt.Sprintf("deployed but not published: %v", err))
		return
	}
	rc.emit(Event{Resource: name, Action: st.action, Step: StepPublished, Status: status, EndpointURLs: ep.URLs, Version: v})

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
	rc.finish(name, status, ep.URLs, msg)
}

// deployFailed records a failed deploy. When the published entry describes a
// working older endpoint, that one keeps serving (its URLs stay published,
// with the error); otherwise the resource is published as failed.
func (rc *reconciler) deployFailed(ctx context.Context, name string, d, p *manifest.Resource, cur *provider.Endpoint, err error) {
	msg := RedactURLs(err.Error())
	rt := manifest.Runtime{Status: manifest.StatusFailed, Error: msg}
	keepOld := working(p) && (!rc.liveKnown || cur != nil)
	var keep provider.Endpoint
	if keepOld {
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
	rc.m.log.Error("reconcile: deploy failed", "resource", name, "err", errors.New(msg), "old_endpoint_kept", keepOld)
	rc.record(ctx, store.Deployment{Resource: name, ConfigHash: d.Hash(),
		Status: string(manifest.StatusFailed), EndpointURLs: rt.EndpointURLs, Error: msg})
	rc.emit(Event{Resource: name, Action: st.action, Step: StepFailed, Status: manifest.StatusFailed, Error: msg})
	if _, perr := rc.publish(ctx); perr != nil {
		msg += fmt.Sprintf("; publishing the failure: %v", perr)
	}
	rc.finish(name, manifest.StatusFailed, rt.EndpointURLs, msg)
}

// remove publishes a removed resource as removing, undeploys it, then drops it.
func (rc *reconciler) remove(ctx context.Context, name string, eps []provider.Endpoint) {
	rc.setRemoval(name, removalRunning, "")
	rc.emit(Event{Resource: name, Action: ActionRemoved, Step: StepUndeploying})
	if _, err := rc.publish(ctx); err != nil {
		rc.setRemoval(name, removalFailed, err.Error())
		rc.finish(name, manifest.StatusFailed, nil, fmt.Sprintf("publishing removal: %v", err))
		return
	}
	var errs []error
	for _, e := range eps {
		if err := rc.undeploy(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("undeploy %s: %w", e.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		rc.setRemoval(name, removalFailed, err.Error())
		rc.record(ctx, store.Deployment{Resource: name, Status: string(manifest.StatusFailed), Error: err.Error()})
		rc.emit(Event{Resource: name, Action: ActionRemoved, Step: StepFailed, Status: manifest.StatusFailed, Error: err.Error()})
		msg := err.Error()
		if _, perr := rc.publish(ctx); perr != nil {
			msg += fmt.Sprintf("; publishing the failure: %v", perr)
		}
		rc.finish(name, manifest.StatusFailed, nil, msg)
		return
	}
	rc.m.clearDeployed(name)
	rc.m.inst.forget(name)
	rc.deleteDeployment(ctx, name)
	rc.setRemoval(name, removalDropped, "")
	msg := ""
	if _, err := rc.publish(ctx); err != nil {
		msg = fmt.Sprintf("undeployed but its entry is still published: %v", err)
	}
	rc.emit(Event{Resource: name, Action: ActionRemoved, Step: StepRemoved, Status: StatusRemoved})
	rc.finish(name, StatusRemoved, nil, msg)
}

// undeployOrphan removes a live endpoint that no published resource references
// (left by a mothership that died mid-deploy, or a duplicate).
func (rc *reconciler) undeployOrphan(ctx context.Context, e provider.Endpoint) {
	rc.m.log.Warn("reconcile: undeploying an endpoint no resource references", "id", e.ID, "resource", e.Resource,
		"urls", redactAll(e.URLs))
	if err := rc.undeploy(ctx, e); err != nil {
		rc.fail("orphan endpoint %s (%s) not undeployed: %v", e.ID, e.Resource, err)
		return
	}
	rc.mu.Lock()
	rc.orphans = append(rc.orphans, e.ID)
	rc.mu.Unlock()
	rc.emit(Event{Resource: e.Resource, Step: StepOrphan, EndpointURLs: e.URLs})
}

// undeploy stops e; the endpoints it had are remembered as gone, so that no
// one waits for their children any more.
func (rc *reconciler) undeploy(ctx context.Context, e provider.Endpoint) error {
	uctx, cancel := context.WithTimeout(ctx, rc.m.cfg.DeployTimeout)
	defer cancel()
	rc.undeploys.Add(1)
	err := rc.m.prov.Undeploy(uctx, e)
	if err == nil {
		rc.m.inst.endpointGone(e)
	}
	return err
}
