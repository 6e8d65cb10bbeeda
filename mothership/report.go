package mothership

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flash-go/flash/manifest"
)

// Action is the §2.4 diff category of a resource in a reconciliation.
type Action string

// Actions.
const (
	ActionNew       Action = "new"
	ActionChanged   Action = "changed"
	ActionRemoved   Action = "removed"
	ActionUnchanged Action = "unchanged"
)

// Step is one step of one resource, reported through ReconcileOptions.Progress.
type Step string

// Steps.
const (
	StepDeploying   Step = "deploying"   // Deploy called
	StepDeployed    Step = "deployed"    // the new endpoint is healthy
	StepPublished   Step = "published"   // a version naming the new state is served
	StepUndeploying Step = "undeploying" // Undeploy of old or removed endpoints called
	StepUndeployed  Step = "undeployed"  // old endpoints are gone
	StepRemoved     Step = "removed"     // a removed resource's entry is dropped
	StepUnchanged   Step = "unchanged"   // nothing to do
	StepFailed      Step = "failed"      // see Event.Error
	StepOrphan      Step = "orphan"      // a live endpoint no published resource references was undeployed
)

// StatusRemoved is a resource's status in a report once it is undeployed and
// its entry dropped; the other statuses are the manifest's.
const StatusRemoved manifest.Status = "removed"

// Event is one step of one resource during a reconciliation.
type Event struct {
	Resource     string          `json:"resource"`
	Action       Action          `json:"action"`
	Step         Step            `json:"step"`
	Status       manifest.Status `json:"status,omitempty"`
	EndpointURLs []string        `json:"endpoint_urls,omitempty"`
	Error        string          `json:"error,omitempty"`
	Version      int64           `json:"version,omitempty"` // with StepPublished
}

// ResourceReport is the outcome of one resource.
type ResourceReport struct {
	Name         string          `json:"name"`
	Action       Action          `json:"action"`
	Status       manifest.Status `json:"status"` // deployed | updated | failed | removed (or the published status)
	EndpointURLs []string        `json:"endpoint_urls"`
	Error        string          `json:"error,omitempty"`
	Duration     time.Duration   `json:"-"`
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
	Desired   int64            `json:"desired"` // the recorded desired state reconciled toward
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
		if rr.Status == manifest.StatusFailed || rr.Error != "" {
			return true
		}
	}
	return false
}

// emit reports e through Progress, URL credentials redacted.
func (rc *reconciler) emit(e Event) {
	e.Error, e.EndpointURLs = RedactURLs(e.Error), redactAll(e.EndpointURLs)
	rc.m.trail.add(rc, e, rc.now())
	if rc.opts.Progress == nil {
		return
	}
	rc.eventMu.Lock()
	defer rc.eventMu.Unlock()
	rc.opts.Progress(e)
}

// fail records a failure not tied to one resource's deploy.
func (rc *reconciler) fail(format string, args ...any) {
	msg := RedactURLs(fmt.Sprintf(format, args...))
	rc.m.log.Error("reconcile: " + msg)
	rc.mu.Lock()
	rc.errs = append(rc.errs, msg)
	rc.mu.Unlock()
}

func (rc *reconciler) finish(name string, status manifest.Status, urls []string, errMsg string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	st := rc.state[name]
	st.report.Status, st.report.EndpointURLs, st.report.Error = status, urls, errMsg
	st.report.Duration = rc.now().Sub(st.start)
}

func (rc *reconciler) report() Report {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := Report{Version: rc.m.snap.Load().version, Desired: rc.desiredVersion, Resources: []ResourceReport{},
		Deploys: int(rc.deploys.Load()), Undeploys: int(rc.undeploys.Load()),
		Orphans: slices.Sorted(slices.Values(rc.orphans)), Errors: rc.errs}
	for _, st := range rc.state {
		rr := st.report
		rr.Error, rr.EndpointURLs = RedactURLs(rr.Error), redactAll(rr.EndpointURLs)
		if rr.EndpointURLs == nil {
			rr.EndpointURLs = []string{}
		}
		r.Resources = append(r.Resources, rr)
	}
	slices.SortFunc(r.Resources, func(a, b ResourceReport) int { return strings.Compare(a.Name, b.Name) })
	return r
}
