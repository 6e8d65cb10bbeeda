package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash/runpodemu"
)

// The Runpod emulator (runpodemu) running flash apps as real Runpod workers:
// queue endpoints in worker mode pull their jobs from the emulator's queue
// (SPEC §5.7), load-balanced endpoints answer through its proxy.

// emulator starts a Runpod emulator whose account key is apiKey, so that the
// suite's HTTP helpers work against it.
func emulator(t *testing.T) *runpodemu.Emulator {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if bins.dir == "" {
		t.Fatal("the apps were not built (see TestMain)")
	}
	dir := t.TempDir()
	e, err := runpodemu.Start(runpodemu.Config{Dir: dir, APIKey: apiKey, Tick: 100 * time.Millisecond,
		TakeHold: 5 * time.Second, PingInterval: time.Second, StopGrace: 5 * time.Second}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close the emulator: %v", err)
		}
		// Every worker's log: a data race in any of them fails the test.
		logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*", "*.log"))
		for _, l := range logs {
			if b, _ := os.ReadFile(l); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
				t.Errorf("data race in worker log %s:\n%s", l, b)
			}
		}
	})
	return e
}

// createEndpoint creates an endpoint through the management API and returns it.
func createEndpoint(t *testing.T, e *runpodemu.Emulator, body map[string]any) map[string]any {
	t.Helper()
	r := mustSend(t, http.MethodPost, e.URL()+"/v2/serverless", apiKey, body)
	if r.Code != http.StatusCreated {
		t.Fatalf("create endpoint: %s", r)
	}
	var ep map[string]any
	r.decode(t, &ep)
	return ep
}

// flashEndpoint is the body that runs resource of bin as a Runpod endpoint:
// the image cannot be pulled here, so args is the start command.
func flashEndpoint(bin, resource, typ string, min, max int) map[string]any {
	scaling := map[string]any{"type": "REQUEST_COUNT", "requestCount": 1}
	workers := map[string]any{"min": min, "max": max}
	if typ == "LOAD_BALANCER" {
		workers["idleTimeout"] = 2
	}
	return map[string]any{"name": resource, "type": typ, "image": "registry.invalid/flash/" + resource + ":1",
		"args": "exec '" + bin + "'", "env": map[string]string{"FLASH_RESOURCE_NAME": resource, "FLASH_API_KEY": apiKey},
		"cpu": []any{map[string]any{"id": "cpu3c", "vcpuCount": 2}}, "workers": workers, "scaling": scaling}
}

// workerCount is the number of workers of an endpoint.
func workerCount(t *testing.T, e *runpodemu.Emulator, id string) int {
	t.Helper()
	r := mustSend(t, http.MethodGet, e.URL()+"/v2/serverless/"+id+"/workers", apiKey, nil)
	var ans struct{ Summary struct{ Total int } }
	r.decode(t, &ans)
	return ans.Summary.Total
}

// submitJob posts /run and returns the job id.
func submitJob(t *testing.T, base, fn string, in any) string {
	t.Helper()
	r := mustSend(t, http.MethodPost, base+"/run", apiKey, envelope(fn, in))
	var j job
	r.decode(t, &j)
	if r.Code != http.StatusOK || j.Status != "IN_QUEUE" {
		t.Fatalf("run %s: %s", fn, r)
	}
	return j.ID
}

// jobStatus is a job's status and the worker that holds or held it.
func jobStatus(t *testing.T, base, id string) (job, string) {
	t.Helper()
	r := mustSend(t, http.MethodGet, base+"/status/"+id, apiKey, nil)
	var j job
	r.decode(t, &j)
	var w struct {
		WorkerID string `json:"workerId"`
	}
	json.Unmarshal(r.Body, &w)
	return j, w.WorkerID
}

func waitJob(t *testing.T, base, id string) job {
	t.Helper()
	var j job
	eventually(t, time.Minute, "job "+id+" to end", func() error {
		j, _ = jobStatus(t, base, id)
		switch j.Status {
		case "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT":
			return nil
		}
		return fmt.Errorf("status %s", j.Status)
	})
	return j
}

// TestRunpodEmulatorQueueWorker: the pipeline's embedder, started by the
// emulator with Runpod's worker variables, takes jobs submitted through
// /run and /runsync; workers scale 0 → N with load and back to 0.
func TestRunpodEmulatorQueueWorker(t *testing.T) {
	t.Parallel()
	e := emulator(t)
	ep := createEndpoint(t, e, flashEndpoint(bins.pipeline, "embedder", "QUEUE", 0, 3))
	id := ep["id"].(string)
	base := e.URL() + "/v2/" + id
	if n := workerCount(t, e, id); n != 0 {
		t.Fatalf("%d workers before any job", n)
	}

	var first embedOut
	runsync(t, base+"/runsync", "embed", textIn{Text: "hello world"}).result(t, &first)
	if first.ServedBy != "embedder" || len(first.Vector) != 8 {
		t.Errorf("embed through the queue answered %+v", first)
	}

	// Load: jobs submitted at once bring up more workers (REQUEST_COUNT 1,
	// at most 3), every job completes with the same answer as runsync's.
	var ids []string
	for range 12 {
		ids = append(ids, submitJob(t, base, "embed", textIn{Text: "hello world"}))
	}
	peak := 0
	workers := map[string]bool{}
	for _, jid := range ids {
		peak = max(peak, workerCount(t, e, id))
		j := waitJob(t, base, jid)
		var got embedOut
		j.result(t, &got)
		if fmt.Sprint(got.Vector) != fmt.Sprint(first.Vector) {
			t.Errorf("job %s answered %v, runsync %v", jid, got.Vector, first.Vector)
		}
		_, w := jobStatus(t, base, jid)
		workers[w] = true
	}
	peak = max(peak, workerCount(t, e, id))
	if peak < 2 {
		t.Errorf("12 jobs at once ran with at most %d worker(s)", peak)
	}
	t.Logf("12 jobs ran on %d workers (peak %d)", len(workers), peak)
	// Idle workers go after the idle timeout (5 s for QUEUE + REQUEST_COUNT).
	eventually(t, time.Minute, "scale down to zero", func() error {
		if n := workerCount(t, e, id); n != 0 {
			return fmt.Errorf("%d workers", n)
		}
		return nil
	})
}

// TestRunpodEmulatorCancelAndCrash: cancel reaches a job running in a flash
// worker through the stop channel; a worker killed mid-job has its job
// requeued and completed by another worker. testapp's back resource
// provides a function that runs long enough (the pipeline's are instant).
func TestRunpodEmulatorCancelAndCrash(t *testing.T) {
	t.Parallel()
	e := emulator(t)
	ep := createEndpoint(t, e, flashEndpoint(bins.testapp, "back", "QUEUE", 1, 1))
	id := ep["id"].(string)
	base := e.URL() + "/v2/" + id

	running := submitJob(t, base, "slow", map[string]int{"ms": 120000})
	var holder string
	eventually(t, time.Minute, "the slow job to run", func() error {
		j, w := jobStatus(t, base, running)
		holder = w
		if j.Status != "IN_PROGRESS" {
			return fmt.Errorf("status %s", j.Status)
		}
		return nil
	})
	r := mustSend(t, http.MethodPost, base+"/cancel/"+running, apiKey, nil)
	if !strings.Contains(r.String(), "CANCELLED") {
		t.Fatalf("cancel: %s", r)
	}
	var count struct {
		Cancelled int64  `json:"cancelled"`
		ServedBy  string `json:"served_by"`
	}
	eventually(t, 30*time.Second, "slow to see its context cancelled", func() error {
		j := runsync(t, base+"/runsync", "cancelled", struct{}{})
		if j.Status != "COMPLETED" {
			return fmt.Errorf("cancelled: %+v", j)
		}
		j.result(t, &count)
		if count.Cancelled < 1 {
			return fmt.Errorf("cancellations seen: %d", count.Cancelled)
		}
		return nil
	})
	if j, _ := jobStatus(t, base, running); j.Status != "CANCELLED" || j.Output != nil {
		t.Errorf("cancelled job: %+v", j)
	}

	// Kill the worker that runs a job: the job goes back to the queue and
	// the replacement worker completes it.
	victim := submitJob(t, base, "slow", map[string]int{"ms": 3000})
	eventually(t, time.Minute, "the job to run", func() error {
		j, w := jobStatus(t, base, victim)
		holder = w
		if j.Status != "IN_PROGRESS" {
			return fmt.Errorf("status %s", j.Status)
		}
		return nil
	})
	pid := workerPID(t, holder)
	syscall.Kill(pid, syscall.SIGKILL)
	j := waitJob(t, base, victim)
	var out struct {
		Finished bool `json:"finished"`
	}
	j.result(t, &out)
	if _, w := jobStatus(t, base, victim); w == holder || !out.Finished {
		t.Errorf("requeued job finished=%v on worker %s (killed: %s)", out.Finished, w, holder)
	}
}

// workerPID finds the process of a worker by the RUNPOD_POD_ID it was given.
func workerPID(t *testing.T, worker string) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		if procEnv(pid, "RUNPOD_POD_ID") == worker && procEnv(pid, "FLASH_RESOURCE_NAME") != "" {
			return pid
		}
	}
	t.Fatalf("no process for worker %s", worker)
	return 0
}

// TestRunpodEmulatorLoadBalanced: the pipeline's api as a load-balanced
// endpoint answers through the emulator's URL, starting its first worker on
// the first request (scale from zero).
func TestRunpodEmulatorLoadBalanced(t *testing.T) {
	t.Parallel()
	e := emulator(t)
	ep := createEndpoint(t, e, flashEndpoint(bins.pipeline, "api", "LOAD_BALANCER", 0, 2))
	id := ep["id"].(string)
	urls := ep["requestUrls"].(map[string]any)
	if n := workerCount(t, e, id); n != 0 {
		t.Fatalf("%d workers before any request", n)
	}
	r := mustSend(t, http.MethodPost, urls["base"].(string)+"/process", apiKey, textIn{Text: "the quick brown fox"})
	if r.Code != http.StatusOK || r.Header.Get("X-Runpod-Worker-Id") == "" {
		t.Fatalf("POST /process through the emulator: %s", r)
	}
	var out processOut
	r.decode(t, &out)
	if out.Words != 4 || out.ServedBy["process"] == "" || out.ServedBy["embed"] == "" {
		t.Errorf("process answered %+v", out)
	}
	if h := mustSend(t, http.MethodGet, urls["health"].(string), apiKey, nil); h.Code != http.StatusOK {
		t.Errorf("health URL: %s", h)
	}
	eventually(t, time.Minute, "scale down to zero", func() error {
		if n := workerCount(t, e, id); n != 0 {
			return fmt.Errorf("%d workers", n)
		}
		return nil
	})
}
