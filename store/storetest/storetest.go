// Package storetest is the conformance suite every store.Store backend runs,
// in the manner of testing/slogtest: one body of tests, many implementations.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/store"
)

// waitFor bounds every wait in the suite; it is generous so slow CI passes,
// and is only reached when a backend is broken.
const waitFor = 10 * time.Second

// Run runs the conformance suite. open must return a new, empty store each
// time it is called; Run closes every store it opens. Watch semantics are
// tested only when the store also implements store.Watcher. The goroutine
// leak check counts goroutines, so do not run Run in parallel with other tests.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	newStore := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}

	t.Run("Manifests", func(t *testing.T) {
		t.Run("EmptyIsNotFound", func(t *testing.T) { testEmpty(t, newStore(t)) })
		t.Run("PublishSequence", func(t *testing.T) { testPublishSequence(t, newStore(t)) })
		t.Run("PublishConflictChangesNothing", func(t *testing.T) { testPublishConflict(t, newStore(t)) })
		t.Run("PublishRaceOneWinner", func(t *testing.T) { testPublishRace(t, newStore(t)) })
		t.Run("GetOldVersions", func(t *testing.T) { testGetOld(t, newStore(t)) })
		t.Run("HistoryNewestFirst", func(t *testing.T) { testHistory(t, newStore(t)) })
		t.Run("HistoryKeepsMinHistory", func(t *testing.T) { testMinHistory(t, newStore(t)) })
		t.Run("BytesExact", func(t *testing.T) { testBytesExact(t, newStore(t)) })
	})
	t.Run("Desired", func(t *testing.T) {
		t.Run("EmptyIsNotFound", func(t *testing.T) { testDesiredEmpty(t, newStore(t)) })
		t.Run("Sequence", func(t *testing.T) { testDesiredSequence(t, newStore(t)) })
		t.Run("ConflictChangesNothing", func(t *testing.T) { testDesiredConflict(t, newStore(t)) })
		t.Run("RaceOneWinner", func(t *testing.T) { testDesiredRace(t, newStore(t)) })
		t.Run("IndependentOfPublished", func(t *testing.T) { testDesiredIndependent(t, newStore(t)) })
		t.Run("ClosedReturnsErrClosed", func(t *testing.T) { testDesiredClosed(t, newStore(t)) })
	})
	t.Run("Deployments", func(t *testing.T) { testDeployments(t, newStore(t)) })
	t.Run("Endpoints", func(t *testing.T) { testEndpoints(t, newStore(t)) })
	t.Run("Instances", func(t *testing.T) { testInstances(t, newStore(t)) })
	t.Run("ClosedReturnsErrClosed", func(t *testing.T) { testClosed(t, newStore(t)) })

	t.Run("Watch", func(t *testing.T) {
		if _, ok := newStore(t).(store.Watcher); !ok {
			t.Skip("store does not implement store.Watcher")
		}
		for _, tc := range []struct {
			name string
			test func(*testing.T, store.Store, store.Watcher)
		}{
			{"SendsNewestExisting", testWatchExisting},
			{"WakesOnPublish", testWatchWakes},
			{"Coalesces", testWatchCoalesces},
			{"ClosesWhenContextEnds", testWatchCancel},
			{"NoGoroutineLeak", testWatchNoLeak},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := newStore(t)
				tc.test(t, s, s.(store.Watcher))
			})
		}
	})
}

// ---- helpers ----

func mustPublish(t *testing.T, s store.Store, prev int64, m []byte) store.Published {
	t.Helper()
	p, err := s.Publish(t.Context(), prev, m)
	if err != nil {
		t.Fatalf("Publish(prev=%d): %v", prev, err)
	}
	if p.Version != prev+1 {
		t.Fatalf("Publish(prev=%d) version = %d, want %d", prev, p.Version, prev+1)
	}
	return p
}

// publishN publishes n manifests after the current latest and returns the last version.
func publishN(t *testing.T, s store.Store, n int) int64 {
	t.Helper()
	var v int64
	if p, err := s.Latest(t.Context()); err == nil {
		v = p.Version
	}
	for range n {
		v = mustPublish(t, s, v, manifestFor(v+1)).Version
	}
	return v
}

func manifestFor(v int64) []byte {
	return fmt.Appendf(nil, `{"version_hint":%d,"resources":{}}`, v)
}

func samePublished(t *testing.T, what string, got, want store.Published) {
	t.Helper()
	if got.Version != want.Version || !bytes.Equal(got.Manifest, want.Manifest) || !got.PublishedAt.Equal(want.PublishedAt) {
		t.Errorf("%s = {v%d %q %v}, want {v%d %q %v}", what,
			got.Version, got.Manifest, got.PublishedAt, want.Version, want.Manifest, want.PublishedAt)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want %v", what, err, target)
	}
}

// ts is a timestamp with nanoseconds and a non-UTC zone, to catch lossy encodings.
func ts(sec int) time.Time {
	return time.Date(2025, 3, 4, 5, 6, sec, 123456789, time.FixedZone("X", 3600))
}

// ---- manifests ----

func testEmpty(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.Latest(ctx)
	wantErr(t, "Latest on empty", err, store.ErrNotFound)
	for _, v := range []int64{-1, 0, 1} {
		_, err := s.Get(ctx, v)
		wantErr(t, fmt.Sprintf("Get(%d) on empty", v), err, store.ErrNotFound)
	}
	h, err := s.History(ctx, 10)
	if err != nil || len(h) != 0 {
		t.Errorf("History on empty = %d items, %v; want 0, nil", len(h), err)
	}
}

func testPublishSequence(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	p1 := mustPublish(t, s, 0, []byte(`{"a":1}`))
	if p1.PublishedAt.Before(before.Add(-time.Minute)) || p1.PublishedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("PublishedAt = %v, not close to now", p1.PublishedAt)
	}
	got, err := s.Latest(ctx)
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	samePublished(t, "Latest after first publish", got, p1)

	p2 := mustPublish(t, s, 1, []byte(`{"a":2}`))
	got, err = s.Latest(ctx)
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	samePublished(t, "Latest after second publish", got, p2)
	if p2.PublishedAt.Before(p1.PublishedAt.Add(-time.Second)) {
		t.Errorf("second PublishedAt %v well before first %v", p2.PublishedAt, p1.PublishedAt)
	}
}

func testPublishConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	p1 := mustPublish(t, s, 0, []byte(`{"a":1}`))
	for _, prev := range []int64{0, 2, 7, -1} {
		_, err := s.Publish(ctx, prev, []byte(`{"loser":true}`))
		wantErr(t, fmt.Sprintf("Publish(prev=%d) with latest 1", prev), err, store.ErrConflict)
	}
	got, err := s.Latest(ctx)
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	samePublished(t, "Latest after losing publishes", got, p1)
	if _, err := s.Get(ctx, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(2) after losing publishes: err = %v, want ErrNotFound", err)
	}
	mustPublish(t, s, 1, []byte(`{"a":2}`)) // the store still works
}

func testPublishRace(t *testing.T, s store.Store) {
	const racers, rounds = 8, 5
	ctx := t.Context()
	for round := range int64(rounds) {
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			errs    = make([]error, racers)
			results = make([]store.Published, racers)
		)
		for i := range racers {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.Publish(ctx, round, fmt.Appendf(nil, `{"round":%d,"racer":%d}`, round, i))
			})
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: racers %d and %d both published version %d", round, winner, i, round+1)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("round %d: racer %d: err = %v, want nil or ErrConflict", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no racer won", round)
		}
		got, err := s.Latest(ctx)
		if err != nil {
			t.Fatalf("Latest: %v", err)
		}
		samePublished(t, fmt.Sprintf("round %d: Latest", round), got, results[winner])
	}
}

func testGetOld(t *testing.T, s store.Store) {
	ctx := t.Context()
	last := publishN(t, s, 5)
	for v := int64(1); v <= last; v++ {
		p, err := s.Get(ctx, v)
		if err != nil {
			t.Fatalf("Get(%d): %v", v, err)
		}
		if p.Version != v || !bytes.Equal(p.Manifest, manifestFor(v)) {
			t.Errorf("Get(%d) = v%d %q, want v%d %q", v, p.Version, p.Manifest, v, manifestFor(v))
		}
	}
	for _, v := range []int64{0, -1, last + 1, last + 100} {
		_, err := s.Get(ctx, v)
		wantErr(t, fmt.Sprintf("Get(%d)", v), err, store.ErrNotFound)
	}
}

func testHistory(t *testing.T, s store.Store) {
	ctx := t.Context()
	publishN(t, s, 5)
	for _, tc := range []struct {
		limit int
		want  []int64
	}{
		{1, []int64{5}},
		{3, []int64{5, 4, 3}},
		{5, []int64{5, 4, 3, 2, 1}},
		{50, []int64{5, 4, 3, 2, 1}},
	} {
		h, err := s.History(ctx, tc.limit)
		if err != nil {
			t.Fatalf("History(%d): %v", tc.limit, err)
		}
		var got []int64
		for _, p := range h {
			got = append(got, p.Version)
			if !bytes.Equal(p.Manifest, manifestFor(p.Version)) {
				t.Errorf("History(%d): v%d manifest = %q", tc.limit, p.Version, p.Manifest)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("History(%d) versions = %v, want %v", tc.limit, got, tc.want)
		}
	}
}

func testMinHistory(t *testing.T, s store.Store) {
	ctx := t.Context()
	last := publishN(t, s, store.MinHistory+10)
	h, err := s.History(ctx, store.MinHistory)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(h) != store.MinHistory {
		t.Fatalf("History(%d) = %d items, want %d", store.MinHistory, len(h), store.MinHistory)
	}
	for i, p := range h {
		if want := last - int64(i); p.Version != want {
			t.Fatalf("History[%d].Version = %d, want %d", i, p.Version, want)
		}
	}
	for v := last - store.MinHistory + 1; v <= last; v++ {
		if _, err := s.Get(ctx, v); err != nil {
			t.Errorf("Get(%d) within the newest %d: %v", v, store.MinHistory, err)
		}
	}
	// Older versions may be pruned, but if returned they must be intact.
	for v := int64(1); v <= last-store.MinHistory; v++ {
		p, err := s.Get(ctx, v)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			t.Errorf("Get(%d) beyond MinHistory: %v", v, err)
		case !bytes.Equal(p.Manifest, manifestFor(v)):
			t.Errorf("Get(%d) beyond MinHistory returned a wrong manifest %q", v, p.Manifest)
		}
	}
}

func testBytesExact(t *testing.T, s store.Store) {
	ctx := t.Context()
	big := bytes.Repeat([]byte(`{"k":"0123456789abcdef"},`), 10000) // ~250 KiB
	cases := [][]byte{
		[]byte(`{}`),
		[]byte("{\n  \"resources\" : {  \"é\":\"\\u00e9 ✓\" }\n}\n\n"),
		{0, 1, 2, 0xff, 0xfe, '"', '\\', 0}, // opaque bytes, not even UTF-8
		big,
	}
	var prev int64
	for i, m := range cases {
		in := bytes.Clone(m)
		p := mustPublish(t, s, prev, in)
		prev = p.Version
		clear(in) // the store must not alias the caller's slice
		if !bytes.Equal(p.Manifest, m) {
			t.Errorf("case %d: Publish returned different bytes", i)
		}
		got, err := s.Get(ctx, p.Version)
		if err != nil {
			t.Fatalf("case %d: Get: %v", i, err)
		}
		if !bytes.Equal(got.Manifest, m) {
			t.Errorf("case %d: Get returned %d bytes differing from the %d published", i, len(got.Manifest), len(m))
		}
		clear(got.Manifest) // nor alias what it returns
		if again, _ := s.Get(ctx, p.Version); !bytes.Equal(again.Manifest, m) {
			t.Errorf("case %d: changing a returned manifest changed the stored one", i)
		}
	}
}

// ---- deployments ----

func sameDeployments(t *testing.T, got, want []store.Deployment) {
	t.Helper()
	eq := func(a, b store.Deployment) bool {
		return a.Resource == b.Resource && a.ConfigHash == b.ConfigHash && a.Status == b.Status &&
			slices.Equal(a.EndpointURLs, b.EndpointURLs) && a.Error == b.Error && a.UpdatedAt.Equal(b.UpdatedAt)
	}
	if !slices.EqualFunc(got, want, eq) {
		t.Errorf("Deployments =\n\t%+v\nwant\n\t%+v", got, want)
	}
}

func testDeployments(t *testing.T, s store.Store) {
	ctx := t.Context()
	put := func(d store.Deployment) {
		t.Helper()
		if err := s.PutDeployment(ctx, d); err != nil {
			t.Fatalf("PutDeployment(%s): %v", d.Resource, err)
		}
	}
	list := func() []store.Deployment {
		t.Helper()
		ds, err := s.Deployments(ctx)
		if err != nil {
			t.Fatalf("Deployments: %v", err)
		}
		return ds
	}
	sameDeployments(t, list(), nil)

	b := store.Deployment{Resource: "b-gpu", ConfigHash: "h1", Status: "deployed",
		EndpointURLs: []string{"http://127.0.0.1:1/", "http://127.0.0.1:2/"}, UpdatedAt: ts(1)}
	a := store.Deployment{Resource: "a-cpu", ConfigHash: "h2", Status: "failed", Error: "boom: \"quoted\"\n", UpdatedAt: ts(2)}
	c := store.Deployment{Resource: "c-empty"} // zero values round-trip too
	put(b)
	put(a)
	put(c)
	sameDeployments(t, list(), []store.Deployment{a, b, c})

	a2 := store.Deployment{Resource: "a-cpu", ConfigHash: "h3", Status: "updated", EndpointURLs: []string{"http://x/"}, UpdatedAt: ts(3)}
	put(a2)
	sameDeployments(t, list(), []store.Deployment{a2, b, c})

	for _, r := range []string{"b-gpu", "b-gpu", "missing"} {
		if err := s.DeleteDeployment(ctx, r); err != nil {
			t.Errorf("DeleteDeployment(%s): %v", r, err)
		}
	}
	sameDeployments(t, list(), []store.Deployment{a2, c})
}

// ---- endpoints ----

func sameEndpoints(t *testing.T, app string, got, want []store.Endpoint) {
	t.Helper()
	eq := func(a, b store.Endpoint) bool {
		return a.ID == b.ID && a.Provider == b.Provider && a.App == b.App && a.Resource == b.Resource &&
			a.ConfigHash == b.ConfigHash && a.URL == b.URL && a.PID == b.PID &&
			a.StartedAt.Equal(b.StartedAt) && maps.Equal(a.Meta, b.Meta)
	}
	if !slices.EqualFunc(got, want, eq) {
		t.Errorf("Endpoints(%q) =\n\t%+v\nwant\n\t%+v", app, got, want)
	}
}

func testEndpoints(t *testing.T, s store.Store) {
	ctx := t.Context()
	put := func(e store.Endpoint) {
		t.Helper()
		if err := s.PutEndpoint(ctx, e); err != nil {
			t.Fatalf("PutEndpoint(%s): %v", e.ID, err)
		}
	}
	check := func(app string, want ...store.Endpoint) {
		t.Helper()
		got, err := s.Endpoints(ctx, app)
		if err != nil {
			t.Fatalf("Endpoints(%q): %v", app, err)
		}
		sameEndpoints(t, app, got, want)
	}
	check("app1")

	z := store.Endpoint{ID: "gpu/1", Provider: "local", App: "app1", Resource: "gpu", ConfigHash: "h",
		URL: "http://127.0.0.1:9001", PID: 4242, StartedAt: ts(1),
		Meta: map[string]string{"log": "/tmp/x.log", "empty": "", "ünï": "✓"}}
	a := store.Endpoint{ID: "cpu/0", Provider: "local", App: "app1", Resource: "cpu", URL: "http://127.0.0.1:9000"}
	other := store.Endpoint{ID: "ep-other", Provider: "runpod", App: "app2", Resource: "gpu", URL: "https://x", StartedAt: ts(2)}
	put(z)
	put(a)
	put(other)
	check("app1", a, z)
	check("app2", other)
	check("app") // prefixes of app names match nothing
	check("")

	// Replace by ID, including moving it to another app.
	z2 := z
	z2.URL, z2.PID, z2.Meta = "http://127.0.0.1:9002", 4343, map[string]string{"k": "v"}
	put(z2)
	moved := other
	moved.App = "app1"
	put(moved)
	check("app1", a, moved, z2)
	check("app2")

	for _, id := range []string{"cpu/0", "cpu/0", "nope"} {
		if err := s.DeleteEndpoint(ctx, id); err != nil {
			t.Errorf("DeleteEndpoint(%s): %v", id, err)
		}
	}
	check("app1", moved, z2)
}

// ---- instances ----

func testInstances(t *testing.T, s store.Store) {
	ctx := t.Context()
	report := func(is ...store.Instance) {
		t.Helper()
		if err := s.ReportInstances(ctx, is); err != nil {
			t.Fatalf("ReportInstances(%d): %v", len(is), err)
		}
	}
	check := func(want ...store.Instance) {
		t.Helper()
		got, err := s.Instances(ctx)
		if err != nil {
			t.Fatalf("Instances: %v", err)
		}
		eq := func(a, b store.Instance) bool {
			return a.Resource == b.Resource && a.Instance == b.Instance && a.AppliedVersion == b.AppliedVersion &&
				a.RejectedVersion == b.RejectedVersion && a.RejectReason == b.RejectReason && a.LastSeen.Equal(b.LastSeen)
		}
		if !slices.EqualFunc(got, want, eq) {
			t.Errorf("Instances =\n\t%+v\nwant\n\t%+v", got, want)
		}
	}
	check()

	r2i1 := store.Instance{Resource: "r2", Instance: "i1", AppliedVersion: 3, LastSeen: ts(1)}
	r1i2 := store.Instance{Resource: "r1", Instance: "i2", AppliedVersion: 2, RejectedVersion: 3, RejectReason: "bad hash", LastSeen: ts(2)}
	r1i1 := store.Instance{Resource: "r1", Instance: "i1", AppliedVersion: 1, LastSeen: ts(3)}
	// Keys that collide if a backend joins resource and instance with a separator.
	slashInResource := store.Instance{Resource: "a/b", Instance: "c", AppliedVersion: 7}
	slashInInstance := store.Instance{Resource: "a", Instance: "b/c", AppliedVersion: 8}
	report(r2i1)
	report(r1i2, r1i1, slashInResource, slashInInstance)
	report()
	check(slashInInstance, slashInResource, r1i1, r1i2, r2i1)

	// The later report of an instance in one batch is the one kept.
	r1i1b := store.Instance{Resource: "r1", Instance: "i1", AppliedVersion: 4, LastSeen: ts(9)}
	r1i1c := store.Instance{Resource: "r1", Instance: "i1", AppliedVersion: 5, LastSeen: ts(10)}
	report(r1i1b, r1i1c)
	check(slashInInstance, slashInResource, r1i1c, r1i2, r2i1)

	// A batch larger than one etcd transaction.
	var many []store.Instance
	for n := range 250 {
		many = append(many, store.Instance{Resource: "z", Instance: fmt.Sprintf("%03d", n), AppliedVersion: int64(n), LastSeen: ts(n)})
	}
	report(many...)
	got, err := s.Instances(ctx)
	if err != nil {
		t.Fatalf("Instances: %v", err)
	}
	if len(got) != 5+len(many) || got[len(got)-1].Instance != "249" || got[len(got)-1].AppliedVersion != 249 {
		t.Errorf("after a batch of %d: %d reports, the last %+v", len(many), len(got), got[len(got)-1])
	}
}

// ---- desired state ----

func mustPutDesired(t *testing.T, s store.Store, prev int64, m []byte, artifact string) store.Desired {
	t.Helper()
	d, err := s.PutDesired(t.Context(), prev, m, artifact)
	if err != nil {
		t.Fatalf("PutDesired(prev=%d): %v", prev, err)
	}
	if d.Version != prev+1 || !bytes.Equal(d.Manifest, m) || d.Artifact != artifact {
		t.Fatalf("PutDesired(prev=%d) = {v%d %q %q}, want {v%d %q %q}", prev, d.Version, d.Manifest, d.Artifact, prev+1, m, artifact)
	}
	return d
}

func sameDesired(t *testing.T, what string, got, want store.Desired) {
	t.Helper()
	if got.Version != want.Version || !bytes.Equal(got.Manifest, want.Manifest) || got.Artifact != want.Artifact ||
		!got.RecordedAt.Equal(want.RecordedAt) {
		t.Errorf("%s = {v%d %q %q %v}, want {v%d %q %q %v}", what, got.Version, got.Manifest, got.Artifact, got.RecordedAt,
			want.Version, want.Manifest, want.Artifact, want.RecordedAt)
	}
}

func testDesiredEmpty(t *testing.T, s store.Store) {
	_, err := s.Desired(t.Context())
	wantErr(t, "Desired on empty", err, store.ErrNotFound)
}

func testDesiredSequence(t *testing.T, s store.Store) {
	before := time.Now()
	d1 := mustPutDesired(t, s, 0, []byte(`{"a":1}`), "")
	if d1.RecordedAt.Before(before.Add(-time.Minute)) || d1.RecordedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("RecordedAt = %v, not close to now", d1.RecordedAt)
	}
	got, err := s.Desired(t.Context())
	if err != nil {
		t.Fatalf("Desired: %v", err)
	}
	sameDesired(t, "Desired after the first record", got, d1)
	digest := "sha256:" + strings.Repeat("ab", 32)
	d2 := mustPutDesired(t, s, 1, []byte(`{"a":2}`), digest)
	if got, err = s.Desired(t.Context()); err != nil {
		t.Fatalf("Desired: %v", err)
	}
	sameDesired(t, "Desired after the second record", got, d2)
}

func testDesiredConflict(t *testing.T, s store.Store) {
	d1 := mustPutDesired(t, s, 0, []byte(`{"a":1}`), "sha256:x")
	for _, prev := range []int64{0, 2, 7, -1} {
		_, err := s.PutDesired(t.Context(), prev, []byte(`{"loser":true}`), "")
		wantErr(t, fmt.Sprintf("PutDesired(prev=%d) with latest 1", prev), err, store.ErrConflict)
	}
	got, err := s.Desired(t.Context())
	if err != nil {
		t.Fatalf("Desired: %v", err)
	}
	sameDesired(t, "Desired after losing records", got, d1)
	mustPutDesired(t, s, 1, []byte(`{"a":2}`), "") // the store still works
}

func testDesiredRace(t *testing.T, s store.Store) {
	const racers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []int
		errs []error
	)
	for i := range racers {
		wg.Go(func() {
			_, err := s.PutDesired(t.Context(), 0, fmt.Appendf(nil, `{"racer":%d}`, i), "")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, i)
			case !errors.Is(err, store.ErrConflict):
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 || len(won) != 1 {
		t.Fatalf("%d racers recorded version 1 (%v), other errors %v; want exactly one winner", len(won), won, errs)
	}
	got, err := s.Desired(t.Context())
	if err != nil || got.Version != 1 || string(got.Manifest) != fmt.Sprintf(`{"racer":%d}`, won[0]) {
		t.Errorf("Desired = {v%d %q}, %v; want the winner's", got.Version, got.Manifest, err)
	}
}

func testDesiredIndependent(t *testing.T, s store.Store) {
	mustPublish(t, s, 0, []byte(`{"published":1}`))
	mustPublish(t, s, 1, []byte(`{"published":2}`))
	_, err := s.Desired(t.Context())
	wantErr(t, "Desired with published versions only", err, store.ErrNotFound)
	mustPutDesired(t, s, 0, []byte(`{"desired":1}`), "")
	if p, err := s.Latest(t.Context()); err != nil || p.Version != 2 {
		t.Errorf("Latest after PutDesired = v%d, %v; want v2", p.Version, err)
	}
}

func testDesiredClosed(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := s.Desired(t.Context())
	wantErr(t, "Desired after Close", err, store.ErrClosed)
	_, err = s.PutDesired(t.Context(), 0, []byte(`{}`), "")
	wantErr(t, "PutDesired after Close", err, store.ErrClosed)
}

// ---- close ----

func testClosed(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPublish(t, s, 0, []byte(`{}`))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := map[string]func() error{
		"Latest":           func() error { _, err := s.Latest(ctx); return err },
		"Get":              func() error { _, err := s.Get(ctx, 1); return err },
		"History":          func() error { _, err := s.History(ctx, 1); return err },
		"Publish":          func() error { _, err := s.Publish(ctx, 1, []byte(`{}`)); return err },
		"PutDeployment":    func() error { return s.PutDeployment(ctx, store.Deployment{Resource: "r"}) },
		"Deployments":      func() error { _, err := s.Deployments(ctx); return err },
		"DeleteDeployment": func() error { return s.DeleteDeployment(ctx, "r") },
		"PutEndpoint":      func() error { return s.PutEndpoint(ctx, store.Endpoint{ID: "e"}) },
		"Endpoints":        func() error { _, err := s.Endpoints(ctx, "a"); return err },
		"DeleteEndpoint":   func() error { return s.DeleteEndpoint(ctx, "e") },
		"ReportInstances":  func() error { return s.ReportInstances(ctx, []store.Instance{{Resource: "r", Instance: "i"}}) },
		"Instances":        func() error { _, err := s.Instances(ctx); return err },
		"Close":            s.Close,
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		wantErr(t, name+" after Close", calls[name](), store.ErrClosed)
	}
	if w, ok := s.(store.Watcher); ok {
		ch := w.Watch(ctx, 0)
		recvUntilClosed(t, ch)
	}
}

// ---- watch ----

// recv returns the next value from ch, failing the test if none comes in time
// or the channel closes.
func recv(t *testing.T, ch <-chan int64) int64 {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed unexpectedly")
		}
		return v
	case <-time.After(waitFor):
		t.Fatal("no watch notification in time")
		return 0
	}
}

// recvUntil reads values until want arrives, checking they only grow.
func recvUntil(t *testing.T, ch <-chan int64, after, want int64) {
	t.Helper()
	last := after
	for last != want {
		v := recv(t, ch)
		if v <= last {
			t.Fatalf("watch sent %d after %d: versions must only grow", v, last)
		}
		if v > want {
			t.Fatalf("watch sent %d, newer than the latest %d", v, want)
		}
		last = v
	}
}

// recvUntilClosed drains ch until it is closed, failing if that takes too long.
func recvUntilClosed(t *testing.T, ch <-chan int64) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed in time")
		}
	}
}

func testWatchExisting(t *testing.T, s store.Store, w store.Watcher) {
	last := publishN(t, s, 3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// A watcher that is behind gets the newest version, not the ones between.
	if v := recv(t, w.Watch(ctx, 1)); v != last {
		t.Errorf("Watch(after=1) first sent %d, want the latest %d", v, last)
	}
	if v := recv(t, w.Watch(ctx, 0)); v != last {
		t.Errorf("Watch(after=0) first sent %d, want the latest %d", v, last)
	}
}

func testWatchWakes(t *testing.T, s store.Store, w store.Watcher) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := w.Watch(ctx, 0) // empty store: nothing to send yet
	var v int64
	for range 3 {
		v = mustPublish(t, s, v, manifestFor(v+1)).Version
		recvUntil(t, ch, v-1, v)
	}
	// A watcher already up to date waits for the next publish.
	ch2 := w.Watch(ctx, v)
	v = mustPublish(t, s, v, manifestFor(v+1)).Version
	if got := recv(t, ch2); got != v {
		t.Errorf("Watch(after=%d) sent %d, want %d", v-1, got, v)
	}
}

func testWatchCoalesces(t *testing.T, s store.Store, w store.Watcher) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := w.Watch(ctx, 0)
	last := publishN(t, s, 10) // nobody reads meanwhile; publishing must not block
	recvUntil(t, ch, 0, last)
}

func testWatchCancel(t *testing.T, s store.Store, w store.Watcher) {
	publishN(t, s, 1)
	ctx, cancel := context.WithCancel(t.Context())
	pending := w.Watch(ctx, 0) // holds an unread notification
	idle := w.Watch(ctx, 1)    // waits for one
	cancel()
	recvUntilClosed(t, pending)
	recvUntilClosed(t, idle)

	// A watch on an already-ended context closes at once.
	done, cancel2 := context.WithCancel(t.Context())
	cancel2()
	recvUntilClosed(t, w.Watch(done, 0))

	// The store is still usable and watchable.
	ctx3, cancel3 := context.WithCancel(t.Context())
	defer cancel3()
	ch := w.Watch(ctx3, 1)
	mustPublish(t, s, 1, manifestFor(2))
	recvUntil(t, ch, 1, 2)
}

func testWatchNoLeak(t *testing.T, s store.Store, w store.Watcher) {
	publishN(t, s, 1)
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	var chans []<-chan int64
	for i := range 10 {
		chans = append(chans, w.Watch(ctx, int64(i%2)))
	}
	mustPublish(t, s, 1, manifestFor(2))
	recvUntil(t, chans[0], 0, 2)
	cancel()
	for _, ch := range chans {
		recvUntilClosed(t, ch)
	}
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before watching, %d after all watches ended\n%s",
				base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling for a condition, not asserting on time
	}
}
