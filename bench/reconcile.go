package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider/fake"
	"github.com/flash-go/flash/store/sqlite"
)

// reconcile deploys the same build twice through a real mothership (SQLite
// store) with a counting provider, and counts the provider calls of the
// second reconciliation. The build is the app's own manifest (benchApp) and,
// to give the diff some work, a 100-function manifest.
func (r *runner) reconcile(ctx context.Context) error {
	var calls, lists, durMS []float64
	app, _ := benchApp()
	appManifest, err := app.Manifest()
	if err != nil {
		return err
	}
	_, big, err := genManifest(100)
	if err != nil {
		return err
	}
	builds := []*manifest.Manifest{appManifest, big}
	if r.cfg.Mode == Smoke {
		builds = builds[:1]
	}
	for i, mf := range slices.Repeat(builds, max(1, r.p.fanRounds)) {
		dir := filepath.Join(r.tmp, "reconcile-"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		st, err := sqlite.OpenConfig(ctx, sqlite.Config{Path: filepath.Join(dir, "state.db"), Logger: r.log})
		if err != nil {
			return err
		}
		prov := fake.New(appName)
		ms, err := mothership.New(ctx, mothership.Config{App: appName, Store: st, Provider: prov, Logger: r.log})
		if err != nil {
			st.Close()
			return err
		}
		first, err := ms.Reconcile(ctx, mf, mothership.ReconcileOptions{})
		if err == nil && first.Failed() {
			err = fmt.Errorf("first deploy failed: %v", first.Errors)
		}
		if err == nil && first.Deploys != len(mf.Resources) {
			err = fmt.Errorf("first deploy made %d deploys for %d resources", first.Deploys, len(mf.Resources))
		}
		if err != nil {
			st.Close()
			return err
		}
		prov.ResetCalls()
		t0 := time.Now()
		second, err := ms.Reconcile(ctx, mf, mothership.ReconcileOptions{})
		durMS = append(durMS, float64(time.Since(t0))/float64(time.Millisecond))
		st.Close()
		if err != nil {
			return err
		}
		if second.Failed() {
			return fmt.Errorf("second deploy failed: %v", second.Errors)
		}
		deploys, undeploys, nLists := prov.Calls()
		calls = append(calls, float64(deploys+undeploys))
		lists = append(lists, float64(nLists))
	}
	r.figure("reconcile_unchanged_provider_calls", slices.Max(calls), "calls",
		"provider Deploy + Undeploy calls when the same build is reconciled a second time (worst round)")
	r.figure("reconcile_unchanged_provider_lists", slices.Max(lists), "calls",
		"provider List calls in that second reconciliation (one read of what is live, to find orphans)")
	r.figure("reconcile_unchanged_ms", Median(durMS), "ms", "duration of that second reconciliation (store read, diff, List, publish check)")
	return nil
}
