package local

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// fencingStore refuses every endpoint write with store.ErrFenced once
// fenceAfter records with a pid were written: what a mothership gets that
// loses its leadership right after it started its processes.
type fencingStore struct {
	*testStore
	fenceAfter int32
	withPID    atomic.Int32
	fenced     atomic.Bool
}

func (s *fencingStore) PutEndpoint(ctx context.Context, e store.Endpoint) error {
	if s.fenced.Load() {
		return store.ErrFenced
	}
	if err := s.testStore.PutEndpoint(ctx, e); err != nil {
		return err
	}
	if e.PID > 0 && s.withPID.Add(1) == s.fenceAfter {
		s.fenced.Store(true)
	}
	return nil
}

func (s *fencingStore) DeleteEndpoint(ctx context.Context, id string) error {
	if s.fenced.Load() {
		return store.ErrFenced
	}
	return s.testStore.DeleteEndpoint(ctx, id)
}

// TestFailedDeployLeftToTheLeader: a deploy that fails after its mothership
// lost the leadership stops nothing: its processes stay recorded, for the
// new leader to adopt or remove; stopping them could take away what the new
// leader already serves.
func TestFailedDeployLeftToTheLeader(t *testing.T) {
	t.Parallel()
	st := &fencingStore{testStore: newTestStore(t), fenceAfter: 2}
	cfg := testConfig(t, "app", st, nil)
	cfg.HealthTimeout = time.Second
	p := newProvider(t, cfg)
	t.Cleanup(func() { st.fenced.Store(false) }) // runs first: newProvider's cleanup undeploys
	_, err := p.Deploy(context.Background(), provider.Spec{Resource: "bad", Replicas: 2,
		Env: map[string]string{"TESTCHILD_NEVER_HEALTHY": "1"}})
	if !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("Deploy: %v, want ErrUnhealthy", err)
	}
	recs := records(t, st, "app")
	if len(recs) != 2 {
		t.Fatalf("records %+v, want both kept", recs)
	}
	for _, r := range recs {
		if !alive(r.PID, r.Meta[metaBinary], r.ID) {
			t.Errorf("process %d (%s) was stopped by a provider whose writes are fenced", r.PID, r.ID)
		}
	}
}
