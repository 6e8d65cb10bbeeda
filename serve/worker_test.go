package serve

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// answer is one scripted answer of the fake queue.
type answer struct {
	status int
	body   string
	hold   bool // hold the request until the client gives up
}

// fakeQueue is Runpod's worker-facing API as a test double: scripted answers
// per route, then a default; every request is recorded.
type fakeQueue struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	script   map[string][]answer // by route: take, batch, done, stop, ping
	requests map[string][]*recorded
	arrived  chan string // route of each request, as it arrives
}

type recorded struct {
	URL    *url.URL
	Header http.Header
	Body   string
}

func newFakeQueue(t *testing.T) *fakeQueue {
	q := &fakeQueue{t: t, script: map[string][]answer{}, requests: map[string][]*recorded{}, arrived: make(chan string, 1024)}
	q.srv = httptest.NewServer(http.HandlerFunc(q.serve))
	t.Cleanup(q.srv.Close)
	return q
}

func (q *fakeQueue) route(path string) string {
	for _, r := range []string{"job-take-batch", "job-take", "job-done", "job-stop", "ping"} {
		if strings.Contains(path, "/"+r+"/") {
			return r
		}
	}
	return "?"
}

func (q *fakeQueue) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	route := q.route(r.URL.Path)
	q.mu.Lock()
	q.requests[route] = append(q.requests[route], &recorded{URL: r.URL, Header: r.Header.Clone(), Body: string(body)})
	a := answer{status: http.StatusNoContent}
	if s := q.script[route]; len(s) > 0 {
		a, q.script[route] = s[0], s[1:]
	} else if route == "job-take" || route == "job-take-batch" || route == "job-stop" {
		a.hold = true // an idle long poll
	} else if route == "job-done" || route == "ping" {
		a.status = http.StatusOK
	}
	q.mu.Unlock()
	q.arrived <- route
	if a.hold {
		select {
		case <-r.Context().Done():
		case <-time.After(200 * time.Millisecond):
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if a.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (q *fakeQueue) add(route string, as ...answer) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.script[route] = append(q.script[route], as...)
}

func (q *fakeQueue) got(route string) []*recorded {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.requests[route])
}

// waitFor waits until n requests of route arrived.
func (q *fakeQueue) waitFor(route string, n int) []*recorded {
	q.t.Helper()
	eventually(q.t, route+" requests", func() bool { return len(q.got(route)) >= n })
	return q.got(route)
}

// config is the worker configuration Runpod would inject for this queue.
func (q *fakeQueue) config(t *testing.T) WorkerConfig {
	env := map[string]string{
		"RUNPOD_WEBHOOK_GET_JOB":     q.srv.URL + "/v2/ep/job-take/$ID?gpu=cpu",
		"RUNPOD_WEBHOOK_POST_OUTPUT": q.srv.URL + "/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu",
		"RUNPOD_WEBHOOK_PING":        q.srv.URL + "/v2/ep/ping/$RUNPOD_POD_ID?gpu=cpu",
		"RUNPOD_PING_INTERVAL":       "1000",
		"RUNPOD_POD_ID":              "w1",
		"RUNPOD_AI_API_KEY":          "worker-key",
	}
	cfg, ok, err := WorkerConfigFromEnv(func(k string) string { return env[k] })
	if !ok || err != nil {
		t.Fatalf("WorkerConfigFromEnv: %v %v", ok, err)
	}
	return cfg
}

// startWorker runs a worker of a test server (Workers slots) against q until
// the returned stop is called, which waits for Work to return.
func startWorker(t *testing.T, q *fakeQueue, workers int, g *gate) (s *Server, stop func()) {
	t.Helper()
	s = newServer(t, Config{Workers: workers, Logger: discard()}, g)
	w := s.newWorker(q.config(t))
	w.takeTimeout, w.tooMany, w.stopEmpty, w.errMin, w.errMax = time.Second, 20*time.Millisecond, 10*time.Millisecond, 10*time.Millisecond, 40*time.Millisecond
	w.postWaits = []time.Duration{time.Millisecond, time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.work(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := wait(t, done, "Work to return"); err != nil {
				t.Errorf("Work: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func jobJSON(id, fn string, in any) string {
	env := envelopeFor(fn, in)
	return `{"id":"` + id + `",` + env[1:]
}

func decodeBody(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("job-done body %q: %v", body, err)
	}
	return m
}

func TestWorkerSingleJob(t *testing.T) {
	q := newFakeQueue(t)
	q.add("job-take", answer{status: 200, body: jobJSON("job-1", "add", map[string]int{"A": 2, "B": 3})})
	_, stop := startWorker(t, q, 1, newGate())
	done := q.waitFor("job-done", 1)[0]
	stop()

	if got := decodeBody(t, done.Body); !equalJSON(got, `{"output":{"success":true,"json_result":{"sum":5}}}`) {
		t.Errorf("job-done body %s", done.Body)
	}
	if done.URL.Path != "/v2/ep/job-done/w1/job-1" || done.URL.Query().Get("isStream") != "false" || done.URL.Query().Get("gpu") != "cpu" {
		t.Errorf("job-done URL %s", done.URL)
	}
	if done.Header.Get("Authorization") != "worker-key" || done.Header.Get("X-Request-ID") != "job-1" {
		t.Errorf("job-done headers %v", done.Header)
	}
	take := q.got("job-take")[0]
	if take.URL.Path != "/v2/ep/job-take/w1" || take.URL.Query().Get("job_in_progress") != "0" || take.Header.Get("Authorization") != "worker-key" {
		t.Errorf("job-take request %s %v", take.URL, take.Header)
	}
	if len(q.got("job-take-batch")) != 0 {
		t.Error("a one-slot worker used the batch path")
	}
}

func equalJSON(got map[string]any, want string) bool {
	var w map[string]any
	json.Unmarshal([]byte(want), &w)
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(w)
	return string(a) == string(b)
}

// TestWorkerOutcomes: each way a job ends is posted in the shape /runsync
// answers it, so Runpod's status shows what /runsync would have.
func TestWorkerOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name, job, want string
	}{
		{"function error", jobJSON("j", "fail", 1),
			`{"output":{"success":false,"error":"checking input: bad value","error_type":"ValueError","code":"unknown"},"error":"ValueError: checking input: bad value"}`},
		{"panic", jobJSON("j", "boom", 1),
			`{"output":{"success":false,"error":"panic: kaboom","error_type":"Panic","code":"unknown"},"error":"Panic: panic: kaboom"}`},
		{"unknown function", jobJSON("j", "nope", 1),
			`{"error":"function \"nope\" not found on this endpoint (available: add, block, boom, echo, fail, meta, plainfail, unencodable)"}`},
		{"bad envelope", `{"id":"j","input":{"function_name":"add","execution_type":"class"}}`,
			`{"error":"this endpoint runs compiled-in functions only: \"execution_type\" must be \"function\" and no \"function_code\" or \"class_code\" may be sent"}`},
		{"bad input", jobJSON("j", "add", "not an object"),
			`{"error":"invalid input for add: json: cannot unmarshal string into Go value of type serve.pair"}`},
		{"timeout", `{"id":"j","input":{"function_name":"block","args":[{}]},"policy":{"executionTimeout":1}}`,
			`{"output":{"success":false,"error":"execution timed out","error_type":"TimeoutError"},"error":"TimeoutError: execution timed out"}`},
		{"kwargs", `{"id":"j","input":{"function_name":"add","kwargs":{"A":1,"B":1}}}`,
			`{"output":{"success":true,"json_result":{"sum":2}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newFakeQueue(t)
			q.add("job-take", answer{status: 200, body: tc.job})
			startWorker(t, q, 1, newGate())
			body := q.waitFor("job-done", 1)[0].Body
			if !equalJSON(decodeBody(t, body), tc.want) {
				t.Errorf("job-done body\n got %s\nwant %s", body, tc.want)
			}
		})
	}
}

// TestWorkerTakeAnswers: every answer job-take can give leads to the next
// take (after the SDK's wait), and only a 200 with jobs runs anything.
func TestWorkerTakeAnswers(t *testing.T) {
	q := newFakeQueue(t)
	q.add("job-take",
		answer{status: 204},
		answer{status: 400},
		answer{status: 429},
		answer{status: 500, body: `{"error":"boom"}`},
		answer{status: 503},
		answer{status: 200},                              // empty body: no job
		answer{status: 200, body: `{"id":"x"}`},          // missing input: no job
		answer{status: 200, body: `not json`},            // no job
		answer{status: 200, body: `[]`},                  // empty batch
		answer{status: 200, body: `{"id":5,"input":{}}`}, // id not a string: cannot be answered
		answer{hold: true},                               // the long poll runs out (takeTimeout)
		answer{status: 200, body: jobJSON("last", "echo", 7)},
	)
	startWorker(t, q, 1, newGate())
	done := q.waitFor("job-done", 1)
	if !equalJSON(decodeBody(t, done[0].Body), `{"output":{"success":true,"json_result":7}}`) || !strings.Contains(done[0].URL.Path, "/last") {
		t.Fatalf("job-done %s %s", done[0].URL, done[0].Body)
	}
	if n := len(q.got("job-take")); n < 12 {
		t.Fatalf("%d takes, want at least 12", n)
	}
}

func TestWorkerBatch(t *testing.T) {
	q := newFakeQueue(t)
	q.add("job-take-batch", answer{status: 200, body: "[" + jobJSON("a", "echo", 1) + "," + jobJSON("b", "echo", 2) + "]"})
	startWorker(t, q, 3, newGate())
	done := q.waitFor("job-done", 2)
	batch := q.got("job-take-batch")[0]
	if batch.URL.Query().Get("batch_size") != "3" || batch.URL.Query().Get("job_in_progress") != "0" || batch.URL.Query().Get("gpu") != "cpu" {
		t.Errorf("batch take URL %s", batch.URL)
	}
	var paths []string
	for _, d := range done {
		paths = append(paths, d.URL.Path)
	}
	slices.Sort(paths)
	if !slices.Equal(paths, []string{"/v2/ep/job-done/w1/a", "/v2/ep/job-done/w1/b"}) {
		t.Errorf("posted %v", paths)
	}
}

// TestWorkerConcurrency: a worker holds at most Workers jobs; with one slot
// busy, the next take asks for the free ones and says a job is in progress.
func TestWorkerConcurrency(t *testing.T) {
	q := newFakeQueue(t)
	g := newGate()
	q.add("job-take-batch", answer{status: 200, body: "[" + jobJSON("a", "block", map[string]string{"tag": "a"}) + "]"})
	q.add("job-take", answer{status: 200, body: jobJSON("b", "block", map[string]string{"tag": "b"})})
	startWorker(t, q, 2, g)
	wait(t, g.started, "first job")
	wait(t, g.started, "second job")
	single := q.got("job-take")[0]
	if single.URL.Query().Get("job_in_progress") != "1" {
		t.Errorf("take with a job held: %s", single.URL)
	}
	// Both slots are held: no take is made until one is freed.
	takes := len(q.got("job-take")) + len(q.got("job-take-batch"))
	var ping *recorded
	eventually(t, "a heartbeat listing both jobs", func() bool {
		for _, p := range q.got("ping") {
			ids := strings.Split(p.URL.Query().Get("job_id"), ",")
			slices.Sort(ids)
			if slices.Equal(ids, []string{"a", "b"}) {
				ping = p
				return true
			}
		}
		return false
	})
	if now := len(q.got("job-take")) + len(q.got("job-take-batch")); now != takes {
		t.Errorf("%d takes with every slot held", now-takes)
	}
	if ping.URL.Query().Get("gpu") != "cpu" || ping.URL.Query().Get("runpod_version") == "" || ping.Header.Get("Authorization") != "worker-key" {
		t.Errorf("heartbeat %s %v", ping.URL, ping.Header)
	}
	close(g.release)
	q.waitFor("job-done", 2)
}

// TestWorkerDoneRetries: job-done is retried on 5xx only, three attempts at most.
func TestWorkerDoneRetries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []answer
		posts   int
	}{
		{"ok", []answer{{status: 200}}, 1},
		{"5xx then ok", []answer{{status: 502}, {status: 200}}, 2},
		{"5xx three times", []answer{{status: 500}, {status: 503}, {status: 500}, {status: 200}}, 3},
		{"4xx not retried", []answer{{status: 400}, {status: 200}}, 1},
		{"404 not retried", []answer{{status: 404}, {status: 200}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newFakeQueue(t)
			q.add("job-take", answer{status: 200, body: jobJSON("j", "echo", 1)},
				answer{status: 200, body: jobJSON("after", "echo", 2)})
			q.add("job-done", tc.answers...)
			_, stop := startWorker(t, q, 1, newGate())
			// The second job is posted after every attempt for the first.
			eventually(t, "second job posted", func() bool {
				return slices.ContainsFunc(q.got("job-done"), func(r *recorded) bool { return strings.HasSuffix(r.URL.Path, "/after") })
			})
			stop()
			n := 0
			for _, r := range q.got("job-done") {
				if strings.HasSuffix(r.URL.Path, "/j") {
					n++
				}
			}
			if n != tc.posts {
				t.Errorf("%d posts of the first job, want %d", n, tc.posts)
			}
		})
	}
}

// TestWorkerDoneUnreachable: a job-done that cannot be reached (connection
// refused) is not retried and does not stop the worker.
func TestWorkerDoneUnreachable(t *testing.T) {
	q := newFakeQueue(t)
	q.add("job-take", answer{status: 200, body: jobJSON("j", "echo", 1)})
	s := newServer(t, Config{Workers: 1, Logger: discard()}, newGate())
	cfg := q.config(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	cfg.JobDone = dead.URL + "/job-done/w1/$ID?gpu=cpu"
	w := s.newWorker(cfg)
	w.takeTimeout, w.errMin, w.errMax = time.Second, time.Millisecond, time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.work(ctx) }()
	q.waitFor("job-take", 2) // the worker took the job, failed to post it, and went on
	cancel()
	wait(t, done, "Work")
}

// TestWorkerStop: a job named on the stop channel has its context cancelled
// and nothing is posted for it; other jobs go on.
func TestWorkerStop(t *testing.T) {
	q := newFakeQueue(t)
	g := newGate()
	q.add("job-take-batch", answer{status: 200, body: "[" + jobJSON("victim", "block", map[string]string{"tag": "v"}) + "]"})
	q.add("job-take", answer{status: 200, body: jobJSON("other", "echo", 1)})
	startWorker(t, q, 2, g)
	wait(t, g.started, "job start")
	q.waitFor("job-done", 1) // "other"
	q.add("job-stop", answer{status: 200, body: `{"jobsToStop":["victim", 7, "unknown"]}`})
	if cause := wait(t, g.ctxErrs, "stopped job's context"); !errors.Is(cause, errStopped) {
		t.Fatalf("cause %v, want errStopped", cause)
	}
	// The slot is free again: a new take follows, and no result was posted.
	n := len(q.got("job-take")) + len(q.got("job-take-batch"))
	eventually(t, "a take after the stop", func() bool { return len(q.got("job-take"))+len(q.got("job-take-batch")) > n })
	for _, r := range q.got("job-done") {
		if strings.Contains(r.URL.Path, "victim") {
			t.Errorf("a stopped job was posted: %s", r.Body)
		}
	}
	if stop := q.got("job-stop")[0]; stop.URL.Path != "/v2/ep/job-stop/w1" || stop.URL.Query().Get("gpu") != "cpu" {
		t.Errorf("job-stop URL %s", stop.URL)
	}
}

// TestWorkerStopAnswers: the stop channel survives every answer it can get.
func TestWorkerStopAnswers(t *testing.T) {
	q := newFakeQueue(t)
	q.add("job-stop", answer{status: 204}, answer{status: 429}, answer{status: 500}, answer{status: 200, body: `nope`},
		answer{status: 200, body: `{"jobsToStop":"x"}`}, answer{status: 200, body: `{"jobsToStop":[]}`})
	startWorker(t, q, 1, newGate())
	q.waitFor("job-stop", 7)
}

// TestWorkerDrain: when its context ends, the worker stops taking, finishes
// and posts the job it holds, then returns.
func TestWorkerDrain(t *testing.T) {
	q := newFakeQueue(t)
	g := newGate()
	q.add("job-take", answer{status: 200, body: jobJSON("j", "block", map[string]string{"tag": "j"})})
	_, stop := startWorker(t, q, 1, g)
	wait(t, g.started, "job start")
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Work returned with a job still running")
	case <-time.After(50 * time.Millisecond):
	}
	takes := len(q.got("job-take"))
	close(g.release)
	wait(t, stopped, "Work to return")
	done := q.got("job-done")
	if len(done) != 1 || !equalJSON(decodeBody(t, done[0].Body), `{"output":{"success":true,"json_result":{"released":"j"}}}`) {
		t.Fatalf("job-done after drain: %v", done)
	}
	if len(q.got("job-take")) != takes {
		t.Error("the worker took jobs after its context ended")
	}
}

// TestWorkerGraceOver: after the grace period a running job is cancelled
// and, like a stopped one, not posted.
func TestWorkerGraceOver(t *testing.T) {
	q := newFakeQueue(t)
	g := newGate()
	q.add("job-take", answer{status: 200, body: jobJSON("j", "block", map[string]string{"tag": "j"})})
	s := newServer(t, Config{Workers: 1, Logger: discard()}, g)
	cfg := q.config(t)
	cfg.Grace = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Work(ctx, cfg) }()
	wait(t, g.started, "job start")
	cancel()
	wait(t, done, "Work to return")
	wait(t, g.ctxErrs, "job cancelled")
	if n := len(q.got("job-done")); n != 0 {
		t.Errorf("%d posts of a job cancelled at the end of the grace", n)
	}
}

func TestWorkerConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
		err  string
		want WorkerConfig
	}{
		{name: "not a worker", env: map[string]string{"RUNPOD_POD_ID": "w"}},
		{name: "substitutions", ok: true, env: map[string]string{
			"RUNPOD_WEBHOOK_GET_JOB":     "http://q/v2/e/job-take/$ID?gpu=x",
			"RUNPOD_WEBHOOK_POST_OUTPUT": "http://q/v2/e/job-done/$RUNPOD_POD_ID/$ID?gpu=x",
			"RUNPOD_WEBHOOK_PING":        "http://q/v2/e/ping/$RUNPOD_POD_ID?gpu=x",
			"RUNPOD_PING_INTERVAL":       "2500", "RUNPOD_POD_ID": "pod", "RUNPOD_AI_API_KEY": "k",
		}, want: WorkerConfig{JobTake: "http://q/v2/e/job-take/pod?gpu=x", JobDone: "http://q/v2/e/job-done/pod/$ID?gpu=x",
			Ping: "http://q/v2/e/ping/pod?gpu=x", PingInterval: 2 * time.Second, WorkerID: "pod", Key: "k"}},
		{name: "pod id placeholder in take URL", ok: true, env: map[string]string{
			"RUNPOD_WEBHOOK_GET_JOB": "http://q/job-take/$RUNPOD_POD_ID?gpu=x", "RUNPOD_WEBHOOK_POST_OUTPUT": "http://q/job-done/$RUNPOD_POD_ID/$ID",
			"RUNPOD_POD_ID": "pod", "RUNPOD_PING_INTERVAL": "500",
		}, want: WorkerConfig{JobTake: "http://q/job-take/pod?gpu=x", JobDone: "http://q/job-done/pod/$ID", PingInterval: time.Second, WorkerID: "pod"}},
		{name: "no done URL", ok: true, err: "RUNPOD_WEBHOOK_POST_OUTPUT", env: map[string]string{"RUNPOD_WEBHOOK_GET_JOB": "http://q/job-take/$ID"}},
		{name: "bad interval", ok: true, err: "RUNPOD_PING_INTERVAL", env: map[string]string{
			"RUNPOD_WEBHOOK_GET_JOB": "http://q/job-take/$ID", "RUNPOD_WEBHOOK_POST_OUTPUT": "http://q/d/$ID", "RUNPOD_PING_INTERVAL": "soon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ok, err := WorkerConfigFromEnv(func(k string) string { return tc.env[k] })
			if ok != tc.ok || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("ok %v err %v; want ok %v err containing %q", ok, err, tc.ok, tc.err)
			}
			if tc.err == "" && cfg != tc.want {
				t.Errorf("got %+v\nwant %+v", cfg, tc.want)
			}
		})
	}
	// Without RUNPOD_POD_ID the id is random and no heartbeat is sent.
	cfg, _, _ := WorkerConfigFromEnv(func(k string) string {
		return map[string]string{"RUNPOD_WEBHOOK_GET_JOB": "http://q/job-take/$ID", "RUNPOD_WEBHOOK_POST_OUTPUT": "http://q/d/$ID",
			"RUNPOD_WEBHOOK_PING": "http://q/ping/$RUNPOD_POD_ID", "RUNPOD_AI_API_KEY": "k"}[k]
	})
	if len(cfg.WorkerID) != 32 || cfg.Ping != "" || !strings.HasSuffix(cfg.JobTake, cfg.WorkerID) {
		t.Errorf("no pod id: %+v", cfg)
	}
}

func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{jobJSON("a", "echo", 1), `{"id":"a","input":{}}`, `{"id":1}`, `[]`, `{"id":"a","input":{"function_name":"x","args":[1,2]}}`,
		`{"id":"a","input":{"function_name":"x"},"policy":{"executionTimeout":-1}}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tj, err := decodeJob(b)
		if err != nil {
			return
		}
		if tj.ID == "" || len(tj.ID) > maxJobID {
			t.Fatalf("accepted id %q", tj.ID)
		}
		if tj.Err == nil && tj.Inv.Function == "" {
			t.Fatalf("accepted a job without a function: %q", b)
		}
		if tj.Err != nil && refusalBody(tj.Err) == nil {
			t.Fatal("no refusal body")
		}
	})
}

func FuzzDecodeTake(f *testing.F) {
	for _, s := range []string{`[` + jobJSON("a", "echo", 1) + `]`, `{"id":"a","input":1}`, ``, ` `, `[1,2]`, `{`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		jobs, _, err := decodeTake(b)
		if err != nil {
			return
		}
		for _, j := range jobs {
			if !json.Valid(j) {
				t.Fatalf("decodeTake gave invalid JSON %q", j)
			}
		}
	})
}

// TestWorkerWaitsUntilReady: no job is taken while the server is not ready
// (a child without its manifest).
func TestWorkerWaitsUntilReady(t *testing.T) {
	q := newFakeQueue(t)
	q.add("job-take", answer{status: 200, body: jobJSON("j", "echo", 1)})
	var ready atomic.Bool
	s, err := New(Config{Workers: 1, Logger: discard(), Ready: ready.Load}, testFuncs(newGate()))
	if err != nil {
		t.Fatal(err)
	}
	w := s.newWorker(q.config(t))
	w.takeTimeout, w.readyPoll = time.Second, time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.work(ctx) }()
	q.waitFor("ping", 1) // the worker runs
	time.Sleep(20 * time.Millisecond)
	if n := len(q.got("job-take")); n != 0 {
		t.Fatalf("%d takes before ready", n)
	}
	ready.Store(true)
	q.waitFor("job-done", 1)
	cancel()
	wait(t, done, "Work")
}
