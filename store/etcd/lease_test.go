package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/flash-go/flash/internal/etcdcluster"
	"github.com/flash-go/flash/store"
)

// waitFor bounds every wait; it is only reached when something is broken.
const waitFor = 20 * time.Second

// noLeaks checks, after every other cleanup of t, that no goroutine started
// since the call is left.
func noLeaks(t *testing.T) {
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, current) })
}

type campaignResult struct {
	l   store.Leadership
	err error
}

// campaign runs Campaign in the background.
func campaign(ctx context.Context, s store.Leaser, id string) <-chan campaignResult {
	ch := make(chan campaignResult, 1)
	go func() {
		l, err := s.Campaign(ctx, store.LeaderInfo{ID: id, URL: "http://" + id})
		ch <- campaignResult{l, err}
	}()
	return ch
}

func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("%s: not closed in time", what)
	}
}

func leaderID(t *testing.T, s store.Leaser) string {
	t.Helper()
	info, err := s.Leader(t.Context())
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	return info.ID
}

// rawClient is a plain etcd client, to act on the cluster behind the store's back.
func rawClient(t *testing.T, c *etcdcluster.Cluster, endpoints ...string) *clientv3.Client {
	t.Helper()
	if endpoints == nil {
		endpoints = c.Endpoints()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// revokeLeader revokes the current leader's lease, as its expiry would.
func revokeLeader(t *testing.T, cli *clientv3.Client, prefix string) {
	t.Helper()
	resp, err := cli.Get(t.Context(), prefix+"/:leader/", clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("reading the leader key: %v (%d keys)", err, len(resp.Kvs))
	}
	if _, err := cli.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
}

func TestLeadershipFailoverAndFencing(t *testing.T) {
	c := shared.get(t)
	noLeaks(t)
	prefix := newPrefix()
	s1, s2 := openStore(t, c, prefix), openStore(t, c, prefix)
	ctx := t.Context()

	if _, err := s1.Leader(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Leader before any campaign: err = %v, want ErrNotFound", err)
	}
	r1 := <-campaign(ctx, s1, "a")
	if r1.err != nil {
		t.Fatal(r1.err)
	}
	l1 := r1.l
	if info := l1.Info(); info.ID != "a" || info.URL != "http://a" || info.Since.IsZero() {
		t.Errorf("Info = %+v, want ID a, URL http://a, Since set", info)
	}
	got, err := s2.Leader(ctx)
	if err != nil || got.ID != "a" || !got.Since.Equal(l1.Info().Since) {
		t.Errorf("Leader = %+v, %v; want %+v", got, err, l1.Info())
	}

	// The leader writes through its fenced store; the second candidate waits.
	second := campaign(ctx, s2, "b")
	p1, err := l1.Store().Publish(ctx, 0, []byte(`{"by":"a"}`))
	if err != nil {
		t.Fatalf("leader's Publish: %v", err)
	}
	if err := l1.Store().PutDeployment(ctx, store.Deployment{Resource: "r", Status: "deployed"}); err != nil {
		t.Fatalf("leader's PutDeployment: %v", err)
	}
	if _, err := l1.Store().Publish(ctx, 0, []byte(`{"stale":1}`)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("leader's stale Publish: err = %v, want ErrConflict (the fence holds)", err)
	}
	select {
	case r := <-second:
		t.Fatalf("second candidate returned while the first leads: %+v", r)
	default:
	}
	if id := leaderID(t, s2); id != "a" {
		t.Fatalf("Leader = %q while a leads", id)
	}

	// a's lease ends (as when a is paused or cut off past the TTL): b leads,
	// and a's late writes change nothing, before and after a notices.
	revokeLeader(t, rawClient(t, c), prefix)
	late := map[string]func() error{
		"Publish":          func() error { _, err := l1.Store().Publish(ctx, 1, []byte(`{"late":1}`)); return err },
		"PutDesired":       func() error { _, err := l1.Store().PutDesired(ctx, 0, []byte(`{}`), ""); return err },
		"PutDeployment":    func() error { return l1.Store().PutDeployment(ctx, store.Deployment{Resource: "r", Status: "late"}) },
		"DeleteDeployment": func() error { return l1.Store().DeleteDeployment(ctx, "r") },
		"PutEndpoint":      func() error { return l1.Store().PutEndpoint(ctx, store.Endpoint{ID: "e", App: "x"}) },
		"DeleteEndpoint":   func() error { return l1.Store().DeleteEndpoint(ctx, "e") },
		"ReportInstances":  func() error { return l1.Store().ReportInstances(ctx, []store.Instance{{Resource: "r", Instance: "i"}}) },
	}
	checkLate := func(when string) {
		t.Helper()
		for name, write := range late {
			if err := write(); !errors.Is(err, store.ErrFenced) {
				t.Errorf("%s, deposed leader's %s: err = %v, want ErrFenced", when, name, err)
			}
		}
	}
	checkLate("before a notices")
	r2 := <-second
	if r2.err != nil {
		t.Fatalf("second Campaign: %v", r2.err)
	}
	l2 := r2.l
	waitClosed(t, "deposed leader's Done", l1.Done())
	checkLate("after a noticed")
	if id := leaderID(t, s1); id != "b" {
		t.Errorf("Leader = %q after failover, want b", id)
	}

	// Nothing of a's late writes is in the store.
	latest, err := s2.Latest(ctx)
	if err != nil || latest.Version != p1.Version || string(latest.Manifest) != `{"by":"a"}` {
		t.Errorf("Latest = v%d %s, %v; want v%d by a", latest.Version, latest.Manifest, err, p1.Version)
	}
	ds, _ := s2.Deployments(ctx)
	if len(ds) != 1 || ds[0].Status != "deployed" {
		t.Errorf("Deployments = %+v, want r deployed", ds)
	}
	if _, err := s2.Desired(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Desired after fenced PutDesired: err = %v, want ErrNotFound", err)
	}
	if eps, _ := s2.Endpoints(ctx, "x"); len(eps) != 0 {
		t.Errorf("Endpoints = %+v, want none", eps)
	}
	if is, _ := s2.Instances(ctx); len(is) != 0 {
		t.Errorf("Instances = %+v, want none", is)
	}
	if _, err := l2.Store().Publish(ctx, p1.Version, []byte(`{"by":"b"}`)); err != nil {
		t.Errorf("new leader's Publish: %v", err)
	}

	// Resigning hands over at once; nobody is left.
	if err := l2.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, "resigned leader's Done", l2.Done())
	if err := l2.Resign(ctx); err != nil {
		t.Errorf("second Resign: %v", err)
	}
	if _, err := s1.Leader(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Leader after resign: err = %v, want ErrNotFound", err)
	}
	if err := l2.Store().PutDeployment(ctx, store.Deployment{Resource: "r2"}); !errors.Is(err, store.ErrFenced) {
		t.Errorf("PutDeployment after Resign: err = %v, want ErrFenced", err)
	}
	if err := l1.Resign(ctx); err != nil {
		t.Errorf("Resign of a lost leadership: %v", err)
	}
}

func TestCampaignEndsWithContext(t *testing.T) {
	c := shared.get(t)
	prefix := newPrefix()
	s1, s2 := openStore(t, c, prefix), openStore(t, c, prefix)
	l, err := s1.Campaign(t.Context(), store.LeaderInfo{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	waiting := campaign(ctx, s2, "b")
	cancel()
	if r := <-waiting; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Campaign with a cancelled context: err = %v, want context.Canceled", r.err)
	}
	// The abandoned candidacy left no key behind: after a resigns, nobody leads.
	if err := l.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Leader(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Leader: err = %v, want ErrNotFound", err)
	}
	keys, err := rawClient(t, c).Get(t.Context(), prefix+"/:leader/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || len(keys.Kvs) != 0 {
		t.Errorf("leader keys left: %v, %v", keys.Kvs, err)
	}
}

func TestClosedStoreEndsLeadership(t *testing.T) {
	c := shared.get(t)
	prefix := newPrefix()
	s1, s2 := openStore(t, c, prefix), openStore(t, c, prefix)
	l, err := s1.Campaign(t.Context(), store.LeaderInfo{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, "Done after Close", l.Done())
	if err := l.Store().PutDeployment(t.Context(), store.Deployment{Resource: "r"}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("write after Close: err = %v, want ErrClosed", err)
	}
	if _, err := s1.Campaign(t.Context(), store.LeaderInfo{ID: "a"}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Campaign after Close: err = %v, want ErrClosed", err)
	}
	// The lease was left to expire: b leads within the TTL.
	r := <-campaign(t.Context(), s2, "b")
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.l.Resign(t.Context())
}
