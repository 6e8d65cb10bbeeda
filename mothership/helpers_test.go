package mothership

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/sqlite"
	"github.com/flash-go/flash/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// openSQLite returns a real SQLite store in a temporary directory.
func openSQLite(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.OpenConfig(context.Background(), sqlite.Config{
		Path: filepath.Join(t.TempDir(), "state.db"), PollInterval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newMemStore returns the shared in-memory store, for tests that need no
// files (testing/synctest bubbles) or injected failures.
func newMemStore() *storetest.MemStore { return storetest.NewMemStore() }

// failingStore fails Latest (and only Latest) while err is set.
type failingStore struct {
	store.Store
	err atomic.Pointer[error]
}

func (s *failingStore) Latest(ctx context.Context) (store.Published, error) {
	if e := s.err.Load(); e != nil {
		return store.Published{}, *e
	}
	return s.Store.Latest(ctx)
}

// fakeProvider is a hand-written provider: it keeps live endpoints in memory,
// counts and logs calls, can fail per resource, and lets a test hook each call.
type fakeProvider struct {
	mu        sync.Mutex
	live      map[string]provider.Endpoint // by id
	fail      map[string]error             // resource → Deploy error
	calls     []string                     // "deploy r", "undeploy id"
	specs     []provider.Spec
	n         int
	urlFor    func(resource string, n int) string
	onDeploy  func(ctx context.Context, s provider.Spec) error // runs before Deploy answers
	onUnde    func(e provider.Endpoint)                        // runs when Undeploy is called
	listErr   error
	deploys   atomic.Int32
	undeploys atomic.Int32
}

func newFakeProvider() *fakeProvider {
	return &fakeProvider{live: map[string]provider.Endpoint{}, fail: map[string]error{}}
}

func (p *fakeProvider) Deploy(ctx context.Context, s provider.Spec) (provider.Endpoint, error) {
	p.deploys.Add(1)
	p.mu.Lock()
	p.calls = append(p.calls, "deploy "+s.Resource)
	p.specs = append(p.specs, s)
	p.n++
	n := p.n
	err := p.fail[s.Resource]
	hook, urlFor := p.onDeploy, p.urlFor
	p.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, s); err != nil {
			return provider.Endpoint{}, err
		}
	}
	if err != nil {
		return provider.Endpoint{}, err
	}
	reps := max(1, s.Replicas)
	e := provider.Endpoint{ID: fmt.Sprintf("app/%s/%d", s.Resource, n), Resource: s.Resource, ConfigHash: s.ConfigHash}
	for i := range reps {
		u := fmt.Sprintf("http://127.0.0.1:%d", 20000+10*n+i)
		if urlFor != nil {
			u = urlFor(s.Resource, n)
		}
		e.URLs = append(e.URLs, u)
	}
	p.mu.Lock()
	p.live[e.ID] = e
	p.mu.Unlock()
	return e, nil
}

func (p *fakeProvider) Undeploy(ctx context.Context, e provider.Endpoint) error {
	p.undeploys.Add(1)
	p.mu.Lock()
	p.calls = append(p.calls, "undeploy "+e.ID)
	hook := p.onUnde
	p.mu.Unlock()
	if hook != nil {
		hook(e)
	}
	p.mu.Lock()
	delete(p.live, e.ID)
	p.mu.Unlock()
	return nil
}

func (p *fakeProvider) List(ctx context.Context) ([]provider.Endpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listErr != nil {
		return nil, p.listErr
	}
	out := make([]provider.Endpoint, 0, len(p.live))
	for _, e := range p.live {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b provider.Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func (p *fakeProvider) callLog() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

func (p *fakeProvider) resetCounts() {
	p.deploys.Store(0)
	p.undeploys.Store(0)
	p.mu.Lock()
	p.calls = nil
	p.mu.Unlock()
}

func (p *fakeProvider) liveOf(resource string) []provider.Endpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Endpoint
	for _, e := range p.live {
		if e.Resource == resource {
			out = append(out, e)
		}
	}
	return out
}

// res describes one resource of a test manifest.
type res struct {
	name string
	lb   bool
	env  map[string]string
	min  int
}

// buildManifest returns a valid manifest of project "app" with one function
// per resource (f_<name>; LB ones routed at POST /<name>).
func buildManifest(t testing.TB, rs ...res) *manifest.Manifest {
	t.Helper()
	resources := map[string]any{}
	registry := map[string]string{}
	routes := map[string]map[string]string{}
	for _, r := range rs {
		fn := "f_" + strings.ReplaceAll(r.name, "-", "_")
		f := map[string]any{"name": fn, "module": "main", "is_async": false, "is_class": false}
		entry := map[string]any{"resource_type": "ServerlessResource", "functions": []any{f}}
		if r.lb {
			entry["resource_type"] = "LoadBalancerSlsResource"
			f["http_method"], f["http_path"] = "POST", "/"+r.name
			routes[r.name] = map[string]string{"POST /" + r.name: fn}
		}
		if r.env != nil {
			entry["env"] = r.env
		}
		if r.min > 0 {
			entry["workersMin"] = r.min
		}
		resources[r.name] = entry
		registry[fn] = r.name
	}
	doc := map[string]any{"version": "1.0", "project_name": "app", "resources": resources, "function_registry": registry}
	if len(routes) > 0 {
		doc["routes"] = routes
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := manifest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

type harness struct {
	m    *Mothership
	st   store.Store
	prov *fakeProvider
	srv  *httptest.Server
	dir  string
}

// newHarness returns a mothership on a real SQLite store with a fake
// provider, served over loopback HTTP. opts may adjust the Config.
func newHarness(t *testing.T, opts ...func(*Config)) *harness {
	t.Helper()
	h := &harness{st: openSQLite(t), prov: newFakeProvider(), dir: t.TempDir()}
	cfg := Config{App: "app", Store: h.st, Provider: h.prov, Logger: quiet,
		ManifestPath: filepath.Join(h.dir, "flash_manifest.json"), ArtifactDir: filepath.Join(h.dir, "artifacts")}
	for _, o := range opts {
		o(&cfg)
	}
	h.st = cfg.Store
	m, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	mux := http.NewServeMux()
	m.Register(mux.Handle)
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

// run starts Run until the test ends.
func (h *harness) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (h *harness) get(t *testing.T, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustReconcile(t *testing.T, m *Mothership, desired *manifest.Manifest) Report {
	t.Helper()
	rep, err := m.Reconcile(t.Context(), desired, ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func resourceReport(t *testing.T, rep Report, name string) ResourceReport {
	t.Helper()
	for _, r := range rep.Resources {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no report for %s in %+v", name, rep)
	return ResourceReport{}
}

var errBoom = errors.New("boom")
