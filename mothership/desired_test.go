package mothership

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// TestDeployRecordsDesiredFirst: a deploy records the desired manifest (and
// artifact) in the store before any provider call.
func TestDeployRecordsDesiredFirst(t *testing.T) {
	h := newHarness(t)
	desired := buildManifest(t, res{name: "a", env: map[string]string{"X": "1"}})
	digest := "sha256:" + strings.Repeat("be", 32)
	var atDeploy store.Desired
	h.prov.onDeploy = func(ctx context.Context, s provider.Spec) error {
		var err error
		atDeploy, err = h.st.Desired(ctx)
		return err
	}
	rep, err := h.m.Reconcile(t.Context(), desired, ReconcileOptions{Artifact: digest})
	if err != nil || rep.Failed() {
		t.Fatalf("%+v %v", rep, err)
	}
	if atDeploy.Version != 1 || atDeploy.Artifact != digest || !sameJSON(atDeploy.Manifest, mustJSON(t, desired)) {
		t.Fatalf("desired state when the provider was called: %+v", atDeploy)
	}
	if rep.Desired != 1 {
		t.Fatalf("report desired %d, want 1", rep.Desired)
	}
	// The same deploy again records nothing new.
	if rep, err := h.m.Reconcile(t.Context(), desired, ReconcileOptions{Artifact: digest}); err != nil || rep.Desired != 1 {
		t.Fatalf("same deploy again: desired %d %v", rep.Desired, err)
	}
}

// TestBootFollowsStoredDesired: a restarted mothership reconciles toward
// the stored desired state, not its own (older) manifest; an empty store
// records the binary's manifest first.
func TestBootFollowsStoredDesired(t *testing.T) {
	h := newHarness(t)
	seed := buildManifest(t, res{name: "a"})
	rep, err := h.m.ReconcileStored(t.Context(), seed, ReconcileOptions{})
	if err != nil || rep.Failed() || rep.Desired != 1 || rep.Deploys != 1 {
		t.Fatalf("first boot: %+v %v", rep, err)
	}
	deployed := buildManifest(t, res{name: "a", env: map[string]string{"CHANGED": "yes"}})
	if rep := mustReconcile(t, h.m, deployed); rep.Desired != 2 || rep.Deploys != 1 {
		t.Fatalf("deploy: %+v", rep)
	}

	// A new mothership on the same store and provider, booting with the old seed.
	h.prov.resetCounts()
	m2, err := New(t.Context(), Config{App: "app", Store: h.st, Provider: h.prov, Logger: quiet, ArtifactDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = m2.ReconcileStored(t.Context(), seed, ReconcileOptions{})
	if err != nil || rep.Failed() {
		t.Fatalf("reboot: %+v %v", rep, err)
	}
	if rep.Deploys != 0 || rep.Undeploys != 0 || rep.Desired != 2 {
		t.Fatalf("reboot redeployed (%d deploys, %d undeploys, desired %d): the deploy was rolled back", rep.Deploys, rep.Undeploys, rep.Desired)
	}
	if mf, _ := m2.Current(); mf.Resources["a"].Env["CHANGED"] != "yes" {
		t.Fatalf("served env %v after the reboot, want the deployed change", mf.Resources["a"].Env)
	}
}

// TestReconcilerConflictDecidesAgain: two motherships share a store. While
// one reconciles, the other records and publishes a newer deploy; the first
// loses its compare-and-swap, re-reads the desired state, and stops instead
// of overwriting the newer deploy's version with its own manifest.
func TestReconcilerConflictDecidesAgain(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Parallelism = 1 })
	b, err := New(t.Context(), Config{App: "app", Store: h.st, Provider: newFakeProvider(), Logger: quiet, ArtifactDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	newer := buildManifest(t, res{name: "newer"})
	h.prov.onDeploy = func(ctx context.Context, s provider.Spec) error {
		if s.Resource != "old" {
			return nil
		}
		// Mothership b deploys meanwhile (A's intent is already published).
		if _, err := b.Reconcile(ctx, newer, ReconcileOptions{}); err != nil {
			t.Errorf("b's deploy: %v", err)
		}
		return nil
	}
	rep, err := h.m.Reconcile(t.Context(), buildManifest(t, res{name: "old"}, res{name: "zz"}), ReconcileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed() || !strings.Contains(strings.Join(append(rep.Errors, resourceReport(t, rep, "old").Error), " "), "newer desired state") {
		t.Fatalf("report %+v: the superseded reconciliation does not say so", rep)
	}
	if calls := h.prov.callLog(); len(calls) != 1 {
		t.Fatalf("provider calls %v: after being superseded, the reconciliation went on", calls)
	}
	p, err := h.st.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	latest, err := manifest.Decode(p.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if latest.Resources["newer"] == nil || latest.Resources["old"] != nil || latest.Resources["zz"] != nil {
		t.Fatalf("store's latest (v%d) has %v: the superseded deploy overwrote the newer one", p.Version, latest.ResourceNames())
	}
}

// TestDeployLimits: a deploy asking for more replicas or resources than
// allowed is refused before anything is recorded or started.
func TestDeployLimits(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxReplicas, c.MaxResources = 4, 3 })
	var many []res
	for _, n := range []string{"a", "b", "c", "d"} {
		many = append(many, res{name: n})
	}
	for _, c := range []struct {
		name string
		mf   *manifest.Manifest
		want string
	}{
		{"replicas", buildManifest(t, res{name: "a", min: 25}), "workersMin 25, at most 4"},
		{"resources", buildManifest(t, many...), "4 resources, at most 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.m.Reconcile(t.Context(), c.mf, ReconcileOptions{})
			var le *LimitError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want a LimitError naming %q", err, c.want)
			}
			code, lines := deployPost(t, h, "application/json", strings.NewReader(string(mustJSON(t, c.mf))))
			if code != 400 || !strings.Contains(string(mustMarshal(t, lines)), c.want) {
				t.Fatalf("POST /flash/deploy: %d %v", code, lines)
			}
		})
	}
	if n := len(h.prov.callLog()); n != 0 {
		t.Fatalf("%d provider calls", n)
	}
	if _, err := h.st.Desired(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused deploy was recorded: %v", err)
	}
}

// TestMaxResourcesBounded: Config.MaxResources above MaxResourcesLimit is
// refused when the mothership is made.
func TestMaxResourcesBounded(t *testing.T) {
	st := openSQLite(t)
	if _, err := New(t.Context(), Config{Store: st, Logger: quiet, MaxResources: MaxResourcesLimit + 1}); err == nil || !strings.Contains(err.Error(), "MaxResources") {
		t.Fatalf("err %v, want a refusal of MaxResources", err)
	}
	if _, err := New(t.Context(), Config{Store: st, Logger: quiet, MaxResources: MaxResourcesLimit}); err != nil {
		t.Fatalf("MaxResources at the limit: %v", err)
	}
}
