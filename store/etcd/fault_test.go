package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/flash-go/flash/internal/etcdcluster"
	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/etcd"
)

// publishNext publishes the version after the latest as a careful caller
// would while members die: an error other than a conflict leaves it unknown
// whether the write happened, so it re-reads and tries again only if not.
func publishNext(t *testing.T, s store.Store, want int64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		_, err := s.Publish(t.Context(), want-1, fmt.Appendf(nil, `{"v":%d}`, want))
		if err == nil {
			return
		}
		if p, lerr := s.Latest(t.Context()); lerr == nil && p.Version >= want {
			if p.Version > want {
				t.Fatalf("latest is %d, want %d", p.Version, want)
			}
			return // the attempt that failed to answer went through
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing version %d: %v", want, err)
		}
		time.Sleep(100 * time.Millisecond) // waiting for the cluster to settle, not asserting on time
	}
}

// expectUpTo reads ch until version want arrives, failing on any version
// that does not grow (a repeat) or overshoots.
func expectUpTo(t *testing.T, ch <-chan int64, last *int64, want int64) {
	t.Helper()
	for *last < want {
		select {
		case v, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed while waiting for %d", want)
			}
			if v <= *last || v > want {
				t.Fatalf("watch sent %d after %d while waiting for %d", v, *last, want)
			}
			*last = v
		case <-time.After(waitFor):
			t.Fatalf("watch did not send %d (last %d)", want, *last)
		}
	}
}

// raftLeader is the index of the member that leads the cluster now.
func raftLeader(t *testing.T, c *etcdcluster.Cluster, cli *clientv3.Client) int {
	t.Helper()
	for i, ep := range c.Endpoints() {
		if !c.Running(i) {
			continue
		}
		st, err := cli.Status(t.Context(), ep)
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no member leads")
	return -1
}

func TestWatchSurvivesCompactionRestartAndLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts etcd members")
	}
	c := startCluster(t, 3)
	ctx := t.Context()
	prefix := newPrefix()
	eps := c.Endpoints()
	writer := openStore(t, c, prefix)
	// The watching store talks to member 0 only, so what happens to member 0 happens to its watch.
	watching, err := etcd.OpenConfig(ctx, etcd.Config{Endpoints: eps[:1], Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer watching.Close()
	ch := watching.Watch(ctx, 0)
	var last int64
	publishNext(t, writer, 1)
	expectUpTo(t, ch, &last, 1)

	// Member 0 dies; versions are published and compacted away meanwhile.
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	for v := int64(2); v <= 10; v++ {
		publishNext(t, writer, v)
	}
	raw := rawClient(t, c, eps[1:]...)
	resp, err := raw.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// Back up, member 0 cannot resume the watch at its old revision: the store re-lists.
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	expectUpTo(t, ch, &last, 10)
	publishNext(t, writer, 11)
	expectUpTo(t, ch, &last, 11)

	// The raft leader stops: another is elected, the watch goes on.
	leader := raftLeader(t, c, raw)
	if err := c.Stop(leader); err != nil {
		t.Fatal(err)
	}
	publishNext(t, writer, 12)
	expectUpTo(t, ch, &last, 12)
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	publishNext(t, writer, 13)
	expectUpTo(t, ch, &last, 13)
}

func TestQuorumLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts etcd members")
	}
	c := startCluster(t, 3)
	ctx := t.Context()
	s, err := etcd.OpenConfig(ctx, etcd.Config{Endpoints: c.Endpoints(), Prefix: newPrefix(), OpTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	publishNext(t, s, 1)

	// One member of three down: the store keeps working.
	if err := c.Kill(2); err != nil {
		t.Fatal(err)
	}
	publishNext(t, s, 2)
	if err := s.PutDeployment(ctx, store.Deployment{Resource: "r"}); err != nil {
		t.Errorf("PutDeployment with one member down: %v", err)
	}

	// Two down: no quorum. Calls fail by their deadline instead of hanging,
	// whether the caller gave one or the store's OpTimeout applies.
	if err := c.Kill(1); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.Publish(short, 2, []byte(`{"v":3}`)); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("Publish without quorum: err = %v, want a timeout", err)
	}
	if err := s.PutDeployment(ctx, store.Deployment{Resource: "r2"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PutDeployment without quorum, no caller deadline: err = %v, want DeadlineExceeded", err)
	}
	if _, err := s.Latest(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Latest without quorum: err = %v, want DeadlineExceeded", err)
	}

	// Quorum back: the store works again. Whether the timed-out publish took
	// effect once the log could commit is unknown to its caller; CAS keeps a
	// re-read and retry safe.
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	p, err := s.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	publishNext(t, s, p.Version+1)
	if err := c.Restart(ctx, 2); err != nil {
		t.Fatal(err)
	}
}
