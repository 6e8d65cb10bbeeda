package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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

// portWait is how long a run waits for the members of a killed run to free
// their ports.
const portWait = 5 * time.Second

// checkHA refuses an --ha that is not 0 (off) or an odd number up to maxHA.
func checkHA(n int) error {
	if n == 0 || (n >= 3 && n <= maxHA && n%2 == 1) {
		return nil
	}
	return usageError{fmt.Sprintf("run: --ha %d: want 3, 5 or 7 (an odd number of motherships and etcd members, so that a majority survives)", n)}
}

// etcdDir is where the members of an --ha run keep their data.
func etcdDir(app layout.App) string { return filepath.Join(app.Path(), "etcd") }

// startEtcd starts the app's n-member cluster and returns it with the
// FLASH_STATE_URL of the app's prefix. The cluster of an earlier --ha run
// starts again on its data and addresses, so that what was deployed survives
// the run like the SQLite state of a run without --ha; a new one is made only
// where there is none.
func startEtcd(ctx context.Context, app layout.App, name string, n int) (*etcdcluster.Cluster, string, error) {
	dir := etcdDir(app)
	c, err := etcdcluster.Reopen(ctx, dir, etcdcluster.Options{})
	// The members of a run killed a moment ago stop once they notice; give
	// them that moment before saying their ports are taken.
	for wait := time.Now().Add(portWait); errors.Is(err, etcdcluster.ErrPortTaken) && time.Now().Before(wait); {
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		c, err = etcdcluster.Reopen(ctx, dir, etcdcluster.Options{})
	}
	switch {
	case errors.Is(err, etcdcluster.ErrNoCluster):
		if err := os.RemoveAll(dir); err != nil { // a run that died while making it
			return nil, "", fmt.Errorf("clear %s: %w", dir, err)
		}
		if c, err = etcdcluster.Start(ctx, dir, n, etcdcluster.Options{}); err != nil {
			return nil, "", fmt.Errorf("start the etcd cluster (--ha): %w", err)
		}
	case errors.Is(err, etcdcluster.ErrPortTaken):
		return nil, "", fmt.Errorf("start the etcd cluster of the last --ha run: %w\n"+
			"  stop the program on that port, or remove %s to start a new cluster (what was deployed with --ha is lost)", err, dir)
	case err != nil:
		return nil, "", fmt.Errorf("start the etcd cluster of the last --ha run (%s): %w", dir, err)
	case c.Size() != n:
		c.Shutdown()
		return nil, "", usageError{fmt.Sprintf("run: --ha %d: the last --ha run of this app had %d members (in %s); "+
			"run with --ha %d, or remove that directory to start a new cluster (what was deployed with --ha is lost)", n, c.Size(), dir, c.Size())}
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
