package child

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// Target is where a remote call goes: a function of another resource and
// the URLs serving it. Targets come from the Router and are immutable.
type Target struct {
	Function string
	Resource string
	LB       bool            // load-balanced: call the function's route, not /runsync
	Method   string          // LB only: HTTP method
	Path     string          // LB only: route path, may hold {param}s
	URLs     []string        // replicas; at least one for a target the Router returns
	Status   manifest.Status // the resource's manifest status
	Error    string          // the resource's recorded deployment error
	// Pinned marks a call for state that one process holds (an object's
	// instance): a connection refused means that process is gone, so the
	// call is not retried there or elsewhere.
	Pinned bool

	inflight []atomic.Int64 // calls in flight per URL, for the choice of replica
	qbHead   []byte         // the /runsync envelope up to the argument
}

// route is one entry of a routing table: local (zero), a target, or the
// error a call must fail with.
type route struct {
	target *Target
	err    error
}

// Table is the routing decision for every function of one manifest. It is
// immutable; a new manifest brings a new Table, so a caller may keep what
// it read from one as long as the Router's Table is that one.
type Table struct {
	version int64
	routes  map[string]route
}

// Route says where fn runs by this table, as Router.Route does.
func (t *Table) Route(fn string) (*Target, error) {
	e := t.routes[fn]
	return e.target, e.err
}

// RouterConfig configures a Router.
type RouterConfig struct {
	// Identity is the resource this endpoint serves.
	Identity string
	// Sync, when set, is the mothership's manifest: the Router follows it,
	// and calls made before the first manifest wait for it. Nil means no
	// mothership: feed manifests with Apply, or run everything in-process.
	Sync *Sync
	// Logger; nil → slog.Default().
	Logger *slog.Logger
	// Table, when set, is where the Router keeps the table in use, so that
	// its owner reads it in one atomic load (flash.Func's route cache).
	// Nil: a pointer of the Router's own.
	Table *atomic.Pointer[Table]
}

// Router decides where each call runs (SPEC §5.2). Route costs one atomic
// load and one map lookup, and allocates nothing.
type Router struct {
	identity   string
	sync       *Sync
	log        *slog.Logger
	table      *atomic.Pointer[Table]
	standalone sync.Once
	gateways   []string // the motherships' URLs: where calls to a resource scaled to zero go
}

// NewRouter returns a Router; with cfg.Sync set it follows that Sync's
// manifests from now on (and the one it already has).
func NewRouter(cfg RouterConfig) *Router {
	r := &Router{identity: cfg.Identity, sync: cfg.Sync, log: cfg.Logger, table: cfg.Table}
	if r.table == nil {
		r.table = new(atomic.Pointer[Table])
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.sync != nil {
		r.gateways = trimURLs(r.sync.bases)
		r.sync.subscribe(r.Apply)
	}
	return r
}

// Apply builds the routing table of m and swaps it in at once: a call routes
// by the old table or the new, never a mix.
func (r *Router) Apply(m *manifest.Manifest, version int64) {
	if m == nil {
		return
	}
	r.table.Store(buildTable(m, version, r.identity, r.gateways))
}

// Route says where fn runs: (nil, nil) → in-process; a target → call it
// with an Invoker; an error → fail the call (a *flasherr.NotReadyError when
// the resource has no URL or failed to deploy; flasherr.ErrManifestUnavailable
// when ctx ended before the first manifest arrived from the mothership).
func (r *Router) Route(ctx context.Context, fn string) (*Target, error) {
	t := r.table.Load()
	if t == nil {
		return r.routeWithout(ctx, fn)
	}
	return t.Route(fn)
}

// Table returns the routing table in use, nil before the first manifest.
func (r *Router) Table() *Table { return r.table.Load() }

// routeWithout handles calls before any manifest: in-process when there is
// no mothership (rule 1), else wait for the first manifest.
func (r *Router) routeWithout(ctx context.Context, fn string) (*Target, error) {
	if r.sync == nil {
		r.standalone.Do(func() {
			r.log.Warn("no mothership and no manifest: every function runs in-process (standalone)")
		})
		return nil, nil
	}
	if err := r.sync.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("route %s: %w: no manifest from %s yet: %w",
			fn, flasherr.ErrManifestUnavailable, strings.Join(r.sync.bases, ","), err)
	}
	if r.table.Load() == nil { // applied by the sync, but not through this router
		r.Apply(r.sync.Current(), r.sync.Version())
	}
	return r.table.Load().Route(fn)
}

// buildTable applies rules 2–4 of SPEC §5.2 to every function of m. A
// resource scaled to zero (status idle) is called through the gateways,
// which start a replica and hold the call until it serves.
func buildTable(m *manifest.Manifest, version int64, identity string, gateways []string) *Table {
	t := &Table{version: version, routes: make(map[string]route, len(m.FunctionRegistry))}
	for fn, resName := range m.FunctionRegistry {
		res := m.Resources[resName]
		if res != nil && isClass(res, fn) {
			// An object: its instances live on one replica each, maybe
			// another replica of this very resource, so its route names
			// every replica, mine included.
			t.routes[fn] = route{target: &Target{Function: fn, Resource: resName, LB: true,
				URLs: trimURLs(res.URLs()), Status: res.Status, Error: res.Error}}
			continue
		}
		if resName == identity {
			t.routes[fn] = route{} // rule 3: mine
			continue
		}
		if res == nil { // a valid manifest never has this; refuse rather than guess
			t.routes[fn] = route{err: &flasherr.NotReadyError{Function: fn, Resource: resName,
				Reason: "resource missing from the manifest"}}
			continue
		}
		urls := res.URLs()
		if len(urls) == 0 && res.Status == manifest.StatusIdle && len(gateways) > 0 {
			urls = viaGateways(gateways, resName, res.LoadBalanced)
		}
		if len(urls) == 0 || res.Status == manifest.StatusFailed {
			t.routes[fn] = route{err: &flasherr.NotReadyError{Function: fn, Resource: resName,
				Status: string(res.Status), Reason: res.Error}}
			continue
		}
		tg := &Target{
			Function: fn,
			Resource: resName,
			LB:       res.LoadBalanced,
			URLs:     trimURLs(urls),
			Status:   res.Status,
			Error:    res.Error,
		}
		tg.inflight = make([]atomic.Int64, len(tg.URLs))
		if tg.LB {
			var ok bool
			if tg.Method, tg.Path, ok = lbRoute(m, res, fn); !ok {
				t.routes[fn] = route{err: &flasherr.NotReadyError{Function: fn, Resource: resName,
					Status: string(res.Status), Reason: "the manifest gives this function no HTTP route"}}
				continue
			}
		} else {
			tg.qbHead = wire.JobRequestHead(fn)
		}
		t.routes[fn] = route{target: tg}
	}
	return t
}

// isClass reports whether fn is a stateful object of res ("is_class").
func isClass(res *manifest.Resource, fn string) bool {
	f, ok := res.Function(fn)
	return ok && f.IsClass
}

// lbRoute finds fn's method and path: on the function entry, else in routes.
func lbRoute(m *manifest.Manifest, res *manifest.Resource, fn string) (method, path string, ok bool) {
	if f, ok := res.Function(fn); ok && f.HTTPMethod != "" && f.HTTPPath != "" {
		return strings.ToUpper(f.HTTPMethod), f.HTTPPath, true
	}
	for key, name := range m.Routes[res.Name] {
		if name == fn {
			if method, path, ok := strings.Cut(strings.TrimSpace(key), " "); ok {
				return strings.ToUpper(method), strings.TrimSpace(path), true
			}
		}
	}
	return "", "", false
}

// viaGateways returns where the motherships' gateways serve resource:
// its Runpod API shape (/v2/{resource}) or its LB routes (/{resource}).
func viaGateways(gateways []string, resource string, lb bool) []string {
	prefix := "/v2/"
	if lb {
		prefix = "/"
	}
	out := make([]string, len(gateways))
	for i, g := range gateways {
		out[i] = g + prefix + resource
	}
	return out
}

func trimURLs(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = strings.TrimRight(u, "/")
	}
	return out
}
