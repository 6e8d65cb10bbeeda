package local

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/sqlite"
)

// testStore is a real SQLite store that also remembers every pid ever
// recorded, so that a failed test kills what it left behind.
type testStore struct {
	store.Store
	mu   sync.Mutex
	seen map[int]store.Endpoint
}

// newTestStore opens a store in a temporary directory. Its cleanup reports and
// kills any recorded test child still running, then closes the store.
func newTestStore(t *testing.T) *testStore {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := &testStore{Store: db, seen: make(map[int]store.Endpoint)}
	t.Cleanup(func() {
		s.mu.Lock()
		seen := slices.Collect(maps.Values(s.seen))
		s.mu.Unlock()
		for _, e := range seen {
			if alive(e.PID, e.Meta[metaBinary], e.ID) {
				t.Errorf("process %d (%s) left running", e.PID, e.ID)
				_ = syscall.Kill(-e.PID, syscall.SIGKILL)
				_ = syscall.Kill(e.PID, syscall.SIGKILL)
			}
		}
		for _, e := range seen {
			waitFor(t, 5*time.Second, "leftover process gone", func() bool {
				return !alive(e.PID, e.Meta[metaBinary], e.ID)
			})
		}
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// PutEndpoint records e and remembers its pid.
func (s *testStore) PutEndpoint(ctx context.Context, e store.Endpoint) error {
	if err := s.Store.PutEndpoint(ctx, e); err != nil {
		return err
	}
	if e.PID > 0 {
		s.mu.Lock()
		s.seen[e.PID] = e
		s.mu.Unlock()
	}
	return nil
}
