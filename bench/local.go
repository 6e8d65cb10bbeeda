package bench

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/manifest"
)

// local measures a Func.Call that the router sends in-process against
// calling the function directly: the app runs as the child serving
// "worker", with a manifest that registers work on "worker", so every call
// loads the routing table, looks work up and runs it here.
func (r *runner) local(ctx context.Context) error {
	app, fn := benchApp()
	m, err := app.Manifest()
	if err != nil {
		return err
	}
	dir := filepath.Join(r.tmp, "local")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, manifest.FileName)
	if err := manifest.Save(path, m, 0o644); err != nil {
		return err
	}
	srv, err := runApp(ctx, app, flash.Config{Role: flash.Child, Resource: "worker", ManifestPath: path,
		APIKey: apiKey, Logger: r.log})
	if err != nil {
		return err
	}
	defer srv.stop()
	if app.Identity() != "worker" {
		return errors.New("the app does not serve worker")
	}

	bg := context.Background()
	in := benchInput
	n := r.p.localCalls
	viaFlash := func(context.Context) (float64, error) {
		sink := 0
		start := time.Now()
		for range n {
			out, err := fn.Call(bg, in)
			if err != nil {
				return 0, err
			}
			sink += out.N
		}
		d := time.Since(start)
		if sink != n*(in.N+1) {
			return 0, errors.New("Func.Call returned wrong results")
		}
		return float64(d.Nanoseconds()) / float64(n), nil
	}
	direct := func(context.Context) (float64, error) {
		sink := 0
		start := time.Now()
		for range n {
			out, err := work(bg, in)
			if err != nil {
				return 0, err
			}
			sink += out.N
		}
		d := time.Since(start)
		if sink != n*(in.N+1) {
			return 0, errors.New("work returned wrong results")
		}
		return float64(d.Nanoseconds()) / float64(n), nil
	}
	// The router alone, as Func.Call uses it: to split the cost.
	router := child.NewRouter(child.RouterConfig{Identity: "worker", Logger: r.log})
	router.Apply(m, 1)
	route := func(context.Context) (float64, error) {
		start := time.Now()
		for range n {
			if t, err := router.Route(bg, "work"); t != nil || err != nil {
				return 0, errors.New("the router does not route work in-process")
			}
		}
		return float64(time.Since(start).Nanoseconds()) / float64(n), nil
	}
	if _, err := rotate(ctx, 1, viaFlash, direct, route); err != nil { // warm up
		return err
	}
	all, err := rotate(ctx, r.p.rounds, viaFlash, direct, route)
	if err != nil {
		return err
	}
	fs, ds, rs := all[0], all[1], all[2]

	// Allocations: the process-wide malloc count over n calls. Other
	// goroutines are idle here; whatever they allocate is spread over n.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		if _, err := fn.Call(bg, in); err != nil {
			return err
		}
	}
	runtime.ReadMemStats(&after)
	allocs := float64(after.Mallocs-before.Mallocs) / float64(n)

	r.figure("route_local_ns", Median(fs), "ns/call", "flash Func.Call routed in-process by the child's router (atomic load + map lookup), then the function")
	r.figure("direct_call_ns", Median(ds), "ns/call", "the same function called directly (baseline)")
	r.figure("route_local_allocs", math.Round(allocs*100)/100, "allocs/call", "heap allocations per routed in-process Func.Call")
	r.figure("route_local_overhead_ns", Median(fs)-Median(ds), "ns/call", "route_local_ns - direct_call_ns: what routing adds")
	r.figure("router_route_ns", Median(rs), "ns/call", "child.Router.Route alone for the same function (atomic load + map lookup)")
	return nil
}
