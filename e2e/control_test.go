package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pipelineResources are the demo's resources.
var pipelineResources = []string{"api", "embedder", "summarizer"}

// TestControlPlane is the life of a deployed pipeline (SPEC §4, §6.1): the
// mothership deploys it, dies, comes back and adopts its children; a child
// dies and is restarted; a changed resource is replaced make-before-break
// under load; a resource that cannot start is recorded as failed while the
// others keep serving. The steps depend on each other and run in order.
func TestControlPlane(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership()

	var st status
	pids := map[string]int{} // resource → pid of its endpoint
	step(t, "deploy", func(t *testing.T) {
		st = ms.waitDeployed(t, 30*time.Second, pipelineResources...)
		for _, name := range pipelineResources {
			if s := st.Resources[name].Status; s != "deployed" {
				t.Errorf("%s is %q after the first deploy, want deployed", name, s)
			}
			pids[name] = w.endpointOf(t, name).PID
		}
		r := mustSend(t, http.MethodGet, ms.url+"/manifest", apiKey, nil)
		if r.Code != http.StatusOK || r.Header.Get("X-Flash-Manifest-Version") != fmt.Sprint(st.Version) {
			t.Fatalf("GET /manifest: %d, version header %q, want 200 and %d", r.Code, r.Header.Get("X-Flash-Manifest-Version"), st.Version)
		}
		mf := decodeJSON(t, r.Body)
		res := object(t, mf, "resources")
		for _, name := range pipelineResources {
			entry := object(t, res, name)
			if entry["endpoint_url"] != st.Resources[name].EndpointURL || entry["status"] != "deployed" {
				t.Errorf("GET /manifest: %s has endpoint_url %v status %v, /flash/status says %s",
					name, entry["endpoint_url"], entry["status"], st.Resources[name].EndpointURL)
			}
		}
		if r := mustSend(t, http.MethodGet, ms.url+"/manifest", "", nil); r.Code != http.StatusUnauthorized {
			t.Errorf("GET /manifest without the key: %s, want 401", r)
		}
		etag := r.Header.Get("Etag")
		if r := mustSend(t, http.MethodGet, ms.url+"/manifest", apiKey, nil, "If-None-Match: "+etag); etag == "" || r.Code != http.StatusNotModified {
			t.Errorf("GET /manifest with If-None-Match %q: %s, want 304", etag, r)
		}
		// A long poll on the current version ends after its wait with 304.
		begin := time.Now()
		r = mustSend(t, http.MethodGet, fmt.Sprintf("%s/manifest?version=%d&wait=0.3", ms.url, st.Version), apiKey, nil)
		if took := time.Since(begin); r.Code != http.StatusNotModified || took < 200*time.Millisecond || took > 5*time.Second {
			t.Errorf("long poll on the current version: %s after %s, want 304 after about 0.3s", r, took)
		}

		// The gateway forwards the Runpod API shape to queue-based resources.
		var e embedOut
		runsync(t, ms.url+"/v2/embedder/runsync", "embed", textIn{Text: "x"}).result(t, &e)
		if e.ServedBy != "embedder" {
			t.Errorf("embed through the gateway: %+v", e)
		}
		if r := mustSend(t, http.MethodGet, ms.url+"/v2/summarizer/health", apiKey, nil); r.Code != http.StatusOK {
			t.Errorf("GET /v2/summarizer/health through the gateway: %s", r)
		}
		if r := mustSend(t, http.MethodPost, ms.url+"/v2/api/runsync", apiKey, envelope("process", textIn{Text: "x"})); r.Code != http.StatusNotFound {
			t.Errorf("gateway to the load-balanced api: %s, want 404", r)
		}
		mustProcess(t, st.Resources["api"].EndpointURL, pipelineServedBy)
	})
	apiURL := st.Resources["api"].EndpointURL

	step(t, "mothership killed, children keep serving", func(t *testing.T) {
		ms.kill(t)
		for range 5 {
			mustProcess(t, apiURL, pipelineServedBy)
		}
		var got embedOut
		runsync(t, st.Resources["embedder"].EndpointURL+"/runsync", "embed", textIn{Text: "x"}).result(t, &got)
		if got.ServedBy != "embedder" {
			t.Errorf("embedder answered %+v", got)
		}
	})

	step(t, "restarted mothership adopts its children", func(t *testing.T) {
		ms.start(t)
		eventually(t, 30*time.Second, "the restarted mothership reconciled", func() error {
			if logContains(ms.proc.log, "reconciliation") {
				return nil
			}
			return fmt.Errorf("its log says nothing of reconciliation yet")
		})
		if !logContains(ms.proc.log, "reconciliation done", "deploys=0") {
			t.Errorf("the restarted mothership deployed something; its log:\n%s", tail(ms.proc.log, 30))
		}
		after := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
		for _, name := range pipelineResources {
			if pid := w.endpointOf(t, name).PID; pid != pids[name] {
				t.Errorf("%s: pid %d after the restart, was %d: not adopted", name, pid, pids[name])
			}
			if after.Resources[name].EndpointURL != st.Resources[name].EndpointURL {
				t.Errorf("%s moved from %s to %s", name, st.Resources[name].EndpointURL, after.Resources[name].EndpointURL)
			}
		}
		if n := len(w.ours()); n != 1+len(pipelineResources) {
			t.Errorf("%d processes run after the restart, want %d (the mothership and one per resource)", n, 1+len(pipelineResources))
		}
		mustProcess(t, apiURL, pipelineServedBy)
	})

	step(t, "killed child is restarted", func(t *testing.T) {
		old := w.endpointOf(t, "embedder")
		w.killPID(t, old.PID)
		eventually(t, 20*time.Second, "embedder restarted and serving at its published URL", func() error {
			e, err := w.record("embedder")
			if err != nil {
				return err
			}
			if e.PID == old.PID || !w.alive(e.PID) {
				return fmt.Errorf("record %+v", e)
			}
			s := ms.status(t)
			url := s.Resources["embedder"].EndpointURL
			if url != e.URL {
				return fmt.Errorf("published %s, process at %s", url, e.URL)
			}
			if r := s.Resources["embedder"]; r.Restarts < 1 || !strings.Contains(r.LastEvent, "restarted") {
				return fmt.Errorf("the status does not show the restart: %+v", r)
			}
			r, err := send(http.MethodPost, url+"/runsync", apiKey, envelope("embed", textIn{Text: "x"}))
			if err != nil {
				return err
			}
			var j job
			_ = json.Unmarshal(r.Body, &j)
			if j.Status != "COMPLETED" {
				return fmt.Errorf("embed at %s: %s", url, r)
			}
			return nil
		})
		eventually(t, 10*time.Second, "POST /process works again", func() error {
			_, err := process(apiURL)
			return err
		})
		mustProcess(t, apiURL, pipelineServedBy)
	})

	mf := w.appManifest(t)
	step(t, "changed resource replaced make-before-break under load", func(t *testing.T) {
		oldEmbedder := w.endpointOf(t, "embedder")
		object(t, object(t, mf, "resources"), "embedder")["workersMax"] = 5

		// The clients start once the new embedder is healthy: publication
		// and the old one's removal follow within milliseconds. They call
		// until told to stop (10 calls after the switch), so that their
		// budget cannot run out before the switch however fast they are.
		var l *load
		start := func() {
			if l == nil {
				l = startLoad(apiURL, 8, 1_000_000, time.Minute)
			}
		}
		atUndeploying := int64(-1) // calls made when the old embedder was told to stop
		rep := ms.deploy(t, encodeJSON(t, mf), func(e event, _ time.Time) {
			if e.Resource != "embedder" {
				return
			}
			switch e.Step {
			case "deployed":
				start()
			case "undeploying":
				start()
				atUndeploying = l.made()
			}
		})
		start()
		defer l.finish()

		action, status, errMsg, urls := rep.resource(t, "embedder")
		if action != "changed" || status != "updated" || errMsg != "" || len(urls) != 1 || urls[0] == oldEmbedder.URL {
			t.Errorf("embedder in the report: %s %s %q %v, want changed, updated, a new URL (old %s)", action, status, errMsg, urls, oldEmbedder.URL)
		}
		for _, name := range []string{"api", "summarizer"} {
			if action, _, _, _ := rep.resource(t, name); action != "unchanged" {
				t.Errorf("%s in the report: %s, want unchanged", name, action)
			}
		}
		if rep.Deploys != 1 || rep.Undeploys != 1 {
			t.Errorf("report: %d deploys, %d undeploys, want 1 and 1", rep.Deploys, rep.Undeploys)
		}

		// The new URL is published, every child follows, the old process is gone.
		s := ms.waitDeployed(t, 10*time.Second, pipelineResources...)
		if got := s.Resources["embedder"].EndpointURLs; len(urls) > 0 && !slices.Equal(got, urls) {
			t.Errorf("published embedder URLs %v, the deploy reported %v", got, urls)
		}
		eventually(t, 15*time.Second, "the old embedder process gone", func() error {
			if w.alive(oldEmbedder.PID) {
				return fmt.Errorf("pid %d still alive", oldEmbedder.PID)
			}
			return nil
		})
		// A few more calls, that can only reach the new embedder.
		target := l.made() + 10
		eventually(t, 20*time.Second, "10 more calls after the switch", func() error {
			if l.made() < target && !l.stopped() {
				return fmt.Errorf("%d calls", l.made())
			}
			return nil
		})
		l.finish()
		t.Logf("clients: %d calls, %d of them before the old embedder was told to stop, %d failed", l.made(), atUndeploying, l.failed.Load())
		if n := l.failed.Load(); n > 0 {
			t.Errorf("%d of %d calls failed during a make-before-break redeploy:\n%s", n, l.made(), l.failureList(5))
		}
		if atUndeploying < 0 || atUndeploying >= l.limit {
			t.Errorf("the clients were not calling when the old embedder was told to stop (%d calls by then): the test proved nothing", atUndeploying)
		}
	})

	step(t, "resource that cannot start is recorded failed", func(t *testing.T) {
		object(t, mf, "resources")["ghost"] = map[string]any{"resource_type": "LiveServerless", "functions": []any{}}
		rep := ms.deploy(t, encodeJSON(t, mf), nil)
		action, status, errMsg, _ := rep.resource(t, "ghost")
		if action != "new" || status != "failed" || errMsg == "" {
			t.Errorf("ghost in the report: %s %s %q, want new, failed, an error", action, status, errMsg)
		}
		for _, name := range pipelineResources {
			if action, status, _, _ := rep.resource(t, name); action != "unchanged" || !slices.Contains(deployedOK, status) {
				t.Errorf("%s in the report: %s %s, want unchanged and deployed", name, action, status)
			}
		}
		s := ms.status(t)
		if g := s.Resources["ghost"]; g.Status != "failed" || g.Error == "" {
			t.Errorf("/flash/status ghost: %+v, want failed with an error", g)
		}
		for _, name := range pipelineResources {
			if rs := s.Resources[name]; !slices.Contains(deployedOK, rs.Status) {
				t.Errorf("/flash/status %s: %+v", name, rs)
			}
		}
		mustProcess(t, apiURL, pipelineServedBy)
		if r := mustSend(t, http.MethodPost, ms.url+"/v2/ghost/runsync", apiKey, envelope("x", nil)); r.Code != http.StatusServiceUnavailable {
			t.Errorf("gateway to the failed ghost: %s, want 503", r)
		}
	})
}

// TestControlPlaneServesForeignManifest serves the seed's runtime fixture
// with FLASH_PROVIDER=none: what the mothership publishes and serves keeps
// every key it does not know (SPEC §2.1).
func TestControlPlaneServesForeignManifest(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	fixture, err := os.ReadFile("../testdata/manifests/valid/pipeline-runtime.json")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, "flash_manifest.json")
	if err := os.WriteFile(path, fixture, 0o644); err != nil {
		t.Fatal(err)
	}
	ms := w.startMothership("FLASH_PROVIDER=none", "FLASH_MANIFEST_PATH="+path)

	var served map[string]any
	eventually(t, 20*time.Second, "GET /manifest serves the fixture", func() error {
		r, err := send(http.MethodGet, ms.url+"/manifest", apiKey, nil)
		if err != nil {
			return err
		}
		if r.Code != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		served = decodeJSON(t, r.Body)
		return nil
	})
	// The file is an input: the mothership keeps its own copy elsewhere
	// (.flash/apps/<app>/) and never writes this one (issue 12 item 5).
	// (The fixture has a failed resource: the reconciliation ends with failures.)
	eventually(t, 30*time.Second, "the boot reconciliation ended", func() error {
		if logContains(ms.proc.log, "reconciliation finished") || logContains(ms.proc.log, "reconciliation done") {
			return nil
		}
		return errors.New("not yet")
	})
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, fixture) {
		t.Errorf("FLASH_MANIFEST_PATH's file was rewritten (%v):\n%s", err, after)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("FLASH_MANIFEST_PATH's file mode is %v (%v), want 0644 as written", fi.Mode().Perm(), err)
	}
	if got := served["x_unknown_top_level"]; !reflect.DeepEqual(got, map[string]any{"kept": true}) {
		t.Errorf("x_unknown_top_level = %#v, want {\"kept\": true}", got)
	}
	want := decodeJSON(t, fixture)
	for _, name := range slices.Sorted(maps.Keys(object(t, want, "resources"))) {
		w, g := object(t, object(t, want, "resources"), name), object(t, object(t, served, "resources"), name)
		for _, k := range []string{"handler_file", "endpoint_url", "status", "error"} {
			if !reflect.DeepEqual(w[k], g[k]) {
				t.Errorf("resources.%s.%s = %#v, want %#v", name, k, g[k], w[k])
			}
		}
	}
}

// step runs one step of a story; a failed step ends the story.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// load calls POST /process on an api endpoint from a few concurrent clients,
// within a budget of calls and of time, and records the failures.
type load struct {
	limit    int64
	calls    atomic.Int64 // calls started, plus at most one per client beyond limit
	failed   atomic.Int64
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu       sync.Mutex
	failures []string
}

func startLoad(apiURL string, clients int, limit int64, maxTime time.Duration) *load {
	l := &load{limit: limit, stop: make(chan struct{}), done: make(chan struct{})}
	began := time.Now()
	deadline := began.Add(maxTime)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) && !isClosed(l.stop) && l.calls.Add(1) <= limit {
				if _, err := process(apiURL); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.failures) < 100 { // enough to see what went wrong
						l.failures = append(l.failures, fmt.Sprintf("+%s %v", time.Since(began).Round(time.Millisecond), err))
					}
					l.mu.Unlock()
				}
			}
		})
	}
	go func() { wg.Wait(); close(l.done) }()
	return l
}

// made is how many calls were made (or are in flight).
func (l *load) made() int64 { return min(l.calls.Load(), l.limit) }

// stopped reports whether every client has ended.
func (l *load) stopped() bool { return isClosed(l.done) }

// finish stops the clients and waits for them.
func (l *load) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

// failureList shows up to n failures, each with the time since the clients started.
func (l *load) failureList(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.failures[:min(n, len(l.failures))], "\n")
}

// TestGatewayReplicasAndStableAddress: through the mothership's gateway, a
// job submitted to a resource with three replica processes is found by its
// status and cancel every time (round robin would answer 404 two times in
// three), and an LB route answers at /{resource}/… on the mothership, an
// address that stays put while the resource is redeployed (SPEC §4.5).
func TestGatewayReplicasAndStableAddress(t *testing.T) {
	t.Parallel()
	w := newWorld(t, bins.pipeline, "pipeline")
	mf := w.appManifest(t)
	object(t, object(t, mf, "resources"), "embedder")["workersMin"] = 3
	w.writeDesired(t, mf)
	ms := w.startMothership("FLASH_MANIFEST_PATH=" + w.desiredPath())
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	if n := len(st.Resources["embedder"].EndpointURLs); n != 3 {
		t.Fatalf("embedder has %d replicas, want 3", n)
	}
	ms.settle(t, 60*time.Second)

	step(t, "a job's status and cancel reach its replica", func(t *testing.T) {
		for i := range 6 {
			r := mustSend(t, http.MethodPost, ms.url+"/v2/embedder/run", apiKey, envelope("embed", textIn{Text: fmt.Sprint("text ", i)}))
			var j job
			if r.Code != http.StatusOK {
				t.Fatalf("run %d: %s", i, r)
			}
			r.decode(t, &j)
			eventually(t, 10*time.Second, "job "+j.ID+" completed", func() error {
				r := mustSend(t, http.MethodGet, ms.url+"/v2/embedder/status/"+j.ID, apiKey, nil)
				if r.Code != http.StatusOK {
					t.Fatalf("status of job %s (submitted %d): %s", j.ID, i, r)
				}
				var s job
				r.decode(t, &s)
				if s.Status != "COMPLETED" {
					return fmt.Errorf("status %s", s.Status)
				}
				return nil
			})
			if r := mustSend(t, http.MethodPost, ms.url+"/v2/embedder/cancel/"+j.ID, apiKey, nil); r.Code != http.StatusOK {
				t.Fatalf("cancel of job %s: %s", j.ID, r)
			}
		}
	})

	step(t, "a stream crosses api and an embedder replica", func(t *testing.T) {
		for range 3 { // the job's /stream/{id} polls must reach the replica that holds it
			checkSentences(t, ms.url+"/api")
		}
	})

	step(t, "LB routes at a stable address across a redeploy", func(t *testing.T) {
		stable := ms.url + "/api"
		mustProcess(t, stable, pipelineServedBy)
		old := st.Resources["api"].EndpointURL
		object(t, object(t, mf, "resources"), "api")["env"] = map[string]any{"REDEPLOYED": "1"}
		d := ms.deployAsync(t, encodeJSON(t, mf))
		<-d.done
		if d.err != nil || d.report == nil {
			t.Fatalf("redeploy: %v", d.err)
		}
		after := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
		if after.Resources["api"].EndpointURL == old {
			t.Fatalf("api did not move (%s): the redeploy proves nothing", old)
		}
		mustProcess(t, stable, pipelineServedBy)
	})
}
