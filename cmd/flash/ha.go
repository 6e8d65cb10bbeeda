package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flash-go/flash/internal/etcdcluster"
	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/etcd"
	"github.com/flash-go/flash/store/sqlite"
)

// `flash run --ha N`: N etcd members (each its own process and data
// directory under .flash/apps/<app>/etcd/) and N motherships sharing them,
// one of which leads (SPEC §4.6). Without --ha, one mothership on SQLite.

// maxHA bounds --ha: etcd wants an odd number of members, and a laptop does
// not need more than a handful.
const maxHA = 7

// checkHA refuses an --ha that is not 0 (off) or an odd number up to maxHA.
func checkHA(n int) error {
	if n == 0 || (n >= 3 && n <= maxHA && n%2 == 1) {
		return nil
	}
	return usageError{fmt.Sprintf("run: --ha %d: want 3, 5 or 7 (an odd number of motherships and etcd members, so that a majority survives)", n)}
}

// etcdDir is where the members of an --ha run keep their data.
func etcdDir(app layout.App) string { return filepath.Join(app.Path(), "etcd") }

// startEtcd starts a fresh n-member cluster for the app (an earlier run's
// data is removed: the members of a new run get new ports) and returns it
// with the FLASH_STATE_URL of the app's prefix.
func startEtcd(ctx context.Context, app layout.App, name string, n int) (*etcdcluster.Cluster, string, error) {
	dir := etcdDir(app)
	if err := os.RemoveAll(dir); err != nil {
		return nil, "", fmt.Errorf("clear %s: %w", dir, err)
	}
	c, err := etcdcluster.Start(ctx, dir, n, etcdcluster.Options{})
	if err != nil {
		return nil, "", fmt.Errorf("start the etcd cluster (--ha): %w", err)
	}
	return c, c.URL("/flash/" + name), nil
}

// mothershipURLs are the base URLs of n motherships on consecutive ports.
func mothershipURLs(port, n int) []string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = "http://127.0.0.1:" + strconv.Itoa(port+i)
	}
	return urls
}

// openRunStore opens the store a run's motherships share: the app's SQLite
// file, or the etcd cluster of an --ha run.
func openRunStore(ctx context.Context, app layout.App, stateURL string) (store.Store, error) {
	if strings.HasPrefix(stateURL, "etcd://") {
		return etcd.Open(ctx, stateURL)
	}
	return sqlite.Open(ctx, app.State())
}
