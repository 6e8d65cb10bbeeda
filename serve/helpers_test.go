package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

func TestMain(m *testing.M) { goleakMain(m) }

// bindJSON adapts a typed function the way the flash package will.
func bindJSON[In any](fn func(ctx context.Context, in In) (any, error)) func(Input) (Job, error) {
	return func(raw Input) (Job, error) {
		var in In
		if raw.JSON != nil {
			if err := json.Unmarshal(raw.JSON, &in); err != nil {
				return nil, err
			}
		}
		return func(ctx context.Context) (any, error) { return fn(ctx, in) }, nil
	}
}

// valueError is a function error with a Python-like type.
type valueError struct{ msg string }

func (e *valueError) Error() string     { return e.msg }
func (e *valueError) ErrorType() string { return "ValueError" }

// gate lets a test hold functions inside their body: started gets one value
// per entry, and each call waits for release (or its context).
type gate struct {
	started chan string
	release chan struct{}
	ctxErrs chan error // the cause seen by a function whose context ended
}

func newGate() *gate {
	return &gate{started: make(chan string, 64), release: make(chan struct{}), ctxErrs: make(chan error, 64)}
}

func (g *gate) fn(ctx context.Context, in map[string]any) (any, error) {
	g.started <- fmt.Sprint(in["tag"])
	select {
	case <-g.release:
		return map[string]any{"released": in["tag"]}, nil
	case <-ctx.Done():
		g.ctxErrs <- context.Cause(ctx)
		return nil, ctx.Err()
	}
}

// wait receives from ch or fails the test after a generous deadline.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testFuncs is the standard function set: QB functions and LB routes.
func testFuncs(g *gate) []Func {
	type pair struct{ A, B int }
	return []Func{
		{Name: "echo", Bind: bindJSON(func(_ context.Context, in json.RawMessage) (any, error) { return in, nil })},
		{Name: "add", Bind: bindJSON(func(_ context.Context, in pair) (any, error) {
			return map[string]int{"sum": in.A + in.B}, nil
		})},
		{Name: "fail", Bind: bindJSON(func(_ context.Context, in any) (any, error) {
			return nil, fmt.Errorf("checking input: %w", &valueError{"bad value"})
		})},
		{Name: "plainfail", Bind: bindJSON(func(_ context.Context, in any) (any, error) { return nil, errors.New("boom") })},
		{Name: "boom", Bind: bindJSON(func(_ context.Context, in any) (any, error) { panic("kaboom") })},
		{Name: "unencodable", Bind: bindJSON(func(_ context.Context, in any) (any, error) { return func() {}, nil })},
		{Name: "block", Bind: bindJSON(g.fn)},
		{Name: "meta", Bind: bindJSON(func(ctx context.Context, in any) (any, error) {
			m, _ := wire.MetaFrom(ctx)
			_, hasDeadline := ctx.Deadline()
			return map[string]any{"request_id": m.RequestID, "traceparent": m.TraceParent, "hops": m.Hops, "deadline": hasDeadline}, nil
		})},
		{Name: "stats", Method: "POST", Path: "/stats/{window}", Bind: func(in Input) (Job, error) {
			var body map[string]any
			if in.JSON != nil {
				if err := json.Unmarshal(in.JSON, &body); err != nil {
					return nil, err
				}
			}
			return func(context.Context) (any, error) {
				return map[string]any{"window": in.Params["window"], "body": body}, nil
			}, nil
		}},
		{Name: "item", Method: "GET", Path: "/items/{id}", Bind: func(in Input) (Job, error) {
			return func(context.Context) (any, error) {
				return map[string]any{"id": in.Params["id"], "has_body": in.JSON != nil}, nil
			}, nil
		}},
		{Name: "lbfail", Method: "POST", Path: "/fail", Bind: bindJSON(func(_ context.Context, in any) (any, error) {
			return nil, &valueError{"no good"}
		})},
		{Name: "lbcoded", Method: "POST", Path: "/coded/{code}", Bind: func(in Input) (Job, error) {
			return func(context.Context) (any, error) {
				return nil, flasherr.Errorf(flasherr.Code(in.Params["code"]), "no item at http://10.1.2.3:9/x, key Bearer s3cret")
			}, nil
		}},
		{Name: "lbpanic", Method: "PUT", Path: "/panic", Bind: bindJSON(func(_ context.Context, in any) (any, error) { panic("lb kaboom") })},
		{Name: "lbslow", Method: "POST", Path: "/slow", Bind: bindJSON(func(ctx context.Context, in any) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})},
		{Name: "lblate", Method: "POST", Path: "/late", Bind: bindJSON(func(ctx context.Context, in any) (any, error) {
			<-ctx.Done()
			return "done anyway", nil // success after the deadline: still a timeout
		})},
		{Name: "lbblock", Method: "POST", Path: "/block", Bind: bindJSON(g.fn)},
		{Name: "lbroot", Method: "DELETE", Path: "/things/", Bind: bindJSON(func(_ context.Context, in any) (any, error) { return map[string]bool{"deleted": true}, nil })},
	}
}

// newServer builds a server with testFuncs and shuts it down (and releases
// the gate) at cleanup.
func newServer(t testing.TB, cfg Config, g *gate) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg, testFuncs(g))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.Body, err)
	}
	return m
}

// do sends one request through h with optional headers ("K: V" strings).
func do(t testing.TB, h http.Handler, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ": ")
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	// Every answer with a body is JSON, except the Prometheus text.
	if rec.Body.Len() > 0 && !strings.HasSuffix(req.URL.Path, "/metrics") {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json (status %d, body %q)", method, path, ct, rec.Code, rec.Body)
		}
	}
	return response{rec.Code, rec.Header(), bytes.Clone(rec.Body.Bytes())}
}

// envelopeFor builds a /run body calling fn with args [in].
func envelopeFor(fn string, in any) string {
	b, _ := json.Marshal(map[string]any{"input": map[string]any{
		"function_name": fn, "execution_type": "function", "args": []any{in}, "kwargs": map[string]any{},
		"serialization_format": "json",
	}})
	return string(b)
}

// submitAsync posts /run and returns the job id.
func submitAsync(t testing.TB, h http.Handler, fn string, in any) string {
	t.Helper()
	r := do(t, h, "POST", "/run", envelopeFor(fn, in))
	if r.Code != 200 {
		t.Fatalf("/run %s: %d %s", fn, r.Code, r.Body)
	}
	m := r.json(t)
	if m["status"] != StatusInQueue || m["id"] == "" {
		t.Fatalf("/run answer %s", r.Body)
	}
	return m["id"].(string)
}

func jobStatus(t testing.TB, h http.Handler, id string) map[string]any {
	t.Helper()
	r := do(t, h, "GET", "/status/"+id, "")
	if r.Code != 200 {
		t.Fatalf("/status/%s: %d %s", id, r.Code, r.Body)
	}
	return r.json(t)
}

// waitStatus polls /status until the job reaches want.
func waitStatus(t *testing.T, h http.Handler, id, want string) map[string]any {
	t.Helper()
	var m map[string]any
	eventually(t, "job "+id+" "+want, func() bool {
		m = jobStatus(t, h, id)
		return m["status"] == want
	})
	return m
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// serveRequest runs req through h and returns the answer.
func serveRequest(h http.Handler, req *http.Request) response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), bytes.Clone(rec.Body.Bytes())}
}
