// Package mothership is flash's control plane (SPEC §4): it serves the
// published manifest to children (GET /manifest with ETag and long poll),
// keeps that manifest in step with the state store, reconciles the endpoints
// that should exist with those that do, reports status, accepts deploys and
// forwards the Runpod API shape to queue-based resources.
//
// Reads never wait on storage or on reconciliation: every answer comes from an
// immutable in-memory snapshot that a publish or a refresh replaces by one
// atomic pointer swap.
package mothership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/flash-go/flash/internal/locate"
	"github.com/flash-go/flash/internal/spanring"
	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// Defaults used when the Config field is zero (SPEC §9).
const (
	DefaultTTL           = 300 * time.Second
	DefaultMaxWait       = 300 * time.Second
	DefaultParallelism   = 4
	DefaultDeployTimeout = 2 * time.Minute
	DefaultArtifactDir   = ".flash/artifacts"
	// DefaultDeployReadTimeout bounds reading a deploy's body.
	DefaultDeployReadTimeout = 2 * time.Minute
	// DefaultMaxArtifactUnpacked bounds what an artifact unpacks to.
	DefaultMaxArtifactUnpacked = 1 << 30
	// DefaultMaxResources bounds the resources of a deployed manifest.
	DefaultMaxResources = 32
	// MaxResourcesLimit bounds Config.MaxResources itself: each resource is
	// at least one process (local provider) or endpoint.
	MaxResourcesLimit = 1000
	// DefaultMaxReplicas bounds one resource's replicas (workersMin).
	DefaultMaxReplicas = 10
	// DefaultMaxInstances bounds the child instances remembered at once.
	DefaultMaxInstances = 10000
)

// Limits on what POST /flash/deploy accepts.
const (
	MaxManifestBody = 16 << 20  // a manifest sent as application/json
	MaxArtifactBody = 512 << 20 // a build artifact (tar or tar.gz)
)

// ErrBusy is returned when a deploy is asked for while another one runs.
var ErrBusy = errors.New("mothership: a deploy is already running")

// Config configures a Mothership. Zero values mean the documented defaults.
type Config struct {
	// App is the app name (the manifest's project_name). Deploys of another
	// project are refused.
	App string
	// Store holds published manifests, deployment records and child reports. Required.
	// A *Fenced store is shared with other motherships: see Lead.
	Store store.Store
	// URL is where this mothership serves, as other motherships sharing the
	// store reach it (followers send deploys there when it leads).
	URL string
	// Provider deploys endpoints. Nil means FLASH_PROVIDER=none: publish and
	// serve only, no reconciliation of endpoints.
	Provider provider.Provider
	// ManifestPath is the local manifest file: written atomically with every
	// newly seen version, and served at boot when the store is unreachable.
	// Empty disables both.
	ManifestPath string
	// TTL is the store re-read period (also the safety net when the store
	// notifies). Default 300s.
	TTL time.Duration
	// MaxWait caps a long poll's wait. Default 300s.
	MaxWait time.Duration
	// Parallelism bounds concurrent provider calls in a reconciliation. Default 4.
	Parallelism int
	// DeployTimeout bounds each resource's deploy, and each undeploy. Default 2m.
	DeployTimeout time.Duration
	// ArtifactDir is where POST /flash/deploy keeps uploaded binaries, as
	// ArtifactDir/<sha256>/app. Default ".flash/artifacts".
	ArtifactDir string
	// DeployReadTimeout bounds reading the body of POST /flash/deploy; the
	// body is read and checked before the deploy lock is taken. Default 2m.
	DeployReadTimeout time.Duration
	// MaxArtifactUnpacked bounds the unpacked size of a deployed artifact
	// (a larger one is refused with 413). Default 1 GiB.
	MaxArtifactUnpacked int64
	// MaxResources and MaxReplicas bound what a deploy may start: resources
	// in the manifest, and replicas (workersMin) of each. A deploy asking for
	// more is refused before anything starts. Defaults 32 and 10;
	// MaxResources at most MaxResourcesLimit (FLASH_MAX_RESOURCES).
	MaxResources int
	MaxReplicas  int
	// MaxInstances bounds the child instances remembered at once; instances
	// that stopped reporting expire first. Default 10000.
	MaxInstances int
	// EnvVisible lists env variable names whose values GET /manifest shows
	// (URL credentials still masked), besides LOG_LEVEL, TZ, LANG,
	// GOMAXPROCS, GOMEMLIMIT and GODEBUG; every other env value is "***".
	EnvVisible []string
	// APIKey is the app's key: the autoscaler sends it to read the load of
	// replicas. Empty when endpoints require none.
	APIKey string
	// ScaleTick is how often the autoscaler reads the load of autoscaled
	// resources (docs/autoscaling.md). Default 500 ms.
	ScaleTick time.Duration
	// Transport carries gateway requests to resources. Default:
	// wire.NewTransport().
	Transport http.RoundTripper
	// Logger receives the mothership's logs. Default slog.Default().
	Logger *slog.Logger

	// Now returns the current time (tests). Default time.Now.
	Now func() time.Time
	// Rand returns a number in [0, 1) used to shorten long polls (tests).
	// Default math/rand/v2.Float64.
	Rand func() float64
	// Tracer, when not nil, makes a span of each reconciliation and step.
	Tracer *telemetry.Tracer
	// Metrics, when not nil, records reconcile steps, deploys and parked polls.
	Metrics *telemetry.Metrics
	// Traces, when not nil, collects the topology's spans (flash run
	// --trace): the mothership answers OTLP/HTTP exports at POST /v1/traces
	// and serves the traces at /flash/traces. Nil: no such route.
	Traces *spanring.Ring
}

// Mothership is the control plane of one app. Create it with New, mount its
// routes with Register, keep it in step with the store with Run.
type Mothership struct {
	cfg       Config
	log       *slog.Logger
	store     store.Store
	prov      provider.Provider
	transport http.RoundTripper
	proxy     http.Handler

	// Locks, in the order they are taken (never the reverse):
	//
	//	deploying → publishMu → reconciler.mu → mu
	//	publishMu → swapMu → fileMu
	//
	// deploying is a one-token channel held by the one reconciliation that
	// runs (a deploy, or the boot's); publishMu serialises publishing (see
	// publish), which refreshes the snapshot under it after a conflict.
	// inst.mu, events.mu and reconciler.eventMu are leaves: nothing is
	// taken while they are held.
	deploying chan struct{}
	publishMu sync.Mutex
	swapMu    sync.Mutex // serialises snapshot swaps
	fileMu    sync.Mutex // guards written
	mu        sync.Mutex // guards deployed

	snap    atomic.Pointer[snapshot] // what GET /manifest serves
	stop    chan struct{}            // closed when Run ends: parked long polls answer
	stopMu  sync.Once
	uploads chan struct{} // bounds deploy bodies read at once

	refreshes singleflight.Group
	written   int64                        // newest version written to ManifestPath
	deployed  map[string]provider.Endpoint // resource → endpoint of its published deployment

	inst    instances
	events  endpointEvents
	trail   *deployTrail // recent reconcile events, for the dashboard
	edges   *edgeStats   // children's outgoing calls, for the dashboard
	jobs    jobReplicas  // gateway: which replica holds a job
	scale   *autoscaler
	objects *locate.Locator // gateway: which replica URL is which replica, for object calls
	rr      atomic.Uint64   // gateway round robin over replicas
	parked  atomic.Int64    // long polls waiting now
	due     deadlines       // when parked long polls give up
	mask    envMask

	fence     *Fenced                         // nil: the store is not shared, this mothership leads alone
	leaderCtx atomic.Pointer[context.Context] // while leading: ends with the leadership
}

// New returns a Mothership for cfg. It reads the latest published manifest
// from the store (bounded by ctx); when the store cannot be read it serves the
// local manifest file instead, and logs why. It starts no goroutine.
func New(ctx context.Context, cfg Config) (*Mothership, error) {
	if cfg.Store == nil {
		return nil, errors.New("mothership: Config.Store is required")
	}
	orDefault(&cfg.TTL, DefaultTTL)
	orDefault(&cfg.MaxWait, DefaultMaxWait)
	orDefault(&cfg.Parallelism, DefaultParallelism)
	orDefault(&cfg.DeployTimeout, DefaultDeployTimeout)
	orDefault(&cfg.DeployReadTimeout, DefaultDeployReadTimeout)
	orDefault(&cfg.MaxArtifactUnpacked, DefaultMaxArtifactUnpacked)
	orDefault(&cfg.MaxResources, DefaultMaxResources)
	orDefault(&cfg.MaxReplicas, DefaultMaxReplicas)
	orDefault(&cfg.MaxInstances, DefaultMaxInstances)
	orDefault(&cfg.ScaleTick, DefaultScaleTick)
	if cfg.MaxResources > MaxResourcesLimit {
		return nil, fmt.Errorf("mothership: Config.MaxResources %d is above the limit of %d", cfg.MaxResources, MaxResourcesLimit)
	}
	if cfg.ArtifactDir == "" {
		cfg.ArtifactDir = DefaultArtifactDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Transport == nil {
		cfg.Transport = wire.NewTransport()
	}
	m := &Mothership{
		cfg:       cfg,
		log:       cfg.Logger,
		store:     cfg.Store,
		prov:      cfg.Provider,
		transport: cfg.Transport,
		stop:      make(chan struct{}),
		deployed:  make(map[string]provider.Endpoint),
		deploying: make(chan struct{}, 1),
		uploads:   make(chan struct{}, maxUploads),
		inst:      newInstances(cfg.MaxInstances, cfg.Logger),
		jobs:      newJobReplicas(cfg.Now),
		objects:   locate.New(cfg.Now),
		mask:      newEnvMask(cfg.EnvVisible),
		trail:     newDeployTrail(),
		scale:     newAutoscaler(),
		edges:     newEdgeStats(),
	}
	m.fence, _ = cfg.Store.(*Fenced)
	m.proxy = m.newProxy()
	m.snap.Store(emptySnapshot())
	m.boot(ctx)
	return m, nil
}

// orDefault sets *v to def when it is zero or negative.
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Register mounts the mothership's routes through handle, typically an
// endpoint server's Handle method (which adds auth, logging and metrics).
func (m *Mothership) Register(handle func(pattern string, h http.Handler)) {
	handle("GET /manifest", http.HandlerFunc(m.serveManifest))
	handle("GET /flash/status", http.HandlerFunc(m.serveStatus))
	handle("POST /flash/invalidate", http.HandlerFunc(m.serveInvalidate))
	handle("POST /flash/deploy", http.HandlerFunc(m.serveDeploy))
	m.registerUI(handle)
	m.registerGateway(handle)
}

// Current returns the served manifest and its version. The manifest is nil
// when none is known; version 0 with a manifest means it came from the local
// file because the store was unreachable.
func (m *Mothership) Current() (*manifest.Manifest, int64) {
	s := m.snap.Load()
	return s.mf, s.version
}

// Run keeps the served manifest in step with the store until ctx ends: it
// follows the store's change notification when the store is a
// store.Watcher, and re-reads it every TTL in any case. It also writes child
// reports to the store. It returns nil when ctx ends; parked long polls are
// then answered at once.
func (m *Mothership) Run(ctx context.Context) error {
	defer m.stopMu.Do(func() { close(m.stop) })
	var wg sync.WaitGroup
	wg.Go(func() { m.inst.flushLoop(ctx, m.store, m.cfg.Now) })
	wg.Go(func() { m.autoscale(ctx) })
	m.follow(ctx)
	wg.Wait()
	if t, ok := m.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}
