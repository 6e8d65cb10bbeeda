package child

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

type embedIn struct {
	Text string `json:"text"`
}

type embedOut struct {
	Vector []float64 `json:"vector"`
	Hops   int       `json:"hops"`
}

// fakeChild answers like a flash QB endpoint (and a few LB routes), with
// functions that misbehave on purpose.
type fakeChild struct {
	mu        sync.Mutex
	headers   []http.Header
	cancelled chan string // path of a request whose ctx ended
	statusN   atomic.Int64
	cancels   atomic.Int64
	calls     atomic.Int64
	hold      chan struct{} // "held" waits on it
}

func newFakeChild() *fakeChild {
	return &fakeChild{cancelled: make(chan string, 16), hold: make(chan struct{})}
}

func (c *fakeChild) lastHeader() http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.headers[len(c.headers)-1]
}

func (c *fakeChild) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.calls.Add(1)
	c.mu.Lock()
	c.headers = append(c.headers, r.Header.Clone())
	c.mu.Unlock()
	hops, _ := strconv.Atoi(r.Header.Get(wire.HeaderHops))
	if hops > wire.MaxHops {
		wire.WriteError(w, http.StatusLoopDetected, "loop")
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/runsync":
		c.runsync(w, r, hops)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/status/"):
		n := c.statusN.Add(1)
		id := strings.TrimPrefix(r.URL.Path, "/status/")
		if id == "job-never" || n < 3 {
			wire.WriteJSON(w, 200, map[string]any{"id": id, "status": "IN_PROGRESS"})
			return
		}
		wire.WriteJSON(w, 200, map[string]any{"id": id, "status": "COMPLETED",
			"output": map[string]any{"success": true, "json_result": embedOut{Vector: []float64{9}}}})
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/cancel/"):
		c.cancels.Add(1)
		wire.WriteJSON(w, 200, map[string]any{"id": strings.TrimPrefix(r.URL.Path, "/cancel/"), "status": "CANCELLED"})
	case r.URL.Path == "/process":
		var in embedIn
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			wire.WriteError(w, 400, err.Error())
			return
		}
		if in.Text == "boom" {
			wire.WriteError(w, 500, "it blew up", "error_type", "ValueError")
			return
		}
		wire.WriteJSON(w, 200, embedOut{Vector: []float64{float64(len(in.Text))}})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/windows/"):
		wire.WriteJSON(w, 200, map[string]any{"path": r.URL.EscapedPath(), "content_length": r.ContentLength})
	default:
		wire.WriteError(w, http.StatusNotFound, "no route")
	}
}

func (c *fakeChild) runsync(w http.ResponseWriter, r *http.Request, hops int) {
	var env struct {
		Input struct {
			FunctionName        string            `json:"function_name"`
			ExecutionType       string            `json:"execution_type"`
			Args                []json.RawMessage `json:"args"`
			Kwargs              map[string]any    `json:"kwargs"`
			SerializationFormat string            `json:"serialization_format"`
		} `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&env); err != nil || env.Input.ExecutionType != "function" ||
		env.Input.SerializationFormat != "json" || len(env.Input.Args) != 1 || env.Input.Kwargs == nil {
		wire.WriteError(w, 400, "bad envelope")
		return
	}
	in := env.Input
	switch in.FunctionName {
	case "embed":
		var arg embedIn
		if err := json.Unmarshal(in.Args[0], &arg); err != nil {
			wire.WriteError(w, 400, err.Error())
			return
		}
		wire.WriteJSON(w, 200, map[string]any{"id": "j1", "status": "COMPLETED",
			"output": map[string]any{"success": true, "json_result": embedOut{Vector: []float64{float64(len(arg.Text))}, Hops: hops}}})
	case "fail":
		wire.WriteJSON(w, 200, map[string]any{"id": "j2", "status": "FAILED", "error": "ValueError: bad text",
			"output": map[string]any{"success": false, "error": "bad text", "error_type": "ValueError"}})
	case "timeout":
		wire.WriteJSON(w, 200, map[string]any{"id": "j3", "status": "TIMED_OUT"})
	case "async":
		wire.WriteJSON(w, 200, map[string]any{"id": "job-1", "status": "IN_QUEUE"})
	case "forever":
		wire.WriteJSON(w, 200, map[string]any{"id": "job-never", "status": "IN_PROGRESS"})
	case "garbage":
		wire.WriteRawJSON(w, 200, []byte(`{"id":"j4","status":"COMPLETED","output":{"success":true,"json_result":"not a vector"}}`))
	case "python":
		wire.WriteRawJSON(w, 200, []byte(`{"id":"j6","status":"COMPLETED","output":{"result":"gASVCwAAAAAAAACMB2hlbGxvlC4="}}`))
	case "bare":
		wire.WriteRawJSON(w, 200, []byte(`{"id":"j7","status":"COMPLETED","output":"hello"}`))
	case "noresult":
		wire.WriteRawJSON(w, 200, []byte(`{"id":"j8","status":"COMPLETED","output":{"success":true}}`))
	case "nooutput":
		wire.WriteRawJSON(w, 200, []byte(`{"id":"j9","status":"COMPLETED"}`))
	case "notjson":
		w.Write([]byte("<html>oops</html>"))
	case "busy":
		w.Header().Set("Retry-After", "1")
		wire.WriteError(w, http.StatusTooManyRequests, "queue full")
	case "broken":
		wire.WriteError(w, http.StatusInternalServerError, "internal")
	case "slow":
		<-r.Context().Done()
		c.cancelled <- r.URL.Path
	case "held":
		<-c.hold
		wire.WriteJSON(w, 200, map[string]any{"id": "j5", "status": "COMPLETED", "output": map[string]any{"success": true, "json_result": nil}})
	default:
		wire.WriteError(w, http.StatusNotFound, "unknown function "+in.FunctionName)
	}
}

func qbTarget(fn string, urls ...string) *Target {
	return &Target{Function: fn, Resource: "embedder", URLs: urls}
}

func newTestInvoker(t testing.TB, client *http.Client) *Invoker {
	return NewInvoker(InvokerConfig{APIKey: "secret", Client: client, Logger: quietLogger()})
}

func TestInvokeQB(t *testing.T) {
	c := newFakeChild()
	srv, client := startServer(t, c)
	iv := newTestInvoker(t, client)
	ctx := context.Background()

	t.Run("completed", func(t *testing.T) {
		var out embedOut
		if err := iv.Invoke(ctx, qbTarget("embed", srv.URL), embedIn{Text: "hello"}, &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Vector) != 1 || out.Vector[0] != 5 {
			t.Fatalf("out %+v", out)
		}
	})
	t.Run("failed", func(t *testing.T) {
		err := iv.Invoke(ctx, qbTarget("fail", srv.URL), embedIn{}, nil)
		var re *flasherr.RemoteError
		if !errors.As(err, &re) || re.Type != "ValueError" || re.Message != "bad text" ||
			re.Function != "fail" || re.Resource != "embedder" || !errors.Is(err, flasherr.ErrRemoteFunction) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("timed out", func(t *testing.T) {
		if err := iv.Invoke(ctx, qbTarget("timeout", srv.URL), embedIn{}, nil); !errors.Is(err, flasherr.ErrTimeout) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("in queue, then status", func(t *testing.T) {
		var out embedOut
		if err := iv.Invoke(ctx, qbTarget("async", srv.URL), embedIn{}, &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Vector) != 1 || out.Vector[0] != 9 || c.statusN.Load() != 3 {
			t.Fatalf("out %+v after %d status polls", out, c.statusN.Load())
		}
	})
	t.Run("never finishes: timeout cancels the job", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		err := iv.Invoke(ctx, qbTarget("forever", srv.URL), embedIn{}, nil)
		if !errors.Is(err, flasherr.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
		if c.cancels.Load() != 1 {
			t.Fatalf("%d cancels sent, want 1", c.cancels.Load())
		}
	})
	errCases := []struct {
		fn   string
		want error
		code int
	}{
		{"nosuch", flasherr.ErrFunctionNotFound, 404},
		{"busy", flasherr.ErrOverloaded, 429},
		{"broken", nil, 500},
		{"garbage", flasherr.ErrSerialization, 0},
		{"notjson", flasherr.ErrSerialization, 0},
	}
	for _, tc := range errCases {
		t.Run(tc.fn, func(t *testing.T) {
			// "busy" asks for Retry-After: 1, more than this call's budget:
			// the invoker gives up at once instead of waiting.
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var out embedOut
			err := iv.Invoke(ctx, qbTarget(tc.fn, srv.URL), embedIn{}, &out)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var se *flasherr.StatusError
			if tc.code != 0 && (!errors.As(err, &se) || se.Code != tc.code) {
				t.Fatalf("got %v, want status %d", err, tc.code)
			}
		})
	}
	t.Run("argument not encodable", func(t *testing.T) {
		if err := iv.Invoke(ctx, qbTarget("embed", srv.URL), func() {}, nil); !errors.Is(err, flasherr.ErrSerialization) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("answer too large", func(t *testing.T) {
		small := NewInvoker(InvokerConfig{Client: client, MaxResponse: 10, Logger: quietLogger()})
		if err := small.Invoke(ctx, qbTarget("embed", srv.URL), embedIn{}, nil); !errors.Is(err, flasherr.ErrSerialization) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no URL", func(t *testing.T) {
		if err := iv.Invoke(ctx, qbTarget("embed"), embedIn{}, nil); !errors.Is(err, flasherr.ErrEndpointNotReady) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestInvokeUnreachable(t *testing.T) {
	srv, client := startServer(t, http.NotFoundHandler())
	srv.Close()
	err := fastRetries(newTestInvoker(t, client)).Invoke(context.Background(), qbTarget("embed", srv.URL), embedIn{}, nil)
	if !errors.Is(err, flasherr.ErrEndpointNotReady) || !flasherr.Retryable(err) {
		t.Fatalf("got %v", err)
	}
}

func TestInvokeLoopDetected(t *testing.T) {
	c := newFakeChild()
	srv, client := startServer(t, c)
	ctx := wire.WithMeta(context.Background(), wire.Meta{Hops: wire.MaxHops})
	err := newTestInvoker(t, client).Invoke(ctx, qbTarget("embed", srv.URL), embedIn{}, nil)
	var se *flasherr.StatusError
	if !errors.Is(err, flasherr.ErrLoopDetected) || !errors.As(err, &se) || se.Code != 508 {
		t.Fatalf("got %v", err)
	}
}

func TestInvokeLB(t *testing.T) {
	c := newFakeChild()
	srv, client := startServer(t, c)
	iv := newTestInvoker(t, client)
	ctx := context.Background()

	post := &Target{Function: "process", Resource: "api", LB: true, Method: "POST", Path: "/process", URLs: []string{srv.URL}}
	var out embedOut
	if err := iv.Invoke(ctx, post, embedIn{Text: "abc"}, &out); err != nil || out.Vector[0] != 3 {
		t.Fatalf("POST: %+v %v", out, err)
	}
	if ct := c.lastHeader().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	err := iv.Invoke(ctx, post, embedIn{Text: "boom"}, &out)
	var re *flasherr.RemoteError
	if !errors.As(err, &re) || re.Type != "ValueError" || re.Message != "it blew up" {
		t.Fatalf("LB function error: %v", err)
	}

	get := &Target{Function: "window", Resource: "api", LB: true, Method: "GET",
		Path: "/windows/{window}/items/{id}", URLs: []string{srv.URL}}
	in := struct {
		Window string `json:"window"`
		ID     int    `json:"id"`
		Other  string `json:"other"`
	}{"a b/c?", 7, "x"}
	var got struct {
		Path          string `json:"path"`
		ContentLength int64  `json:"content_length"`
	}
	if err := iv.Invoke(ctx, get, in, &got); err != nil {
		t.Fatal(err)
	}
	if got.Path != "/windows/a%20b%2Fc%3F/items/7" || got.ContentLength != 0 {
		t.Fatalf("GET saw %+v", got)
	}

	missing := &Target{Function: "x", Resource: "api", LB: true, Method: "GET", Path: "/windows/{nope}", URLs: []string{srv.URL}}
	if err := iv.Invoke(ctx, missing, in, nil); !errors.Is(err, flasherr.ErrSerialization) {
		t.Fatalf("missing path field: %v", err)
	}
	unknown := &Target{Function: "x", Resource: "api", LB: true, Method: "POST", Path: "/nothing", URLs: []string{srv.URL}}
	if err := iv.Invoke(ctx, unknown, in, nil); !errors.Is(err, flasherr.ErrFunctionNotFound) {
		t.Fatalf("unknown route: %v", err)
	}
}

// TestInvokeOutputWithoutResult: a COMPLETED job whose output is not a
// flash result fails with an *flasherr.OutputError naming what came back,
// never a zero Out with a nil error.
func TestInvokeOutputWithoutResult(t *testing.T) {
	srv, client := startServer(t, newFakeChild())
	iv := newTestInvoker(t, client)
	for _, tc := range []struct{ fn, names string }{
		{"python", `{"result":"gASV`},
		{"bare", `"hello"`},
		{"noresult", `{"success":true}`},
		{"nooutput", "without an output"},
	} {
		t.Run(tc.fn, func(t *testing.T) {
			for _, out := range []any{&embedOut{}, nil} {
				err := iv.Invoke(context.Background(), qbTarget(tc.fn, srv.URL), embedIn{}, out)
				var oe *flasherr.OutputError
				if !errors.As(err, &oe) || !errors.Is(err, flasherr.ErrSerialization) || !strings.Contains(err.Error(), tc.names) {
					t.Fatalf("out %T: got %v; want an OutputError naming %s", out, err, tc.names)
				}
				if oe.Function != tc.fn || oe.Resource != "embedder" {
					t.Fatalf("OutputError %+v", oe)
				}
			}
		})
	}
}

func TestInvokeHeaders(t *testing.T) {
	c := newFakeChild()
	srv, client := startServer(t, c)
	iv := newTestInvoker(t, client)

	// Serving a call: its metadata carries on, one hop further.
	parent := wire.NewTraceParent()
	ctx := wire.WithMeta(context.Background(), wire.Meta{RequestID: "req-42", TraceParent: parent, Hops: 3})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out embedOut
	if err := iv.Invoke(ctx, qbTarget("embed", srv.URL), embedIn{}, &out); err != nil {
		t.Fatal(err)
	}
	h := c.lastHeader()
	if out.Hops != 4 || h.Get(wire.HeaderHops) != "4" {
		t.Errorf("hops %d / %q, want 4", out.Hops, h.Get(wire.HeaderHops))
	}
	if h.Get("Authorization") != "Bearer secret" || h.Get(wire.HeaderRequestID) != "req-42" {
		t.Errorf("headers %v", h)
	}
	tp := h.Get("traceparent")
	wantTrace, _ := wire.ParseTraceParent(parent)
	if gotTrace, ok := wire.ParseTraceParent(tp); !ok || gotTrace != wantTrace || tp == parent {
		t.Errorf("traceparent %q, parent %q: want a child span of the same trace", tp, parent)
	}
	if ms, err := strconv.Atoi(h.Get(wire.HeaderTimeout)); err != nil || ms <= 4000 || ms > 5000 {
		t.Errorf("X-Flash-Timeout %q, want about 5000", h.Get(wire.HeaderTimeout))
	}

	// A fresh call: new ids, hop 1, and the 60 s default deadline.
	if err := iv.Invoke(context.Background(), qbTarget("embed", srv.URL), embedIn{}, &out); err != nil {
		t.Fatal(err)
	}
	h = c.lastHeader()
	if _, ok := wire.ParseTraceParent(h.Get("traceparent")); !ok || h.Get(wire.HeaderRequestID) == "" || h.Get(wire.HeaderHops) != "1" {
		t.Errorf("fresh call headers %v", h)
	}
	if ms, err := strconv.Atoi(h.Get(wire.HeaderTimeout)); err != nil || ms <= 59000 || ms > 60000 {
		t.Errorf("default X-Flash-Timeout %q, want about 60000", h.Get(wire.HeaderTimeout))
	}
}

func TestInvokeDeadlineCancelsCallee(t *testing.T) {
	c := newFakeChild()
	srv, client := startServer(t, c)
	iv := newTestInvoker(t, client)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := iv.Invoke(ctx, qbTarget("slow", srv.URL), embedIn{}, nil)
	if !errors.Is(err, flasherr.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	select {
	case <-c.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the callee's request context was not cancelled")
	}

	// Cancellation (not a deadline) comes back as itself.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() {
		eventually(t, "the call", func() bool { return c.calls.Load() >= 2 })
		cancel2()
	}()
	err = iv.Invoke(ctx2, qbTarget("slow", srv.URL), embedIn{}, nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, flasherr.ErrTimeout) {
		t.Fatalf("got %v", err)
	}
	select {
	case <-c.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the callee's request context was not cancelled")
	}
}

// TestInvokeSpreadsOverReplicas: with calls held in flight, the power of
// two choices sends each new call to the less busy replica.
func TestInvokeSpreadsOverReplicas(t *testing.T) {
	a, b := newFakeChild(), newFakeChild()
	srvA, client := startServer(t, a)
	srvB, _ := startServer(t, b)
	release := make(chan struct{})
	a.hold, b.hold = release, release
	iv := newTestInvoker(t, client)

	r := NewRouter(RouterConfig{Identity: "api", Logger: quietLogger()})
	r.Apply(mustParse(t, []byte(`{"resources":{"embedder":{"resource_type":"ServerlessResource",
		"endpoint_urls":["`+srvA.URL+`","`+srvB.URL+`"]}},"function_registry":{"held":"embedder"}}`)), 1)
	tg, err := r.Route(context.Background(), "held")
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		eventually(t, "previous calls in flight", func() bool { return a.calls.Load()+b.calls.Load() == int64(i) })
		wg.Go(func() {
			if err := iv.Invoke(context.Background(), tg, embedIn{}, nil); err != nil {
				t.Error(err)
			}
		})
	}
	eventually(t, "all in flight", func() bool { return a.calls.Load()+b.calls.Load() == n })
	close(release)
	wg.Wait()
	if d := a.calls.Load() - b.calls.Load(); d < -1 || d > 1 {
		t.Fatalf("replicas got %d and %d calls", a.calls.Load(), b.calls.Load())
	}
	for i := range tg.inflight {
		if v := tg.inflight[i].Load(); v != 0 {
			t.Fatalf("in-flight count %d left at %d", i, v)
		}
	}
}
