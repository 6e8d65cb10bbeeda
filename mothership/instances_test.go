package mothership

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
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

func reportAs(in *instances, now time.Time, resource, instance, applied string) {
	r := httptest.NewRequest("GET", "/manifest", nil)
	r.Header.Set(wire.HeaderResource, resource)
	r.Header.Set(wire.HeaderInstance, instance)
	r.Header.Set(wire.HeaderAppliedVersion, applied)
	in.record(r, func() time.Time { return now })
}

// TestInstancesExpireNeverDropLive: a full table makes room by expiring
// instances that stopped reporting; it never drops a live one, and says so
// when it must refuse a new one.
func TestInstancesExpireNeverDropLive(t *testing.T) {
	var logs syncBuffer
	in := newInstances(3, slog.New(slog.NewTextHandler(&logs, nil)))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"old-0", "old-1", "old-2"} {
		reportAs(&in, t0, "api", id, "1")
	}
	later := t0.Add(instanceRecent + time.Second)
	reportAs(&in, later, "api", "new-0", "2")
	all, _ := in.snapshot()
	if _, ok := all[instanceKey{"api", "new-0"}]; !ok {
		t.Fatalf("a new instance was dropped while the table held only expired ones: %v", all)
	}
	if len(all) != 1 {
		t.Fatalf("expired instances kept: %v", all)
	}
	reportAs(&in, later, "api", "new-1", "2")
	reportAs(&in, later, "api", "new-2", "2")
	reportAs(&in, later, "api", "new-3", "2") // the table is full of live instances
	all, _ = in.snapshot()
	for _, id := range []string{"new-0", "new-1", "new-2"} {
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
