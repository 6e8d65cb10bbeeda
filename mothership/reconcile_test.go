package mothership

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/provider/local"
	"github.com/flash-go/flash/store"
)

func TestReconcileFreshDeploy(t *testing.T) {
	// One at a time, so that every success is its own version (in parallel,
	// successes that finish together may share one).
	h := newHarness(t, func(c *Config) { c.Parallelism = 1 })
	desired := buildManifest(t, res{name: "a"}, res{name: "b", lb: true}, res{name: "c", min: 3, env: map[string]string{"K": "v"}})
	var (
		mu     sync.Mutex
		events []Event
	)
	digest := "sha256:" + strings.Repeat("0a", 32)
	bin := filepath.Join(h.dir, "artifacts", strings.Repeat("0a", 32), "app")
	rep, err := h.m.Reconcile(t.Context(), desired, ReconcileOptions{Artifact: digest, Progress: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || rep.Deploys != 3 || rep.Undeploys != 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep.Resources {
		if r.Action != ActionNew || r.Status != "deployed" || len(r.EndpointURLs) == 0 {
			t.Fatalf("resource %+v", r)
		}
	}
	// The intent (everything pending) is published first, so that new
	// children have a manifest; then each success is its own version: 0, 1,
	// 2 then 3 deployed resources.
	hist, err := h.st.History(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 || rep.Version != 4 {
		t.Fatalf("%d versions, report version %d; want 4", len(hist), rep.Version)
	}
	for i, p := range hist {
		mf, err := manifest.Parse(p.Manifest)
		if err != nil {
			t.Fatalf("version %d: %v", p.Version, err)
		}
		deployed := 0
		for _, r := range mf.Resources {
			switch r.Status {
			case manifest.StatusDeployed:
				deployed++
				if r.ConfigHash != desired.Resources[r.Name].Hash() || r.EndpointURL == "" {
					t.Fatalf("version %d: %s runtime %+v", p.Version, r.Name, r)
				}
			case manifest.StatusPending:
			default:
				t.Fatalf("version %d: %s status %q", p.Version, r.Name, r.Status)
			}
		}
		if want := 3 - i; deployed != want {
			t.Fatalf("version %d has %d deployed resources, want %d", p.Version, deployed, want)
		}
	}
	final, _ := h.m.Current()
	if got := final.Resources["c"].EndpointURLs; len(got) != 3 {
		t.Fatalf("replicas: endpoint_urls %v", got)
	}
	// Spec: replicas from workersMin, env, config, artifact.
	for _, s := range h.prov.specs {
		if s.Artifact != bin || s.ConfigHash != desired.Resources[s.Resource].Hash() || len(s.Config) == 0 {
			t.Fatalf("spec %+v", s)
		}
		if s.Resource == "c" && (s.Replicas != 3 || s.Env["K"] != "v") {
			t.Fatalf("spec c %+v", s)
		}
		if s.Resource == "a" && s.Replicas != 1 {
			t.Fatalf("spec a %+v", s)
		}
	}
	deps, err := h.st.Deployments(t.Context())
	if err != nil || len(deps) != 3 || deps[0].Status != "deployed" || deps[0].ConfigHash == "" {
		t.Fatalf("deployment records %+v %v", deps, err)
	}
	steps := map[string][]Step{}
	for _, e := range events {
		steps[e.Resource] = append(steps[e.Resource], e.Step)
	}
	if want := []Step{StepDeploying, StepDeployed, StepPublished}; !slices.Equal(steps["a"], want) {
		t.Fatalf("events of a: %v, want %v", steps["a"], want)
	}

	// The same desired again: no provider call, no new version.
	h.prov.resetCounts()
	rep = mustReconcile(t, h.m, desired)
	if h.prov.deploys.Load() != 0 || h.prov.undeploys.Load() != 0 || rep.Deploys != 0 || rep.Undeploys != 0 {
		t.Fatalf("second reconcile called the provider: %v", h.prov.callLog())
	}
	if rep.Version != 4 || rep.Failed() {
		t.Fatalf("second reconcile: %+v", rep)
	}
	for _, r := range rep.Resources {
		if r.Action != ActionUnchanged || r.Status != "deployed" {
			t.Fatalf("resource %+v", r)
		}
	}
}

func TestReconcileChangedMakeBeforeBreak(t *testing.T) {
	h := newHarness(t)
	mustReconcile(t, h.m, buildManifest(t, res{name: "a"}, res{name: "b"}))
	cur, _ := h.m.Current()
	oldURL := cur.Resources["a"].EndpointURL
	h.prov.resetCounts()

	var publishedAtUndeploy *manifest.Resource
	h.prov.onUnde = func(e provider.Endpoint) {
		mf, _ := h.m.Current()
		publishedAtUndeploy = mf.Resources["a"]
	}
	desired := buildManifest(t, res{name: "a", env: map[string]string{"NEW": "1"}}, res{name: "b"})
	rep := mustReconcile(t, h.m, desired)
	if rep.Failed() {
		t.Fatalf("report %+v", rep)
	}
	if got := h.prov.callLog(); len(got) != 2 || got[0] != "deploy a" || !strings.HasPrefix(got[1], "undeploy app/a/") {
		t.Fatalf("calls %v, want deploy a then undeploy of the old a", got)
	}
	ra := resourceReport(t, rep, "a")
	if ra.Action != ActionChanged || ra.Status != "updated" {
		t.Fatalf("report a %+v", ra)
	}
	if publishedAtUndeploy == nil || publishedAtUndeploy.EndpointURL == oldURL ||
		publishedAtUndeploy.EndpointURL != ra.EndpointURLs[0] || publishedAtUndeploy.Status != manifest.StatusUpdated {
		t.Fatalf("when the old endpoint went, the published a was %+v (old URL %s)", publishedAtUndeploy, oldURL)
	}
	if rb := resourceReport(t, rep, "b"); rb.Action != ActionUnchanged {
		t.Fatalf("report b %+v", rb)
	}
	if eps := h.prov.liveOf("a"); len(eps) != 1 || eps[0].URLs[0] != ra.EndpointURLs[0] {
		t.Fatalf("live endpoints of a: %+v", eps)
	}
}

func TestReconcileFailureIsolated(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Parallelism = 1 })
	h.prov.fail["b"] = errBoom
	rep := mustReconcile(t, h.m, buildManifest(t, res{name: "a"}, res{name: "b"}, res{name: "c"}))
	if !rep.Failed() || rep.Deploys != 3 {
		t.Fatalf("report %+v", rep)
	}
	if rb := resourceReport(t, rep, "b"); rb.Status != "failed" || !strings.Contains(rb.Error, "boom") {
		t.Fatalf("report b %+v", rb)
	}
	mf, _ := h.m.Current()
	if b := mf.Resources["b"]; b.Status != manifest.StatusFailed || b.Error == "" || b.EndpointURL != "" {
		t.Fatalf("published b %+v", b)
	}
	for _, n := range []string{"a", "c"} {
		if r := mf.Resources[n]; r.Status != manifest.StatusDeployed {
			t.Fatalf("published %s %+v", n, r)
		}
	}
	deps, _ := h.st.Deployments(t.Context())
	if deps[1].Resource != "b" || deps[1].Status != "failed" || deps[1].Error == "" {
		t.Fatalf("record of b %+v", deps[1])
	}

	// The next reconcile retries only the failed one.
	delete(h.prov.fail, "b")
	h.prov.resetCounts()
	rep = mustReconcile(t, h.m, buildManifest(t, res{name: "a"}, res{name: "b"}, res{name: "c"}))
	if rep.Failed() || !slices.Equal(h.prov.callLog(), []string{"deploy b"}) {
		t.Fatalf("retry: %+v calls %v", rep, h.prov.callLog())
	}
}

func TestReconcileFailedUpdateKeepsOldEndpoint(t *testing.T) {
	h := newHarness(t)
	mustReconcile(t, h.m, buildManifest(t, res{name: "a"}))
	cur, _ := h.m.Current()
	old := cur.Resources["a"]
	h.prov.fail["a"] = errBoom
	rep := mustReconcile(t, h.m, buildManifest(t, res{name: "a", env: map[string]string{"X": "1"}}))
	if !rep.Failed() || rep.Undeploys != 0 {
		t.Fatalf("report %+v", rep)
	}
	mf, _ := h.m.Current()
	a := mf.Resources["a"]
	if a.EndpointURL != old.EndpointURL || a.Status != manifest.StatusDeployed || !strings.Contains(a.Error, "boom") {
		t.Fatalf("published a %+v; want the old endpoint still served, with the error", a)
	}
	// Fixed: the next reconcile deploys the new config, then removes the old endpoint.
	delete(h.prov.fail, "a")
	h.prov.resetCounts()
	rep = mustReconcile(t, h.m, buildManifest(t, res{name: "a", env: map[string]string{"X": "1"}}))
	if rep.Failed() || rep.Deploys != 1 || rep.Undeploys != 1 {
		t.Fatalf("after the fix: %+v %v", rep, h.prov.callLog())
	}
}

func TestReconcileStoreReadFailureAborts(t *testing.T) {
	fs := &failingStore{Store: openSQLite(t)}
	h := newHarness(t, func(c *Config) { c.Store = fs })
	down := error(errBoom)
	fs.err.Store(&down)
	_, err := h.m.Reconcile(t.Context(), buildManifest(t, res{name: "a"}), ReconcileOptions{})
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "nothing deployed") {
		t.Fatalf("err %v", err)
	}
	if n := len(h.prov.callLog()); n != 0 {
		t.Fatalf("%d provider calls", n)
	}
	if _, v := h.m.Current(); v != 0 {
		t.Fatalf("published version %d", v)
	}
}

func TestReconcileRemoved(t *testing.T) {
	h := newHarness(t)
	mustReconcile(t, h.m, buildManifest(t, res{name: "a"}, res{name: "gone"}))
	h.prov.resetCounts()
	var statusAtUndeploy manifest.Status
	h.prov.onUnde = func(e provider.Endpoint) {
		mf, _ := h.m.Current()
		if r := mf.Resources["gone"]; r != nil {
			statusAtUndeploy = r.Status
		}
	}
	rep := mustReconcile(t, h.m, buildManifest(t, res{name: "a"}))
	if rep.Failed() || rep.Undeploys != 1 || rep.Deploys != 0 {
		t.Fatalf("report %+v", rep)
	}
	if r := resourceReport(t, rep, "gone"); r.Action != ActionRemoved || r.Status != "removed" {
		t.Fatalf("report gone %+v", r)
	}
	if statusAtUndeploy != manifest.StatusRemoving {
		t.Fatalf("published status during undeploy %q, want removing", statusAtUndeploy)
	}
	mf, _ := h.m.Current()
	if _, ok := mf.Resources["gone"]; ok || mf.FunctionRegistry["f_gone"] != "" {
		t.Fatal("removed resource still published")
	}
	if len(h.prov.liveOf("gone")) != 0 {
		t.Fatal("removed resource still live")
	}
	deps, _ := h.st.Deployments(t.Context())
	if len(deps) != 1 || deps[0].Resource != "a" {
		t.Fatalf("deployment records %+v", deps)
	}
}

func TestReconcileOrphansAndDeadEndpoints(t *testing.T) {
	h := newHarness(t)
	desired := buildManifest(t, res{name: "a"}, res{name: "b"})
	mustReconcile(t, h.m, desired)
	// A mothership killed mid-deploy left endpoints nobody references, and b died.
	h.prov.mu.Lock()
	h.prov.live["app/ghost/99"] = provider.Endpoint{ID: "app/ghost/99", Resource: "ghost", URLs: []string{"http://127.0.0.1:1"}}
	h.prov.live["app/a/98"] = provider.Endpoint{ID: "app/a/98", Resource: "a", ConfigHash: "stale", URLs: []string{"http://127.0.0.1:2"}}
	for id, e := range h.prov.live {
		if e.Resource == "b" {
			delete(h.prov.live, id)
		}
	}
	h.prov.mu.Unlock()
	h.prov.resetCounts()

	rep := mustReconcile(t, h.m, desired)
	if rep.Failed() {
		t.Fatalf("report %+v", rep)
	}
	if !slices.Equal(rep.Orphans, []string{"app/a/98", "app/ghost/99"}) {
		t.Fatalf("orphans %v", rep.Orphans)
	}
	if rep.Deploys != 1 || !slices.Contains(h.prov.callLog(), "deploy b") {
		t.Fatalf("dead b not redeployed: %v", h.prov.callLog())
	}
	live, _ := h.prov.List(t.Context())
	if len(live) != 2 {
		t.Fatalf("live endpoints %+v", live)
	}
	mf, _ := h.m.Current()
	if b := mf.Resources["b"]; b.Status != manifest.StatusDeployed || b.EndpointURL != h.prov.liveOf("b")[0].URLs[0] {
		t.Fatalf("published b %+v", b)
	}
}

func TestReconcileKeepsUnknownKeys(t *testing.T) {
	h := newHarness(t)
	data, err := os.ReadFile("../testdata/manifests/valid/pipeline-runtime.json")
	if err != nil {
		t.Fatal(err)
	}
	desired, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	h.m.cfg.App = "pipeline"
	rep := mustReconcile(t, h.m, desired)
	if rep.Failed() {
		t.Fatalf("report %+v", rep)
	}
	_, v := h.m.Current()
	p, err := h.st.Get(t.Context(), v)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(p.Manifest, &doc); err != nil {
		t.Fatal(err)
	}
	if x, ok := doc["x_unknown_top_level"].(map[string]any); !ok || x["kept"] != true {
		t.Fatalf("unknown top-level key lost: %v", doc["x_unknown_top_level"])
	}
	api := doc["resources"].(map[string]any)["api"].(map[string]any)
	if api["handler_file"] != "handler_api.py" || api["is_load_balanced"] != nil {
		t.Fatalf("resource keys changed: %v", api)
	}
	// Runtime keys are the mothership's own, not the fixture's.
	if api["config_hash"] != desired.Resources["api"].Hash() || api["status"] != "deployed" ||
		strings.Contains(api["endpoint_url"].(string), "runpod") {
		t.Fatalf("runtime keys: %v", api)
	}
	if s := doc["resources"].(map[string]any)["summarizer"].(map[string]any); s["error"] != nil {
		t.Fatalf("stale error kept: %v", s)
	}
	if doc["routes"] == nil || doc["generated_at"] != desired.GeneratedAt {
		t.Fatalf("keys lost: %v", doc)
	}
}

func TestReconcileWithoutProvider(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Provider = nil })
	// Endpoints managed elsewhere: the desired manifest carries its URLs.
	data, err := os.ReadFile("../testdata/manifests/valid/pipeline-runtime.json")
	if err != nil {
		t.Fatal(err)
	}
	runtime, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	rep := mustReconcile(t, h.m, runtime)
	if len(rep.Errors) != 0 || rep.Version != 1 || rep.Deploys != 0 {
		t.Fatalf("report %+v", rep)
	}
	// A build manifest (no runtime keys) for the same code keeps what is published.
	build := runtime
	for _, n := range runtime.ResourceNames() {
		build = build.WithRuntime(n, manifest.Runtime{})
	}
	rep = mustReconcile(t, h.m, build)
	if rep.Version != 1 {
		t.Fatalf("unchanged desired published a new version: %+v", rep)
	}
	mf, _ := h.m.Current()
	if mf.Resources["embedder"].EndpointURL != "https://api.runpod.ai/v2/q7emb3dd1ng" {
		t.Fatalf("runtime keys lost: %+v", mf.Resources["embedder"])
	}
	if r := resourceReport(t, rep, "api"); r.Status != "deployed" || r.Action != ActionUnchanged {
		t.Fatalf("report api %+v", r)
	}
}

func TestReconcileListFailureTrustsPublished(t *testing.T) {
	h := newHarness(t)
	desired := buildManifest(t, res{name: "a"})
	mustReconcile(t, h.m, desired)
	h.prov.listErr = errBoom
	h.prov.resetCounts()
	rep := mustReconcile(t, h.m, desired)
	if rep.Failed() || len(h.prov.callLog()) != 0 {
		t.Fatalf("%+v %v", rep, h.prov.callLog())
	}
	// A change still replaces the endpoint this process deployed.
	rep = mustReconcile(t, h.m, buildManifest(t, res{name: "a", env: map[string]string{"X": "y"}}))
	if rep.Failed() || rep.Deploys != 1 || rep.Undeploys != 1 {
		t.Fatalf("%+v %v", rep, h.prov.callLog())
	}
}

func TestReconcileParallelismBound(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Parallelism = 2 })
	var (
		mu        sync.Mutex
		inFlight  int
		maxFlight int
	)
	h.prov.onDeploy = func(ctx context.Context, s provider.Spec) error {
		mu.Lock()
		inFlight++
		maxFlight = max(maxFlight, inFlight)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // hold the slot so others overlap
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	}
	var rs []res
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		rs = append(rs, res{name: n})
	}
	rep := mustReconcile(t, h.m, buildManifest(t, rs...))
	if rep.Failed() || maxFlight != 2 {
		t.Fatalf("max concurrent deploys %d, want 2 (%+v)", maxFlight, rep)
	}
}

func TestReconcileDeployTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DeployTimeout = 50 * time.Millisecond })
	h.prov.onDeploy = func(ctx context.Context, s provider.Spec) error {
		if s.Resource == "slow" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	rep := mustReconcile(t, h.m, buildManifest(t, res{name: "slow"}, res{name: "fast"}))
	if r := resourceReport(t, rep, "slow"); r.Status != "failed" || !strings.Contains(r.Error, "deadline") {
		t.Fatalf("slow %+v", r)
	}
	if r := resourceReport(t, rep, "fast"); r.Status != "deployed" {
		t.Fatalf("fast %+v", r)
	}
}

func TestEndpointChanged(t *testing.T) {
	h := newHarness(t)
	mustReconcile(t, h.m, buildManifest(t, res{name: "a"}, res{name: "b"}))
	_, v := h.m.Current()
	ep := h.prov.liveOf("a")[0]
	ep.URLs = []string{"http://127.0.0.1:4242"}
	h.m.EndpointChanged(t.Context(), ep)
	mf, v2 := h.m.Current()
	if v2 != v+1 || mf.Resources["a"].EndpointURL != "http://127.0.0.1:4242" || mf.Resources["a"].Status != manifest.StatusDeployed {
		t.Fatalf("version %d→%d, a %+v", v, v2, mf.Resources["a"])
	}
	// Not the published deployment: ignored.
	h.m.EndpointChanged(t.Context(), provider.Endpoint{ID: "app/b/777", Resource: "b", URLs: []string{"http://127.0.0.1:1"}})
	if _, v3 := h.m.Current(); v3 != v2 {
		t.Fatal("a foreign endpoint was published")
	}
	// The next reconcile sees nothing to do.
	h.prov.resetCounts()
	ep2 := h.prov.liveOf("a")[0]
	h.prov.mu.Lock()
	ep2.URLs = ep.URLs
	h.prov.live[ep2.ID] = ep2
	h.prov.mu.Unlock()
	rep := mustReconcile(t, h.m, buildManifest(t, res{name: "a"}, res{name: "b"}))
	if rep.Deploys+rep.Undeploys != 0 {
		t.Fatalf("%+v", rep)
	}
}

func TestReconcileInvalidDesired(t *testing.T) {
	h := newHarness(t)
	bad, err := manifest.Decode([]byte(`{"resources":{"a":{"resource_type":"ServerlessResource"}},"function_registry":{"f":"nope"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var inv *manifest.InvalidError
	if _, err := h.m.Reconcile(t.Context(), bad, ReconcileOptions{}); !errors.As(err, &inv) {
		t.Fatalf("err %v", err)
	}
	if _, err := h.m.Reconcile(t.Context(), nil, ReconcileOptions{}); err == nil {
		t.Fatal("nil desired accepted")
	}
}

func TestReportJSON(t *testing.T) {
	in := Report{Version: 7, Deploys: 1, Resources: []ResourceReport{{Name: "a", Action: ActionNew, Status: "deployed",
		EndpointURLs: []string{"http://127.0.0.1:1"}, Duration: 1500 * time.Millisecond}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"duration_ms":1500`) || !strings.Contains(string(b), `"name":"a"`) {
		t.Fatalf("json %s", b)
	}
	var out Report
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Resources[0].Duration != in.Resources[0].Duration || out.Resources[0].EndpointURLs[0] != "http://127.0.0.1:1" || out.Failed() {
		t.Fatalf("round trip %+v", out)
	}
	if !(Report{Errors: []string{"x"}}).Failed() {
		t.Fatal("errors not a failure")
	}
}

// The local provider takes over running endpoints through Adopt.
var _ adopter = (*local.Provider)(nil)

func TestBehindListsOnlyRecentLaggards(t *testing.T) {
	in := newInstances(DefaultMaxInstances, quiet)
	now := time.Now()
	in.all[instanceKey{"api", "a1"}] = &instanceState{report: store.Instance{Resource: "api", Instance: "a1", AppliedVersion: 4, LastSeen: now}}
	in.all[instanceKey{"api", "a2"}] = &instanceState{report: store.Instance{Resource: "api", Instance: "a2", AppliedVersion: 3, LastSeen: now}}
	in.all[instanceKey{"emb", "e1"}] = &instanceState{report: store.Instance{Resource: "emb", Instance: "e1", AppliedVersion: 3, RejectedVersion: 5, LastSeen: now}}
	in.all[instanceKey{"emb", "dead"}] = &instanceState{report: store.Instance{Resource: "emb", Instance: "dead", AppliedVersion: 1, LastSeen: now.Add(-time.Hour)}}
	// Silent for longer than a long poll plus the margin: it cannot answer.
	in.all[instanceKey{"emb", "quiet"}] = &instanceState{report: store.Instance{Resource: "emb", Instance: "quiet", AppliedVersion: 1,
		LastSeen: now.Add(-defaultPollWait - silentMargin - time.Second)}}
	got := in.behind(4, now)
	if len(got) != 1 || got[0] != "api/a2" {
		t.Fatalf("behind = %v, want [api/a2]", got)
	}
}
