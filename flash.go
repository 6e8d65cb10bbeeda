// Package flash is the public API of flash: an App made of resources, each
// serving typed Go functions, called with Func.Call wherever they run.
//
//	app := flash.NewApp("pipeline")
//	embedder := app.Queue("embedder", flash.ResourceConfig{WorkersMax: 3})
//	embed := flash.Register(embedder, "embed", func(ctx context.Context, in EmbedIn) (EmbedOut, error) { … })
//	api := app.LoadBalanced("api", flash.ResourceConfig{})
//	flash.Route(api, "POST /process", "process", func(ctx context.Context, in ProcessIn) (ProcessOut, error) {
//		v, err := embed.Call(ctx, EmbedIn{Text: in.Text}) // in-process or over HTTP, as the manifest says
//		…
//	})
//	app.Main()
//
// The same binary serves every role; Main picks it from the environment
// (SPEC §3): a child for FLASH_RESOURCE_NAME, the mothership for
// FLASH_IS_MOTHERSHIP=true, else standalone (everything in one process).
package flash

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/locate"
	"github.com/flash-go/flash/manifest"
)

// App is a set of resources and the functions registered on them.
// Register everything before Main or Run; registration is not safe for
// concurrent use.
type App struct {
	name      string
	resources []*Resource
	funcs     []funcInfo
	problems  []string // registration mistakes, reported all at once at start

	objects []*objectType
	host    *objectHost     // the object instances this process holds
	locator *locate.Locator // which replica URL is which replica, for object calls

	identity atomic.Pointer[string]
	caller   atomic.Pointer[child.Caller] // nil: every call runs in-process
	table    atomic.Pointer[child.Table]  // the caller's routing table (its Router keeps it here)
}

// ResourceConfig is a resource's deployment configuration, in the seed's
// manifest keys. The zero value is a valid default.
type ResourceConfig struct {
	// Type is the manifest resource_type; default "LiveServerless" for queue
	// resources and "LiveLoadBalancer" for load-balanced ones.
	Type string
	// WorkersMin > 1 makes the local provider start that many replicas.
	// With a "scalerType" in Extra the resource autoscales between
	// WorkersMin (0: down to zero) and WorkersMax, locally as on Runpod
	// (docs/autoscaling.md).
	WorkersMin int
	// WorkersMax bounds the replicas of an autoscaled resource.
	WorkersMax int
	// GPUIDs is the seed's gpuIds, e.g. "AMPERE_16,ADA_24".
	GPUIDs string
	// ImageName is the seed's imageName (Runpod provider).
	ImageName string
	// Env is extra environment for the resource's endpoints.
	Env map[string]string
	// Extra holds any other manifest keys to write on the resource entry.
	Extra map[string]any
}

// Resource is a named deployment unit: at run time one endpoint (or several
// replicas) serves its functions.
type Resource struct {
	app          *App
	name         string
	loadBalanced bool
	cfg          ResourceConfig
}

// Name returns the resource's name.
func (r *Resource) Name() string { return r.name }

// NewApp returns an empty app. name becomes the manifest's project_name and
// tags every endpoint a provider creates for it.
func NewApp(name string) *App {
	a := &App{name: name, host: newObjectHost(), locator: locate.New(nil)}
	if name == "" || !manifest.ValidResourceName(name) {
		a.problem("app name %q must be 1-63 characters of A-Z a-z 0-9 _ . -", name)
	}
	return a
}

// Name returns the app's name.
func (a *App) Name() string { return a.name }

// Identity returns the resource this process serves ("standalone" when it
// serves everything, "mothership" on the mothership, "" before Run).
func (a *App) Identity() string {
	if p := a.identity.Load(); p != nil {
		return *p
	}
	return ""
}

// Queue adds a queue-based resource: its functions are invoked as jobs
// through the Runpod serverless API shape (/run, /runsync, /status/{id}, …).
func (a *App) Queue(name string, cfg ResourceConfig) *Resource {
	return a.addResource(name, false, cfg)
}

// LoadBalanced adds a load-balanced resource: its functions are plain HTTP
// routes, registered with Route.
func (a *App) LoadBalanced(name string, cfg ResourceConfig) *Resource {
	return a.addResource(name, true, cfg)
}

func (a *App) addResource(name string, lb bool, cfg ResourceConfig) *Resource {
	if slices.ContainsFunc(a.resources, func(r *Resource) bool { return r.name == name }) {
		a.problem("resource %q is added twice", name)
	}
	r := &Resource{app: a, name: name, loadBalanced: lb, cfg: cfg}
	a.resources = append(a.resources, r)
	return r
}

func (a *App) problem(format string, args ...any) {
	a.problems = append(a.problems, fmt.Sprintf(format, args...))
}

// Func is a handle on a registered function. Call it from anywhere in the
// app: it runs in this process or on the endpoint that owns it.
type Func[In, Out any] struct {
	app    *App
	name   string
	fn     func(context.Context, In) (Out, error)
	route  atomic.Pointer[cachedRoute]
	remote *remoteTarget // set by Bind: every call goes through a Client
}

// cachedRoute is a Func's route as read from one routing table: valid as
// long as that table is the one in use.
type cachedRoute struct {
	table  *child.Table
	target *child.Target
	err    error
	local  bool // target and err nil: the function runs in this process
}

// Name returns the function's name.
func (f *Func[In, Out]) Name() string { return f.name }

// Call runs the function with in, here or remotely as the manifest routes it
// (SPEC §5.2). Errors from a remote call are the typed errors of package
// flasherr, re-exported here (ErrLoopDetected, *RemoteError, …).
func (f *Func[In, Out]) Call(ctx context.Context, in In) (Out, error) {
	// A call routed here by the table in use: one atomic load of the
	// table and a pointer compare (a Bound Func never caches a route).
	if c := f.route.Load(); c != nil && c.local && c.table == f.app.table.Load() {
		return f.fn(ctx, in)
	}
	return f.call(ctx, in)
}

func (f *Func[In, Out]) call(ctx context.Context, in In) (Out, error) {
	if f.remote != nil {
		var out Out
		err := f.remote.invoke(ctx, in, &out)
		return out, err
	}
	rt := f.app.caller.Load()
	if rt == nil {
		return f.fn(ctx, in)
	}
	target, err := f.lookup(ctx, rt)
	if err != nil {
		var zero Out
		return zero, err
	}
	if target == nil {
		return f.fn(ctx, in)
	}
	var out Out
	err = rt.Invoke(ctx, target, in, &out)
	return out, err
}

// lookup routes f: from f's cache while the routing table it came from is
// in use (a pointer compare, no map lookup), else from the table and
// cached; before the first table, as the Caller says (it may wait).
func (f *Func[In, Out]) lookup(ctx context.Context, rt *child.Caller) (*child.Target, error) {
	tbl := f.app.table.Load()
	if tbl == nil {
		return rt.Route(ctx, f.name)
	}
	if c := f.route.Load(); c != nil && c.table == tbl {
		return c.target, c.err
	}
	target, err := tbl.Route(f.name)
	f.route.Store(&cachedRoute{table: tbl, target: target, err: err, local: target == nil && err == nil})
	return target, err
}

// funcInfo is what the app keeps of every registered function, untyped.
type funcInfo struct {
	name     string
	resource *Resource
	method   string // LB only
	path     string // LB only
	module   string // Go package of the function, for the manifest
	bind     binder
	example  json.RawMessage // a sample input (see exampleInput)
	isClass  bool            // a stateful object (RegisterObject), served by objectFuncs
}

// Register adds a queue-based function to r under name and returns its handle.
func Register[In, Out any](r *Resource, name string, fn func(context.Context, In) (Out, error)) *Func[In, Out] {
	if r.loadBalanced {
		r.app.problem("function %q: resource %q is load-balanced; use flash.Route", name, r.name)
	}
	return register(r, name, "", "", fn)
}

// Route adds a load-balanced function to r, served at route ("POST /process",
// "GET /stats/{window}"). Path parameters bind to the fields of In with the
// same JSON name.
func Route[In, Out any](r *Resource, route, name string, fn func(context.Context, In) (Out, error)) *Func[In, Out] {
	method, path, ok := manifest.SplitRoute(route)
	if !ok {
		r.app.problem("function %q: route %q must be \"METHOD /path\"", name, route)
	}
	if !r.loadBalanced {
		r.app.problem("function %q: resource %q is queue-based; use flash.Register", name, r.name)
	}
	return register(r, name, method, path, fn)
}

func register[In, Out any](r *Resource, name, method, path string, fn func(context.Context, In) (Out, error)) *Func[In, Out] {
	a := r.app
	if fn == nil {
		a.problem("function %q: nil function", name)
	}
	if slices.ContainsFunc(a.funcs, func(f funcInfo) bool { return f.name == name }) {
		a.problem("function %q is registered twice (function names are unique across the app)", name)
	}
	b, err := newBinder(fn, path)
	if err != nil {
		a.problem("function %q: %v", name, err)
	}
	a.funcs = append(a.funcs, funcInfo{name: name, resource: r, method: method, path: path, module: modulePath(fn), bind: b, example: exampleInput(reflect.TypeFor[In]())})
	return &Func[In, Out]{app: a, name: name, fn: fn}
}

// modulePath returns the Go package that defines fn, for the manifest's "module".
func modulePath(fn any) string {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func || v.IsNil() {
		return ""
	}
	full := runtime.FuncForPC(v.Pointer()).Name() // e.g. "main.embed" or "example.com/x.F.func1"
	slash := strings.LastIndexByte(full, '/')
	if dot := strings.IndexByte(full[slash+1:], '.'); dot >= 0 {
		return full[:slash+1+dot]
	}
	return full
}

// Errors of a call, re-exported from package flasherr so that callers need
// only this package (errors.Is / errors.As work on either).
var (
	ErrFunctionNotFound    = flasherr.ErrFunctionNotFound
	ErrRemoteFunction      = flasherr.ErrRemoteFunction
	ErrSerialization       = flasherr.ErrSerialization
	ErrInvalidManifest     = flasherr.ErrInvalidManifest
	ErrManifestUnavailable = flasherr.ErrManifestUnavailable
	ErrEndpointNotReady    = flasherr.ErrEndpointNotReady
	ErrLoopDetected        = flasherr.ErrLoopDetected
	ErrTimeout             = flasherr.ErrTimeout
	ErrCircuitOpen         = flasherr.ErrCircuitOpen
	ErrOverloaded          = flasherr.ErrOverloaded
)

// ObjectLostError is a call to an object's instance that does not exist
// (any more), answered by the replica or the gateway asked; it matches
// ErrObjectLost. Across endpoints it arrives as a *RemoteError of type
// "ObjectLost", which matches ErrObjectLost too.
type ObjectLostError = flasherr.ObjectLostError

// StatusError is an answer from another endpoint that was not a result.
type StatusError = flasherr.StatusError

// Retryable reports whether a failed call is worth retrying later as it
// stands (the target was not ready, unavailable or overloaded).
func Retryable(err error) bool { return flasherr.Retryable(err) }

// RemoteError is a function that failed on another endpoint.
type RemoteError = flasherr.RemoteError

// OutputError is a remote job that completed without a flash result (a
// Python worker's output, say); it matches ErrSerialization.
type OutputError = flasherr.OutputError

// NotReadyError is a call to a resource with no endpoint yet, or a failed one.
type NotReadyError = flasherr.NotReadyError

// ErrInvalidApp is wrapped by the error Manifest and Run return when the
// app's registrations are invalid; the message lists every problem.
var ErrInvalidApp = errors.New("invalid app")
