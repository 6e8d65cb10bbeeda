package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/sqlite"
)

// The fault matrix (issue 8): real processes on loopback, each hurt in one
// way, and what the system must still promise afterwards.

// settle waits until ms has finished the reconciliation it runs at boot,
// failing the test when it finished with failures.
func (m *mothership) settle(t testing.TB, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "the mothership finished its boot reconciliation", func() error {
		switch {
		case logContains(m.proc.log, "reconciliation done"):
			return nil
		case logContains(m.proc.log, "reconciliation failed"), logContains(m.proc.log, "reconciliation finished with failures"):
			t.Fatalf("the boot reconciliation failed:\n%s", grep(m.proc.log, 20, "level=ERROR", "reconcil"))
		}
		return errors.New("not yet")
	})
}

// TestFaultMothershipKilledMidDeploy kills the mothership (SIGKILL) at each
// step of a make-before-break redeploy of embedder, then restarts it on the
// same state: its boot reconciliation must finish the redeploy, and leave no
// process that the state store does not record, no record without a process,
// and records that agree with the published manifest (SPEC §4.3, §6.1).
func TestFaultMothershipKilledMidDeploy(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		// kill waits for its moment of the deploy d, then kills ms.
		kill func(t *testing.T, w *world, ms *mothership, d *deployRun, before []int)
		// prepare, when set, runs before the deploy; what it returns runs
		// after the kill.
		prepare func(t *testing.T, w *world) (afterKill func())
	}{
		{name: "deploy begun, no child started yet", kill: func(t *testing.T, w *world, ms *mothership, d *deployRun, before []int) {
			d.waitEvent(t, "embedder", "deploying", 20*time.Second)
			ms.kill(t)
			if pids := w.appPIDs(); !slices.Equal(pids, before) {
				t.Fatalf("processes %v at the kill, %v before the deploy: a child was started", pids, before)
			}
		}, prepare: func(t *testing.T, w *world) func() {
			// The provider stalls opening the log, before it starts anything.
			return stallLog(t, filepath.Join(w.appDir().Logs(), "embedder.log"), false)
		}},
		{name: "new child started, its pid not yet recorded", kill: func(t *testing.T, w *world, ms *mothership, d *deployRun, before []int) {
			pid := w.newPID(t, before, 20*time.Second)
			ms.kill(t)
			t.Logf("killed the mothership after it started pid %d (%s)", pid, procEnv(pid, "FLASH_INSTANCE_ID"))
		}, prepare: func(t *testing.T, w *world) func() {
			// That window lasts one write of a log line and one SQLite
			// write; the provider stalls on that line, so that the kill
			// lands in the window every time.
			return stallLog(t, filepath.Join(w.appDir().Logs(), "embedder.log"), true)
		}},
		{name: "new child recorded, not yet healthy", kill: func(t *testing.T, w *world, ms *mothership, d *deployRun, before []int) {
			d.waitEvent(t, "embedder", "deploying", 20*time.Second)
			eventually(t, 20*time.Second, "the new embedder recorded", func() error {
				if countLines(ms.proc.log, "endpoint starting", "resource=embedder") >= 2 {
					return nil
				}
				return errors.New("not yet")
			})
			ms.kill(t)
		}},
		{name: "new child healthy, not yet published", kill: func(t *testing.T, w *world, ms *mothership, d *deployRun, before []int) {
			d.waitEvent(t, "embedder", "deployed", 30*time.Second)
			ms.kill(t)
		}},
		{name: "published, old child not yet stopped", kill: func(t *testing.T, w *world, ms *mothership, d *deployRun, before []int) {
			d.waitEvent(t, "embedder", "published", 30*time.Second)
			ms.kill(t)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, bins.pipeline, "pipeline")
			mf := w.appManifest(t)
			w.writeDesired(t, mf)
			ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
			st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
			apiURL := st.Resources["api"].EndpointURL
			oldEmbedder := w.endpointOf(t, "embedder")

			// A changed embedder: what a user deploys writes the desired
			// manifest, then asks the mothership to reconcile to it.
			object(t, object(t, mf, "resources"), "embedder")["workersMax"] = 7
			changed := w.writeDesired(t, mf)
			want := resourceHash(t, changed, "embedder")
			before := w.appPIDs()
			afterKill := func() {}
			if c.prepare != nil {
				afterKill = c.prepare(t, w)
			}
			// The deploy needs the deploy lock, which the boot reconciliation
			// holds until it has logged its end (issue 12 item 21).
			ms.settle(t, 60*time.Second)
			d := ms.deployAsync(t, changed)
			c.kill(t, w, ms, d, before)
			afterKill()
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the deploy stream did not end after the mothership was killed")
			}
			t.Logf("after the kill: %d processes of the app, records %v", len(w.appPIDs()), recordIDs(w))

			ms.start(t)
			ms.settle(t, 60*time.Second)
			s := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
			if got := s.Resources["embedder"].ConfigHash; got != want {
				t.Errorf("embedder published with config hash %.12s after the restart, want the deployed one %.12s", got, want)
			}
			eventually(t, 10*time.Second, "no orphan, no stale or lost record", func() error {
				return w.audit(ms.status(t))
			})
			if w.alive(oldEmbedder.PID) {
				t.Errorf("the old embedder (pid %d) still runs", oldEmbedder.PID)
			}
			if n, want := len(w.appPIDs()), len(pipelineResources); n != want {
				t.Errorf("%d processes of the app run, want %d (one per resource)", n, want)
			}
			mustProcess(t, apiURL, pipelineServedBy)
		})
	}
}

// TestFaultDeploySurvivesRestart: a deploy is recorded as the desired state
// before it acts, so that a mothership killed (SIGKILL) after it and
// restarted keeps the deployed change: its boot reconciliation deploys
// nothing, although its own manifest (FLASH_MANIFEST_PATH's file) is older
// (SPEC §4.3).
func TestFaultDeploySurvivesRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	mf := w.appManifest(t)
	w.writeDesired(t, mf)
	ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
	ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	ms.settle(t, 60*time.Second)

	// An env change of embedder, deployed; the file keeps the old manifest.
	object(t, object(t, mf, "resources"), "embedder")["env"] = map[string]any{"EMBED_MODE": "changed"}
	changed := encodeJSON(t, mf)
	want := resourceHash(t, changed, "embedder")
	d := ms.deployAsync(t, changed)
	<-d.done
	if d.err != nil || d.report == nil {
		t.Fatalf("deploy: %v", d.err)
	}
	s := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	if got := s.Resources["embedder"].ConfigHash; got != want {
		t.Fatalf("embedder deployed with config hash %.12s, want %.12s", got, want)
	}
	deployed := w.endpointOf(t, "embedder")

	ms.kill(t)
	ms.start(t)
	ms.settle(t, 60*time.Second)
	if !logContains(ms.proc.log, "reconciliation done", "deploys=0", "undeploys=0") {
		t.Errorf("the restarted mothership deployed or undeployed something; its log:\n%s", tail(ms.proc.log, 30))
	}
	s = ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	if got := s.Resources["embedder"].ConfigHash; got != want {
		t.Errorf("embedder published with config hash %.12s after the restart, want the deployed %.12s: the restart undid the deploy", got, want)
	}
	if e := w.endpointOf(t, "embedder"); e.PID != deployed.PID {
		t.Errorf("embedder runs as pid %d after the restart, was %d: redeployed", e.PID, deployed.PID)
	}
	if got := procEnv(w.endpointOf(t, "embedder").PID, "EMBED_MODE"); got != "changed" {
		t.Errorf("embedder's EMBED_MODE = %q, want the deployed %q", got, "changed")
	}
	if err := w.audit(ms.status(t)); err != nil {
		t.Error(err)
	}
}

// recordIDs lists the endpoint records, for the test's log.
func recordIDs(w *world) []string {
	eps, _ := w.endpoints()
	var out []string
	for _, e := range eps {
		out = append(out, fmt.Sprintf("%s(pid %d)", e.ID, e.PID))
	}
	return out
}

// countLines counts the lines of the file at path that hold every one of parts.
func countLines(path string, parts ...string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			n++
		}
	}
	return n
}

// TestFaultChildKilledDuringJob kills (SIGKILL) the endpoint running an async
// job and a synchronous one (relay on front calling slow on back): the
// provider restarts it; the async job's status answers a clear error (the
// connection refused while it is down, 404 once it is back: jobs live in the
// memory of their process and die with it), the synchronous caller gets a
// failure instead of a result or a hang, and new jobs run (SPEC §5.4, §6.1).
func TestFaultChildKilledDuringJob(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.testapp, "testapp")
	ms := w.startMothership()
	st := ms.waitDeployed(t, 30*time.Second, "front", "back")
	back := st.Resources["back"].EndpointURL
	victim := w.endpointOf(t, "back")

	r := mustSend(t, http.MethodPost, back+"/run", apiKey, envelope("slow", map[string]int{"ms": 60000}))
	var queued job
	r.decode(t, &queued)
	if r.Code != http.StatusOK || queued.ID == "" {
		t.Fatalf("POST /run: %s", r)
	}
	eventually(t, 5*time.Second, "the job in progress", func() error {
		r, err := send(http.MethodGet, back+"/status/"+queued.ID, apiKey, nil)
		if err != nil {
			return err
		}
		var j job
		if err := json.Unmarshal(r.Body, &j); err != nil || j.Status != "IN_PROGRESS" {
			return fmt.Errorf("%s", r)
		}
		return nil
	})

	// A synchronous caller is waiting on back too, through front.
	relayDone := make(chan struct{})
	var (
		relayAnswer response
		relayErr    error
		relayTook   time.Duration
	)
	relayStart := time.Now()
	go func() {
		defer close(relayDone)
		relayAnswer, relayErr = send(http.MethodPost, st.Resources["front"].EndpointURL+"/runsync", apiKey,
			withPolicy(envelope("relay", map[string]int{"ms": 60000}), 20000))
		relayTook = time.Since(relayStart)
	}()
	eventually(t, 5*time.Second, "relay's call in progress on back", func() error {
		var h struct {
			Jobs struct {
				InProgress int `json:"inProgress"`
			} `json:"jobs"`
		}
		r, err := send(http.MethodGet, back+"/health", apiKey, nil)
		if err != nil || json.Unmarshal(r.Body, &h) != nil || h.Jobs.InProgress < 2 {
			return fmt.Errorf("back /health: %s (%v)", r, err)
		}
		return nil
	})

	killed := time.Now()
	w.killPID(t, victim.PID)
	var refused int
	var last response
	eventually(t, 20*time.Second, "the restarted back answers the status of the lost job", func() error {
		url := back
		if e, err := w.record("back"); err == nil {
			url = e.URL // it may have moved
		}
		r, err := send(http.MethodGet, url+"/status/"+queued.ID, apiKey, nil)
		if err != nil {
			refused++
			return err // down: a connection error is a clear answer
		}
		last = r
		if r.Code == http.StatusOK {
			t.Fatalf("GET /status of a job whose process was killed: %s: the job cannot have survived", r)
		}
		if r.Code != http.StatusNotFound || !isJSONError(r) {
			t.Fatalf("GET /status of the lost job: %s, want 404 with a JSON error", r)
		}
		return nil
	})
	t.Logf("status of the lost job: %d connection errors while back was down, then %s", refused, last)

	// The synchronous caller gets a clear failure, not a result and not a hang.
	select {
	case <-relayDone:
	case <-time.After(25 * time.Second):
		t.Fatal("relay through front still waiting 25 s after back was killed")
	}
	var rj job
	if relayErr != nil || json.Unmarshal(relayAnswer.Body, &rj) != nil || (rj.Status != "FAILED" && rj.Status != "TIMED_OUT") || rj.Error == "" {
		t.Errorf("relay whose callee was killed: %s (%v), want FAILED or TIMED_OUT with an error", relayAnswer, relayErr)
	}
	t.Logf("relay answered %s %.200s, %s after back was killed", rj.Status, rj.Error, relayTook-killed.Sub(relayStart))

	after := w.endpointOf(t, "back")
	if after.PID == victim.PID || !w.alive(after.PID) {
		t.Fatalf("back not restarted: record %+v", after)
	}
	s := ms.waitDeployed(t, 20*time.Second, "front", "back")
	back = s.Resources["back"].EndpointURL
	if r := mustSend(t, http.MethodGet, ms.url+"/v2/back/status/"+queued.ID, apiKey, nil); r.Code != http.StatusNotFound {
		t.Errorf("GET /v2/back/status of the lost job through the gateway: %s, want 404", r)
	}

	// New work runs, async and through front.
	r = mustSend(t, http.MethodPost, back+"/run", apiKey, envelope("slow", map[string]int{"ms": 10}))
	var again job
	r.decode(t, &again)
	eventually(t, 10*time.Second, "a new job COMPLETED", func() error {
		r, err := send(http.MethodGet, back+"/status/"+again.ID, apiKey, nil)
		if err != nil {
			return err
		}
		var j job
		if err := json.Unmarshal(r.Body, &j); err != nil || j.Status != "COMPLETED" {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	var out struct {
		Finished bool   `json:"finished"`
		ServedBy string `json:"served_by"`
	}
	runsync(t, s.Resources["front"].EndpointURL+"/runsync", "relay", map[string]int{"ms": 1}).result(t, &out)
	if !out.Finished || out.ServedBy != "back" {
		t.Errorf("relay after the restart: %+v", out)
	}
}

// TestFaultHangingReplica stops (SIGSTOP) one of embedder's two replicas: it
// still accepts connections but never answers. Calls through api, each with a
// 1 s deadline, must keep succeeding once the callers have learnt to avoid
// it: after a warm-up of 40 calls (about half of which go to the hung
// replica until something stops them), the next 50 must all succeed.
func TestFaultHangingReplica(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	mf := w.appManifest(t)
	object(t, object(t, mf, "resources"), "embedder")["workersMin"] = 2
	w.writeDesired(t, mf)
	ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL
	if urls := st.Resources["embedder"].EndpointURLs; len(urls) != 2 {
		t.Fatalf("embedder published at %v, want 2 replicas", urls)
	}
	var replicas []store.Endpoint
	eps, err := w.endpoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range eps {
		if e.Resource == "embedder" {
			replicas = append(replicas, e)
		}
	}
	if len(replicas) != 2 {
		t.Fatalf("embedder records: %+v, want 2", replicas)
	}
	for range 10 {
		mustProcess(t, apiURL, pipelineServedBy)
	}

	hung := replicas[0]
	w.signal(t, hung.PID, syscall.SIGSTOP)
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(hung.PID, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	t.Logf("stopped embedder replica %s (pid %d) at %s", hung.ID, hung.PID, hung.URL)

	call := func() (time.Duration, error) {
		start := time.Now()
		_, err := processWith(apiURL, "X-Flash-Timeout: 1000")
		return time.Since(start), err
	}
	var warmFailed int
	for range 40 {
		if _, err := call(); err != nil {
			warmFailed++
		}
	}
	var (
		made, failed int
		slowest      time.Duration
		failures     []string
	)
	for made < 50 && failed < 10 { // ten failures already break the promise
		took, err := call()
		made++
		slowest = max(slowest, took)
		if err != nil {
			failed++
			failures = append(failures, fmt.Sprintf("call %d after %s: %v", made, took.Round(time.Millisecond), err))
		}
	}
	t.Logf("one replica hung: %d of 40 warm-up calls failed; then %d of %d calls succeeded (slowest %s)",
		warmFailed, made-failed, made, slowest.Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d of %d calls after the warm-up failed with one of two embedder replicas hung; want none:\n%s",
			failed, made, strings.Join(failures[:min(5, len(failures))], "\n"))
	}

	resume()
	eventually(t, 10*time.Second, "calls succeed after SIGCONT", func() error {
		_, err := process(apiURL)
		return err
	})
}

// TestFaultCacheNotWritable points the children's last-known-good cache at a
// path under a regular file, where no directory can be made (even by root):
// each child logs a clear error naming the path, keeps serving, and keeps
// applying new versions (SPEC §5.1).
func TestFaultCacheNotWritable(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	blocker := filepath.Join(w.dir, "blocker")
	if err := os.WriteFile(blocker, []byte("a file, not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(blocker, "cache")
	ms := w.startMothership("FLASH_CACHE_DIR=" + cache)
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL
	mustProcess(t, apiURL, pipelineServedBy)

	logOf := func(res string) string { return filepath.Join(w.appDir().Logs(), res+".log") }
	for _, res := range pipelineResources {
		eventually(t, 5*time.Second, res+" logs that its cache cannot be written", func() error {
			if logContains(logOf(res), "last-known-good", cache, "not a directory") {
				return nil
			}
			return fmt.Errorf("no such line in %s", logOf(res))
		})
	}
	t.Logf("api logged: %s", grep(logOf("api"), 1, "last-known-good"))

	// A new version moves summarizer: every child must follow it.
	errorsBefore := countLines(logOf("api"), "last-known-good", cache)
	mf := w.appManifest(t)
	object(t, object(t, mf, "resources"), "summarizer")["workersMax"] = 2
	rep := ms.deploy(t, encodeJSON(t, mf), nil)
	if _, status, errMsg, _ := rep.resource(t, "summarizer"); status != "updated" || errMsg != "" {
		t.Fatalf("summarizer redeploy: %s %q", status, errMsg)
	}
	eventually(t, 10*time.Second, "every child applied the new version", func() error {
		return ms.synced(ms.status(t), rep.Version)
	})
	for range 5 {
		mustProcess(t, apiURL, pipelineServedBy)
	}
	if n := countLines(logOf("api"), "last-known-good", cache); n <= errorsBefore {
		t.Errorf("api logged no cache error for the new version (%d before, %d after)", errorsBefore, n)
	}
	if data, err := os.ReadFile(blocker); err != nil || string(data) != "a file, not a directory\n" {
		t.Errorf("the blocking file changed: %q, %v", data, err)
	}
}

// TestFaultStateNotWritable starts a mothership whose state store cannot be
// written: it must exit non-zero with an error naming the file, before
// starting anything or creating any file (SPEC §4.3: nothing deployed blind).
// Root ignores permission bits, so the cases are ones that fail for root too.
// The paths are not w.statePath(), which the world's cleanup reads.
func TestFaultStateNotWritable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		prepare func(t *testing.T, dir string) string // returns the state path
		reason  string                                // in the error
	}{
		{"parent is a regular file", func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "blocker"), []byte("x"), 0o644)
			return filepath.Join(dir, "blocker", "state.db")
		}, "not a directory"},
		{"path is a directory", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "dir.db")
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
			return path
		}, "not a regular file"},
		{"file is read-only", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "read-only.db")
			writeFile(t, path, nil, 0o444)
			return path
		}, "read-only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, bins.pipeline, "pipeline")
			path := c.prepare(t, w.dir)
			refuseToStart(t, w, path, c.reason)
		})
	}
}

func writeFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// refuseToStart runs a mothership with its state at path and checks that it
// exits non-zero within 20 s, logging an error that names path and holds
// reason, with no process started and nothing under w.dir created or changed.
func refuseToStart(t *testing.T, w *world, path, reason string) {
	t.Helper()
	before := tree(t, w.dir)
	p := w.start("mothership", "FLASH_IS_MOTHERSHIP=true", "PORT="+fmt.Sprint(freePort(t)),
		"FLASH_API_KEY="+apiKey, "FLASH_STATE_URL=sqlite://"+path)
	code := p.waitExit(t, 20*time.Second)
	line := grep(p.log, 3, "level=ERROR")
	t.Logf("exit %d: %s", code, line)
	if code == 0 {
		t.Errorf("the mothership exited with status 0, want non-zero")
	}
	if !logContains(p.log, "level=ERROR", path, reason) {
		t.Errorf("no error naming %s and saying %q; the log:\n%s", path, reason, tail(p.log, 10))
	}
	if d := treeDiff(before, tree(t, w.dir)); d != "" {
		t.Errorf("the failed start left traces: %s", d)
	}
	if pids := w.appPIDs(); len(pids) > 0 {
		t.Errorf("processes started: %v", pids)
	}
}

// TestFaultCorruptState starts a mothership on a damaged state database: it
// must refuse to start with an error naming the file, and leave the file's
// bytes as they were (someone may want to recover them).
func TestFaultCorruptState(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		corrupt func(t *testing.T, good []byte) []byte
	}{
		{"garbage", func(t *testing.T, _ []byte) []byte {
			b := make([]byte, 64<<10)
			rand.Read(b)
			return b
		}},
		{"truncated mid-page", func(t *testing.T, good []byte) []byte { return good[:len(good)/2+1000] }},
		{"truncated at a page boundary", func(t *testing.T, good []byte) []byte { return good[:len(good)/2/4096*4096] }},
		{"a page overwritten", func(t *testing.T, good []byte) []byte {
			b := bytes.Clone(good)
			page := len(b) / 4096 / 2
			rand.Read(b[page*4096 : (page+1)*4096])
			return b
		}},
		{"header overwritten", func(t *testing.T, good []byte) []byte {
			b := bytes.Clone(good)
			rand.Read(b[:100])
			return b
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, bins.pipeline, "pipeline")
			good := realStateDB(t, w)
			bad := c.corrupt(t, good)
			// Not at w.statePath(): the world's cleanup would read it.
			path := filepath.Join(w.dir, "corrupt.db")
			writeFile(t, path, bad, 0o600)
			refuseToStart(t, w, path, "not a usable flash state database")
			after, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(after, bad) {
				t.Errorf("the corrupt file changed: %d bytes, were %d (%v)", len(after), len(bad), err)
			}
		})
	}
}

// realStateDB makes a real state database (as a mothership leaves it: several
// published versions, deployment and endpoint records), closes it cleanly,
// and returns its bytes; the file itself is removed.
func realStateDB(t *testing.T, w *world) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	mf := w.appManifest(t)
	var prev int64
	for i := range 40 {
		mf["x_build"] = fmt.Sprint(i)
		p, err := st.Publish(ctx, prev, encodeJSON(t, mf))
		if err != nil {
			t.Fatal(err)
		}
		prev = p.Version
	}
	for i, res := range pipelineResources {
		url := fmt.Sprintf("http://127.0.0.1:%d", 20000+i)
		if err := st.PutDeployment(ctx, store.Deployment{Resource: res, ConfigHash: "h", Status: "deployed", EndpointURLs: []string{url}, UpdatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := st.PutEndpoint(ctx, store.Endpoint{ID: "pipeline/" + res + "/x/0", Provider: "local", App: "pipeline", Resource: res,
			URL: url, PID: 1 << 22, StartedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Logf("note: %s-wal left after Close", path)
	}
	if len(data) < 8*4096 {
		t.Fatalf("the state database is only %d bytes: too small to corrupt in the middle", len(data))
	}
	return data
}

// outage is how long TestFaultMothershipOutage keeps the mothership down:
// E2E_OUTAGE (a Go duration such as 5m) or 20 s.
func outage(t *testing.T) time.Duration {
	if v := os.Getenv("E2E_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("E2E_OUTAGE=%q: want a positive Go duration such as 5m", v)
		}
		return d
	}
	return 20 * time.Second
}

// TestFaultMothershipOutage keeps the mothership down for a while (E2E_OUTAGE,
// default 20 s) while clients call POST /process on api (api → embedder,
// summarizer: child to child, no gateway) and embed straight on embedder:
// no call may fail. Meanwhile the desired manifest changes (summarizer moves
// to a new endpoint, a top-level key changes); the restarted mothership
// deploys it, and every child catches up with the latest version, still
// without a failed call (SPEC §4.3 make-before-break, §5.1).
func TestFaultMothershipOutage(t *testing.T) {
	t.Parallel()
	down := outage(t)
	w := newWorld(t, bins.pipeline, "pipeline")
	mf := w.appManifest(t)
	w.writeDesired(t, mf)
	ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL, embedURL := st.Resources["api"].EndpointURL, st.Resources["embedder"].EndpointURL
	oldSummarizer := st.Resources["summarizer"].EndpointURL

	const pace = 20 * time.Millisecond
	budget := down + 2*time.Minute
	maxCalls := int64(budget/pace) * 2
	viaAPI := startCaller("POST /process", 2, pace, budget, maxCalls, func() error { _, err := process(apiURL); return err })
	direct := startCaller("embed on embedder", 1, pace, budget, maxCalls, func() error { return embedAt(embedURL) })
	defer viaAPI.finish()
	defer direct.finish()
	report := func(phase string) (failed int64) {
		for _, c := range []*caller{viaAPI, direct} {
			n, f := c.snapshot()
			t.Logf("%s: %s: %d calls, %d failed", phase, c.name, n, f)
			if f > 0 {
				t.Logf("%s failures:\n%s", c.name, c.failureList())
			}
			failed += f
		}
		return failed
	}

	step(t, "mothership down", func(t *testing.T) {
		ms.kill(t)
		killedAt := time.Now()
		// Meanwhile the desired manifest changes.
		object(t, object(t, mf, "resources"), "summarizer")["workersMax"] = 2
		mf["x_after_outage"] = true
		w.recordDesired(t, encodeJSON(t, mf))
		calls0, _ := viaAPI.snapshot()
		eventually(t, down+10*time.Second, "the outage lasted "+down.String(), func() error {
			if d := time.Since(killedAt); d < down {
				return fmt.Errorf("%s so far", d.Round(time.Second))
			}
			return nil
		})
		calls1, _ := viaAPI.snapshot()
		if calls1-calls0 < 10 {
			t.Errorf("only %d calls through api during the outage: the clients did not run", calls1-calls0)
		}
		if f := report("outage"); f > 0 {
			t.Errorf("%d calls failed while the mothership was down", f)
		}
	})

	step(t, "restarted mothership deploys the change, children catch up", func(t *testing.T) {
		_, failedBefore := viaAPI.snapshot()
		_, directBefore := direct.snapshot()
		restarted := time.Now()
		ms.start(t)
		ms.settle(t, 60*time.Second)
		// The children back off up to 30 s while the mothership is down.
		s := ms.waitDeployed(t, 45*time.Second, pipelineResources...)
		t.Logf("every child on version %d %s after the restart", s.Version, time.Since(restarted).Round(time.Millisecond))
		if got := s.Resources["summarizer"].EndpointURL; got == oldSummarizer {
			t.Errorf("summarizer still at %s: the change was not deployed", got)
		}
		r := mustSend(t, http.MethodGet, ms.url+"/manifest", apiKey, nil)
		if served := decodeJSON(t, r.Body); served["x_after_outage"] != true {
			t.Errorf("the published manifest lacks the new top-level key: %s", r.Body)
		}
		// A few more calls on the new version.
		target, _ := viaAPI.snapshot()
		eventually(t, 10*time.Second, "20 more calls", func() error {
			if n, _ := viaAPI.snapshot(); n < target+20 {
				return fmt.Errorf("%d calls", n)
			}
			return nil
		})
		viaAPI.finish()
		direct.finish()
		report("total")
		_, f1 := viaAPI.snapshot()
		_, f2 := direct.snapshot()
		if n := f1 - failedBefore + f2 - directBefore; n > 0 {
			t.Errorf("%d calls failed while the restarted mothership redeployed summarizer and the children caught up (restarted at +%s); the mothership says:\n%s",
				n, restarted.Sub(viaAPI.began).Round(time.Millisecond), grep(ms.proc.log, 8, "level=WARN", "resource=summarizer action=changed"))
		}
		if err := w.audit(ms.status(t)); err != nil {
			t.Error(err)
		}
	})
}
