package child

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// scripted is an endpoint whose answer to each request comes from a
// function of the request number (1-based); it records every request.
type scripted struct {
	mu      sync.Mutex
	headers []http.Header
	paths   []string
	answer  func(n int, w http.ResponseWriter, r *http.Request)
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read the body first: only then does net/http notice a caller that
	// hangs up (and cancel r's context) while the answer is held back.
	io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.headers = append(s.headers, r.Header.Clone())
	s.paths = append(s.paths, r.Method+" "+r.URL.Path)
	n := len(s.headers)
	s.mu.Unlock()
	s.answer(n, w, r)
}

func (s *scripted) hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.headers)
}

func (s *scripted) all() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

func completed(w http.ResponseWriter) {
	wire.WriteJSON(w, 200, map[string]any{"id": "j", "status": "COMPLETED",
		"output": map[string]any{"success": true, "json_result": embedOut{Vector: []float64{1}}}})
}

// failThen answers status (with Retry-After ra when not empty) to the first
// n requests, then a completed job.
func failThen(n, status int, ra string) func(int, http.ResponseWriter, *http.Request) {
	return func(i int, w http.ResponseWriter, r *http.Request) {
		if i <= n {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			wire.WriteError(w, status, "try again")
			return
		}
		completed(w)
	}
}

func fastRetries(iv *Invoker) *Invoker {
	iv.retry.Base, iv.retry.Cap, iv.retry.WaitRefused = time.Millisecond, 4*time.Millisecond, 50*time.Millisecond
	return iv
}

// TestRetryKeepsRequestID: a call answered 503 twice is sent three times,
// every time with the same X-Request-Id, Idempotency-Key and trace.
func TestRetryKeepsRequestID(t *testing.T) {
	for _, parent := range []string{"", "req-7"} {
		t.Run("parent="+parent, func(t *testing.T) {
			ep := &scripted{answer: failThen(2, http.StatusServiceUnavailable, "")}
			srv, client := startServer(t, ep)
			iv := fastRetries(newTestInvoker(t, client))
			ctx := context.Background()
			if parent != "" {
				ctx = wire.WithMeta(ctx, wire.Meta{RequestID: parent, TraceParent: wire.NewTraceParent()})
			}
			var out embedOut
			if err := iv.Invoke(ctx, qbTarget("embed", srv.URL), embedIn{}, &out); err != nil {
				t.Fatal(err)
			}
			hs := ep.all()
			if len(hs) != 3 {
				t.Fatalf("%d attempts, want 3", len(hs))
			}
			rid, key := hs[0].Get(wire.HeaderRequestID), hs[0].Get(wire.HeaderIdempotencyKey)
			trace, _ := wire.ParseTraceParent(hs[0].Get("traceparent"))
			if rid == "" || key == "" || key == rid || (parent != "" && rid != parent) {
				t.Fatalf("request id %q, idempotency key %q", rid, key)
			}
			for i, h := range hs {
				tr, _ := wire.ParseTraceParent(h.Get("traceparent"))
				if h.Get(wire.HeaderRequestID) != rid || h.Get(wire.HeaderIdempotencyKey) != key || tr != trace {
					t.Fatalf("attempt %d: %v; want id %s, key %s, trace %s", i+1, h, rid, key, trace)
				}
			}
			// Another call of the same parent is another call: same request
			// id (it is the parent's), a new idempotency key.
			if err := iv.Invoke(ctx, qbTarget("embed", srv.URL), embedIn{}, &out); err != nil {
				t.Fatal(err)
			}
			h := ep.all()[3]
			if k := h.Get(wire.HeaderIdempotencyKey); k == "" || k == key || (parent != "" && h.Get(wire.HeaderRequestID) != parent) {
				t.Fatalf("second call: key %q (first %q), id %q", k, key, h.Get(wire.HeaderRequestID))
			}
		})
	}
}

// TestRetryOnlyWhenSafe counts the sends of calls that fail in each way.
func TestRetryOnlyWhenSafe(t *testing.T) {
	hijack := func(_ int, w http.ResponseWriter, r *http.Request) {
		// The request arrived; the answer never comes.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	status := func(code int) func(int, http.ResponseWriter, *http.Request) {
		return func(_ int, w http.ResponseWriter, _ *http.Request) { wire.WriteError(w, code, "no") }
	}
	tests := []struct {
		name     string
		lb       string // LB method; "" for a QB call
		answer   func(int, http.ResponseWriter, *http.Request)
		attempts int
	}{
		{"200", "", failThen(0, 0, ""), 1},
		{"400", "", status(400), 1},
		{"404", "", status(404), 1},
		{"500", "", status(500), 1},
		{"508", "", status(508), 1},
		{"408", "", status(408), 4},
		{"429", "", status(429), 4},
		{"502 QB", "", status(502), 4},
		{"503", "", status(503), 4},
		{"504 QB", "", status(504), 4},
		{"503 then OK", "", failThen(1, 503, ""), 2},
		{"502 LB POST", "POST", status(502), 1},
		{"504 LB POST", "POST", status(504), 1},
		{"503 LB POST", "POST", status(503), 4},
		{"502 LB GET", "GET", status(502), 4},
		{"connection dropped after the request", "", hijack, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := &scripted{answer: tt.answer}
			srv, client := startServer(t, ep)
			iv := fastRetries(newTestInvoker(t, client))
			tg := qbTarget("embed", srv.URL)
			if tt.lb != "" {
				tg = &Target{Function: "process", Resource: "api", LB: true, Method: tt.lb, Path: "/process", URLs: []string{srv.URL}}
			}
			iv.Invoke(context.Background(), tg, embedIn{}, nil)
			if got := ep.hits(); got != tt.attempts {
				t.Fatalf("%d sends, want %d", got, tt.attempts)
			}
		})
	}
}

// TestRetryDialError: an endpoint that refuses connections is dialled
// again for WaitRefused, beyond MaxAttempts, and the error stays "not
// ready" (retryable) and names no address.
func TestRetryDialError(t *testing.T) {
	srv, _ := startServer(t, http.NotFoundHandler())
	srv.Close()
	var dials atomic.Int64
	tr := wire.NewTransport()
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	iv := fastRetries(newTestInvoker(t, &http.Client{Transport: tr}))
	err := iv.Invoke(context.Background(), qbTarget("embed", srv.URL), embedIn{}, nil)
	if !errors.Is(err, flasherr.ErrEndpointNotReady) || !flasherr.Retryable(err) {
		t.Fatalf("got %v", err)
	}
	if host := strings.TrimPrefix(srv.URL, "http://"); strings.Contains(err.Error(), host) {
		t.Fatalf("error names the endpoint's address: %v", err)
	}
	if dials.Load() <= DefaultMaxAttempts {
		t.Fatalf("%d dials, want more than %d", dials.Load(), DefaultMaxAttempts)
	}
}

// TestRetryPrefersAnotherReplica: with one replica always 503 and one
// healthy, every call succeeds, no call asks the bad one twice, and once its
// breaker opens (after 5 failures) the bad replica is asked no more.
func TestRetryPrefersAnotherReplica(t *testing.T) {
	bad := &scripted{answer: func(_ int, w http.ResponseWriter, _ *http.Request) { wire.WriteError(w, 503, "down") }}
	good := &scripted{answer: failThen(0, 0, "")}
	srvBad, client := startServer(t, bad)
	srvGood, _ := startServer(t, good)
	iv := fastRetries(newTestInvoker(t, client))
	iv.brk.now = func() time.Time { return time.Unix(1e9, 0) } // never half-opens

	r := NewRouter(RouterConfig{Identity: "api", Logger: quietLogger()})
	r.Apply(mustParse(t, []byte(`{"resources":{"embedder":{"resource_type":"ServerlessResource",
		"endpoint_urls":["`+srvBad.URL+`","`+srvGood.URL+`"]}},"function_registry":{"embed":"embedder"}}`)), 1)
	tg, err := r.Route(context.Background(), "embed")
	if err != nil {
		t.Fatal(err)
	}
	const calls = 60
	for range calls {
		if err := iv.Invoke(context.Background(), tg, embedIn{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, h := range bad.all() {
		id := h.Get(wire.HeaderRequestID)
		if seen[id] {
			t.Fatalf("request %s sent to the failing replica twice", id)
		}
		seen[id] = true
	}
	if bad.hits() != DefaultBreakerFailures || good.hits() != calls {
		t.Fatalf("bad replica asked %d times (want %d), good one %d (want %d)", bad.hits(), DefaultBreakerFailures, good.hits(), calls)
	}
	for i := range tg.inflight {
		if v := tg.inflight[i].Load(); v != 0 {
			t.Fatalf("in-flight count %d left at %d", i, v)
		}
	}
}

// TestRetryTiming runs in a synctest bubble, where time is exact (and
// starts at 2000-01-01 00:00:00 UTC).
func TestRetryTiming(t *testing.T) {
	tests := []struct {
		name     string
		answer   func(int, http.ResponseWriter, *http.Request)
		budget   time.Duration
		attempts int
		elapsed  func(time.Duration) bool
		wantErr  error
	}{
		{"Retry-After honoured", failThen(2, 429, "2"), 10 * time.Second, 3,
			func(d time.Duration) bool { return d == 4*time.Second }, nil},
		{"Retry-After as a date", failThen(1, 503, time.Date(2000, 1, 1, 0, 0, 3, 0, time.UTC).Format(http.TimeFormat)),
			10 * time.Second, 2, func(d time.Duration) bool { return d >= 3*time.Second && d < 3*time.Second+25*time.Millisecond }, nil},
		{"never past the deadline", failThen(99, 429, "2"), 3 * time.Second, 2,
			func(d time.Duration) bool { return d == 2*time.Second }, flasherr.ErrOverloaded},
		{"Retry-After beyond the budget", failThen(99, 503, "30"), 10 * time.Second, 1,
			func(d time.Duration) bool { return d == 0 }, flasherr.ErrOverloaded},
		{"backoff with full jitter", failThen(99, 503, ""), 10 * time.Second, 4,
			func(d time.Duration) bool { return d < 25*time.Millisecond+50*time.Millisecond+100*time.Millisecond }, flasherr.ErrOverloaded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ep := &scripted{answer: tt.answer}
				iv := newTestInvoker(t, &http.Client{Transport: handlerTransport{ep}})
				ctx, cancel := context.WithTimeout(context.Background(), tt.budget)
				defer cancel()
				start := time.Now()
				err := iv.Invoke(ctx, qbTarget("embed", "http://ep.test"), embedIn{}, nil)
				d := time.Since(start)
				if (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if ep.hits() != tt.attempts || !tt.elapsed(d) {
					t.Fatalf("%d attempts in %v", ep.hits(), d)
				}
			})
		})
	}
}

// clock is a settable time for breaker tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestBreaker: five failures open the breaker; while open, calls fail fast
// and no request reaches the endpoint; after 30 s one probe goes through
// while the others still fail fast; its success closes the breaker, its
// failure opens it again.
func TestBreaker(t *testing.T) {
	var mode atomic.Value // "fail", "hold", "ok", "failed"
	mode.Store("fail")
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	ep := &scripted{answer: func(_ int, w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "fail":
			wire.WriteError(w, 500, "internal")
		case "hold":
			select {
			case <-release:
				completed(w)
			case <-r.Context().Done():
			}
		case "failed": // the function failed: a healthy endpoint
			wire.WriteJSON(w, 200, map[string]any{"id": "j", "status": "FAILED", "error": "ValueError: no",
				"output": map[string]any{"success": false, "error": "no", "error_type": "ValueError"}})
		default:
			completed(w)
		}
	}}
	srv, client := startServer(t, ep)
	t.Cleanup(releaseAll) // before the server's Close (cleanups run last-in first-out)
	clk := &clock{now: time.Unix(1000, 0)}
	iv := NewInvoker(InvokerConfig{APIKey: "k", Client: client, Logger: quietLogger(), Now: clk.Now})
	tg := qbTarget("embed", srv.URL)
	ctx := context.Background()
	call := func() error { return iv.Invoke(ctx, tg, embedIn{}, nil) }
	open := func(what string) {
		t.Helper()
		before := ep.hits()
		for range 10 {
			// Bounded, so that a call let through by mistake shows as a hit.
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			err := iv.Invoke(ctx, tg, embedIn{}, nil)
			cancel()
			if !errors.Is(err, flasherr.ErrCircuitOpen) || !flasherr.Retryable(err) {
				t.Fatalf("%s: got %v, want ErrCircuitOpen", what, err)
			}
		}
		if ep.hits() != before {
			t.Fatalf("%s: %d requests reached the endpoint while the breaker was open", what, ep.hits()-before)
		}
	}

	for i := range DefaultBreakerFailures {
		if err := call(); errors.Is(err, flasherr.ErrCircuitOpen) || err == nil {
			t.Fatalf("failure %d: got %v", i+1, err)
		}
	}
	if ep.hits() != DefaultBreakerFailures {
		t.Fatalf("%d hits", ep.hits())
	}
	open("after 5 failures")
	clk.advance(DefaultBreakerOpenFor - time.Millisecond)
	open("just before the probe is due")

	// Half-open: one probe, held in the endpoint; everyone else fails fast.
	clk.advance(time.Millisecond)
	mode.Store("hold")
	probe := make(chan error, 1)
	go func() { probe <- call() }()
	eventually(t, "the probe at the endpoint", func() bool { return ep.hits() == DefaultBreakerFailures+1 })
	open("while the probe is in flight")
	releaseAll()
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}
	mode.Store("ok")
	for range 3 {
		if err := call(); err != nil {
			t.Fatalf("after a good probe: %v", err)
		}
	}

	// A failed probe opens the breaker again at once.
	mode.Store("fail")
	for range DefaultBreakerFailures {
		call()
	}
	open("opened again")
	clk.advance(DefaultBreakerOpenFor)
	before := ep.hits()
	if err := call(); errors.Is(err, flasherr.ErrCircuitOpen) || ep.hits() != before+1 {
		t.Fatalf("probe: %v after %d requests", err, ep.hits()-before)
	}
	open("after a failed probe")
	// Each failed probe doubles the wait for the next, up to the cap.
	wait := DefaultBreakerOpenFor
	for wait < DefaultBreakerMaxOpenFor {
		wait = min(2*wait, DefaultBreakerMaxOpenFor)
		clk.advance(wait - time.Millisecond)
		open(fmt.Sprintf("%v after a failed probe", wait-time.Millisecond))
		clk.advance(time.Millisecond)
		before := ep.hits()
		if err := call(); errors.Is(err, flasherr.ErrCircuitOpen) || ep.hits() != before+1 {
			t.Fatalf("probe after %v: %v after %d requests", wait, err, ep.hits()-before)
		}
	}
	clk.advance(DefaultBreakerMaxOpenFor - time.Millisecond)
	open("the capped wait")

	// A function that fails is a healthy endpoint: never opens.
	clk.advance(time.Millisecond)
	mode.Store("failed")
	for range 3 * DefaultBreakerFailures {
		if err := call(); !errors.Is(err, flasherr.ErrRemoteFunction) {
			t.Fatalf("FAILED job: got %v", err)
		}
	}
	if iv.brk.any() {
		t.Fatal("breaker still tracked after a healthy answer")
	}
}

// TestBreakerHungEndpoint: an endpoint that never answers within the
// callers' deadlines opens the breaker like one that refuses; callers that
// cancel say nothing about it. With a second replica, calls then avoid it.
func TestBreakerHungEndpoint(t *testing.T) {
	hung := &scripted{answer: func(_ int, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }}
	good := &scripted{answer: failThen(0, 0, "")}
	srvHung, client := startServer(t, hung)
	srvGood, _ := startServer(t, good)
	iv := newTestInvoker(t, client)
	call := func(tg *Target, cancelled bool) error {
		d := 20 * time.Millisecond
		if len(tg.URLs) > 1 {
			d = 5 * time.Second // ample for the healthy replica, even on a loaded machine
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		if cancelled {
			var stop context.CancelFunc
			ctx, stop = context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, stop)
		}
		return iv.Invoke(ctx, tg, embedIn{}, nil)
	}
	only := qbTarget("embed", srvHung.URL)
	for range 2 * DefaultBreakerFailures {
		if err := call(only, true); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: %v", err)
		}
	}
	if iv.brk.any() {
		t.Fatal("cancelled calls counted against the endpoint")
	}
	for range DefaultBreakerFailures {
		if err := call(only, false); !errors.Is(err, flasherr.ErrTimeout) {
			t.Fatalf("got %v, want a timeout", err)
		}
	}
	before := hung.hits()
	if err := call(only, false); !errors.Is(err, flasherr.ErrCircuitOpen) || hung.hits() != before {
		t.Fatalf("after 5 timeouts: %v (%d more requests)", err, hung.hits()-before)
	}
	both := &Target{Function: "embed", Resource: "embedder", URLs: []string{srvHung.URL, srvGood.URL}, inflight: make([]atomic.Int64, 2)}
	for range 20 {
		if err := call(both, false); err != nil {
			t.Fatalf("with a healthy replica: %v", err)
		}
	}
	if hung.hits() != before {
		t.Fatalf("the hung replica got %d more requests", hung.hits()-before)
	}
}

// TestBreakerLB: an LB function's own error (500 with error_type) is a
// healthy endpoint; a bare 500 is not.
func TestBreakerLB(t *testing.T) {
	var typed atomic.Bool
	ep := &scripted{answer: func(_ int, w http.ResponseWriter, _ *http.Request) {
		if typed.Load() {
			wire.WriteError(w, 500, "bad input", "error_type", "ValueError")
			return
		}
		wire.WriteError(w, 500, "internal")
	}}
	srv, client := startServer(t, ep)
	iv := newTestInvoker(t, client)
	tg := &Target{Function: "process", Resource: "api", LB: true, Method: "POST", Path: "/process", URLs: []string{srv.URL}}
	typed.Store(true)
	for range 2 * DefaultBreakerFailures {
		if err := iv.Invoke(context.Background(), tg, embedIn{}, nil); !errors.Is(err, flasherr.ErrRemoteFunction) {
			t.Fatalf("got %v", err)
		}
	}
	typed.Store(false)
	for range DefaultBreakerFailures {
		iv.Invoke(context.Background(), tg, embedIn{}, nil)
	}
	if err := iv.Invoke(context.Background(), tg, embedIn{}, nil); !errors.Is(err, flasherr.ErrCircuitOpen) {
		t.Fatalf("got %v", err)
	}
}

// TestBreakersBounded: the breaker table never holds more than maxBreakers
// URLs, a success forgets a URL, and a disabled breaker tracks nothing.
func TestBreakersBounded(t *testing.T) {
	b := newBreakers(BreakerPolicy{}, time.Now)
	for i := range maxBreakers + 100 {
		b.record(fmt.Sprintf("http://h%d", i), failing, false)
	}
	if len(b.m) > maxBreakers || int(b.tracked.Load()) != len(b.m) {
		t.Fatalf("%d breakers tracked (counter %d)", len(b.m), b.tracked.Load())
	}
	for u := range b.m {
		b.record(u, healthy, false)
	}
	if len(b.m) != 0 || b.any() {
		t.Fatalf("%d left after successes", len(b.m))
	}
	off := newBreakers(BreakerPolicy{Failures: -1}, time.Now)
	for range 10 {
		off.record("http://x", failing, false)
	}
	if _, err := off.allow("http://x"); err != nil || off.any() {
		t.Fatalf("disabled breaker: %v", err)
	}
}

// TestInvokerErrorsHideKey: neither an error of the invoker nor its logs
// contain the API key or a URL's password, even when an endpoint echoes
// the Authorization header back.
func TestInvokerErrorsHideKey(t *testing.T) {
	const key = "sk-live-0123456789-SECRET"
	echo := &scripted{answer: func(n int, w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/runsync":
			if n%2 == 0 {
				wire.WriteError(w, 500, "rejected "+auth)
				return
			}
			wire.WriteJSON(w, 200, map[string]any{"id": "j", "status": "FAILED", "error": "ValueError: " + auth,
				"output": map[string]any{"success": false, "error": "saw " + auth, "error_type": "ValueError"}})
		case "/process":
			wire.WriteError(w, 500, "saw "+auth, "error_type", "ValueError")
		default:
			w.WriteHeader(401)
			w.Write([]byte("who is " + auth + "?"))
		}
	}}
	srv, client := startServer(t, echo)
	dead, _ := startServer(t, http.NotFoundHandler())
	dead.Close()
	var logs bytes.Buffer
	iv := NewInvoker(InvokerConfig{APIKey: key, Client: client,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	iv.retry.Base, iv.retry.WaitRefused = time.Millisecond, 50*time.Millisecond
	withPass := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1)
	deadPass := strings.Replace(dead.URL, "http://", "http://user:hunter2@", 1)
	targets := []*Target{
		qbTarget("embed", withPass), qbTarget("embed", withPass),
		{Function: "process", Resource: "api", LB: true, Method: "POST", Path: "/process", URLs: []string{withPass}},
		{Function: "other", Resource: "api", LB: true, Method: "GET", Path: "/other", URLs: []string{withPass}},
		qbTarget("embed", deadPass),
	}
	for _, tg := range targets {
		err := iv.Invoke(context.Background(), tg, embedIn{}, nil)
		if err == nil {
			t.Fatalf("%s: no error", tg.Function)
		}
		if msg := err.Error(); strings.Contains(msg, key) || strings.Contains(msg, "hunter2") {
			t.Errorf("error shows a secret: %s", msg)
		}
		var re *flasherr.RemoteError
		if errors.As(err, &re) && strings.Contains(re.Message, key) {
			t.Errorf("remote error message shows the key: %s", re.Message)
		}
	}
	if echo.hits() < 4 || logs.Len() == 0 {
		t.Fatalf("%d requests, %d bytes of logs: the test did not run its cases", echo.hits(), logs.Len())
	}
	if strings.Contains(logs.String(), key) || strings.Contains(logs.String(), "hunter2") {
		t.Errorf("logs show a secret: %s", logs.String())
	}
}

// TestRetryAcrossRestart: a call made while its endpoint is down (refusing
// connections, long enough for the breaker to open) succeeds once the
// endpoint is back on the same address, within the caller's deadline, and
// the endpoint runs it once.
func TestRetryAcrossRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ep := &scripted{answer: failThen(0, 0, "")}
	srv := httptest.NewUnstartedServer(ep)
	t.Cleanup(srv.Close)
	var dials atomic.Int64
	tr := wire.NewTransport()
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		if dials.Add(1) == DefaultBreakerFailures+2 { // the breaker opened, and a probe failed
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("listen again on %s: %v", addr, err)
			} else {
				srv.Listener = l
				srv.Start()
			}
		}
		return dial(ctx, network, a)
	}
	t.Cleanup(tr.CloseIdleConnections)
	iv := newTestInvoker(t, &http.Client{Transport: tr})
	iv.retry.Base, iv.retry.Cap = time.Millisecond, 4*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := iv.Invoke(ctx, qbTarget("embed", "http://"+addr), embedIn{}, nil); err != nil {
		t.Fatalf("call across the restart: %v", err)
	}
	if ep.hits() != 1 {
		t.Fatalf("%d requests reached the endpoint, want 1", ep.hits())
	}
}

// TestBreakerProbesInBackground: a hung replica whose breaker is due for a
// probe gets no caller's request while another replica is healthy; it is
// probed with GET /ping instead, and stays open while it does not answer.
func TestBreakerProbesInBackground(t *testing.T) {
	var calls, pings atomic.Int64
	hung := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			pings.Add(1)
		} else {
			calls.Add(1)
		}
		io.Copy(io.Discard, r.Body) // the server notices a gone client only once the body is read
		<-r.Context().Done()
	})
	srvHung, client := startServer(t, hung)
	srvGood, _ := startServer(t, &scripted{answer: failThen(0, 0, "")})
	clk := &clock{now: time.Unix(1000, 0)}
	iv := NewInvoker(InvokerConfig{APIKey: "k", Client: client, Logger: quietLogger(), Now: clk.Now,
		Breaker: BreakerPolicy{Failures: 1}})
	only := qbTarget("embed", srvHung.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := iv.Invoke(ctx, only, embedIn{}, nil); !errors.Is(err, flasherr.ErrTimeout) {
		t.Fatalf("hung replica: %v, want a timeout", err)
	}
	cancel()
	before := calls.Load()
	both := &Target{Function: "embed", Resource: "embedder", URLs: []string{srvHung.URL, srvGood.URL}, inflight: make([]atomic.Int64, 2)}
	for i := range 20 {
		clk.advance(DefaultBreakerMaxOpenFor) // the hung replica's breaker is due for a probe at every call
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := iv.Invoke(ctx, both, embedIn{}, nil)
		cancel()
		if err != nil {
			t.Fatalf("call %d with a healthy replica beside a hung one: %v", i, err)
		}
	}
	if n := calls.Load() - before; n != 0 {
		t.Errorf("the hung replica got %d callers' requests while it was due for a probe", n)
	}
	eventually(t, "a background /ping probe of the hung replica", func() bool { return pings.Load() > 0 })
	iv.brk.mu.Lock()
	open := !iv.brk.closedLocked(srvHung.URL)
	iv.brk.mu.Unlock()
	eventually(t, "the probe's failure recorded", func() bool {
		iv.brk.mu.Lock()
		defer iv.brk.mu.Unlock()
		st := iv.brk.m[srvHung.URL]
		return st != nil && !st.probing
	})
	if !open {
		t.Error("the hung replica's breaker closed without an answer")
	}
}
