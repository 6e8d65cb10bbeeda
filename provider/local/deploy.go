package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// storeTimeout bounds store writes made where no caller context applies.
const storeTimeout = 10 * time.Second

// Deploy starts max(1, s.Replicas) processes of the binary, each serving on
// a free loopback port it inherits already open, records each in the store, and returns once every one answers
// GET /ping with 200. On failure it stops what it started, deletes the records
// and returns a *DeployError carrying the end of the log. Each call creates a
// new deployment, so old and new ones of a resource coexist (make-before-break).
func (p *Provider) Deploy(ctx context.Context, s provider.Spec) (provider.Endpoint, error) {
	if err := p.checkOpen(); err != nil {
		return provider.Endpoint{}, err
	}
	if !validResource(s.Resource) {
		return provider.Endpoint{}, fmt.Errorf("local: invalid resource name %q", s.Resource)
	}
	bin := s.Artifact
	if bin == "" {
		bin = p.cfg.Binary
	}
	bin, err := resolveBinary(bin)
	if err != nil {
		return provider.Endpoint{}, err
	}
	n := max(1, s.Replicas)
	d := &deployment{
		id:         p.newID(s.Resource),
		resource:   s.Resource,
		configHash: s.ConfigHash,
		binary:     bin,
		specEnv:    s.Env,
		env:        childEnv(p.cfg.Env, s.Env, s.Resource),
	}
	busy := make(chan struct{})
	p.mu.Lock()
	p.deploying[d.id] = busy
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.deploying, d.id)
		p.mu.Unlock()
		close(busy)
	}()
	logFile := p.logPath(s.Resource)
	offset := logSize(logFile)
	fail := func(err error) (provider.Endpoint, error) {
		p.abort(ctx, d)
		return provider.Endpoint{}, &DeployError{Resource: s.Resource, LogFile: logFile, LogTail: logTail(logFile, offset), Err: err}
	}

	d.next = n
	for i := range n {
		r, err := p.launch(ctx, d, i)
		if r != nil {
			d.replicas = append(d.replicas, r) // from now on, a failure deletes its record
		}
		if err != nil {
			return fail(err)
		}
	}
	p.log.Info("endpoint starting", "resource", d.resource, "id", d.id, "replicas", n, "binary", bin)

	if err := p.waitAllHealthy(ctx, d); err != nil {
		return fail(err)
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fail(ErrClosed)
	}
	p.deps[d.id] = d
	p.startMonitorsLocked(d, d.replicas)
	e := d.endpointLocked()
	p.mu.Unlock()
	p.log.Info("endpoint deployed", "resource", d.resource, "id", d.id, "urls", e.URLs)
	return e, nil
}

// launch starts replica i of d on a free loopback port. The replica is
// returned, even with an error, once it has a store record: the caller must
// then clean it up with the rest.
func (p *Provider) launch(ctx context.Context, d *deployment, i int) (*replica, error) {
	ln, err := listenLoopback(0)
	if err != nil {
		return nil, err
	}
	defer ln.Close() // the child has the socket once started (or nobody needs it)
	r := &replica{index: i, id: d.id + "/" + strconv.Itoa(i), port: ln.Addr().(*net.TCPAddr).Port}
	// Record the replica before its process exists: a mothership killed
	// between start and record would otherwise leave a process no record
	// names. A record without a pid is resolved by its instance id.
	if err := p.record(ctx, d, r); err != nil {
		return r, err
	}
	pr, err := p.start(d, r, ln)
	if err != nil {
		return r, err
	}
	p.mu.Lock()
	r.proc = pr
	p.mu.Unlock()
	return r, p.record(ctx, d, r)
}

// waitAllHealthy waits for every replica of d, bounded by HealthTimeout, ctx
// and Close. The first failure ends the wait.
func (p *Provider) waitAllHealthy(ctx context.Context, d *deployment) error {
	hctx, cancel := context.WithTimeoutCause(ctx, p.cfg.HealthTimeout, ErrUnhealthy)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	g, gctx := errgroup.WithContext(hctx)
	for _, r := range d.replicas {
		g.Go(func() error { return p.waitHealthy(gctx, d, r, r.proc, r.url()) })
	}
	err := g.Wait()
	switch {
	case err == nil:
		return nil
	case p.ctx.Err() != nil:
		return ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(context.Cause(hctx), ErrUnhealthy):
		return fmt.Errorf("%w (no 200 from /ping within %s)", ErrUnhealthy, p.cfg.HealthTimeout)
	}
	return err
}

// record writes r's store record.
func (p *Provider) record(ctx context.Context, d *deployment, r *replica) error {
	p.mu.Lock()
	e := store.Endpoint{
		ID:         r.id,
		Provider:   ProviderName,
		App:        p.cfg.App,
		Resource:   d.resource,
		ConfigHash: d.configHash,
		URL:        r.url(),
		Meta: map[string]string{
			metaDeployment: d.id,
			metaBinary:     d.binary,
			metaReplica:    strconv.Itoa(r.index),
		},
	}
	if r.proc != nil {
		e.PID, e.StartedAt = r.proc.pid, r.proc.started
	}
	p.mu.Unlock()
	if len(d.specEnv) > 0 {
		// The resource's own env, so that an adopting mothership restarts with it.
		b, err := json.Marshal(d.specEnv)
		if err != nil {
			return fmt.Errorf("local: record %s: %w", r.id, err)
		}
		e.Meta[metaEnv] = string(b)
	}
	if err := p.cfg.Store.PutEndpoint(ctx, e); err != nil {
		return fmt.Errorf("local: record %s: %w", r.id, err)
	}
	return nil
}

// Keys of store.Endpoint.Meta.
const (
	metaDeployment = "deployment"
	metaBinary     = "binary"
	metaReplica    = "replica"
	metaEnv        = "env"
)

// abort stops every process of a failed deploy and deletes its records,
// unless the store refuses this provider's writes (store.ErrFenced: its
// mothership no longer leads): the processes are then the new leader's, to
// adopt or remove, and are left running.
func (p *Provider) abort(ctx context.Context, d *deployment) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.StopGrace+killWait+storeTimeout)
	defer cancel()
	for _, r := range d.replicas {
		if err := p.record(ctx, d, r); errors.Is(err, store.ErrFenced) {
			p.log.Warn("failed deploy left to the leader: this mothership no longer leads", "resource", d.resource, "id", d.id)
			return
		}
	}
	if err := p.stopDeployment(ctx, d); err != nil {
		p.log.Error("cleaning up a failed deploy", "resource", d.resource, "id", d.id, "err", err)
	}
}

// Undeploy stops every process of e (SIGTERM, then SIGKILL after StopGrace)
// and deletes its records. An endpoint that is already gone is not an error;
// one of another app is ErrNotOwned. It also finds endpoints this Provider did
// not start or adopt, through the store.
func (p *Provider) Undeploy(ctx context.Context, e provider.Endpoint) error {
	if err := p.checkOpen(); err != nil {
		return err
	}
	if !p.owns(e.ID) {
		return fmt.Errorf("local: undeploy %q: %w", e.ID, provider.ErrNotOwned)
	}
	_, err := p.undeploy(ctx, e.ID, nil)
	return err
}

// UndeployAll stops every endpoint of this app: those in memory and those only
// recorded in the store. It reports per endpoint; the error joins the failures.
func (p *Provider) UndeployAll(ctx context.Context) ([]Result, error) {
	if err := p.checkOpen(); err != nil {
		return nil, err
	}
	recs, loadErr := p.cfg.Store.Endpoints(ctx, p.cfg.App)
	if loadErr != nil {
		loadErr = fmt.Errorf("local: read endpoints: %w", loadErr)
	}
	groups := groupRecords(p.cfg.App, recs)
	p.mu.Lock()
	ids := slices.Collect(maps.Keys(p.deps))
	p.mu.Unlock()
	for id := range groups {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)

	results := make([]Result, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			recs := groups[id]
			if recs == nil {
				recs = []store.Endpoint{} // in memory: no need to read the store again
			}
			ep, err := p.undeploy(ctx, id, recs)
			results[i] = Result{Endpoint: ep, Err: err}
		})
	}
	wg.Wait()
	errs := []error{loadErr}
	for _, r := range results {
		errs = append(errs, r.Err)
	}
	return results, errors.Join(errs...)
}

// undeploy stops deployment id. recs are its store records when known (nil:
// read them when the deployment is not in memory).
func (p *Provider) undeploy(ctx context.Context, id string, recs []store.Endpoint) (provider.Endpoint, error) {
	p.mu.Lock()
	for {
		// A deployment still in Deploy is stopped once Deploy has finished with it.
		ch, ok := p.deploying[id]
		if !ok {
			break
		}
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return provider.Endpoint{ID: id}, ctx.Err()
		}
		p.mu.Lock()
	}
	if ch, ok := p.stopping[id]; ok {
		// Someone else is stopping it: wait for them.
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return provider.Endpoint{ID: id}, ctx.Err()
		}
		return provider.Endpoint{ID: id}, nil
	}
	d := p.deps[id]
	delete(p.deps, id)
	ch := make(chan struct{})
	p.stopping[id] = ch
	var ep provider.Endpoint
	if d != nil {
		ep = d.endpointLocked()
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.stopping, id)
		p.mu.Unlock()
		close(ch)
	}()

	if d != nil {
		// Stop monitoring first, so that nothing restarts what we kill.
		for _, r := range d.replicas {
			p.stopMonitor(r)
		}
	} else {
		if recs == nil {
			all, err := p.cfg.Store.Endpoints(ctx, p.cfg.App)
			if err != nil {
				return provider.Endpoint{ID: id}, fmt.Errorf("local: undeploy %s: read endpoints: %w", id, err)
			}
			recs = groupRecords(p.cfg.App, all)[id]
		}
		if len(recs) == 0 {
			return provider.Endpoint{ID: id}, nil // already gone
		}
		d = deploymentFromRecords(p.cfg, id, recs)
		p.mu.Lock()
		ep = d.endpointLocked()
		p.mu.Unlock()
	}
	if err := p.stopDeployment(ctx, d); err != nil {
		return ep, err
	}
	p.log.Info("endpoint undeployed", "resource", d.resource, "id", id)
	return ep, nil
}

// stopDeployment stops every replica of d in parallel and deletes the record of
// each one that is gone. Monitors must be stopped already.
func (p *Provider) stopDeployment(ctx context.Context, d *deployment) error {
	errs := make([]error, len(d.replicas))
	var wg sync.WaitGroup
	for i, r := range d.replicas {
		p.mu.Lock()
		pr := r.proc
		p.mu.Unlock()
		wg.Go(func() {
			if err := p.stopProc(ctx, d, r, pr); err != nil {
				errs[i] = err
				return // keep the record: the process may still be found and stopped later
			}
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
			defer cancel()
			if err := p.cfg.Store.DeleteEndpoint(dctx, r.id); err != nil {
				errs[i] = fmt.Errorf("local: delete record %s: %w", r.id, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// groupRecords groups this app's local records by deployment id.
func groupRecords(app string, recs []store.Endpoint) map[string][]store.Endpoint {
	groups := make(map[string][]store.Endpoint)
	for _, e := range recs {
		if e.Provider != ProviderName || e.App != app {
			continue
		}
		id := e.Meta[metaDeployment]
		if id == "" {
			id, _ = cutLast(e.ID, "/")
		}
		groups[id] = append(groups[id], e)
	}
	return groups
}

func cutLast(s, sep string) (before, after string) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+len(sep):]
}

// deploymentFromRecords rebuilds a deployment whose processes we did not start.
func deploymentFromRecords(cfg Config, id string, recs []store.Endpoint) *deployment {
	first := recs[0]
	d := &deployment{
		id:         id,
		resource:   first.Resource,
		configHash: first.ConfigHash,
		binary:     first.Meta[metaBinary],
	}
	if d.binary == "" {
		d.binary, _ = resolveBinary(cfg.Binary)
	}
	if s := first.Meta[metaEnv]; s != "" {
		if err := json.Unmarshal([]byte(s), &d.specEnv); err != nil {
			d.specEnv = nil
		}
	}
	d.env = childEnv(cfg.Env, d.specEnv, d.resource)
	for i, e := range recs {
		idx, err := strconv.Atoi(e.Meta[metaReplica])
		if err != nil {
			_, s := cutLast(e.ID, "/")
			if idx, err = strconv.Atoi(s); err != nil {
				idx = i
			}
		}
		d.replicas = append(d.replicas, &replica{
			index: idx,
			id:    e.ID,
			port:  portOf(e.URL),
			proc:  &proc{pid: recordedPID(e), started: e.StartedAt},
		})
	}
	slices.SortFunc(d.replicas, func(a, b *replica) int { return a.index - b.index })
	if n := len(d.replicas); n > 0 {
		d.next = d.replicas[n-1].index + 1
	}
	return d
}

// portOf returns the port of a recorded "http://127.0.0.1:PORT" URL, 0 when none.
func portOf(url string) int {
	_, s := cutLast(url, ":")
	port, err := strconv.Atoi(strings.TrimRight(s, "/"))
	if err != nil || port <= 0 || port > 65535 {
		return 0
	}
	return port
}
