package local

import (
	"context"
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash/provider"
)

// Replicas added join the deployment (new URLs, new records, monitored),
// removed ones stop and lose their records, down to zero and back; the
// deployment keeps its id throughout.
func TestAddRemoveReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	p := newProvider(t, testConfig(t, "app", st, nil))
	ep, err := p.Deploy(ctx, provider.Spec{Resource: "worker", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	first := ep.URLs[0]

	up, err := p.AddReplicas(ctx, ep, 2)
	if err != nil {
		t.Fatal(err)
	}
	if up.ID != ep.ID || len(up.URLs) != 3 || up.URLs[0] != first || len(slices.Compact(slices.Sorted(slices.Values(up.URLs)))) != 3 {
		t.Fatalf("after AddReplicas: %+v", up)
	}
	for _, u := range up.URLs {
		if !pingOK(u) {
			t.Errorf("%s does not answer", u)
		}
	}
	recs := records(t, st, "app")
	if len(recs) != 3 {
		t.Fatalf("records = %+v", recs)
	}
	if l, _ := p.List(ctx); len(l) != 1 || !slices.Equal(l[0].URLs, up.URLs) {
		t.Fatalf("List = %+v", l)
	}

	// A replica added later is monitored: killed, it comes back.
	added := recs[2].PID
	if err := syscall.Kill(added, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the added replica restarted", func() bool { return pingOK(up.URLs[2]) && !exists(added) })

	down, err := p.RemoveReplicas(ctx, up, up.URLs[:2])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(down.URLs, up.URLs[2:]) {
		t.Fatalf("after RemoveReplicas: %v", down.URLs)
	}
	for _, pid := range pids(recs[:2]) {
		waitGonePID(t, pid)
	}
	if recs := records(t, st, "app"); len(recs) != 1 || recs[0].URL != up.URLs[2] {
		t.Fatalf("records = %+v", recs)
	}

	zero, err := p.RemoveReplicas(ctx, down, down.URLs)
	if err != nil || len(zero.URLs) != 0 || zero.ID != ep.ID {
		t.Fatalf("scale to zero: %+v, %v", zero, err)
	}
	if l, _ := p.List(ctx); len(l) != 1 || len(l[0].URLs) != 0 {
		t.Fatalf("List at zero = %+v", l)
	}
	again, err := p.AddReplicas(ctx, zero, 1)
	if err != nil || len(again.URLs) != 1 || !pingOK(again.URLs[0]) {
		t.Fatalf("scale from zero: %+v, %v", again, err)
	}
	if recs := records(t, st, "app"); len(recs) != 1 || recs[0].ID != ep.ID+"/3" {
		t.Fatalf("records = %+v (indexes are never reused)", recs)
	}

	if _, err := p.AddReplicas(ctx, provider.Endpoint{ID: "app/worker/none"}, 1); !errors.Is(err, ErrNoDeployment) {
		t.Fatalf("AddReplicas of an unknown deployment: %v", err)
	}
}

// A replica that never becomes healthy is stopped and unrecorded, and the
// deployment keeps what it had.
func TestAddReplicasUnhealthy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newTestStore(t)
	cfg := testConfig(t, "app", st, nil)
	cfg.HealthTimeout = 2 * time.Second
	p := newProvider(t, cfg)
	ep, err := p.Deploy(ctx, provider.Spec{Resource: "worker", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The deployment's environment is fixed; make the next start fail.
	p.mu.Lock()
	d := p.deps[ep.ID]
	d.env = append(slices.Clip(d.env), "TESTCHILD_NEVER_HEALTHY=1")
	p.mu.Unlock()
	got, err := p.AddReplicas(ctx, ep, 1)
	var de *DeployError
	if !errors.As(err, &de) || !errors.Is(err, ErrUnhealthy) || !slices.Equal(got.URLs, ep.URLs) {
		t.Fatalf("AddReplicas = %+v, %v; want ErrUnhealthy and the endpoint unchanged", got, err)
	}
	if recs := records(t, st, "app"); len(recs) != 1 {
		t.Fatalf("records = %+v", recs)
	}
	if l, _ := p.List(ctx); len(l) != 1 || !slices.Equal(l[0].URLs, ep.URLs) {
		t.Fatalf("List = %+v", l)
	}
}
