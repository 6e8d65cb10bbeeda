package local

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// Adopt loads this app's records from the store and takes over the processes
// still alive and healthy, monitoring them from now on. It returns the live
// endpoints, one per deployment.
//
// A deployment none of whose processes is alive is gone: its records are
// deleted. In a deployment with some processes alive, the dead replicas are
// restarted (same port when free) so that its published URLs keep working. A
// process that is alive but does not answer /ping with 200 within
// HealthTimeout is stopped and counts as dead. Deployments already known to
// this Provider are left alone, so calling Adopt twice is harmless.
func (p *Provider) Adopt(ctx context.Context) ([]provider.Endpoint, error) {
	if err := p.checkOpen(); err != nil {
		return nil, err
	}
	p.adoptMu.Lock() // one Adopt at a time, so none adopts a deployment twice
	defer p.adoptMu.Unlock()
	recs, err := p.cfg.Store.Endpoints(ctx, p.cfg.App)
	if err != nil {
		return nil, fmt.Errorf("local: adopt: read endpoints: %w", err)
	}
	groups := groupRecords(p.cfg.App, recs)
	p.mu.Lock()
	maps.DeleteFunc(groups, func(id string, _ []store.Endpoint) bool { return p.busyLocked(id) })
	p.mu.Unlock()

	var (
		mu      sync.Mutex
		adopted []*deployment
		errs    []error
		wg      sync.WaitGroup
	)
	for id, recs := range groups {
		wg.Go(func() {
			d, err := p.adoptDeployment(ctx, id, recs)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if d != nil {
				adopted = append(adopted, d)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("local: adopt: %w", err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	out := make([]provider.Endpoint, 0, len(adopted))
	for _, d := range adopted {
		if p.busyLocked(d.id) {
			continue
		}
		p.deps[d.id] = d
		p.startMonitorsLocked(d, d.replicas)
		out = append(out, d.endpointLocked())
	}
	sortEndpoints(out)
	return out, nil
}

// busyLocked reports whether deployment id is known, being deployed or being undeployed.
func (p *Provider) busyLocked(id string) bool {
	_, known := p.deps[id]
	_, deploying := p.deploying[id]
	_, stopping := p.stopping[id]
	return known || deploying || stopping
}

// adoptDeployment checks each recorded process of one deployment. It returns
// nil, nil when the deployment is gone. It kills nothing and deletes nothing
// when ctx ends first.
func (p *Provider) adoptDeployment(ctx context.Context, id string, recs []store.Endpoint) (*deployment, error) {
	d := deploymentFromRecords(p.cfg, id, recs)
	live := make([]bool, len(d.replicas))
	keep := make([]bool, len(d.replicas)) // alive but could not be stopped: keep the record
	var wg sync.WaitGroup
	for i, r := range d.replicas {
		wg.Go(func() {
			pr := r.proc
			if !alive(pr.pid, d.binary, r.id) {
				return
			}
			hctx, cancel := context.WithTimeout(ctx, p.cfg.HealthTimeout)
			err := p.waitHealthy(hctx, d, r, pr, r.url())
			cancel()
			if err == nil {
				live[i] = true
				return
			}
			if ctx.Err() != nil {
				return
			}
			// Running but not serving: it cannot be adopted, and must not be left unrecorded.
			p.log.Warn("recorded endpoint alive but unhealthy, stopping it", "id", r.id, "pid", pr.pid, "err", err)
			if err := p.stopProc(ctx, d, r, pr); err != nil {
				p.log.Error("stopping an unhealthy endpoint", "id", r.id, "err", err)
				keep[i] = true
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// d is not shared yet: no lock needed for its replicas.
	if !slices.Contains(live, true) {
		for i, r := range d.replicas {
			p.emit(Event{Resource: d.resource, ID: d.id, Replica: r.index, Kind: EventGone, PID: r.proc.pid, URL: r.url()})
			if keep[i] {
				continue
			}
			if err := p.cfg.Store.DeleteEndpoint(ctx, r.id); err != nil {
				return nil, fmt.Errorf("delete record %s: %w", r.id, err)
			}
		}
		return nil, nil
	}
	for i, r := range d.replicas {
		kind := EventAdopted
		if !live[i] {
			kind = EventGone // its monitor restarts it at once
		}
		p.emit(Event{Resource: d.resource, ID: d.id, Replica: r.index, Kind: kind, PID: r.proc.pid, URL: r.url()})
		if !live[i] && !keep[i] {
			r.proc = &proc{}
		}
	}
	return d, nil
}
