package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/flash-go/flash/flasherr"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestRunsync(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		code   int
		status string
		check  func(t *testing.T, m map[string]any)
	}{
		{name: "completed", body: envelopeFor("add", map[string]int{"A": 2, "B": 3}), code: 200, status: StatusCompleted,
			check: func(t *testing.T, m map[string]any) {
				out := m["output"].(map[string]any)
				if out["success"] != true || fmt.Sprint(out["json_result"]) != "map[sum:5]" {
					t.Errorf("output %v", out)
				}
			}},
		{name: "kwargs", body: `{"input":{"function_name":"add","kwargs":{"A":1,"B":1}}}`, code: 200, status: StatusCompleted,
			check: func(t *testing.T, m map[string]any) {
				if r := m["output"].(map[string]any)["json_result"]; fmt.Sprint(r) != "map[sum:2]" {
					t.Errorf("json_result %v", r)
				}
			}},
		{name: "null result", body: envelopeFor("echo", nil), code: 200, status: StatusCompleted,
			check: func(t *testing.T, m map[string]any) {
				out := m["output"].(map[string]any)
				if v, ok := out["json_result"]; !ok || v != nil {
					t.Errorf("json_result present=%v value=%v; want present null", ok, v)
				}
			}},
		{name: "typed error", body: envelopeFor("fail", 1), code: 200, status: StatusFailed,
			check: func(t *testing.T, m map[string]any) {
				if m["error"] != "ValueError: checking input: bad value" {
					t.Errorf("error %q", m["error"])
				}
				out := m["output"].(map[string]any)
				if out["success"] != false || out["error"] != "checking input: bad value" || out["error_type"] != "ValueError" {
					t.Errorf("output %v", out)
				}
			}},
		{name: "plain error", body: envelopeFor("plainfail", 1), code: 200, status: StatusFailed,
			check: func(t *testing.T, m map[string]any) {
				if m["error"] != "Error: boom" {
					t.Errorf("error %q", m["error"])
				}
			}},
		{name: "panic", body: envelopeFor("boom", 1), code: 200, status: StatusFailed,
			check: func(t *testing.T, m map[string]any) {
				if m["error"] != "Panic: panic: kaboom" || m["output"].(map[string]any)["error_type"] != "Panic" {
					t.Errorf("answer %v", m)
				}
			}},
		{name: "unencodable result", body: envelopeFor("unencodable", 1), code: 200, status: StatusFailed,
			check: func(t *testing.T, m map[string]any) {
				if !strings.HasPrefix(m["error"].(string), "SerializationError: ") {
					t.Errorf("error %q", m["error"])
				}
			}},
		{name: "unknown function", body: envelopeFor("nope", 1), code: 404,
			check: func(t *testing.T, m map[string]any) {
				if fmt.Sprint(m["available"]) != "[add block boom echo fail meta plainfail unencodable]" {
					t.Errorf("available %v", m["available"])
				}
				if !strings.Contains(m["error"].(string), `"nope"`) {
					t.Errorf("error %q", m["error"])
				}
			}},
		{name: "LB function is not a job", body: envelopeFor("stats", 1), code: 404},
		{name: "bind error", body: envelopeFor("add", "not an object"), code: 400,
			check: func(t *testing.T, m map[string]any) {
				if !strings.Contains(m["error"].(string), "invalid input for add") {
					t.Errorf("error %q", m["error"])
				}
			}},
		{name: "malformed", body: `{"input"`, code: 400},
		{name: "missing input", body: `{"x":1}`, code: 400},
		{name: "missing function name", body: `{"input":{}}`, code: 400},
		{name: "dual mode", body: `{"input":{"function_name":"echo","function_code":"x"}}`, code: 400,
			check: func(t *testing.T, m map[string]any) {
				if !strings.Contains(m["error"].(string), "compiled-in functions only") {
					t.Errorf("error %q", m["error"])
				}
			}},
		{name: "cloudpickle", body: `{"input":{"function_name":"echo","serialization_format":"cloudpickle"}}`, code: 400},
		{name: "two args", body: `{"input":{"function_name":"echo","args":[1,2]}}`, code: 400},
		{name: "args and kwargs", body: `{"input":{"function_name":"echo","args":[1],"kwargs":{"a":1}}}`, code: 400},
	}
	s := newServer(t, Config{}, newGate())
	for _, prefix := range []string{"", "/v2/some-endpoint"} {
		for _, tt := range tests {
			t.Run(prefix+"/"+tt.name, func(t *testing.T) {
				r := do(t, s, "POST", prefix+"/runsync", tt.body)
				if r.Code != tt.code {
					t.Fatalf("code %d, want %d: %s", r.Code, tt.code, r.Body)
				}
				m := r.json(t)
				if tt.status != "" {
					if m["status"] != tt.status || m["id"] == "" {
						t.Fatalf("answer %s; want status %s", r.Body, tt.status)
					}
					for _, k := range []string{"delayTime", "executionTime"} {
						if _, ok := m[k].(float64); !ok {
							t.Errorf("%s missing in %s", k, r.Body)
						}
					}
				} else if _, ok := m["error"].(string); !ok {
					t.Fatalf("error answer without error: %s", r.Body)
				}
				if tt.check != nil {
					tt.check(t, m)
				}
			})
		}
	}
	// The panic did not take the server down.
	if r := do(t, s, "POST", "/runsync", envelopeFor("echo", "still here")); r.Code != 200 || r.json(t)["status"] != StatusCompleted {
		t.Fatalf("after panic: %d %s", r.Code, r.Body)
	}
	h := do(t, s, "GET", "/health", "").json(t)
	if jobs := h["jobs"].(map[string]any); jobs["failed"].(float64) != 2*4 {
		t.Errorf("health %v: want 8 failed", h)
	}
}

func TestAsyncLifecycle(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{Workers: 1}, g)

	running := submitAsync(t, s, "block", map[string]any{"tag": "a"})
	if got := wait(t, g.started, "block a to start"); got != "a" {
		t.Fatalf("started %q", got)
	}
	queued := submitAsync(t, s, "block", map[string]any{"tag": "b"})
	if m := jobStatus(t, s, running); m["status"] != StatusInProgress {
		t.Fatalf("running job: %v", m)
	}
	if m := jobStatus(t, s, queued); m["status"] != StatusInQueue || m["output"] != nil {
		t.Fatalf("queued job: %v", m)
	}
	h := do(t, s, "GET", "/v2/x/health", "").json(t)
	if fmt.Sprint(h) != "map[jobs:map[completed:0 failed:0 inProgress:1 inQueue:1 retried:0] workers:map[idle:0 running:1]]" {
		t.Fatalf("health %v", h)
	}

	g.release <- struct{}{}
	m := waitStatus(t, s, running, StatusCompleted)
	if fmt.Sprint(m["output"]) != "map[json_result:map[released:a] success:true]" {
		t.Fatalf("completed: %v", m)
	}
	wait(t, g.started, "block b to start")
	waitStatus(t, s, queued, StatusInProgress)
	g.release <- struct{}{}
	waitStatus(t, s, queued, StatusCompleted)

	failed := submitAsync(t, s, "fail", 1)
	m = waitStatus(t, s, failed, StatusFailed)
	if m["error"] != "ValueError: checking input: bad value" {
		t.Fatalf("failed: %v", m)
	}
	panicked := submitAsync(t, s, "boom", 1)
	waitStatus(t, s, panicked, StatusFailed)
	if m := waitStatus(t, s, submitAsync(t, s, "echo", 5), StatusCompleted); fmt.Sprint(m["output"]) != "map[json_result:5 success:true]" {
		t.Fatalf("after panic: %v", m)
	}
	// Cancelling a finished job answers its final state unchanged.
	r := do(t, s, "POST", "/cancel/"+failed, "")
	if r.Code != 200 || r.json(t)["status"] != StatusFailed {
		t.Fatalf("cancel finished: %d %s", r.Code, r.Body)
	}
	if m := jobStatus(t, s, failed); m["status"] != StatusFailed {
		t.Fatalf("status after cancel of finished job: %v", m)
	}
}

func TestCancelRunningReachesFunction(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{}, g)
	id := submitAsync(t, s, "block", map[string]any{"tag": "x"})
	wait(t, g.started, "start")
	r := do(t, s, "POST", "/v2/ep/cancel/"+id, "")
	if r.Code != 200 || fmt.Sprint(r.json(t)) != fmt.Sprintf("map[id:%s status:CANCELLED]", id) {
		t.Fatalf("cancel: %d %s", r.Code, r.Body)
	}
	if cause := wait(t, g.ctxErrs, "function to see cancellation"); !errors.Is(cause, errCancelled) {
		t.Fatalf("function saw cause %v", cause)
	}
	m := jobStatus(t, s, id)
	if m["status"] != StatusCancelled || m["output"] != nil || m["error"] != nil {
		t.Fatalf("status: %v", m)
	}
	eventually(t, "worker to be idle", func() bool { return s.jobs.health().Running == 0 })
	if m := jobStatus(t, s, id); m["status"] != StatusCancelled {
		t.Fatalf("status changed after function returned: %v", m)
	}
}

func TestCancelQueuedNeverRuns(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{Workers: 1}, g)
	first := submitAsync(t, s, "block", map[string]any{"tag": "first"})
	wait(t, g.started, "first")
	second := submitAsync(t, s, "block", map[string]any{"tag": "second"})
	if r := do(t, s, "POST", "/cancel/"+second, ""); r.json(t)["status"] != StatusCancelled {
		t.Fatalf("cancel queued: %s", r.Body)
	}
	if h := s.jobs.health(); h.InQueue != 0 {
		t.Fatalf("cancelled job still queued: %+v", h)
	}
	g.release <- struct{}{}
	waitStatus(t, s, first, StatusCompleted)
	eventually(t, "pool idle", func() bool { return s.jobs.health().Running == 0 })
	select {
	case tag := <-g.started:
		t.Fatalf("cancelled job %q ran", tag)
	default:
	}
	if m := jobStatus(t, s, second); m["status"] != StatusCancelled {
		t.Fatalf("second: %v", m)
	}
}

// /retry runs a FAILED job again under its id with its input; other states
// and unknown ids are refused.
func TestRetry(t *testing.T) {
	s := newServer(t, Config{Workers: 1}, newGate())
	failed := submitAsync(t, s, "fail", 1)
	waitStatus(t, s, failed, StatusFailed)
	for _, path := range []string{"/retry/", "/v2/e/retry/"} {
		r := do(t, s, "POST", path+failed, "")
		if m := r.json(t); r.Code != 200 || m["id"] != failed || m["status"] != StatusInQueue {
			t.Fatalf("%s: %d %s", path, r.Code, r.Body)
		}
		if m := waitStatus(t, s, failed, StatusFailed); m["error"] != "ValueError: checking input: bad value" {
			t.Fatalf("retried: %v", m)
		}
	}
	h := do(t, s, "GET", "/health", "").json(t)
	if jobs := h["jobs"].(map[string]any); fmt.Sprint(jobs["retried"], jobs["failed"]) != "2 3" {
		t.Errorf("health after two retries of one failure: %v", jobs)
	}
	done := submitAsync(t, s, "echo", 5)
	waitStatus(t, s, done, StatusCompleted)
	if r := do(t, s, "POST", "/retry/"+done, ""); r.Code != http.StatusBadRequest || !strings.Contains(string(r.Body), "FAILED or TIMED_OUT") {
		t.Errorf("retry of a completed job: %d %s", r.Code, r.Body)
	}
	if m := jobStatus(t, s, done); m["status"] != StatusCompleted {
		t.Errorf("a refused retry changed the job: %v", m)
	}
	if r := do(t, s, "POST", "/retry/nobody-has-this", ""); r.Code != http.StatusNotFound {
		t.Errorf("retry of an unknown job: %d %s", r.Code, r.Body)
	}
}

// /purge-queue cancels the queued jobs only: the running one completes.
func TestPurgeQueue(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{Workers: 1}, g)
	running := submitAsync(t, s, "block", map[string]any{"tag": "running"})
	wait(t, g.started, "running")
	queued := []string{submitAsync(t, s, "block", map[string]any{"tag": "q1"}), submitAsync(t, s, "block", map[string]any{"tag": "q2"})}
	for _, path := range []string{"/purge-queue", "/v2/e/purge-queue"} {
		want := fmt.Sprint(len(queued))
		if path != "/purge-queue" {
			want = "0"
		}
		r := do(t, s, "POST", path, "")
		if m := r.json(t); r.Code != 200 || fmt.Sprint(m["removed"]) != want || m["status"] != "completed" {
			t.Fatalf("%s: %d %s", path, r.Code, r.Body)
		}
	}
	for _, id := range queued {
		if m := jobStatus(t, s, id); m["status"] != StatusCancelled {
			t.Errorf("purged job %s: %v", id, m)
		}
	}
	g.release <- struct{}{}
	waitStatus(t, s, running, StatusCompleted)
	eventually(t, "pool idle", func() bool { return s.jobs.health().Running == 0 })
	select {
	case tag := <-g.started:
		t.Fatalf("purged job %q ran", tag)
	default:
	}
}

func TestQueueFull(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{Workers: 1, QueueSize: 1}, g)
	running := submitAsync(t, s, "block", map[string]any{"tag": 1})
	wait(t, g.started, "first job")
	queued := submitAsync(t, s, "block", map[string]any{"tag": 2})
	for _, path := range []string{"/run", "/runsync", "/v2/e/run"} {
		r := do(t, s, "POST", path, envelopeFor("echo", 1))
		if r.Code != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s with full queue: %d (Retry-After %q) %s", path, r.Code, r.Header.Get("Retry-After"), r.Body)
		}
	}
	close(g.release)
	waitStatus(t, s, running, StatusCompleted)
	waitStatus(t, s, queued, StatusCompleted)
	if r := do(t, s, "POST", "/runsync", envelopeFor("echo", 1)); r.Code != 200 {
		t.Fatalf("after drain: %d %s", r.Code, r.Body)
	}
}

func TestResultTTL(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newServer(t, Config{ResultTTL: time.Minute, Now: clock.Now}, newGate())
	id := submitAsync(t, s, "echo", 1)
	waitStatus(t, s, id, StatusCompleted)
	clock.Advance(59 * time.Second)
	if r := do(t, s, "GET", "/status/"+id, ""); r.Code != 200 {
		t.Fatalf("before TTL: %d", r.Code)
	}
	clock.Advance(time.Second)
	for _, path := range []string{"/status/" + id, "/status/" + id, "/cancel/" + id} {
		method := "GET"
		if strings.HasPrefix(path, "/cancel") {
			method = "POST"
		}
		if r := do(t, s, method, path, ""); r.Code != 404 || !strings.Contains(r.json(t)["error"].(string), "expired") {
			t.Fatalf("%s after TTL: %d %s", path, r.Code, r.Body)
		}
	}
	// Results nobody asks for are swept on later submissions.
	other := submitAsync(t, s, "echo", 2)
	waitStatus(t, s, other, StatusCompleted)
	clock.Advance(2 * time.Minute)
	submitAsync(t, s, "echo", 3)
	s.jobs.mu.Lock()
	_, kept := s.jobs.byID[other]
	s.jobs.mu.Unlock()
	if kept {
		t.Fatal("expired result not swept")
	}
}

func TestTimeouts(t *testing.T) {
	policy := func(fn string, ms int) string {
		return fmt.Sprintf(`{"input":{"function_name":%q,"args":[{"tag":"t"}]},"policy":{"executionTimeout":%d}}`, fn, ms)
	}
	tests := []struct {
		name    string
		path    string
		body    string
		headers []string
		want    time.Duration // time the job gets before TIMED_OUT
	}{
		{"policy runsync", "/runsync", policy("block", 5000), nil, 5 * time.Second},
		{"header runsync", "/runsync", envelopeFor("block", map[string]any{"tag": "t"}), []string{"X-Flash-Timeout: 3000"}, 3 * time.Second},
		{"header smaller wins", "/runsync", policy("block", 60000), []string{"X-Flash-Timeout: 2000"}, 2 * time.Second},
		{"policy smaller wins", "/runsync", policy("block", 6000), []string{"X-Flash-Timeout: 9000"}, 6 * time.Second},
		{"policy async", "/run", policy("block", 8000), nil, 8 * time.Second},
		{"header async", "/run", envelopeFor("block", map[string]any{"tag": "t"}), []string{"X-Flash-Timeout: 7000"}, 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate()
				s := newServer(t, Config{}, g)
				r := do(t, s, "POST", tt.path, tt.body, tt.headers...)
				if r.Code != 200 {
					t.Fatalf("%d %s", r.Code, r.Body)
				}
				m := r.json(t)
				if tt.path == "/run" {
					time.Sleep(tt.want + time.Millisecond)
					synctest.Wait()
					m = jobStatus(t, s, m["id"].(string))
				}
				if m["status"] != StatusTimedOut || !strings.HasPrefix(fmt.Sprint(m["error"]), "TimeoutError:") {
					t.Fatalf("answer %v", m)
				}
				if got := time.Duration(m["executionTime"].(float64)) * time.Millisecond; got != tt.want {
					t.Fatalf("timed out after %v, want %v", got, tt.want)
				}
				if !errors.Is(<-g.ctxErrs, context.DeadlineExceeded) {
					t.Fatal("function did not see the deadline")
				}
			})
		})
	}
}

// policy.executionTimeout outside Runpod's bounds (5 s to 7 days) is a 400
// that says so, on /run and /runsync, and nothing runs.
func TestExecutionTimeoutBounds(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{}, g)
	for _, ms := range []string{"0", "4999", "604800001", "1e300"} {
		for _, path := range []string{"/run", "/runsync"} {
			body := `{"input":{"function_name":"block","args":[{"tag":"t"}]},"policy":{"executionTimeout":` + ms + `}}`
			r := do(t, s, "POST", path, body)
			if r.Code != 400 || !strings.Contains(string(r.Body), "policy.executionTimeout") ||
				!strings.Contains(string(r.Body), "between 5000 and 604800000") {
				t.Errorf("%s executionTimeout %s: %d %s, want 400 naming the bounds", path, ms, r.Code, r.Body)
			}
		}
	}
	if h := s.jobs.health(); h.InQueue+h.InProgress+int(h.Completed+h.Failed) != 0 {
		t.Fatalf("a refused request ran: %+v", h)
	}
}

// A function that ignores its context: an async job still times out on
// time (its worker stays busy until the function returns); a runsync answers
// TIMED_OUT when the function returns.
func TestTimeoutIgnoredContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		s, err := New(Config{Logger: discard()}, []Func{{Name: "stubborn", Bind: bindJSON(func(context.Context, any) (any, error) {
			<-release
			return "late", nil
		})}})
		if err != nil {
			t.Fatal(err)
		}
		id := do(t, s, "POST", "/run", envelopeFor("stubborn", 1), "X-Flash-Timeout: 1000").json(t)["id"].(string)
		time.Sleep(time.Second)
		synctest.Wait()
		if m := jobStatus(t, s, id); m["status"] != StatusTimedOut || m["executionTime"] != 1000.0 {
			t.Fatalf("async answer %v", m)
		}
		if h := s.jobs.health(); h.Running != 1 || h.Failed != 1 {
			t.Fatalf("health %+v", h)
		}
		time.AfterFunc(2*time.Second, func() { close(release) })
		r := do(t, s, "POST", "/runsync", envelopeFor("stubborn", 1), "X-Flash-Timeout: 500")
		if m := r.json(t); m["status"] != StatusTimedOut || m["executionTime"] != 2000.0 {
			t.Fatalf("runsync answer %v", m)
		}
		if err := s.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClientGoneCancelsRunsync(t *testing.T) {
	g := newGate()
	s := newServer(t, Config{}, g)
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "POST", "/runsync", strings.NewReader(envelopeFor("block", map[string]any{"tag": 1})))
	done := make(chan response)
	go func() { done <- serveRequest(s, req) }()
	wait(t, g.started, "job start")
	cancel()
	if cause := wait(t, g.ctxErrs, "function cancellation"); !errors.Is(cause, context.Canceled) {
		t.Fatalf("cause %v", cause)
	}
	if r := wait(t, done, "runsync answer"); !strings.Contains(string(r.Body), StatusCancelled) {
		t.Fatalf("answer %s", r.Body)
	}
}

func TestJobIDs(t *testing.T) {
	s := newServer(t, Config{}, newGate())
	id := submitAsync(t, s, "echo", 1)
	if len(id) != 22 || strings.ContainsAny(id, "+/=") {
		t.Fatalf("id %q is not 22 URL-safe characters", id)
	}
	if other := submitAsync(t, s, "echo", 1); other == id {
		t.Fatal("ids repeat")
	}
	for _, bad := range []string{"nope", id + "x", strings.Repeat("a", 5000), "%00", "%ff%fe", "a%20b"} {
		for _, p := range []string{"GET /status/", "POST /cancel/", "GET /v2/e/status/"} {
			method, path, _ := strings.Cut(p, " ")
			if r := do(t, s, method, path+bad, ""); r.Code != 404 {
				t.Errorf("%s%s: %d %s", p, bad, r.Code, r.Body)
			}
		}
	}
}

// A function failing because a downstream call ran out of the same deadline
// is a timeout, not a plain failure, so its caller gets ErrTimeout.
func TestDownstreamTimeoutIsTimedOut(t *testing.T) {
	f := Func{Name: "relay", Bind: bindJSON(func(ctx context.Context, in map[string]any) (any, error) {
		return nil, fmt.Errorf("call slow: %w", flasherr.ErrTimeout)
	})}
	s, err := New(Config{Logger: discard()}, []Func{f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	m := do(t, s, "POST", "/runsync", envelopeFor("relay", map[string]any{})).json(t)
	if m["status"] != StatusTimedOut || !strings.HasPrefix(fmt.Sprint(m["error"]), "TimeoutError: call slow") {
		t.Fatalf("answer %v", m)
	}
}

// TestResultsBounded: /run keeps at most MaxResults results and
// MaxResultBytes bytes; beyond, it answers 429 with a Retry-After that says
// when the oldest result expires, before reading the body, and accepts again
// once results expire.
func TestResultsBounded(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newServer(t, Config{ResultTTL: time.Minute, Now: clock.Now, Limits: Limits{MaxResults: 3}}, newGate())
	for i := range 3 {
		waitStatus(t, s, submitAsync(t, s, "echo", i), StatusCompleted)
		clock.Advance(10 * time.Second)
	}
	body := &countingReader{r: strings.NewReader(envelopeFor("echo", 9))}
	r := serveRequest(s, httptest.NewRequest("POST", "/run", body))
	if r.Code != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "30" || !json.Valid(r.Body) {
		t.Fatalf("/run with full results: %d (Retry-After %q) %s", r.Code, r.Header.Get("Retry-After"), r.Body)
	}
	if body.n.Load() != 0 {
		t.Fatalf("%d body bytes read before refusing", body.n.Load())
	}
	// runsync keeps nothing, so it is still served.
	if r := do(t, s, "POST", "/runsync", envelopeFor("echo", 1)); r.Code != 200 {
		t.Fatalf("/runsync with full results: %d %s", r.Code, r.Body)
	}
	clock.Advance(30 * time.Second) // the first result expires
	waitStatus(t, s, submitAsync(t, s, "echo", 4), StatusCompleted)

	// Bytes: a result that would pass the byte bound is not kept; the job
	// fails with a clear error instead.
	big := strings.Repeat("x", 4<<10)
	s2 := newServer(t, Config{Limits: Limits{MaxResultBytes: 2*resultOverhead + 6<<10}}, newGate())
	first := submitAsync(t, s2, "echo", big)
	waitStatus(t, s2, first, StatusCompleted)
	second := submitAsync(t, s2, "echo", big)
	m := waitStatus(t, s2, second, StatusFailed)
	if out := m["output"].(map[string]any); out["error_type"] != "ResultTooLarge" {
		t.Fatalf("result over the byte bound: %v", m)
	}
}
