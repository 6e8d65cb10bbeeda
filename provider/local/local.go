// Package local is the provider that runs each resource as child processes of
// the app binary on this machine (SPEC §6.1).
//
// Every process is started in its own process group with its output appended to
// LogDir/<resource>.log, so it neither receives the terminal's Ctrl-C nor dies
// with the mothership. Each one is recorded in the state store, so that a
// restarted mothership adopts what is still running instead of starting
// duplicates, and so that `flash undeploy` can find and stop it.
//
// The package uses process groups, signals and /proc, so it is for Unix (Linux
// in particular: on systems without /proc, liveness falls back to signal 0).
// It builds everywhere, so that apps do; elsewhere New returns ErrUnsupported.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/provider"
)

// ProviderName is the value of store.Endpoint.Provider for records of this package.
const ProviderName = "local"

// Defaults used when the Config field is zero.
const (
	DefaultHealthTimeout = 30 * time.Second
	DefaultLogMaxSize    = 64 << 20 // bytes
	DefaultLogKeep       = 3
	DefaultStopGrace     = 10 * time.Second
)

// Errors callers can branch on with errors.Is.
var (
	// ErrClosed means the provider was used after Close.
	ErrClosed = errors.New("local: provider closed")
	// ErrUnhealthy means a process did not answer GET /ping with 200 within HealthTimeout.
	ErrUnhealthy = errors.New("local: endpoint not healthy in time")
	// ErrUnsupported is returned by New on systems without process groups and signals.
	ErrUnsupported = errors.New("local: the local provider runs on unix only; use FLASH_PROVIDER=none or another provider here")
	// ErrExited means a process exited before it became healthy.
	ErrExited = errors.New("local: process exited before it was healthy")
)

// Event kinds (those of package provider).
const (
	EventExited    = provider.EventExited    // a monitored process ended without being asked to
	EventRestarted = provider.EventRestarted // a process was started again after an exit
	EventAdopted   = provider.EventAdopted   // Adopt took over a running process
	EventGone      = provider.EventGone      // Adopt found a recorded process dead
)

// Event reports something that happened to one replica of a deployment.
type Event struct {
	Resource string
	ID       string // deployment id (provider.Endpoint.ID)
	Replica  int    // replica index within the deployment
	Kind     string // one of the Event… constants
	PID      int
	URL      string
	Err      error // why a process exited or could not be restarted; may be nil
	Restarts int   // restarts of this replica so far (by this Provider)
	Time     time.Time
}

// Result is the outcome of stopping one deployment in UndeployAll.
type Result struct {
	Endpoint provider.Endpoint
	Err      error // nil when every process of the endpoint is gone and its records deleted
}

// Config configures a Provider. Zero values mean the documented defaults.
type Config struct {
	// App is the app name. It tags every record and every deployment id; the
	// provider never lists or touches another app's endpoints. Required.
	App string
	// Binary is the app binary to start when Spec.Artifact is empty.
	Binary string
	// LogDir receives <resource>.log (appended to). Default: the app's logs
	// directory under the working directory's .flash (internal/layout).
	LogDir string
	// LogMaxSize is the size beyond which a log is rotated: copied to
	// <resource>.log.1 (older copies shift to .2, …) and emptied. Default 64 MiB.
	LogMaxSize int64
	// LogKeep is how many rotated copies are kept. Default 3.
	LogKeep int
	// Env is the base environment for every child (FLASH_MOTHERSHIP_URL,
	// FLASH_API_KEY, …), on top of this process's environment.
	Env map[string]string
	// Store records each process so that it can be adopted and undeployed later. Required.
	Store provider.EndpointStore
	// HealthTimeout bounds the wait for GET {url}/ping to answer 200. Default 30s.
	HealthTimeout time.Duration
	// StopGrace is the wait between SIGTERM and SIGKILL. Default 10s.
	StopGrace time.Duration
	// Logger receives the provider's logs. Default slog.Default().
	Logger *slog.Logger
	// OnChange is called when a restart changed an endpoint's URLs, so that the
	// mothership republishes. It runs on a monitoring goroutine: keep it short
	// and do not call Undeploy, UndeployAll or Close from it.
	OnChange func(provider.Endpoint)
	// OnEvent is called for restarts, exits and adoptions, with the same rules as OnChange.
	OnEvent func(Event)
}

// Provider runs endpoints as local processes. It is safe for concurrent use.
type Provider struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client

	ctx    context.Context // ends on Close; stops every monitor
	cancel context.CancelFunc
	wg     sync.WaitGroup // monitors

	// Tunables, fixed after New (tests shorten them).
	pollEvery   time.Duration // liveness poll of adopted processes
	rotateEvery time.Duration // log size check
	minBackoff  time.Duration
	maxBackoff  time.Duration
	resetAfter  time.Duration // a process that ran this long restarts with minBackoff again

	adoptMu sync.Mutex // serialises Adopt
	rotator sync.Once  // starts rotateLogs with the first monitor

	mu        sync.Mutex
	closed    bool
	deps      map[string]*deployment   // live deployments by id
	deploying map[string]chan struct{} // deployments in Deploy; closed when it returns
	stopping  map[string]chan struct{} // deployments being undeployed; closed when done
}

var _ provider.Provider = (*Provider)(nil)

// New returns a Provider for cfg. It starts nothing: call Adopt to take over the
// processes a previous mothership left running.
func New(cfg Config) (*Provider, error) {
	if !supported {
		return nil, ErrUnsupported
	}
	if cfg.App == "" {
		return nil, errors.New("local: Config.App is required")
	}
	if cfg.Store == nil {
		return nil, errors.New("local: Config.Store is required")
	}
	if cfg.LogDir == "" {
		cfg.LogDir = layout.In("").App(cfg.App).Logs()
	}
	if cfg.LogMaxSize <= 0 {
		cfg.LogMaxSize = DefaultLogMaxSize
	}
	if cfg.LogKeep <= 0 {
		cfg.LogKeep = DefaultLogKeep
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Provider{
		cfg: cfg,
		log: log.With("provider", ProviderName, "app", cfg.App),
		// No keep-alive: health checks are rare and must leave no idle connection behind.
		client:      &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		ctx:         ctx,
		cancel:      cancel,
		pollEvery:   time.Second,
		rotateEvery: 5 * time.Second,
		minBackoff:  500 * time.Millisecond,
		maxBackoff:  30 * time.Second,
		resetAfter:  time.Minute,
		deps:        make(map[string]*deployment),
		deploying:   make(map[string]chan struct{}),
		stopping:    make(map[string]chan struct{}),
	}, nil
}

// Close stops monitoring and waits for the monitoring goroutines to end. It
// does not stop the processes: they keep serving and a later Provider adopts
// them. Until each process we started exits, one goroutine stays blocked in
// wait(2) for it, so that it is reaped and never left a zombie.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	return nil
}

// List returns this app's live endpoints, one per deployment, sorted by id.
func (p *Provider) List(ctx context.Context) ([]provider.Endpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	out := make([]provider.Endpoint, 0, len(p.deps))
	for _, d := range p.deps {
		out = append(out, d.endpointLocked())
	}
	sortEndpoints(out)
	return out, nil
}

func (p *Provider) checkOpen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return nil
}

// emit logs e and hands it to OnEvent.
func (p *Provider) emit(e Event) {
	e.Time = time.Now()
	level := slog.LevelInfo
	if e.Kind == EventExited || e.Kind == EventGone {
		level = slog.LevelWarn
	}
	p.log.Log(context.Background(), level, "endpoint "+e.Kind,
		"resource", e.Resource, "id", e.ID, "replica", e.Replica, "pid", e.PID,
		"url", e.URL, "restarts", e.Restarts, "err", e.Err)
	if p.cfg.OnEvent != nil {
		p.cfg.OnEvent(e)
	}
}

// validResource is the manifest's resource-name rule (SPEC §2.2). The name
// becomes a file name and part of ids, so it is checked here too.
var validResource = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`).MatchString

// newID returns a fresh deployment id "<app>/<resource>/<random>". The app is
// part of the id so that ownership can be told from an Endpoint alone.
func (p *Provider) newID(resource string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return p.cfg.App + "/" + resource + "/" + hex.EncodeToString(b)
}

// owns reports whether id is a deployment id of this app.
func (p *Provider) owns(id string) bool {
	rest, ok := strings.CutPrefix(id, p.cfg.App+"/")
	if !ok {
		return false
	}
	res, suffix, ok := strings.Cut(rest, "/")
	return ok && validResource(res) && suffix != "" && !strings.Contains(suffix, "/")
}

func sortEndpoints(es []provider.Endpoint) {
	slices.SortFunc(es, func(a, b provider.Endpoint) int { return strings.Compare(a.ID, b.ID) })
}

// DeployError is returned by Deploy when the endpoint did not become healthy.
// It wraps ErrUnhealthy, ErrExited, ErrClosed or the context's error.
type DeployError struct {
	Resource string
	LogFile  string
	LogTail  string // the last lines the processes wrote during this deploy
	Err      error
}

// Error describes the failure, followed by the end of the log when there is one.
func (e *DeployError) Error() string {
	msg := fmt.Sprintf("local: deploy %s: %v", e.Resource, e.Err)
	if e.LogTail != "" {
		msg += fmt.Sprintf("\nlast lines of %s:\n%s", e.LogFile, e.LogTail)
	}
	return msg
}

// Unwrap returns the cause.
func (e *DeployError) Unwrap() error { return e.Err }
