package mothership

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/storetest"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func reportAs(in *instances, now time.Time, resource, instance, applied string, wait time.Duration) {
	r := httptest.NewRequest("GET", "/manifest", nil)
	r.Header.Set(wire.HeaderResource, resource)
	r.Header.Set(wire.HeaderInstance, instance)
	r.Header.Set(wire.HeaderAppliedVersion, applied)
	in.record(r, func() time.Time { return now }, wait)
}

// TestInstancesExpireNeverDropLive: a full table makes room by expiring
// instances that stopped reporting; it never drops a live one (a long poll
// of 5 minutes keeps its instance live), and says so when it must refuse a
// new one.
func TestInstancesExpireNeverDropLive(t *testing.T) {
	var logs syncBuffer
	in := newInstances(3, slog.New(slog.NewTextHandler(&logs, nil)))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reportAs(&in, t0, "api", "old-0", "1", 0)
	reportAs(&in, t0, "api", "old-1", "1", 30*time.Second)
	reportAs(&in, t0, "api", "parked", "1", 5*time.Minute) // waits in a long poll meanwhile
	later := t0.Add(defaultPollWait + silentMargin + instanceRecent + time.Second)
	reportAs(&in, later, "api", "new-0", "2", 0)
	all := in.snapshot(later)
	if _, ok := all[instanceKey{"api", "new-0"}]; !ok {
		t.Fatalf("a new instance was dropped while the table held expired ones: %v", all)
	}
	if v, ok := all[instanceKey{"api", "parked"}]; !ok || v.gone {
		t.Fatalf("an instance parked in a 5-minute long poll was dropped or called gone: %+v", v)
	}
	if len(all) != 2 {
		t.Fatalf("expired instances kept: %v", all)
	}
	reportAs(&in, later, "api", "new-1", "2", 0)
	reportAs(&in, later, "api", "new-2", "2", 0) // the table is full of live instances
	all = in.snapshot(later)
	for _, id := range []string{"new-0", "new-1", "parked"} {
		if _, ok := all[instanceKey{"api", id}]; !ok {
			t.Fatalf("live instance %s dropped: %v", id, all)
		}
	}
	if !strings.Contains(logs.String(), "too many live instances") {
		t.Fatalf("a refused report was not logged: %q", logs.String())
	}
}

// TestRedeployWaitsOnlyForLiveInstances: the instances of an endpoint that
// was undeployed are gone: a later redeploy does not wait for them, the
// status shows them as gone, and a removed resource's instances are dropped.
func TestRedeployWaitsOnlyForLiveInstances(t *testing.T) {
	var logs syncBuffer
	h := newHarness(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	mustReconcile(t, h.m, buildManifest(t, res{name: "a"}, res{name: "b"}))
	old := h.prov.liveOf("a")[0]
	_, v := h.m.Current()
	// The replica of a's endpoint reports, as a child does.
	h.get(t, "/manifest", map[string]string{wire.HeaderResource: "a", wire.HeaderInstance: old.ID + "/0",
		wire.HeaderAppliedVersion: itoa(v)})

	mustReconcile(t, h.m, buildManifest(t, res{name: "a", env: map[string]string{"V": "2"}}, res{name: "b"}))
	st := h.m.Status(t.Context())
	if len(st.Instances) != 1 || st.Instances[0].State != InstanceGone {
		t.Fatalf("instances after its endpoint was undeployed: %+v, want it gone", st.Instances)
	}
	before := strings.Count(logs.String(), "did not report the new version")
	rep := mustReconcile(t, h.m, buildManifest(t, res{name: "a", env: map[string]string{"V": "3"}}, res{name: "b"}))
	if rep.Failed() || rep.Undeploys != 1 {
		t.Fatalf("%+v", rep)
	}
	if after := strings.Count(logs.String(), "did not report the new version"); after != before {
		t.Fatalf("the redeploy waited for an instance of an undeployed endpoint:\n%s", logs.String())
	}

	mustReconcile(t, h.m, buildManifest(t, res{name: "b"}))
	if st := h.m.Status(t.Context()); len(st.Instances) != 0 {
		t.Fatalf("instances of a removed resource still listed: %+v", st.Instances)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestSilentInstanceIsGone: an instance unheard for longer than its long
// poll (plus a margin) shows as gone, not behind, and no redeploy waits for
// it; after two more minutes it is no longer listed.
func TestSilentInstanceIsGone(t *testing.T) {
	var (
		mu    sync.Mutex
		clock = time.Now()
	)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	h := newHarness(t, func(c *Config) { c.Now = now })
	mustReconcile(t, h.m, buildManifest(t, res{name: "a"}))
	h.get(t, "/manifest?version=0&wait=30", map[string]string{wire.HeaderResource: "a", wire.HeaderInstance: "killed/0",
		wire.HeaderAppliedVersion: "1"})
	mustReconcile(t, h.m, buildManifest(t, res{name: "a", env: map[string]string{"V": "2"}}))
	_, v := h.m.Current()
	if st := h.m.Status(t.Context()); len(st.Instances) != 1 || st.Instances[0].State != InstanceBehind {
		t.Fatalf("a live instance on an older version: %+v, want behind", st.Instances)
	}
	advance(30*time.Second + silentMargin + time.Second)
	if st := h.m.Status(t.Context()); len(st.Instances) != 1 || st.Instances[0].State != InstanceGone {
		t.Fatalf("an instance silent past its long poll: %+v, want gone", st.Instances)
	}
	if behind := h.m.inst.behind(v, now()); len(behind) != 0 {
		t.Fatalf("a redeploy would wait for %v", behind)
	}
	advance(instanceRecent)
	if st := h.m.Status(t.Context()); len(st.Instances) != 0 {
		t.Fatalf("long-gone instances still listed: %+v", st.Instances)
	}
}

// countingStore counts ReportInstances calls and the reports they carry.
type countingStore struct {
	store.Store
	mu             sync.Mutex
	calls, reports int
}

func (c *countingStore) ReportInstances(ctx context.Context, is []store.Instance) error {
	c.mu.Lock()
	c.calls++
	c.reports += len(is)
	c.mu.Unlock()
	return c.Store.ReportInstances(ctx, is)
}

// TestReportsFlushInOneWrite: the reports that arrived while the store was
// busy (here: before the flush loop ran) go to the store in one write, not
// one each (a publish waited behind 100 fsyncs).
func TestReportsFlushInOneWrite(t *testing.T) {
	in := newInstances(DefaultMaxInstances, quiet)
	now := time.Now()
	for i := range 100 {
		reportAs(&in, now, "api", "i"+strconv.Itoa(i), "3", time.Minute)
	}
	st := &countingStore{Store: storetest.NewMemStore()}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); in.flushLoop(ctx, st, time.Now) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st.mu.Lock()
		n := st.reports
		st.mu.Unlock()
		if n == 100 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if st.calls != 1 || st.reports != 100 {
		t.Fatalf("%d reports in %d writes, want 100 in 1", st.reports, st.calls)
	}
	all, err := st.Instances(t.Context())
	if err != nil || len(all) != 100 {
		t.Fatalf("store holds %d reports (%v)", len(all), err)
	}
}
