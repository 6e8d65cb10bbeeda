package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// childBin is the testchild program, built once in TestMain.
var childBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flash-testchild-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	childBin = filepath.Join(dir, "testchild")
	if out, err := exec.Command("go", "build", "-o", childBin, "./internal/testchild").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testchild: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// events records what a Provider reports.
type events struct {
	mu      sync.Mutex
	evs     []Event
	changes []provider.Endpoint
}

func (e *events) event(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) change(ep provider.Endpoint) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.changes = append(e.changes, ep)
}

// find returns the first event of kind for deployment id and replica.
func (e *events) find(kind, id string, replica int) (Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Kind == kind && ev.ID == id && ev.Replica == replica {
			return ev, true
		}
	}
	return Event{}, false
}

func (e *events) lastChange() (provider.Endpoint, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.changes) == 0 {
		return provider.Endpoint{}, false
	}
	return e.changes[len(e.changes)-1], true
}

// testConfig returns a Config for app using the test child, with short timeouts.
func testConfig(t *testing.T, app string, st store.Store, ev *events) Config {
	cfg := Config{
		App:           app,
		Binary:        childBin,
		LogDir:        t.TempDir(),
		Store:         st,
		HealthTimeout: 10 * time.Second,
		StopGrace:     3 * time.Second,
		Logger:        slog.New(slog.DiscardHandler),
	}
	if ev != nil {
		cfg.OnEvent = ev.event
		cfg.OnChange = ev.change
	}
	return cfg
}

// newProvider returns a Provider that undeploys everything and closes at the end of the test.
func newProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.pollEvery = 50 * time.Millisecond
	p.minBackoff = 100 * time.Millisecond
	t.Cleanup(func() {
		if _, err := p.UndeployAll(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("cleanup: %v", err)
		}
		p.Close()
	})
	return p
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get returns the status and body of GET url, or status 0 when it fails.
func get(url string) (int, []byte) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func pingOK(url string) bool {
	code, _ := get(url + "/ping")
	return code == http.StatusOK
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exists reports whether a process (zombies included) has pid.
func exists(pid int) bool {
	return pid > 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// waitGonePID waits until pid no longer exists (reaped, not only dead).
func waitGonePID(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("pid %d gone", pid), func() bool { return !exists(pid) })
}

func records(t *testing.T, st store.Store, app string) []store.Endpoint {
	t.Helper()
	recs, err := st.Endpoints(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func pids(recs []store.Endpoint) []int {
	var out []int
	for _, r := range recs {
		out = append(out, r.PID)
	}
	return out
}

func TestDeployHealthy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	cfg := testConfig(t, "app", st, nil)
	p := newProvider(t, cfg)

	ep, err := p.Deploy(ctx, provider.Spec{Resource: "api", ConfigHash: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.URLs) != 1 || !strings.HasPrefix(ep.ID, "app/api/") || ep.Resource != "api" || ep.ConfigHash != "h1" {
		t.Fatalf("endpoint = %+v", ep)
	}
	if !pingOK(ep.URLs[0]) {
		t.Fatalf("%s/ping does not answer 200", ep.URLs[0])
	}
	recs := records(t, st, "app")
	if len(recs) != 1 {
		t.Fatalf("records = %+v", recs)
	}
	r := recs[0]
	if r.ID != ep.ID+"/0" || r.Provider != "local" || r.App != "app" || r.Resource != "api" || r.ConfigHash != "h1" ||
		r.URL != ep.URLs[0] || r.PID <= 0 || r.StartedAt.IsZero() ||
		r.Meta["deployment"] != ep.ID || r.Meta["binary"] != childBin {
		t.Fatalf("record = %+v", r)
	}
	if !alive(r.PID, childBin, r.ID) {
		t.Fatalf("recorded pid %d is not the child", r.PID)
	}
	log, err := os.ReadFile(filepath.Join(cfg.LogDir, "api.log"))
	if err != nil || !strings.Contains(string(log), fmt.Sprintf("testchild pid=%d", r.PID)) {
		t.Fatalf("log = %q, %v", log, err)
	}
	if l, err := p.List(ctx); err != nil || !slices.EqualFunc(l, []provider.Endpoint{ep}, sameEndpoint) {
		t.Fatalf("List = %+v, %v", l, err)
	}

	if err := p.Undeploy(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitGonePID(t, r.PID)
	if recs := records(t, st, "app"); len(recs) != 0 {
		t.Fatalf("records after undeploy = %+v", recs)
	}
	if l, _ := p.List(ctx); len(l) != 0 {
		t.Fatalf("List after undeploy = %+v", l)
	}
	if err := p.Undeploy(ctx, ep); err != nil {
		t.Fatalf("second undeploy: %v", err)
	}
	if !strings.Contains(readFile(t, filepath.Join(cfg.LogDir, "api.log")), "SIGTERM, exiting") {
		t.Fatal("child did not get SIGTERM")
	}
}

func sameEndpoint(a, b provider.Endpoint) bool {
	return a.ID == b.ID && a.Resource == b.Resource && a.ConfigHash == b.ConfigHash && slices.Equal(a.URLs, b.URLs)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	p := newProvider(t, testConfig(t, "app", st, nil))

	ep, err := p.Deploy(ctx, provider.Spec{Resource: "worker", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.URLs) != 3 || len(slices.Compact(slices.Sorted(slices.Values(ep.URLs)))) != 3 {
		t.Fatalf("URLs = %v", ep.URLs)
	}
	for _, u := range ep.URLs {
		if !pingOK(u) {
			t.Errorf("%s does not answer", u)
		}
	}
	recs := records(t, st, "app")
	if ps := pids(recs); len(ps) != 3 || len(slices.Compact(slices.Sorted(slices.Values(ps)))) != 3 {
		t.Fatalf("pids = %v", ps)
	}
	res, err := p.UndeployAll(ctx)
	if err != nil || len(res) != 1 || res[0].Endpoint.ID != ep.ID || res[0].Err != nil {
		t.Fatalf("UndeployAll = %+v, %v", res, err)
	}
	for _, pid := range pids(recs) {
		waitGonePID(t, pid)
	}
	if recs := records(t, st, "app"); len(recs) != 0 {
		t.Fatalf("records = %+v", recs)
	}
}

// Not parallel: it sets the environment.
func TestEnv(t *testing.T) {
	t.Setenv("FLASH_IS_MOTHERSHIP", "true")
	t.Setenv("PORT", "1")
	t.Setenv("FLASH_TEST_INHERITED", "yes")
	ctx := context.Background()
	st := newTestStore(t)
	cfg := testConfig(t, "app", st, nil)
	cfg.Env = map[string]string{"FLASH_MOTHERSHIP_URL": "http://127.0.0.1:9", "FLASH_API_KEY": "k", "LAYER": "config"}
	p := newProvider(t, cfg)

	ep, err := p.Deploy(ctx, provider.Spec{Resource: "envres", Env: map[string]string{"LAYER": "spec", "FLASH_IS_MOTHERSHIP": "TRUE"}})
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(ep.URLs[0] + "/env")
	var list []string
	if code != 200 || json.Unmarshal(body, &list) != nil {
		t.Fatalf("GET /env = %d %s", code, body)
	}
	env := make(map[string]string)
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	want := map[string]string{
		"FLASH_RESOURCE_NAME":  "envres",
		"FLASH_HOST":           "127.0.0.1",
		"PORT":                 strconv.Itoa(portOf(ep.URLs[0])),
		"FLASH_INSTANCE_ID":    ep.ID + "/0",
		"FLASH_MOTHERSHIP_URL": "http://127.0.0.1:9",
		"FLASH_API_KEY":        "k",
		"LAYER":                "spec",
		"FLASH_TEST_INHERITED": "yes",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if v, ok := env["FLASH_IS_MOTHERSHIP"]; ok {
		t.Errorf("FLASH_IS_MOTHERSHIP = %q passed to a child", v)
	}
}

var pidLine = regexp.MustCompile(`flash: started \S+ pid=(\d+)`)

func TestDeployFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		timeout time.Duration // HealthTimeout
		ctxTime time.Duration // caller deadline; 0 = none
		want    error
		inLog   string
		within  time.Duration
	}{
		{"never healthy", map[string]string{"TESTCHILD_NEVER_HEALTHY": "1"}, time.Second, 0, ErrUnhealthy, "never healthy, as asked", 8 * time.Second},
		{"crash at start", map[string]string{"TESTCHILD_EXIT": "3"}, 30 * time.Second, 0, ErrExited, "exiting early with status 3", 8 * time.Second},
		{"caller deadline", map[string]string{"TESTCHILD_NEVER_HEALTHY": "1"}, 30 * time.Second, 500 * time.Millisecond, context.DeadlineExceeded, "never healthy", 8 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := newTestStore(t)
			cfg := testConfig(t, "app", st, nil)
			cfg.HealthTimeout = tt.timeout
			p := newProvider(t, cfg)
			ctx := context.Background()
			if tt.ctxTime > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxTime)
				defer cancel()
			}
			start := time.Now()
			_, err := p.Deploy(ctx, provider.Spec{Resource: "bad", Replicas: 2, Env: tt.env})
			if took := time.Since(start); took > tt.within {
				t.Errorf("Deploy took %s", took)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var de *DeployError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.inLog) || !strings.Contains(de.LogTail, tt.inLog) {
				t.Fatalf("err = %v, want a DeployError with %q from the log", err, tt.inLog)
			}
			m := pidLine.FindAllStringSubmatch(de.LogTail, -1)
			if len(m) != 2 {
				t.Fatalf("log tail names %d processes, want 2:\n%s", len(m), de.LogTail)
			}
			for _, sm := range m {
				pid, _ := strconv.Atoi(sm[1])
				waitGonePID(t, pid)
			}
			if recs := records(t, st, "app"); len(recs) != 0 {
				t.Fatalf("records left: %+v", recs)
			}
			if l, _ := p.List(context.Background()); len(l) != 0 {
				t.Fatalf("List = %+v", l)
			}
		})
	}
}

func TestDeployBadInput(t *testing.T) {
	t.Parallel()
	st := newTestStore(t)
	if _, err := New(Config{Store: st}); err == nil {
		t.Error("New without App succeeded")
	}
	if _, err := New(Config{App: "app"}); err == nil {
		t.Error("New without Store succeeded")
	}
	cfg := testConfig(t, "app", st, nil)
	cfg.Binary = ""
	p := newProvider(t, cfg)
	ctx := context.Background()
	if _, err := p.Deploy(ctx, provider.Spec{Resource: "x"}); err == nil {
		t.Error("Deploy without a binary succeeded")
	}
	if _, err := p.Deploy(ctx, provider.Spec{Resource: "x", Artifact: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("Deploy of a missing binary succeeded")
	}
	for _, name := range []string{"", "a/b", strings.Repeat("x", 64), "sp ace"} {
		if _, err := p.Deploy(ctx, provider.Spec{Resource: name, Artifact: childBin}); err == nil {
			t.Errorf("Deploy of resource %q succeeded", name)
		}
	}
	if recs := records(t, st, "app"); len(recs) != 0 {
		t.Fatalf("records = %+v", recs)
	}
}

func TestRestartAfterKill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	ev := &events{}
	p := newProvider(t, testConfig(t, "app", st, ev))

	ep, err := p.Deploy(ctx, provider.Spec{Resource: "api"})
	if err != nil {
		t.Fatal(err)
	}
	old := records(t, st, "app")[0].PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "exited and restarted events", func() bool {
		_, exited := ev.find(EventExited, ep.ID, 0)
		_, restarted := ev.find(EventRestarted, ep.ID, 0)
		return exited && restarted
	})
	if e, _ := ev.find(EventExited, ep.ID, 0); e.PID != old || e.Err == nil || e.Resource != "api" {
		t.Errorf("exited event = %+v", e)
	}
	re, _ := ev.find(EventRestarted, ep.ID, 0)
	if re.PID == old || re.Restarts != 1 || re.URL != ep.URLs[0] {
		t.Errorf("restarted event = %+v", re)
	}
	waitFor(t, 10*time.Second, "the same URL answering again", func() bool { return pingOK(ep.URLs[0]) })
	waitGonePID(t, old)
	if r := records(t, st, "app"); len(r) != 1 || r[0].PID != re.PID || r[0].URL != ep.URLs[0] {
		t.Fatalf("record after restart = %+v (restarted pid %d)", r, re.PID)
	}
	if _, ok := ev.lastChange(); ok {
		t.Error("OnChange called although the URL did not change")
	}
}

func TestRestartOnNewPort(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	ev := &events{}
	p := newProvider(t, testConfig(t, "app", st, ev))
	p.minBackoff = 300 * time.Millisecond // time for the test to take the port

	ep, err := p.Deploy(ctx, provider.Spec{Resource: "api"})
	if err != nil {
		t.Fatal(err)
	}
	pid := records(t, st, "app")[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Take the port as soon as the dead child frees it.
	var ln net.Listener
	waitFor(t, 5*time.Second, "the old port free", func() bool {
		ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(portOf(ep.URLs[0])))
		return err == nil
	})
	defer ln.Close()

	waitFor(t, 10*time.Second, "OnChange", func() bool { _, ok := ev.lastChange(); return ok })
	ch, _ := ev.lastChange()
	if ch.ID != ep.ID || len(ch.URLs) != 1 || ch.URLs[0] == ep.URLs[0] {
		t.Fatalf("changed endpoint = %+v, was %+v", ch, ep)
	}
	waitFor(t, 10*time.Second, "the new URL answering", func() bool { return pingOK(ch.URLs[0]) })
	if r := records(t, st, "app"); len(r) != 1 || r[0].URL != ch.URLs[0] {
		t.Fatalf("record = %+v", r)
	}
	if l, _ := p.List(ctx); len(l) != 1 || !sameEndpoint(l[0], ch) {
		t.Fatalf("List = %+v", l)
	}
}

func TestUndeployKillsAfterGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	cfg := testConfig(t, "app", st, nil)
	cfg.StopGrace = 500 * time.Millisecond
	p := newProvider(t, cfg)

	ep, err := p.Deploy(ctx, provider.Spec{Resource: "stubborn", Env: map[string]string{"TESTCHILD_IGNORE_TERM": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	pid := records(t, st, "app")[0].PID
	start := time.Now()
	if err := p.Undeploy(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < cfg.StopGrace {
		t.Errorf("Undeploy took %s, less than the grace period", took)
	}
	waitGonePID(t, pid)
	if !strings.Contains(readFile(t, filepath.Join(cfg.LogDir, "stubborn.log")), "ignoring SIGTERM") {
		t.Error("child never saw SIGTERM")
	}
	if recs := records(t, st, "app"); len(recs) != 0 {
		t.Fatalf("records = %+v", recs)
	}
}

func TestAdopt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	cfg := testConfig(t, "app", st, nil)

	p1 := newProvider(t, cfg)
	keep, err := p1.Deploy(ctx, provider.Spec{Resource: "keep", ConfigHash: "k1", Env: map[string]string{"LAYER": "spec"}})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := p1.Deploy(ctx, provider.Spec{Resource: "dead"})
	if err != nil {
		t.Fatal(err)
	}
	partial, err := p1.Deploy(ctx, provider.Spec{Resource: "partial", Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	byID := func() map[string]store.Endpoint {
		m := make(map[string]store.Endpoint)
		for _, r := range records(t, st, "app") {
			m[r.ID] = r
		}
		return m
	}
	before := byID()
	// The children outlive Close; kill two of them while nobody watches.
	for _, id := range []string{dead.ID + "/0", partial.ID + "/1"} {
		pid := before[id].PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGonePID(t, pid)
	}
	if !pingOK(keep.URLs[0]) {
		t.Fatal("child died with Close")
	}

	ev := &events{}
	cfg2 := cfg
	cfg2.OnEvent, cfg2.OnChange = ev.event, ev.change
	p2 := newProvider(t, cfg2)
	got, err := p2.Adopt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, []provider.Endpoint{keep, partial}, sameEndpoint) {
		t.Fatalf("Adopt = %+v, want %+v and %+v", got, keep, partial)
	}
	after := byID()
	if _, ok := after[dead.ID+"/0"]; ok {
		t.Error("record of the dead process kept")
	}
	if after[keep.ID+"/0"].PID != before[keep.ID+"/0"].PID {
		t.Error("adopted process was replaced")
	}
	for _, want := range []struct {
		kind, id string
		replica  int
	}{{EventAdopted, keep.ID, 0}, {EventGone, dead.ID, 0}, {EventAdopted, partial.ID, 0}, {EventGone, partial.ID, 1}} {
		if _, ok := ev.find(want.kind, want.id, want.replica); !ok {
			t.Errorf("no %s event for %s/%d", want.kind, want.id, want.replica)
		}
	}
	// The dead replica of a live deployment comes back on its URL.
	waitFor(t, 10*time.Second, "partial replica restarted", func() bool {
		_, ok := ev.find(EventRestarted, partial.ID, 1)
		return ok && pingOK(partial.URLs[1])
	})
	if again, err := p2.Adopt(ctx); err != nil || len(again) != 0 {
		t.Fatalf("second Adopt = %+v, %v", again, err)
	}
	if l, _ := p2.List(ctx); !slices.EqualFunc(l, []provider.Endpoint{keep, partial}, sameEndpoint) {
		t.Fatalf("List = %+v", l)
	}

	// Adopted processes are monitored: kill one, it comes back.
	old := before[keep.ID+"/0"].PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "adopted process restarted", func() bool {
		_, ok := ev.find(EventRestarted, keep.ID, 0)
		return ok && pingOK(keep.URLs[0])
	})
	// A restart after adoption keeps the resource's own env.
	_, body := get(keep.URLs[0] + "/env")
	if !strings.Contains(string(body), `"LAYER=spec"`) {
		t.Errorf("restarted child lost its env: %s", body)
	}

	res, err := p2.UndeployAll(ctx)
	if err != nil || len(res) != 2 {
		t.Fatalf("UndeployAll = %+v, %v", res, err)
	}
	for _, r := range byID() {
		t.Errorf("record left: %+v", r)
	}
	for _, r := range before {
		waitGonePID(t, r.PID)
	}
}

func TestAdoptStopsUnhealthy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	cfg := testConfig(t, "app", st, nil)
	p1 := newProvider(t, cfg)
	if _, err := p1.Deploy(ctx, provider.Spec{Resource: "api"}); err != nil {
		t.Fatal(err)
	}
	p1.Close()
	// Make the record point at a port nobody serves: alive but not healthy.
	rec := records(t, st, "app")[0]
	rec.URL = "http://127.0.0.1:1"
	if err := st.PutEndpoint(ctx, rec); err != nil {
		t.Fatal(err)
	}
	cfg.HealthTimeout = 300 * time.Millisecond
	p2 := newProvider(t, cfg)
	got, err := p2.Adopt(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("Adopt = %+v, %v", got, err)
	}
	waitGonePID(t, rec.PID)
	if recs := records(t, st, "app"); len(recs) != 0 {
		t.Fatalf("records = %+v", recs)
	}
}

func TestOtherAppUntouched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	other := newProvider(t, testConfig(t, "app/x", st, nil))
	theirs, err := other.Deploy(ctx, provider.Spec{Resource: "api"})
	if err != nil {
		t.Fatal(err)
	}
	mine := newProvider(t, testConfig(t, "app", st, nil))
	ours, err := mine.Deploy(ctx, provider.Spec{Resource: "api"})
	if err != nil {
		t.Fatal(err)
	}

	if l, _ := mine.List(ctx); !slices.EqualFunc(l, []provider.Endpoint{ours}, sameEndpoint) {
		t.Fatalf("List = %+v", l)
	}
	if got, err := mine.Adopt(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Adopt = %+v, %v", got, err)
	}
	if err := mine.Undeploy(ctx, theirs); !errors.Is(err, provider.ErrNotOwned) {
		t.Fatalf("Undeploy of another app's endpoint: %v", err)
	}
	res, err := mine.UndeployAll(ctx)
	if err != nil || len(res) != 1 || res[0].Endpoint.ID != ours.ID {
		t.Fatalf("UndeployAll = %+v, %v", res, err)
	}
	if !pingOK(theirs.URLs[0]) {
		t.Fatal("another app's endpoint was stopped")
	}
	if recs := records(t, st, "app/x"); len(recs) != 1 {
		t.Fatalf("another app's records = %+v", recs)
	}
}

// UndeployAll from a Provider that neither started nor adopted the endpoints
// (the `flash undeploy` path) finds them in the store.
func TestUndeployAllFromStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	cfg := testConfig(t, "app", st, nil)
	p1 := newProvider(t, cfg)
	for _, s := range []provider.Spec{{Resource: "a", Replicas: 2}, {Resource: "b"}} {
		if _, err := p1.Deploy(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	recs := records(t, st, "app")
	p1.Close()

	p2 := newProvider(t, cfg)
	res, err := p2.UndeployAll(ctx)
	if err != nil || len(res) != 2 || res[0].Endpoint.Resource != "a" || len(res[0].Endpoint.URLs) != 2 {
		t.Fatalf("UndeployAll = %+v, %v", res, err)
	}
	for _, pid := range pids(recs) {
		waitGonePID(t, pid)
	}
	if recs := records(t, st, "app"); len(recs) != 0 {
		t.Fatalf("records = %+v", recs)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	p, err := New(testConfig(t, "app", newTestStore(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, err := p.Deploy(ctx, provider.Spec{Resource: "a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Deploy: %v", err)
	}
	if _, err := p.List(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("List: %v", err)
	}
	if _, err := p.Adopt(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Adopt: %v", err)
	}
	if _, err := p.UndeployAll(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("UndeployAll: %v", err)
	}
}

// TestPortHeldUntilChildServes: from the moment a port is chosen until the
// child serves on it, no other process can bind it (the child inherits the
// open socket), at deploy and at restart. The test child exits when it finds
// its port free at start.
func TestPortHeldUntilChildServes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	ev := &events{}
	p := newProvider(t, testConfig(t, "app", st, ev))
	ep, err := p.Deploy(ctx, provider.Spec{Resource: "api", Replicas: 2, Env: map[string]string{"TESTCHILD_PORT_HELD": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ep.URLs {
		if !pingOK(u) {
			t.Errorf("%s does not answer", u)
		}
	}
	pid := records(t, st, "app")[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the restart", func() bool { _, ok := ev.find(EventRestarted, ep.ID, 0); return ok })
	waitFor(t, 10*time.Second, "the restarted child answering", func() bool {
		l, _ := p.List(ctx)
		return len(l) == 1 && pingOK(l[0].URLs[0])
	})
	if _, ok := ev.find(EventExited, ep.ID, 1); ok {
		t.Error("the other replica exited")
	}
}

// TestLogRotation: a child's log is rotated by size while the child runs;
// LogKeep copies are kept, and the child's later lines start the fresh file.
func TestLogRotation(t *testing.T) {
	t.Parallel()
	st := newTestStore(t)
	cfg := testConfig(t, "app", st, nil)
	cfg.LogMaxSize, cfg.LogKeep = 4096, 2
	p := newProvider(t, cfg)
	p.rotateEvery = 10 * time.Millisecond
	ep, err := p.Deploy(context.Background(), provider.Spec{Resource: "api"})
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(cfg.LogDir, "api.log")
	say := func(text string, pad int) {
		t.Helper()
		if code, _ := get(fmt.Sprintf("%s/log?text=%s&pad=%d", ep.URLs[0], text, pad)); code != http.StatusOK {
			t.Fatalf("GET /log = %d", code)
		}
	}
	for round := range 3 {
		say(fmt.Sprintf("round%d", round), 5000)
		waitFor(t, 10*time.Second, fmt.Sprintf("rotation %d", round), func() bool {
			b, _ := os.ReadFile(logFile + ".1")
			return strings.Contains(string(b), fmt.Sprintf("round%d", round)) && logSize(logFile) < 4096
		})
	}
	if _, err := os.Stat(logFile + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a third rotated copy exists with LogKeep 2: %v", err)
	}
	if !strings.Contains(readFile(t, logFile+".2"), "round1") {
		t.Errorf("%s.2 does not hold the previous rotation", logFile)
	}
	say("fresh", 0)
	waitFor(t, 10*time.Second, "the child's next line in the emptied log", func() bool {
		b := readFile(t, logFile)
		return strings.HasPrefix(b, "fresh\n") || strings.Contains(b, "\nfresh\n")
	})
	if b := readFile(t, logFile); strings.ContainsRune(b, 0) {
		t.Errorf("the log has a hole of NUL bytes: the child does not append")
	}
}
