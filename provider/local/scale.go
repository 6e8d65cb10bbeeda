package local

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/flash-go/flash/provider"
)

// ErrNoDeployment means a scaling call named no live deployment of this Provider.
var ErrNoDeployment = errors.New("local: no such live deployment")

var _ provider.Scaler = (*Provider)(nil)

// AddReplicas starts n more processes of e's deployment, records each, and
// once every one answers /ping with 200 adds them to the deployment (and
// its monitoring). On failure the new processes are stopped and their
// records deleted; the deployment is left as it was.
func (p *Provider) AddReplicas(ctx context.Context, e provider.Endpoint, n int) (provider.Endpoint, error) {
	d, err := p.lockLive(e.ID, "add replicas to")
	if err != nil {
		return e, err
	}
	first := d.next
	d.next += n
	// The new replicas join d only once healthy: until then no endpoint
	// lists them. tmp is d with only those.
	tmp := *d
	tmp.replicas = nil
	p.mu.Unlock()
	logFile := p.logPath(d.resource)
	offset := logSize(logFile)
	fail := func(err error) (provider.Endpoint, error) {
		p.abort(ctx, &tmp)
		return e, &DeployError{Resource: d.resource, LogFile: logFile, LogTail: logTail(logFile, offset), Err: err}
	}
	for i := range n {
		r, err := p.launch(ctx, &tmp, first+i)
		if r != nil {
			tmp.replicas = append(tmp.replicas, r)
		}
		if err != nil {
			return fail(err)
		}
	}
	if err := p.waitAllHealthy(ctx, &tmp); err != nil {
		return fail(err)
	}
	p.mu.Lock()
	if p.closed || p.deps[d.id] != d {
		p.mu.Unlock()
		return fail(fmt.Errorf("%w (undeployed or closed meanwhile)", ErrNoDeployment))
	}
	d.replicas = append(slices.Clip(d.replicas), tmp.replicas...)
	p.startMonitorsLocked(d, tmp.replicas)
	out := d.endpointLocked()
	p.mu.Unlock()
	p.log.Info("replicas added", "resource", d.resource, "id", d.id, "added", n, "replicas", len(out.URLs))
	return out, nil
}

// RemoveReplicas takes the replicas of e's deployment that serve urls out
// of it, then stops them (SIGTERM: each finishes its in-flight work within
// StopGrace, then SIGKILL) and deletes their records. URLs it does not
// serve are ignored. The caller stops sending to urls first: this call does
// not publish anything.
func (p *Provider) RemoveReplicas(ctx context.Context, e provider.Endpoint, urls []string) (provider.Endpoint, error) {
	d, err := p.lockLive(e.ID, "remove replicas of")
	if err != nil {
		return e, err
	}
	var keep, gone []*replica
	for _, r := range d.replicas {
		if slices.Contains(urls, r.url()) {
			gone = append(gone, r)
		} else {
			keep = append(keep, r)
		}
	}
	d.replicas = keep // a new slice: nothing ranging over the old one sees it change
	out := d.endpointLocked()
	tmp := *d
	tmp.replicas = gone
	p.mu.Unlock()
	if len(gone) == 0 {
		return out, nil
	}
	for _, r := range gone {
		p.stopMonitor(r) // nothing restarts what is stopped next
	}
	if err := p.stopDeployment(ctx, &tmp); err != nil {
		return out, err
	}
	p.log.Info("replicas removed", "resource", d.resource, "id", d.id, "removed", len(gone), "replicas", len(out.URLs))
	return out, nil
}

// lockLive locks p.mu and returns the live deployment id; on an error
// (closed, or no such deployment) p.mu is not held.
func (p *Provider) lockLive(id, op string) (*deployment, error) {
	p.mu.Lock()
	d := p.deps[id]
	switch {
	case p.closed:
		p.mu.Unlock()
		return nil, ErrClosed
	case d == nil:
		p.mu.Unlock()
		return nil, fmt.Errorf("local: %s %s: %w", op, id, ErrNoDeployment)
	}
	return d, nil
}
