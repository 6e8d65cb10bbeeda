package etcd_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/etcdcluster"
	"github.com/flash-go/flash/store/etcd"
)

func TestMain(m *testing.M) {
	etcdcluster.RunIfMember()
	code := m.Run()
	shared.close()
	durable.close()
	os.Exit(code)
}

var (
	// shared is one three-member cluster for the tests that do not harm it;
	// each test keeps to its own key prefix.
	shared = lazyCluster{opts: etcdcluster.Options{NoFsync: true}}
	// durable is a three-member cluster that fsyncs, as a real one does, for benchmarks.
	durable lazyCluster
)

// lazyCluster is a cluster started on first use and stopped by TestMain.
type lazyCluster struct {
	opts etcdcluster.Options
	once sync.Once
	c    *etcdcluster.Cluster
	dir  string
	err  error
}

func (l *lazyCluster) get(t testing.TB) *etcdcluster.Cluster {
	t.Helper()
	l.once.Do(func() {
		if l.dir, l.err = os.MkdirTemp("", "flash-etcd-"); l.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l.c, l.err = etcdcluster.Start(ctx, l.dir, 3, l.opts)
	})
	if l.err != nil {
		t.Fatalf("starting an etcd cluster: %v", l.err)
	}
	return l.c
}

func (l *lazyCluster) close() {
	if l.c != nil {
		l.c.Close()
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

// startCluster starts a cluster of its own of n members, for a test that
// harms it.
func startCluster(t *testing.T, n int) *etcdcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := etcdcluster.Start(ctx, t.TempDir(), n, etcdcluster.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var prefixes atomic.Int64

// newPrefix is a key prefix no other store in this test run uses.
func newPrefix() string { return fmt.Sprintf("/test/p%d", prefixes.Add(1)) }

// openStore opens a store on c under prefix and closes it when the test ends.
func openStore(t testing.TB, c *etcdcluster.Cluster, prefix string) *etcd.Store {
	t.Helper()
	s, err := etcd.OpenConfig(t.Context(), etcd.Config{Endpoints: c.Endpoints(), Prefix: prefix, LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
