package mothership

import (
	"slices"
	"time"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
)

// The plan: what a reconciliation decides for each resource from the diff
// of desired and persisted (SPEC §2.4, §4.3), and the manifest it publishes.

// removal is where a removed resource stands.
type removal int

const (
	removalPending removal = iota // not started
	removalRunning                // published as removing, undeploying
	removalFailed                 // undeploy failed: published as failed
	removalDropped                // undeployed, entry dropped
)

// resState is what a reconciliation knows of one resource.
type resState struct {
	action  Action
	rt      *manifest.Runtime // decided runtime; nil: carry the persisted one (or pending)
	ep      provider.Endpoint // the endpoint rt describes, when known
	removal removal           // removed resources only
	// asDesired: publish desired's entry as it is, runtime keys included
	// (reconciliation without a provider).
	asDesired bool

	report ResourceReport
	start  time.Time
}

func (rc *reconciler) actionOf(name string) Action {
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

// scaledStatus is the status of a deployed resource that has n replicas
// now: idle at zero, deployed again when it had been idle.
func scaledStatus(s manifest.Status, n int) manifest.Status {
	switch {
	case n == 0:
		return manifest.StatusIdle
	case s == manifest.StatusIdle:
		return manifest.StatusDeployed
	}
	return s
}

// working reports whether a published entry describes a serving endpoint
// (one scaled to zero serves: a call starts a replica).
func working(p *manifest.Resource) bool {
	if p != nil && p.Status == manifest.StatusIdle {
		return true
	}
	if p == nil || len(p.URLs()) == 0 {
		return false
	}
	switch p.Status {
	case manifest.StatusFailed, manifest.StatusPending, manifest.StatusRemoving:
		return false
	}
	return true
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
func (rc *reconciler) needsDeploy(action Action, d, p *manifest.Resource, cur *provider.Endpoint) bool {
	if action != ActionUnchanged || !working(p) {
		return true
	}
	if p.ConfigHash != "" && p.ConfigHash != d.Hash() {
		return true
	}
	return rc.liveKnown && cur == nil
}

// replicas is how many processes (or workers) a resource asks for at least.
func replicas(r *manifest.Resource) int {
	return max(1, r.WorkersMin)
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// compose builds the manifest to publish from desired and what is known now:
// decided runtimes, else the persisted runtime (old URLs keep serving during a
// redeploy), else pending; removed resources stay, marked, until dropped.
func (rc *reconciler) compose() *manifest.Manifest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.desired
	for _, name := range rc.desired.ResourceNames() {
		if st := rc.state[name]; st == nil || !st.asDesired {
			out = out.WithRuntime(name, rc.runtimeLocked(name))
		}
	}
	base := out
	for _, name := range rc.changes.Removed {
		st := rc.state[name]
		if st == nil || st.removal == removalDropped {
			continue
		}
		out = out.WithResourceFrom(rc.persisted, name)
		rt := runtimeOf(rc.persistedRes(name))
		switch st.removal {
		case removalRunning:
			rt.Status, rt.Error = manifest.StatusRemoving, ""
		case removalFailed:
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
			if d, ok := rc.m.deployedOf(name); ok && d.ID == st.ep.ID {
				// Moved (EndpointChanged) or scaled (autoscaler) since.
				rt.EndpointURLs, rt.Status = d.URLs, scaledStatus(rt.Status, len(d.URLs))
			}
		}
		return rt
	}
	if p := rc.persistedRes(name); p != nil {
		return runtimeOf(p)
	}
	return manifest.Runtime{Status: manifest.StatusPending}
}
