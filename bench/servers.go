package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/serve"
	"github.com/flash-go/flash/store/sqlite"
)

const (
	apiKey       = "bench-key"
	appName      = "flashbench"
	serveGrace   = 5 * time.Second
	startTimeout = 30 * time.Second
	stopTimeout  = 40 * time.Second
	idleGrace    = 300 * time.Millisecond // before a stopping app's idle connections are cut
	maxCalls     = 2_000_000              // per load window, whatever the window
)

// server is something serving on loopback until stopped.
type server struct {
	url  string
	addr string
	stop func() error // idempotent
}

func listenLoopback() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	return ln, nil
}

// startServer serves h on a fresh loopback port through serve.Serve, so a
// bare handler runs in the same http.Server settings as every flash endpoint.
func startServer(ctx context.Context, h http.Handler, shutdown ...func(context.Context) error) (*server, error) {
	ln, err := newTrackingListener()
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- serve.Serve(sctx, ln, h, serveGrace, shutdown...) }()
	return &server{url: "http://" + ln.Addr().String(), addr: ln.Addr().String(),
		stop: sync.OnceValue(func() error { cancel(); return ln.stopped(done) })}, nil
}

func waitErr(done <-chan error, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("did not stop within %s", limit)
	}
}

// runApp runs app in the role cfg names on a fresh loopback port; it returns
// once the app serves.
func runApp(ctx context.Context, app *flash.App, cfg flash.Config) (*server, error) {
	ln, err := newTrackingListener()
	if err != nil {
		return nil, err
	}
	cfg.Listener = ln
	ready := make(chan string, 1)
	cfg.Ready = func(url string) { ready <- url }
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- app.Run(rctx, cfg) }()
	t := time.NewTimer(startTimeout)
	defer t.Stop()
	select {
	case url := <-ready:
		return &server{url: url, addr: ln.Addr().String(),
			stop: sync.OnceValue(func() error { cancel(); return ln.stopped(done) })}, nil
	case err := <-done:
		cancel()
		ln.Close()
		return nil, fmt.Errorf("start %s %q: %w", cfg.Role, cfg.Resource, err)
	case <-t.C:
		cancel()
		ln.Close()
		return nil, fmt.Errorf("start %s %q: not serving after %s", cfg.Role, cfg.Resource, startTimeout)
	}
}

// trackingListener remembers the connections it accepted, so that a stop
// can close those still open.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newTrackingListener() (*trackingListener, error) {
	ln, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	return &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}}, nil
}

// stopped waits for a stopping server's done. net/http's Shutdown waits up
// to 5 s for a connection that was opened but never used (a client dialled
// it for a request that another connection served): after idleGrace the
// harness closes what is left instead of waiting.
func (l *trackingListener) stopped(done <-chan error) error {
	t := time.NewTimer(idleGrace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	l.closeAll()
	return waitErr(done, stopTimeout)
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns[c] = struct{}{}
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

// msServer is a real mothership: SQLite state, the endpoint server with its
// middleware (auth, ids, logs, metrics), Run following the store, on loopback.
type msServer struct {
	*server
	ms *mothership.Mothership
	st *sqlite.Store

	gets   atomic.Int64 // GET /manifest requests that reached the mothership
	parked atomic.Int64 // of those, long polls (?version=) being answered now
	// hold, when set, runs before a GET /manifest is served (the fan-in gate).
	hold atomic.Pointer[func()]
	// answered, when set, runs after a long poll was answered.
	answered atomic.Pointer[func()]
}

// startMothership runs a mothership with its state in dir (created if missing).
func startMothership(ctx context.Context, dir string, log *slog.Logger) (_ *msServer, err error) {
	st, err := sqlite.OpenConfig(ctx, sqlite.Config{Path: filepath.Join(dir, "state.db"), Logger: log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	ms, err := mothership.New(ctx, mothership.Config{App: appName, Store: st, Logger: log})
	if err != nil {
		return nil, err
	}
	srv, err := serve.New(serve.Config{Identity: "mothership", APIKey: apiKey, Logger: log}, nil)
	if err != nil {
		return nil, err
	}
	m := &msServer{ms: ms, st: st}
	ms.Register(func(pattern string, h http.Handler) {
		if pattern == "GET /manifest" {
			h = m.count(h)
		}
		srv.Handle(pattern, h)
	})
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	runDone := make(chan struct{})
	go func() { defer close(runDone); ms.Run(runCtx) }()
	s, err := startServer(ctx, srv, srv.Shutdown)
	if err != nil {
		stopRun()
		<-runDone
		return nil, err
	}
	m.server = &server{url: s.url, addr: s.addr, stop: sync.OnceValue(func() error {
		stopRun() // parked long polls answer at once
		<-runDone
		return errors.Join(s.stop(), st.Close())
	})}
	return m, nil
}

// count wraps the mothership's GET /manifest handler.
func (m *msServer) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.gets.Add(1)
		if hold := m.hold.Load(); hold != nil {
			(*hold)()
		}
		if !strings.Contains(r.URL.RawQuery, "version=") {
			h.ServeHTTP(w, r)
			return
		}
		m.parked.Add(1)
		h.ServeHTTP(w, r)
		m.parked.Add(-1)
		if done := m.answered.Load(); done != nil {
			(*done)()
		}
	})
}

// waitFor polls cond every millisecond until it holds, ctx ends or limit
// passes.
func waitFor(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// newClient returns an HTTP client with flash's pooled transport (an idle
// pool sized for concurrency), for baselines that must not lose to Go's
// default of 2 idle connections per host.
func newClient() (*http.Client, func()) {
	tr := wire.NewTransport()
	tr.MaxIdleConnsPerHost = 1024
	tr.MaxIdleConns = 4096
	return &http.Client{Transport: tr}, tr.CloseIdleConnections
}

// loadResult is one window of closed-loop load.
type loadResult struct {
	calls   int
	elapsed time.Duration
	lat     []time.Duration
}

func (l loadResult) rps() float64 { return float64(l.calls) / l.elapsed.Seconds() }

// meanUS is the mean latency in microseconds.
func (l loadResult) meanUS() float64 { return mean(durations(l.lat, time.Microsecond)) }

// pctMS is a latency percentile in milliseconds.
func (l loadResult) pctMS(p float64) float64 {
	return Percentile(durations(l.lat, time.Millisecond), p)
}

// runLoad keeps conc workers calling call back to back for window (and at
// most maxCalls calls), and records every call's latency. The first error
// stops the window and is returned.
func runLoad(ctx context.Context, conc int, window time.Duration, call func(ctx context.Context, worker int) error) (loadResult, error) {
	var issued atomic.Int64
	lats := make([][]time.Duration, conc)
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	deadline := start.Add(window)
	for w := range conc {
		g.Go(func() error {
			// A context per worker, as each request has its own: contexts
			// derived per call must not all contend on one parent's lock.
			wctx, cancel := context.WithCancel(gctx)
			defer cancel()
			lat := make([]time.Duration, 0, 1024)
			defer func() { lats[w] = lat }()
			for wctx.Err() == nil && issued.Add(1) <= maxCalls {
				t := time.Now()
				// Every worker makes at least one call, however late it was
				// scheduled: on a loaded machine a short window can pass
				// before a goroutine first runs.
				if !t.Before(deadline) && len(lat) > 0 {
					return nil
				}
				if err := call(wctx, w); err != nil {
					return err
				}
				lat = append(lat, time.Since(t))
			}
			return nil
		})
	}
	err := g.Wait()
	res := loadResult{elapsed: time.Since(start)}
	for _, l := range lats {
		res.calls += len(l)
		res.lat = append(res.lat, l...)
	}
	if err == nil && res.calls == 0 {
		err = errors.New("no call completed in the window")
	}
	return res, err
}

// interleave measures a and b in rounds, alternating which goes first so
// that a drift of the machine's speed hits both alike.
func interleave[T any](ctx context.Context, rounds int, a, b func(context.Context) (T, error)) (as, bs []T, err error) {
	all, err := rotate(ctx, rounds, a, b)
	if err != nil {
		return nil, nil, err
	}
	return all[0], all[1], nil
}

// rotate measures each of fns once per round, starting each round with the
// next one, and returns the results per fn.
func rotate[T any](ctx context.Context, rounds int, fns ...func(context.Context) (T, error)) ([][]T, error) {
	out := make([][]T, len(fns))
	for i := range rounds {
		for j := range fns {
			k := (i + j) % len(fns)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			v, err := fns[k](ctx)
			if err != nil {
				return nil, err
			}
			out[k] = append(out[k], v)
		}
	}
	return out, nil
}

// medianOf is the median of f over xs.
func medianOf[T any](xs []T, f func(T) float64) float64 {
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = f(x)
	}
	return Median(vs)
}

// ratios returns f(a[i]) / f(b[i]) for each round.
func ratios[T any](as, bs []T, f func(T) float64) []float64 {
	out := make([]float64, 0, len(as))
	for i := range min(len(as), len(bs)) {
		out = append(out, f(as[i])/f(bs[i]))
	}
	return out
}
