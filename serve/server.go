// Package serve is the HTTP serving layer of a flash endpoint: the Runpod
// serverless job API for queue-based functions (SPEC §5.4), plain routes for
// load-balanced ones (§5.5), and what every endpoint has (§5.6): /ping,
// /metrics, bearer-key auth, request ids, trace context, hop limits,
// structured request logs and graceful shutdown.
//
// A Server is an http.Handler. It knows functions only through Func.Bind, so
// it does no reflection and no generic plumbing: the flash package adapts
// typed functions into Funcs.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/prometheus/client_golang/prometheus"
)

// Input is what a function receives from the wire.
type Input struct {
	// JSON is the function's single input: args[0] or the kwargs object of a
	// job envelope, or the body of an LB request (nil when the request has
	// no body, e.g. a GET).
	JSON json.RawMessage
	// Params are the path parameters of an LB route ("/items/{id}" → "id").
	Params map[string]string
	// Query and Header are an LB request's query parameters and headers,
	// for fields tagged `query:"…"` and `header:"…"` (nil for QB jobs).
	Query  url.Values
	Header http.Header
}

// Job runs one function call. Its result is JSON-encoded by the server.
// ctx carries the call's deadline, cancellation and wire.Meta.
type Job func(ctx context.Context) (any, error)

// Func is a function the server can run.
type Func struct {
	// Name is the function name callers use (unique within a server).
	Name string
	// Resource is the resource the function belongs to (informational).
	Resource string
	// Method and Path make the function load-balanced ("POST",
	// "/stats/{window}"); both empty means queue-based.
	Method, Path string
	// Bind decodes the input and returns the job to run. A Bind error is the
	// caller's fault (400) and is reported before anything is queued.
	Bind func(in Input) (Job, error)
	// Internal marks flash's own routes (stateful objects, under /flash/):
	// served like a load-balanced function at Method and Path, which may be
	// reserved, whatever the resource's kind; Name need only be unique.
	Internal bool
}

// Config configures a Server. The zero value means the defaults.
type Config struct {
	// Identity is the resource name, or "standalone"; it is logged and is the
	// "resource" label of every metric.
	Identity string
	// Instance is this process's instance id, as it reports itself to the
	// mothership; GET /flash/load names it.
	Instance string
	// APIKey, when not empty, is the bearer key every request but /ping must carry.
	APIKey string
	// MaxBody limits request bodies; default 10 MiB.
	MaxBody int64
	// Workers is the size of the job worker pool; default
	// max(DefaultMinWorkers, 4*GOMAXPROCS). A job that calls another endpoint
	// holds its slot while it waits, so the pool must stay larger than the
	// deepest chain of calls that can revisit this endpoint (the hop limit
	// bounds it at 16) times the chains in flight.
	Workers int
	// QueueSize is how many jobs may wait beyond the running ones; default
	// 1024. When full, /run and /runsync answer 429 with Retry-After.
	QueueSize int
	// ResultTTL is how long async results are kept for /status; default 30 min.
	ResultTTL time.Duration
	// Limits are the bounds an operator may set through the environment.
	Limits
	// Logger receives one line per request and job failures; default slog.Default().
	Logger *slog.Logger
	// Ready reports readiness; nil means ready. /ping answers 204 while it
	// returns false, 200 {"status":"healthy"} after.
	Ready func() bool
	// Now is the clock of job timestamps and result expiry; default time.Now.
	Now func() time.Time
	// IdempotencyTTL is how long the outcome of a /run or /runsync that
	// carried an Idempotency-Key or an explicit X-Request-Id is kept, so that
	// a repeat of it (a retry) gets that outcome instead of a second run;
	// default 10 min. A negative value disables this.
	IdempotencyTTL time.Duration
	// IdempotencyEntries bounds the outcomes kept; default 10000.
	IdempotencyEntries int
	// IdempotencyMaxBytes bounds the answer bytes kept; default 64 MiB. An
	// answer larger than a sixteenth of it is not kept.
	IdempotencyMaxBytes int
	// Tracer, when not nil, makes a span of every request and job.
	Tracer *telemetry.Tracer
	// SSEHeartbeat is how long a server-sent-event stream may stay silent
	// before a comment line keeps it alive; default DefaultSSEHeartbeat.
	SSEHeartbeat time.Duration
	// Public, when not nil, names requests served without the API key
	// (pages that hold no data, such as the mothership's dashboard).
	Public func(*http.Request) bool
	// Untraced, when not nil, names requests that get no span (traffic of
	// the tracing itself, such as trace exports, which would otherwise
	// make spans to export for ever).
	Untraced func(*http.Request) bool
}

// Defaults of Config.
const (
	DefaultMaxBody = 10 << 20
	// DefaultMinWorkers is the smallest default worker pool (see Config.Workers).
	DefaultMinWorkers = 64
	DefaultQueueSize  = 1024
	DefaultResultTTL  = 30 * time.Minute
)

// Server serves a set of functions over HTTP. Create it with New; it is
// safe for concurrent use.
//
// Routes: GET /ping (never behind auth) and GET /metrics always; with at
// least one queue-based function, POST /run and /runsync, GET /status/{id},
// POST /cancel/{id} and GET /health, each bare and under /v2/{endpoint}/;
// one route per load-balanced function. Unknown routes get JSON 404/405.
//
// Jobs (runsync too) run on a bounded worker pool. Their deadline is the
// earlier of the caller's X-Flash-Timeout and the envelope's
// policy.executionTimeout, both counted from when the request arrived.
// Async results are kept in memory for Config.ResultTTL, within
// Config.MaxResults and Config.MaxResultBytes; runsync results
// are not kept, except as idempotent outcomes: a /run or /runsync carrying
// an Idempotency-Key (else an explicit X-Request-Id) runs once per key,
// function and body within Config.IdempotencyTTL, a repeat that arrives
// while the first runs waits for it, and one that arrives after gets the
// same answer (with Idempotent-Replayed: true). A first attempt that was
// refused, cancelled or timed out is not kept.
type Server struct {
	cfg     Config
	key     wire.Key
	log     *slog.Logger
	mux     *http.ServeMux
	qb      map[string]*Func
	qbNames []string
	jobs    *jobTable
	lb      *admission
	idem    *idemTable // nil: idempotency disabled
	hooks   *webhooks
	metrics *metrics
}

// New returns a Server for funcs. Every problem with funcs or cfg (duplicate
// names, bad or reserved routes, missing Bind, …) is reported at once.
func New(cfg Config, funcs []Func) (*Server, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.MaxBody < 0 || cfg.Workers < 0 || cfg.QueueSize < 0 || cfg.ResultTTL < 0 || cfg.MaxResults < 0 || cfg.MaxResultBytes < 0 ||
		cfg.LBConcurrency < 0 || cfg.LBQueue < 0 || cfg.SlowRequest < 0 || cfg.SSEHeartbeat < 0 ||
		cfg.IdempotencyEntries < 0 || cfg.IdempotencyMaxBytes < 0 {
		bad("config: sizes, limits and durations must not be negative")
	}
	cfg = withDefaults(cfg)

	s := &Server{
		cfg: cfg,
		key: wire.NewKey(cfg.APIKey),
		log: cfg.Logger.With("resource", cfg.Identity),
		mux: http.NewServeMux(),
		qb:  make(map[string]*Func),
	}
	s.metrics = newMetrics(cfg.Identity, s)
	s.jobs = newJobTable(cfg.Workers, cfg.QueueSize, cfg.ResultTTL, cfg.MaxResults, cfg.MaxResultBytes, cfg.Now)
	s.jobs.onFinal = s.jobFinal
	s.hooks = newWebhooks(s.log)
	s.lb = newAdmission(cfg.LBConcurrency, cfg.LBQueue)
	if cfg.IdempotencyTTL > 0 {
		s.idem = newIdemTable(cfg.IdempotencyTTL, cfg.IdempotencyEntries, cfg.IdempotencyMaxBytes, cfg.Now)
	}

	names := make(map[string]bool)
	routes := make(map[string]string)
	var lb []*Func
	for i := range funcs {
		f := &funcs[i]
		where := fmt.Sprintf("function %q", f.Name)
		switch {
		case f.Name == "":
			bad("function #%d: empty name", i)
			continue
		case !f.Internal && !manifest.ValidFunctionName(f.Name):
			bad("%s: name must be a Go or Python identifier", where)
		case names[f.Name]:
			bad("%s: registered twice", where)
		}
		names[f.Name] = true
		if f.Bind == nil {
			bad("%s: Bind is nil", where)
		}
		if f.Method == "" && f.Path == "" {
			s.qb[f.Name] = f
			s.qbNames = append(s.qbNames, f.Name)
			continue
		}
		switch {
		case !slices.Contains(manifest.Methods, f.Method):
			bad("%s: method %q: want one of %s", where, f.Method, strings.Join(manifest.Methods, ", "))
		case !strings.HasPrefix(f.Path, "/"):
			bad("%s: path %q must start with /", where, f.Path)
		case manifest.ReservedPath(f.Path) && !f.Internal:
			bad("%s: path %q is reserved (or shadows a path flash serves itself)", where, f.Path)
		default:
			route := f.Method + " " + f.Path
			if prev, dup := routes[route]; dup {
				bad("%s: route %q already taken by function %q", where, route, prev)
				continue
			}
			routes[route] = f.Name
			lb = append(lb, f)
		}
	}
	slices.Sort(s.qbNames)

	s.mux.HandleFunc("GET /ping", s.ping)
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.mux.HandleFunc("GET "+wire.PathLoad, s.load)
	if len(s.qb) > 0 {
		for _, prefix := range []string{"", "/v2/{endpoint}"} {
			s.mux.Handle("POST "+prefix+"/runsync", handlerFunc(s.runsync))
			s.mux.Handle("POST "+prefix+"/run", handlerFunc(s.run))
			s.mux.Handle("GET "+prefix+"/status/{id}", handlerFunc(s.status))
			s.mux.Handle("GET "+prefix+"/stream/{id}", handlerFunc(s.stream))
			s.mux.Handle("POST "+prefix+"/cancel/{id}", handlerFunc(s.cancel))
			s.mux.Handle("POST "+prefix+"/purge-queue", handlerFunc(s.purgeQueue))
			s.mux.Handle("POST "+prefix+"/retry/{id}", handlerFunc(s.retry))
			s.mux.Handle("GET "+prefix+"/health", handlerFunc(s.health))
		}
	}
	for _, f := range lb {
		if err := s.handleSafe(lbPattern(f.Method, f.Path), s.lbHandler(f)); err != nil {
			bad("function %q: route %s %s: %w", f.Name, f.Method, f.Path, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	return s, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Identity == "" {
		cfg.Identity = "standalone"
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Workers <= 0 {
		cfg.Workers = max(DefaultMinWorkers, 4*runtime.GOMAXPROCS(0))
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.ResultTTL <= 0 {
		cfg.ResultTTL = DefaultResultTTL
	}
	if cfg.MaxResults <= 0 {
		cfg.MaxResults = DefaultMaxResults
	}
	if cfg.MaxResultBytes <= 0 {
		cfg.MaxResultBytes = DefaultMaxResultBytes
	}
	if cfg.LBConcurrency <= 0 {
		cfg.LBConcurrency = cfg.Workers
	}
	if cfg.LBQueue <= 0 {
		cfg.LBQueue = cfg.LBConcurrency
	}
	if cfg.SSEHeartbeat <= 0 {
		cfg.SSEHeartbeat = DefaultSSEHeartbeat
	}
	if cfg.SlowRequest <= 0 {
		cfg.SlowRequest = DefaultSlowRequest
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdempotencyTTL == 0 {
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if cfg.IdempotencyEntries <= 0 {
		cfg.IdempotencyEntries = DefaultIdempotencyEntries
	}
	if cfg.IdempotencyMaxBytes <= 0 {
		cfg.IdempotencyMaxBytes = DefaultIdempotencyMaxBytes
	}
	return cfg
}

// lbPattern turns a route into a ServeMux pattern. A path ending in "/"
// would match a whole subtree in ServeMux; LB routes are exact, so it gets
// "{$}".
func lbPattern(method, path string) string {
	if strings.HasSuffix(path, "/") {
		path += "{$}"
	}
	return method + " " + path
}

// handleSafe registers a pattern, turning ServeMux's panic on an invalid or
// conflicting pattern into an error.
func (s *Server) handleSafe(pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	s.mux.Handle(pattern, h)
	return nil
}

// Handle registers an extra route (a ServeMux pattern such as
// "GET /manifest") behind the same middleware and auth as the functions.
// Like http.ServeMux.Handle, it panics on an invalid or conflicting pattern.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// ServeHTTP serves a request: ids and trace context, auth, header checks,
// routing, then metrics and the log line (middleware.go). The layers are
// calls from this one frame, not nested handlers: a parked long poll keeps
// its whole stack for as long as it waits.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw, r := s.begin(w, r)
	defer s.finish(sw, r)
	if !s.authorized(r) {
		wire.Unauthorized(sw)
		return
	}
	if s.checkHeaders(sw) {
		s.route(sw, r)
	}
}

// authorized says whether r may be served: it carries the API key, or
// needs none (GET /ping, Config.Public).
func (s *Server) authorized(r *http.Request) bool {
	return s.cfg.APIKey == "" || wire.AuthExempt(r) || (s.cfg.Public != nil && s.cfg.Public(r)) || s.key.Allows(r)
}

// Registry returns the server's own Prometheus registry (served at /metrics).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// Shutdown stops taking jobs (new ones get 503) and waits for queued and
// running jobs to finish. When ctx ends first, it cancels the jobs left and
// returns an error wrapping ctx's.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.jobs.shutdown(ctx)
	s.hooks.close(ctx) // the last outcomes' webhooks, while ctx lasts
	return err
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil && !s.cfg.Ready() {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	wire.WriteRawJSON(w, http.StatusOK, []byte(`{"status":"healthy"}`+"\n"))
}

// Serve runs h on ln until ctx ends, then shuts down within grace: the HTTP
// server stops accepting and waits for in-flight requests while each
// shutdown function (typically Server.Shutdown, for jobs) runs; connections
// still open when grace ends are closed. It returns nil after a clean
// shutdown.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, shutdown ...func(context.Context) error) error {
	srv := &http.Server{
		Handler: h,
		// Bodies are read under a per-request deadline (see readBody) rather
		// than ReadTimeout, which would also cut long-running handlers.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(jsonErrorListener{ln}) }()

	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()

	errc := make(chan error, len(shutdown)+1)
	go func() { errc <- srv.Shutdown(gctx) }()
	for _, f := range shutdown {
		go func() { errc <- f(gctx) }()
	}
	errs := []error{}
	for range len(shutdown) + 1 {
		errs = append(errs, <-errc)
	}
	if gctx.Err() != nil {
		errs = append(errs, srv.Close())
	}
	if serveErr == nil {
		serveErr = <-served
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(append(errs, serveErr)...)
}
