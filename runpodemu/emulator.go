// Package runpodemu is a local emulator of Runpod's serverless platform: the
// REST v2 management API (endpoints, templates, network volumes), the job
// API /v2/{endpoint_id}/… with a real queue, the worker-facing API that
// Runpod's worker SDK speaks, load-balanced endpoints behind a proxy, and
// workers as local processes scaled by the endpoint's rules. It follows
// ../shared/RUNPOD.md and RUNPOD_REST_V2.md; where those mark a fact
// uncertain, it does what Runpod's own SDKs expect, and says so where it
// decides.
//
// Where RUNPOD.md marks a fact uncertain, the emulator chooses as follows
// (each choice is also noted where it is made):
//   - the job API accepts a Bearer or a raw key; the worker API each
//     worker's own key, raw, as the worker SDK sends it, and the key (not
//     the path, which may carry a literal $RUNPOD_POD_ID) names the worker;
//   - a job past its execution timeout ends TIMED_OUT (the job-states page)
//     and its worker is told through the stop channel; past its TTL a job is
//     gone (404), as the SDK clients then see it;
//   - job-done bodies are JSON whatever their Content-Type; a non-string
//     error fails the job with its JSON text; results for jobs a worker no
//     longer holds are answered 200 and dropped;
//   - a crashed or lost worker's jobs go back to the queue in their order;
//   - template names are unique (v1's rule; the SDKs use names as handles);
//     a template an endpoint was made from cannot be deleted;
//   - /health's worker keys: initializing = started, not yet polling;
//     idle = ready = polling without a job; running = holding a job;
//     unhealthy = reported so by its heartbeat;
//   - "no workers available" is answered 503; REQUEST_COUNT queue endpoints,
//     which have no idle timeout in v2, use v1's default of 5 s.
//
// Not emulated: GraphQL, REST v1, /v2/registries and private pulls, the
// catalog routes, rate limits, and job ownership by heartbeat (a worker's
// death is seen by its process ending).
//
// It is a separate product: it imports only the standard library and
// flash's internal helpers, and speaks nothing but HTTP to the rest.
package runpodemu

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/atomicfile"
)

// Config configures an emulator. Zero durations mean Runpod's values.
type Config struct {
	Dir    string       // state file, API key, volumes, worker scratch dirs and logs (required)
	APIKey string       // the account's API key; "" = read from Dir/api_key, or made and written there
	Logger *slog.Logger // nil = discard

	Tick          time.Duration // scaler, sweeper and health-check period (default 500 ms)
	TakeHold      time.Duration // how long job-take and job-stop long polls are held (default 30 s, under the SDK's 90 s)
	PingInterval  time.Duration // RUNPOD_PING_INTERVAL given to workers (default 10 s)
	LostAfter     time.Duration // a worker that pinged once and then is silent this long is lost (default 3 intervals)
	RunRetention  time.Duration // how long /run results are kept (default 30 min)
	SyncRetention time.Duration // how long /runsync results are kept (default 1 min)
	StopGrace     time.Duration // SIGTERM → SIGKILL (default 10 s)
	LBWait        time.Duration // how long a load-balanced request waits for a worker (default 2 min)
	WebhookRetry  time.Duration // pause between webhook attempts (default 10 s)
	MaxQueue      int           // queued jobs per endpoint (default 10 000); more → 429
	MaxJobs       int           // jobs kept per endpoint, queued or finished (default 50 000); more → 429
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Tick, 500*time.Millisecond)
	def(&c.TakeHold, 30*time.Second)
	def(&c.PingInterval, 10*time.Second)
	if c.PingInterval < time.Second {
		c.PingInterval = time.Second // the SDK integer-divides by 1000: less is a busy loop
	}
	def(&c.LostAfter, 3*c.PingInterval+c.TakeHold)
	def(&c.RunRetention, 30*time.Minute)
	def(&c.SyncRetention, time.Minute)
	def(&c.StopGrace, 10*time.Second)
	def(&c.LBWait, 2*time.Minute)
	def(&c.WebhookRetry, 10*time.Second)
	if c.MaxQueue <= 0 {
		c.MaxQueue = 10000
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = 50000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Bounds on the account's resources.
const (
	maxEndpoints = 256
	maxTemplates = 256
	maxVolumes   = 64
	maxReleases  = 50
)

// Emulator is a running local Runpod. Create it with Start.
type Emulator struct {
	cfg  Config
	log  *slog.Logger
	key  string
	url  string // http://127.0.0.1:port
	srv  *http.Server
	ln   net.Listener
	mgmt *http.ServeMux
	jobs *http.ServeMux

	lbTransport *http.Transport // to load-balanced workers

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	loops  sync.WaitGroup // supervisor, webhooks, health checks, process reapers
	hooks  chan webhook

	mu        sync.Mutex
	endpoints []*endpointRecord // creation order
	templates []*Template       // creation order
	volumes   []*Volume
	runs      map[string]*endpointRun // by endpoint id
	byKey     map[string]*worker      // worker API key → worker
	closed    bool
}

// Start loads the state in cfg.Dir, listens on addr (":0" or "127.0.0.1:0"
// for a free port) and serves until Close.
func Start(cfg Config, addr string) (*Emulator, error) {
	cfg.defaults()
	if cfg.Dir == "" {
		return nil, errors.New("runpodemu: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("runpodemu: %w", err)
	}
	cfg.Dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runpodemu: %w", err)
	}
	e := &Emulator{cfg: cfg, log: cfg.Logger, runs: map[string]*endpointRun{}, byKey: map[string]*worker{},
		hooks: make(chan webhook, maxPendingHooks), lbTransport: newLBTransport()}
	if e.key, err = loadKey(dir, cfg.APIKey); err != nil {
		return nil, err
	}
	if err := e.load(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("runpodemu: listen: %w", err)
	}
	e.ln = ln
	e.url = "http://" + loopbackAddr(ln.Addr())
	e.routes()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return e.ctx }}
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("runpodemu: serve", "err", err)
		}
	}()
	for range webhookSenders {
		e.loops.Add(1)
		go e.sendWebhooks()
	}
	e.loops.Add(1)
	go e.supervise()
	e.log.Info("runpod emulator started", "url", e.url, "dir", dir)
	return e, nil
}

// loopbackAddr turns a wildcard listen address into one a client can dial.
func loopbackAddr(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// URL is the emulator's base URL: management at URL/v2/serverless…, jobs at
// URL/v2/{endpoint_id}/…, load-balanced endpoints at URL/lb/{endpoint_id}/….
func (e *Emulator) URL() string { return e.url }

// APIKey is the account's key, accepted as a Bearer token.
func (e *Emulator) APIKey() string { return e.key }

// Close stops serving, stops every worker (SIGTERM, then SIGKILL after the
// grace period), keeps the jobs for the next start and waits for every
// goroutine it started.
func (e *Emulator) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	var all []*worker
	for _, run := range e.runs {
		for _, w := range run.workers {
			all = append(all, w)
		}
	}
	for _, w := range all {
		e.stopWorkerLocked(w, "emulator stopping")
	}
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	e.cancel()
	e.loops.Wait()
	e.lbTransport.CloseIdleConnections()
	if serr := e.saveJobs(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// loadKey returns the configured key, else the one in dir/api_key, else a
// new one written there.
func loadKey(dir, key string) (string, error) {
	if key != "" {
		return key, nil
	}
	path := filepath.Join(dir, "api_key")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	key = "rpa_" + strings.ToUpper(randomID(40))
	if err := atomicfile.Write(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("runpodemu: write api key: %w", err)
	}
	return key, nil
}

// randomID returns n random characters of [a-z0-9], as Runpod's ids look.
func randomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// newUUID returns a random UUID (version 4) as text.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// persisted is the state file: what survives a restart.
type persisted struct {
	Endpoints []*endpointRecord `json:"endpoints"`
	Templates []*Template       `json:"templates"`
	Volumes   []*Volume         `json:"volumes"`
}

func (e *Emulator) statePath() string { return filepath.Join(e.cfg.Dir, "state.json") }

func (e *Emulator) load() error {
	b, err := os.ReadFile(e.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runpodemu: read state: %w", err)
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("runpodemu: state file %s is corrupt: %w", e.statePath(), err)
	}
	e.endpoints, e.templates, e.volumes = p.Endpoints, p.Templates, p.Volumes
	for _, ep := range e.endpoints {
		e.runs[ep.ID] = newEndpointRun(ep)
	}
	return e.loadJobs()
}

// saveLocked writes the state file atomically. The caller holds e.mu and
// undoes its change when this fails, so a failed write changes nothing.
func (e *Emulator) saveLocked() error {
	b, err := json.MarshalIndent(persisted{Endpoints: e.endpoints, Templates: e.templates, Volumes: e.volumes}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(e.statePath(), b, 0o600); err != nil {
		e.log.Error("runpodemu: save state", "err", err)
		return err
	}
	return nil
}

func (e *Emulator) endpointLocked(id string) *endpointRecord {
	i := slices.IndexFunc(e.endpoints, func(ep *endpointRecord) bool { return ep.ID == id })
	if i < 0 {
		return nil
	}
	return e.endpoints[i]
}

func (e *Emulator) templateLocked(id string) *Template {
	i := slices.IndexFunc(e.templates, func(t *Template) bool { return t.ID == id })
	if i < 0 {
		return nil
	}
	return e.templates[i]
}

func (e *Emulator) volumeLocked(id string) *Volume {
	i := slices.IndexFunc(e.volumes, func(v *Volume) bool { return v.ID == id })
	if i < 0 {
		return nil
	}
	return e.volumes[i]
}

// volumeDir is where a network volume's files live.
func (e *Emulator) volumeDir(id string) string { return filepath.Join(e.cfg.Dir, "volumes", id) }

// ServeHTTP dispatches to the management API, the job and worker API, or a
// load-balanced endpoint. The management paths and /v2/{endpoint_id} share
// one prefix, as Runpod's two hosts (api.runpod.io, api.runpod.ai) are one
// server here; no endpoint id can be "serverless", "templates" or
// "network-volumes".
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/lb/"):
		e.serveLB(w, r)
	case e.lbHost(r.Host) != "":
		e.serveLB(w, r)
	case p == "/v2/serverless" || strings.HasPrefix(p, "/v2/serverless/"),
		p == "/v2/templates" || strings.HasPrefix(p, "/v2/templates/"),
		p == "/v2/network-volumes" || strings.HasPrefix(p, "/v2/network-volumes/"):
		e.mgmt.ServeHTTP(w, r)
	default:
		e.jobs.ServeHTTP(w, r)
	}
}
