package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

func TestNewRejects(t *testing.T) {
	ok := func(Input) (Job, error) { return nil, nil }
	tests := []struct {
		name  string
		funcs []Func
		cfg   Config
		want  []string
	}{
		{"duplicate name", []Func{{Name: "f", Bind: ok}, {Name: "f", Bind: ok}}, Config{}, []string{`"f": registered twice`}},
		{"empty name", []Func{{Bind: ok}}, Config{}, []string{"empty name"}},
		{"bad name", []Func{{Name: "a-b", Bind: ok}}, Config{}, []string{"identifier"}},
		{"nil bind", []Func{{Name: "f"}}, Config{}, []string{"Bind is nil"}},
		{"bad method", []Func{{Name: "f", Method: "TRACE", Path: "/x", Bind: ok}}, Config{}, []string{`method "TRACE"`}},
		{"path without method", []Func{{Name: "f", Path: "/x", Bind: ok}}, Config{}, []string{`method ""`}},
		{"relative path", []Func{{Name: "f", Method: "GET", Path: "x", Bind: ok}}, Config{}, []string{"must start with /"}},
		{"reserved path", []Func{{Name: "f", Method: "GET", Path: "/Health/", Bind: ok}}, Config{}, []string{"reserved"}},
		{"reserved tree", []Func{{Name: "f", Method: "GET", Path: "/v2/{x}", Bind: ok}}, Config{}, []string{"reserved"}},
		{"duplicate route", []Func{{Name: "f", Method: "GET", Path: "/x", Bind: ok}, {Name: "g", Method: "GET", Path: "/x", Bind: ok}}, Config{}, []string{`already taken by function "f"`}},
		{"conflicting patterns", []Func{{Name: "f", Method: "GET", Path: "/a/{x}", Bind: ok}, {Name: "g", Method: "GET", Path: "/{y}/b", Bind: ok}}, Config{}, []string{"conflicts"}},
		{"invalid pattern", []Func{{Name: "f", Method: "GET", Path: "/a/{x", Bind: ok}}, Config{}, []string{`route GET /a/{x`}},
		{"negative config", nil, Config{Workers: -1}, []string{"must not be negative"}},
		{"all at once", []Func{{Name: "f", Bind: ok}, {Name: "f"}, {Name: "g", Method: "GET", Path: "/ping", Bind: ok}}, Config{},
			[]string{"registered twice", "Bind is nil", "reserved"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg, tt.funcs)
			if err == nil || s != nil {
				t.Fatalf("New = %v, %v; want an error", s, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestAuth(t *testing.T) {
	s := newServer(t, Config{APIKey: "s3cret"}, newGate())
	tests := []struct {
		name, method, path, auth string
		code                     int
	}{
		{"no key", "POST", "/runsync", "", 401},
		{"wrong key", "POST", "/runsync", "Bearer nope", 401},
		{"longer key", "POST", "/runsync", "Bearer s3cret-and-more", 401},
		{"basic scheme", "POST", "/runsync", "Basic czNjcmV0", 401},
		{"right key", "POST", "/runsync", "Bearer s3cret", 200},
		{"scheme any case", "POST", "/runsync", "bearer s3cret", 200},
		{"LB route", "POST", "/stats/x", "", 401},
		{"metrics", "GET", "/metrics", "", 401},
		{"metrics with key", "GET", "/metrics", "Bearer s3cret", 200},
		{"unknown route", "GET", "/nope", "", 401},
		{"ping open", "GET", "/ping", "", 200},
		{"ping HEAD open", "HEAD", "/ping", "", 200},
		{"ping POST is not open", "POST", "/ping", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h []string
			if tt.auth != "" {
				h = append(h, "Authorization: "+tt.auth)
			}
			r := do(t, s, tt.method, tt.path, envelopeFor("echo", 1), h...)
			if r.Code != tt.code {
				t.Fatalf("code %d, want %d: %s", r.Code, tt.code, r.Body)
			}
			if r.Code == 401 {
				if r.Header.Get("WWW-Authenticate") == "" || !strings.Contains(r.json(t)["error"].(string), "API key") {
					t.Fatalf("401 answer: %v %s", r.Header, r.Body)
				}
			}
		})
	}
	// Bad call headers are answered after auth: a stranger learns nothing.
	for _, h := range []string{"X-Flash-Hops: abc", "X-Flash-Hops: 99", "X-Flash-Timeout: soon"} {
		if r := do(t, s, "POST", "/runsync", envelopeFor("echo", 1), h); r.Code != 401 {
			t.Errorf("%s without the key: %d %s", h, r.Code, r.Body)
		}
	}
}

func TestPing(t *testing.T) {
	var mu sync.Mutex
	ready := false
	s := newServer(t, Config{Ready: func() bool { mu.Lock(); defer mu.Unlock(); return ready }}, newGate())
	if r := do(t, s, "GET", "/ping", ""); r.Code != 204 || len(r.Body) != 0 {
		t.Fatalf("not ready: %d %q", r.Code, r.Body)
	}
	mu.Lock()
	ready = true
	mu.Unlock()
	if r := do(t, s, "GET", "/ping", ""); r.Code != 200 || fmt.Sprint(r.json(t)) != "map[status:healthy]" {
		t.Fatalf("ready: %d %q", r.Code, r.Body)
	}
}

func TestHops(t *testing.T) {
	s := newServer(t, Config{}, newGate())
	tests := []struct {
		hops string
		code int
	}{
		{"", 200}, {"0", 200}, {"16", 200},
		{"17", 508}, {"1000", 508},
		{"-1", 400}, {"+1", 400}, {"1.5", 400}, {"abc", 400}, {" 1", 400}, {"99999999999999999999", 400},
	}
	for _, tt := range tests {
		t.Run(tt.hops, func(t *testing.T) {
			var h []string
			if tt.hops != "" {
				h = append(h, "X-Flash-Hops: "+tt.hops)
			}
			r := do(t, s, "POST", "/runsync", envelopeFor("meta", 1), h...)
			if r.Code != tt.code {
				t.Fatalf("code %d, want %d: %s", r.Code, tt.code, r.Body)
			}
			switch m := r.json(t); tt.code {
			case 508:
				if !strings.HasPrefix(m["error"].(string), "loop detected") {
					t.Fatalf("508 body %v", m)
				}
			case 200:
				want := 0.0
				fmt.Sscan(tt.hops, &want)
				if got := m["output"].(map[string]any)["json_result"].(map[string]any)["hops"]; got != want {
					t.Fatalf("function saw hops %v, want %v", got, want)
				}
			}
		})
	}
	if r := do(t, s, "POST", "/runsync", envelopeFor("meta", 1), "X-Flash-Timeout: soon"); r.Code != 400 {
		t.Fatalf("bad timeout header: %d %s", r.Code, r.Body)
	}
}

func TestRequestMetaAndLogs(t *testing.T) {
	var buf syncBuffer
	s := newServer(t, Config{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}, newGate())
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	r := do(t, s, "POST", "/runsync", envelopeFor("meta", 1), "X-Request-Id: req-123", "Traceparent: "+tp, "X-Flash-Timeout: 60000")
	if r.Header.Get("X-Request-Id") != "req-123" {
		t.Fatalf("request id not echoed: %v", r.Header)
	}
	got := r.json(t)["output"].(map[string]any)["json_result"].(map[string]any)
	if got["request_id"] != "req-123" || got["traceparent"] != tp || got["deadline"] != true {
		t.Fatalf("function saw %v", got)
	}

	r = do(t, s, "POST", "/runsync", envelopeFor("meta", 1), "X-Request-Id: bad id\twith tab", "Traceparent: junk")
	rid := r.Header.Get("X-Request-Id")
	got = r.json(t)["output"].(map[string]any)["json_result"].(map[string]any)
	if len(rid) != 32 || got["request_id"] != rid || got["deadline"] != false {
		t.Fatalf("generated request id %q, function saw %v", rid, got)
	}
	if _, ok := wire.ParseTraceParent(got["traceparent"].(string)); !ok {
		t.Fatalf("generated traceparent %v", got["traceparent"])
	}

	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("want one log line per request, got %d: %s", len(lines), buf.Bytes())
	}
	first := lines[0]
	for k, want := range map[string]any{"msg": "request", "level": "DEBUG", "method": "POST", "path": "/runsync", "status": 200.0,
		"request_id": "req-123", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "resource": "standalone"} {
		if first[k] != want {
			t.Errorf("log %s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := first["duration"]; !ok {
		t.Error("log line without duration")
	}
}

func TestMetrics(t *testing.T) {
	s := newServer(t, Config{Identity: "worker"}, newGate())
	do(t, s, "POST", "/runsync", envelopeFor("echo", 1))
	do(t, s, "POST", "/runsync", envelopeFor("fail", 1))
	do(t, s, "GET", "/nope", "")
	r := do(t, s, "GET", "/metrics", "")
	if r.Code != 200 {
		t.Fatalf("/metrics: %d", r.Code)
	}
	for _, want := range []string{
		`flash_http_requests_total{code="200",resource="worker",route="POST /runsync"} 2`,
		`flash_http_requests_total{code="404",resource="worker",route="unmatched"} 1`,
		`flash_http_request_duration_seconds_count{code="200",resource="worker",route="POST /runsync"} 2`,
		`flash_jobs_total{function="echo",resource="worker",status="COMPLETED"} 1`,
		`flash_jobs_total{function="fail",resource="worker",status="FAILED"} 1`,
		`flash_jobs_queued{resource="worker"} 0`,
		`flash_jobs_running{resource="worker"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if mfs, err := s.Registry().Gather(); err != nil || len(mfs) == 0 {
		t.Fatalf("Registry().Gather() = %d families, %v", len(mfs), err)
	}
}

func TestHandleExtraRoute(t *testing.T) {
	s := newServer(t, Config{APIKey: "k"}, newGate())
	s.Handle("GET /manifest", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _ := wire.MetaFrom(r.Context())
		wire.WriteJSON(w, http.StatusOK, map[string]string{"request_id": m.RequestID})
	}))
	if r := do(t, s, "GET", "/manifest", ""); r.Code != 401 {
		t.Fatalf("extra route without key: %d", r.Code)
	}
	req := do(t, s, "GET", "/manifest", "", "Authorization: Bearer k", "X-Request-Id: abc")
	if req.Code != 200 || req.json(t)["request_id"] != "abc" {
		t.Fatalf("extra route: %d %q", req.Code, req.Body)
	}
}

func TestShutdownDrains(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{Workers: 1}, g)
	ids := []string{
		submitAsync(t, s, "block", map[string]any{"tag": 1}),
		submitAsync(t, s, "block", map[string]any{"tag": 2}),
		submitAsync(t, s, "block", map[string]any{"tag": 3}),
	}
	wait(t, g.started, "first job")
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	eventually(t, "shutdown to refuse jobs", func() bool {
		return do(t, s, "POST", "/run", envelopeFor("echo", 1)).Code == http.StatusServiceUnavailable
	})
	if r := do(t, s, "POST", "/runsync", envelopeFor("echo", 1)); r.Code != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("runsync during shutdown: %d %s", r.Code, r.Body)
	}
	close(g.release)
	if err := wait(t, done, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, id := range ids {
		if m := jobStatus(t, s, id); m["status"] != StatusCompleted {
			t.Fatalf("job %s after drain: %v", id, m)
		}
	}
}

func TestShutdownGraceOver(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{Workers: 1}, g)
	running := submitAsync(t, s, "block", map[string]any{"tag": 1})
	queued := submitAsync(t, s, "block", map[string]any{"tag": 2})
	wait(t, g.started, "first job")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v; want context.Canceled", err)
	}
	if cause := wait(t, g.ctxErrs, "running job cancellation"); !errors.Is(cause, ErrShuttingDown) {
		t.Fatalf("cause %v", cause)
	}
	for _, id := range []string{running, queued} {
		waitStatus(t, s, id, StatusCancelled)
	}
}

func TestServe(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{MaxBody: 1024}, g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, s, 5*time.Second, s.Shutdown) }()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	base := "http://" + ln.Addr().String()
	resp, err := client.Get(base + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ping: %d", resp.StatusCode)
	}

	// Over a real connection, with the length unknown up front (chunked).
	big := io.MultiReader(strings.NewReader(`{"input":{"function_name":"echo","args":["`), strings.NewReader(strings.Repeat("x", 4096)), strings.NewReader(`"]}}`))
	resp, err = client.Post(base+"/runsync", "application/json", big)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized body: %d", resp.StatusCode)
	}

	// A runsync in flight when shutdown starts still gets its answer.
	answer := make(chan string, 1)
	go func() {
		resp, err := client.Post(base+"/runsync", "application/json", strings.NewReader(envelopeFor("block", map[string]any{"tag": "inflight"})))
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- string(b)
	}()
	wait(t, g.started, "in-flight job")
	stop()
	eventually(t, "listener to close", func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(g.release)
	if a := wait(t, answer, "in-flight answer"); !strings.Contains(a, `"released":"inflight"`) {
		t.Fatalf("in-flight answer %q", a)
	}
	if err := wait(t, served, "Serve to return"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServeGraceOver(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{}, g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, s, 50*time.Millisecond, s.Shutdown) }()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	go func() {
		resp, err := client.Post("http://"+ln.Addr().String()+"/runsync", "application/json",
			strings.NewReader(envelopeFor("block", map[string]any{"tag": "stuck"})))
		if err == nil {
			resp.Body.Close()
		}
	}()
	wait(t, g.started, "job")
	stop()
	if err := wait(t, served, "Serve"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve = %v; want DeadlineExceeded", err)
	}
	wait(t, g.ctxErrs, "job to be cancelled")
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// Programming errors in Bind, in an extra handler or in a result never take
// the server down; they answer 500 JSON.
func TestInternalErrors(t *testing.T) {
	s, err := New(Config{Logger: discard()}, []Func{
		{Name: "bindpanic", Bind: func(Input) (Job, error) { panic("bind bug") }},
		{Name: "nojob", Bind: func(Input) (Job, error) { return nil, nil }},
		{Name: "lbunencodable", Method: "GET", Path: "/chan", Bind: func(Input) (Job, error) {
			return func(context.Context) (any, error) { return make(chan int), nil }, nil
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("GET /explode", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("handler bug") }))
	s.Handle("GET /stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through the middleware: %v", err)
		}
		w.Write([]byte(`{}`))
	}))
	tests := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/runsync", envelopeFor("bindpanic", 1), 500, "decoding input of bindpanic: internal error"},
		{"POST", "/run", envelopeFor("nojob", 1), 500, "nojob: Bind returned no job"},
		{"GET", "/chan", "", 500, "json: unsupported type: chan int"},
		{"GET", "/explode", "", 500, "internal error"},
		{"GET", "/stream", "", 200, ""},
	}
	for _, tt := range tests {
		r := do(t, s, tt.method, tt.path, tt.body)
		if r.Code != tt.code {
			t.Fatalf("%s %s: %d %s", tt.method, tt.path, r.Code, r.Body)
		}
		if tt.want != "" && r.json(t)["error"] != tt.want {
			t.Fatalf("%s %s: %s", tt.method, tt.path, r.Body)
		}
	}
	if r := do(t, s, "GET", "/chan", ""); r.json(t)["error_type"] != "SerializationError" {
		t.Fatalf("LB serialization error: %s", r.Body)
	}
}

// TestJobQueueDepthMetric: flash_jobs_queued and flash_jobs_running follow
// jobs waiting for the one worker and running on it.
func TestJobQueueDepthMetric(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{Identity: "worker", Workers: 1}, g)
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := s.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}
	for i := range 3 {
		if r := do(t, s, "POST", "/run", envelopeFor("block", map[string]any{"tag": i})); r.Code != 200 {
			t.Fatalf("/run: %d %s", r.Code, r.Body)
		}
	}
	wait(t, g.started, "the first job running")
	if q, r := gauge("flash_jobs_queued"), gauge("flash_jobs_running"); q != 2 || r != 1 {
		t.Fatalf("queued %v running %v, want 2 and 1", q, r)
	}
	for range 3 {
		g.release <- struct{}{}
	}
	deadline := time.Now().Add(10 * time.Second)
	for gauge("flash_jobs_queued")+gauge("flash_jobs_running") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queued %v running %v after the jobs ended", gauge("flash_jobs_queued"), gauge("flash_jobs_running"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
