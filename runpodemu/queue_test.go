package runpodemu

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestJobsRunInOrderOnRealWorkers(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, nil)
	var jobs []string
	for i := range 5 {
		jobs = append(jobs, submit(t, e, id, map[string]any{"i": i}))
	}
	var worker string
	for i, j := range jobs {
		ans := final(t, e, id, j)
		if ans["status"] != statusCompleted {
			t.Fatalf("job %d: %v", i, ans)
		}
		out := ans["output"].(map[string]any)
		// One worker (workersMax 1) takes the jobs first in, first out.
		if out["n"] != float64(i+1) {
			t.Errorf("job %d was the worker's job number %v", i, out["n"])
		}
		if worker == "" {
			worker = out["worker"].(string)
		}
		if out["worker"] != worker {
			t.Errorf("a second worker appeared with workersMax 1")
		}
		if _, ok := ans["delayTime"]; !ok {
			t.Errorf("no delayTime: %v", ans)
		}
		env := out["env"].(map[string]any)
		if env["RUNPOD_SKIP_AUTO_SYSTEM_CHECKS"] != "true" || env["RUNPOD_ENDPOINT_ID"] != id || env["MY_VAR"] != "mine" ||
			env["RUNPOD_PING_INTERVAL"] != "1000" || env["RUNPOD_GPU_COUNT"] != "0" {
			t.Errorf("worker env: %v", env)
		}
	}
	_, h := call(t, e, "GET", "/v2/"+id+"/health", nil)
	if h["jobs"].(map[string]any)["completed"] != 5.0 {
		t.Errorf("health: %v", h)
	}
}

func TestRunsync(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, nil)
	st, ans := call(t, e, "POST", "/v2/"+id+"/runsync", map[string]any{"input": map[string]any{}})
	if st != 200 || ans["status"] != statusCompleted || ans["output"] == nil {
		t.Fatalf("runsync: %d %v", st, ans)
	}
	// Not done within wait: the answer is {id, status}, the job goes on.
	st, ans = call(t, e, "POST", "/v2/"+id+"/runsync?wait=1000", map[string]any{"input": map[string]any{"sleep_ms": 3000}})
	if st != 200 || (ans["status"] != statusInQueue && ans["status"] != statusInProgress) || ans["output"] != nil {
		t.Fatalf("runsync past wait: %d %v", st, ans)
	}
	if got := final(t, e, id, ans["id"].(string)); got["status"] != statusCompleted {
		t.Errorf("slow runsync job: %v", got)
	}
	for name, body := range map[string]any{"no input": map[string]any{}, "null input": map[string]any{"input": nil},
		"bad ttl": map[string]any{"input": 1, "policy": map[string]any{"ttl": 5}}, "not json": "{"} {
		if st, ans := call(t, e, "POST", "/v2/"+id+"/run", body); st != 400 || ans["error"] == nil {
			t.Errorf("%s: %d %v", name, st, ans)
		}
	}
	if st, _ := call(t, e, "POST", "/v2/nope/run", map[string]any{"input": 1}); st != 404 {
		t.Errorf("unknown endpoint: %d", st)
	}
	if st, _ := call(t, e, "GET", "/v2/"+id+"/status/nope", nil); st != 404 {
		t.Errorf("unknown job: %d", st)
	}
}

func TestCancelReachesTheWorker(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, nil)
	mark := filepath.Join(t.TempDir(), "stopped")
	running := submit(t, e, id, map[string]any{"sleep_ms": 60000, "stop_mark": mark})
	queued := submit(t, e, id, map[string]any{})
	waitFor(t, "the first job to run", func() bool {
		_, ans := call(t, e, "GET", "/v2/"+id+"/status/"+running, nil)
		return ans["status"] == statusInProgress
	})
	// A queued job is cancelled at once, and never runs.
	if st, ans := call(t, e, "POST", "/v2/"+id+"/cancel/"+queued, nil); st != 200 || ans["status"] != statusCancelled {
		t.Fatalf("cancel queued: %d %v", st, ans)
	}
	if st, ans := call(t, e, "POST", "/v2/"+id+"/cancel/"+running, nil); st != 200 || ans["status"] != statusCancelled {
		t.Fatalf("cancel running: %d %v", st, ans)
	}
	waitFor(t, "the worker to stop the job", func() bool {
		b, err := os.ReadFile(mark)
		return err == nil && string(b) == running
	})
	// The worker is free again: the next job completes.
	if ans := final(t, e, id, submit(t, e, id, map[string]any{})); ans["status"] != statusCompleted {
		t.Errorf("job after cancel: %v", ans)
	}
	if _, ans := call(t, e, "GET", "/v2/"+id+"/status/"+queued, nil); ans["status"] != statusCancelled || ans["output"] != nil {
		t.Errorf("cancelled queued job: %v", ans)
	}
}

func TestExecutionTimeoutStopsTheJob(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, nil)
	mark := filepath.Join(t.TempDir(), "stopped")
	st, ans := call(t, e, "POST", "/v2/"+id+"/run", map[string]any{"input": map[string]any{"sleep_ms": 60000, "stop_mark": mark},
		"policy": map[string]any{"executionTimeout": 5000}})
	if st != 200 {
		t.Fatal(st, ans)
	}
	job := ans["id"].(string)
	if got := final(t, e, id, job); got["status"] != statusTimedOut {
		t.Fatalf("job past its execution timeout: %v", got)
	}
	waitFor(t, "the worker to stop the timed-out job", func() bool { _, err := os.Stat(mark); return err == nil })
	// Only FAILED and TIMED_OUT jobs may be retried; the retry runs again.
	if st, ans := call(t, e, "POST", "/v2/"+id+"/retry/"+job, nil); st != 200 || ans["status"] != statusInQueue {
		t.Fatalf("retry: %d %v", st, ans)
	}
	if st, _ := call(t, e, "POST", "/v2/"+id+"/retry/"+job, nil); st != 400 {
		t.Errorf("retry of a queued job: %d", st)
	}
	_, h := call(t, e, "GET", "/v2/"+id+"/health", nil)
	if h["jobs"].(map[string]any)["retried"] != 1.0 {
		t.Errorf("health after retry: %v", h)
	}
}

func TestCrashedWorkersJobIsRequeued(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, nil)
	mark := filepath.Join(t.TempDir(), "crashed")
	job := submit(t, e, id, map[string]any{"crash_once": mark})
	ans := final(t, e, id, job)
	if ans["status"] != statusCompleted {
		t.Fatalf("job of a crashed worker: %v", ans)
	}
	crashed, _ := os.ReadFile(mark)
	if len(crashed) == 0 || ans["output"].(map[string]any)["worker"] == string(crashed) {
		t.Errorf("job completed by %v, the crashed worker was %q", ans["output"].(map[string]any)["worker"], crashed)
	}
}

func TestFailedJobAndStreamAndProgress(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, nil)
	if ans := final(t, e, id, submit(t, e, id, map[string]any{"fail": "boom"})); ans["status"] != statusFailed || ans["error"] != "boom" {
		t.Errorf("failed job: %v", ans)
	}
	job := submit(t, e, id, map[string]any{"stream": 3, "progress": true, "sleep_ms": 300})
	var chunks []any
	waitFor(t, "the stream to end", func() bool {
		st, ans := call(t, e, "GET", "/v2/"+id+"/stream/"+job, nil)
		if st != 200 {
			t.Fatalf("stream: %d %v", st, ans)
		}
		for _, c := range ans["stream"].([]any) {
			chunks = append(chunks, c.(map[string]any)["output"])
		}
		return ans["status"] == statusCompleted
	})
	if len(chunks) != 3 || chunks[0] != 0.0 || chunks[2] != 2.0 {
		t.Errorf("stream chunks: %v (each delivered once, in order)", chunks)
	}
	_, h := call(t, e, "GET", "/v2/"+id+"/health", nil)
	if h["jobs"].(map[string]any)["failed"] != 1.0 {
		t.Errorf("health: %v", h)
	}
}

func TestPurgeAndRetention(t *testing.T) {
	cfg := testConfig(t)
	cfg.RunRetention = 500 * time.Millisecond
	e := startEmu(t, cfg)
	id := queueEndpoint(t, e, map[string]any{"workers": map[string]any{"min": 0, "max": 0}}) // no workers: jobs stay queued
	a, b := submit(t, e, id, 1), submit(t, e, id, 2)
	st, ans := call(t, e, "POST", "/v2/"+id+"/purge-queue", nil)
	if st != 200 || ans["removed"] != 2.0 {
		t.Fatalf("purge: %d %v", st, ans)
	}
	for _, j := range []string{a, b} {
		if st, _ := call(t, e, "GET", "/v2/"+id+"/status/"+j, nil); st != 404 {
			t.Errorf("purged job: %d", st)
		}
	}
	// A finished job is kept for the retention time, then answers 404.
	c := submit(t, e, id, 3)
	call(t, e, "POST", "/v2/"+id+"/cancel/"+c, nil)
	waitFor(t, "the cancelled job to be forgotten", func() bool {
		st, _ := call(t, e, "GET", "/v2/"+id+"/status/"+c, nil)
		return st == 404
	})
}

func TestScaleUpAndDownWithLoad(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, map[string]any{"workers": map[string]any{"min": 0, "max": 3},
		"scaling": map[string]any{"type": "REQUEST_COUNT", "requestCount": 1}})
	if n := summary(t, e, id)["total"]; n != 0.0 {
		t.Fatalf("workers before load: %v", n)
	}
	var jobs []string
	for range 3 {
		jobs = append(jobs, submit(t, e, id, map[string]any{"sleep_ms": 2000}))
	}
	waitFor(t, "three workers", func() bool { return summary(t, e, id)["total"] == 3.0 })
	seen := map[any]bool{}
	for _, j := range jobs {
		seen[final(t, e, id, j)["output"].(map[string]any)["worker"]] = true
	}
	if len(seen) < 2 {
		t.Errorf("three concurrent jobs ran on %d worker(s)", len(seen))
	}
	// REQUEST_COUNT on a queue endpoint has no idle timeout in v2; Runpod's
	// v1 default of 5 s applies.
	waitFor(t, "scale down to zero", func() bool { return summary(t, e, id)["total"] == 0.0 })
}

func TestVersionChangeReplacesWorkers(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, map[string]any{"workers": map[string]any{"min": 1, "max": 1}})
	first := final(t, e, id, submit(t, e, id, 1))["output"].(map[string]any)["worker"]
	call(t, e, "PATCH", "/v2/serverless/"+id, map[string]any{"env": map[string]string{"RUNPODEMU_TEST_WORKER": "queue", "MY_VAR": "v2"}})
	ans := final(t, e, id, submit(t, e, id, 2))
	out := ans["output"].(map[string]any)
	if out["worker"] == first || out["env"].(map[string]any)["MY_VAR"] != "v2" {
		t.Errorf("job after the release ran on %v with MY_VAR=%v (old worker %v)", out["worker"], out["env"].(map[string]any)["MY_VAR"], first)
	}
	waitFor(t, "one up-to-date worker", func() bool {
		_, ws := call(t, e, "GET", "/v2/serverless/"+id+"/workers", nil)
		list := ws["workers"].([]any)
		return len(list) == 1 && list[0].(map[string]any)["isStale"] == false
	})
}

func TestNetworkVolumeIsMounted(t *testing.T) {
	e := startEmu(t, testConfig(t))
	_, v := call(t, e, "POST", "/v2/network-volumes", map[string]any{"name": "v", "size": 10, "dataCenter": "EU-RO-1"})
	vid := v["id"].(string)
	id := queueEndpoint(t, e, map[string]any{"networkVolumes": []string{vid}})
	ans := final(t, e, id, submit(t, e, id, map[string]any{"volume": "hello.txt"}))
	if ans["output"].(map[string]any)["env"].(map[string]any)["RUNPOD_VOLUME_ID"] != vid {
		t.Errorf("RUNPOD_VOLUME_ID: %v", ans)
	}
	b, err := os.ReadFile(filepath.Join(e.volumeDir(vid), "hello.txt"))
	if err != nil || string(b) != ans["output"].(map[string]any)["worker"] {
		t.Errorf("file written by the worker into runpod-volume: %q %v", b, err)
	}
	if st, _ := call(t, e, "DELETE", "/v2/network-volumes/"+vid, nil); st != 400 {
		t.Errorf("delete an attached volume: %d", st)
	}
}

func TestWorkerWithoutCommandIsReported(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, map[string]any{"args": ""})
	submit(t, e, id, 1)
	waitFor(t, "the start error", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.runs[id].startErr != ""
	})
}

// pollingWorker waits for a worker of the endpoint that has polled for jobs.
func pollingWorker(t *testing.T, e *Emulator, id string) *worker {
	t.Helper()
	var w *worker
	waitFor(t, "a worker polling", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, wk := range e.runs[id].workers {
			if !wk.firstPoll.IsZero() {
				w = wk
			}
		}
		return w != nil
	})
	return w
}

// A request of a worker that died may still be in flight: it must get no
// job (the job would be lost with the worker), but 204.
func TestDeadWorkersPendingTakeGetsNoJob(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, map[string]any{"workers": map[string]any{"min": 1, "max": 1}})
	w := pollingWorker(t, e, id)
	type answer struct {
		status int
		body   map[string]any
	}
	pending := make(chan answer, 1)
	e.mu.Lock()
	before := w.lastSeen
	e.mu.Unlock()
	go func() {
		st, body := callKey(t, e, w.key, "GET", "/v2/"+id+"/job-take/"+w.id, nil)
		pending <- answer{st, body}
	}()
	waitFor(t, "the take to reach the emulator", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return w.lastSeen.After(before) // (or a ping: then the take may come after the death, answered 401)
	})
	w.cmd.Process.Kill()
	<-w.exited
	job := submit(t, e, id, map[string]any{})
	if got := <-pending; got.status != 204 && got.status != 401 {
		t.Errorf("pending take of a dead worker: %d %v", got.status, got.body)
	}
	if ans := final(t, e, id, job); ans["status"] != statusCompleted || ans["output"].(map[string]any)["worker"] == w.id {
		t.Errorf("job: %v", ans)
	}
}

func TestQueueBounds(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxQueue, cfg.MaxJobs = 2, 3
	e := startEmu(t, cfg)
	id := queueEndpoint(t, e, map[string]any{"workers": map[string]any{"min": 0, "max": 0}})
	a := submit(t, e, id, 1)
	submit(t, e, id, 2)
	if st, ans := call(t, e, "POST", "/v2/"+id+"/run", map[string]any{"input": 3}); st != 429 || ans["error"] == nil {
		t.Fatalf("third job with a queue of 2: %d %v", st, ans)
	}
	// Finished jobs past the bound are forgotten, oldest first, to make room.
	call(t, e, "POST", "/v2/"+id+"/cancel/"+a, nil)
	c := submit(t, e, id, 3)
	call(t, e, "POST", "/v2/"+id+"/cancel/"+c, nil)
	submit(t, e, id, 4)
	if st, _ := call(t, e, "GET", "/v2/"+id+"/status/"+a, nil); st != 404 {
		t.Errorf("oldest finished job kept past the bound: %d", st)
	}
	if st, _ := call(t, e, "GET", "/v2/"+id+"/status/"+c, nil); st != 200 {
		t.Errorf("newer finished job forgotten: %d", st)
	}
}

func TestWebhookIsRetried(t *testing.T) {
	type hit struct {
		ID, Status string
	}
	hits := make(chan hit, 10)
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h hit
		json.NewDecoder(r.Body).Decode(&h)
		hits <- h
		calls++
		if calls == 1 {
			w.WriteHeader(500) // the first attempt fails: the emulator tries again
		}
	}))
	defer srv.Close()
	cfg := testConfig(t)
	cfg.WebhookRetry = 50 * time.Millisecond
	e := startEmu(t, cfg)
	id := queueEndpoint(t, e, nil)
	st, ans := call(t, e, "POST", "/v2/"+id+"/run", map[string]any{"input": map[string]any{}, "webhook": srv.URL})
	if st != 200 {
		t.Fatal(st, ans)
	}
	for i := range 2 {
		h := <-hits
		if h.ID != ans["id"] || h.Status != statusCompleted {
			t.Errorf("webhook attempt %d: %+v", i+1, h)
		}
	}
}

func TestUnhealthyPing(t *testing.T) {
	e := startEmu(t, testConfig(t))
	id := queueEndpoint(t, e, map[string]any{"workers": map[string]any{"min": 1, "max": 1}})
	w := pollingWorker(t, e, id)
	if st, _ := callKey(t, e, w.key, "GET", "/v2/"+id+"/ping/"+w.id+"?status=unhealthy&check=memory&reason=low", nil); st != 200 {
		t.Fatalf("ping: %d", st)
	}
	_, h := call(t, e, "GET", "/v2/"+id+"/health", nil)
	if h["workers"].(map[string]any)["unhealthy"] != 1.0 {
		t.Errorf("health after an unhealthy ping: %v", h)
	}
}
