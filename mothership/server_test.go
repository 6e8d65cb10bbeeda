package mothership

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/store"
)

func TestManifestNotFound(t *testing.T) {
	h := newHarness(t)
	resp, body := h.get(t, "/manifest", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if got["error"] != "Manifest not found" || got["detail"] == "" {
		t.Fatalf("body %q", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}

	// A published manifest without resources is not found either.
	empty, err := manifest.Parse([]byte(`{"version":"1.0","resources":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Publish(t.Context(), empty); err != nil {
		t.Fatal(err)
	}
	resp, body = h.get(t, "/manifest", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "no resources") {
		t.Fatalf("empty resources: %d %s", resp.StatusCode, body)
	}
	if v := resp.Header.Get(wire.HeaderManifestVersion); v != "1" {
		t.Fatalf("version header %q, want 1", v)
	}
}

func TestManifestServed(t *testing.T) {
	h := newHarness(t)
	mf := buildManifest(t, res{name: "gpu"}, res{name: "api", lb: true})
	v, err := h.m.Publish(t.Context(), mf)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := h.st.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	resp, body := h.get(t, "/manifest", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if string(body) != string(stored.Manifest) {
		t.Fatalf("body is not the published bytes:\n%s\n%s", body, stored.Manifest)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if got := resp.Header.Get(wire.HeaderManifestVersion); got != strconv.FormatInt(v, 10) {
		t.Fatalf("version header %q, want %d", got, v)
	}
	etag := resp.Header.Get("ETag")
	if len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' || strings.HasPrefix(etag, "W/") {
		t.Fatalf("ETag %q is not a strong quoted tag", etag)
	}
	// The local file follows every published version.
	if _, err := manifest.Load(h.m.cfg.ManifestPath); err != nil {
		t.Fatalf("local manifest file: %v", err)
	}

	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		resp, body := h.get(t, "/manifest", map[string]string{"If-None-Match": inm})
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Fatalf("If-None-Match %s: %d %q", inm, resp.StatusCode, body)
		}
	}
	resp, _ = h.get(t, "/manifest", map[string]string{"If-None-Match": `"stale"`})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stale ETag: %d", resp.StatusCode)
	}
	// Long poll on another version answers at once.
	resp, _ = h.get(t, "/manifest?version=0&wait=300", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("long poll on an old version: %d", resp.StatusCode)
	}

	// A new version changes the ETag.
	if _, err := h.m.Publish(t.Context(), mf.WithTop("generated_at", "2026-01-01T00:00:00Z")); err != nil {
		t.Fatal(err)
	}
	resp, _ = h.get(t, "/manifest", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag {
		t.Fatalf("after a new version: %d %s", resp.StatusCode, resp.Header.Get("ETag"))
	}
}

func TestManifestBadParams(t *testing.T) {
	h := newHarness(t)
	for _, q := range []string{"version=x", "version=-1", "wait=abc", "wait=-5", "wait=", "version=1&wait=NaN", "version=99999999999999999999"} {
		resp, body := h.get(t, "/manifest?"+q, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d", q, resp.StatusCode)
			continue
		}
		var e map[string]string
		if err := json.Unmarshal(body, &e); err != nil || e["error"] == "" {
			t.Errorf("%s: body %q", q, body)
		}
	}
}

// synctestMothership returns a mothership on an in-memory store, for use
// inside a synctest bubble, with a manifest published at version 1.
func synctestMothership(t *testing.T, rnd float64) (*Mothership, *manifest.Manifest) {
	m, err := New(t.Context(), Config{App: "app", Store: newMemStore(), Logger: quiet, MaxWait: 60 * time.Second,
		Rand: func() float64 { return rnd }})
	if err != nil {
		t.Fatal(err)
	}
	mf := buildManifest(t, res{name: "gpu"})
	if _, err := m.Publish(context.Background(), mf); err != nil {
		t.Fatal(err)
	}
	return m, mf
}

type pollResult struct {
	code    int
	version string
	after   time.Duration
}

func poll(m *Mothership, query string) <-chan pollResult {
	out := make(chan pollResult, 1)
	start := time.Now()
	go func() {
		rec := httptest.NewRecorder()
		m.serveManifest(rec, httptest.NewRequest(http.MethodGet, "/manifest?"+query, nil))
		out <- pollResult{rec.Code, rec.Header().Get(wire.HeaderManifestVersion), time.Since(start)}
	}()
	return out
}

func TestLongPollReturnsOnPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, mf := synctestMothership(t, 0)
		var polls []<-chan pollResult
		for range 3 {
			polls = append(polls, poll(m, "version=1&wait=30"))
		}
		synctest.Wait()
		for _, p := range polls {
			select {
			case r := <-p:
				t.Fatalf("answered before a publish: %+v", r)
			default:
			}
		}
		time.Sleep(5 * time.Second)
		if _, err := m.Publish(context.Background(), mf.WithTop("generated_at", "x")); err != nil {
			t.Fatal(err)
		}
		for _, p := range polls {
			r := <-p
			if r.code != http.StatusOK || r.version != "2" || r.after != 5*time.Second {
				t.Fatalf("got %+v, want 200 version 2 after 5s", r)
			}
		}
	})
}

func TestLongPollTimesOut(t *testing.T) {
	cases := []struct {
		name   string
		rnd    float64
		query  string
		lo, hi time.Duration
	}{
		{"no shortening", 0, "version=1&wait=30", 30 * time.Second, 30 * time.Second},
		{"most shortening", 0.999999, "version=1&wait=30", 27 * time.Second, 27*time.Second + time.Millisecond},
		{"capped at MaxWait", 0, "version=1&wait=100000", 60 * time.Second, 60 * time.Second},
		{"duration syntax", 0.5, "version=1&wait=10s", 9500 * time.Millisecond, 9500 * time.Millisecond},
		{"fractional seconds", 0, "version=1&wait=1.5", 1500 * time.Millisecond, 1500 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m, _ := synctestMothership(t, c.rnd)
				r := <-poll(m, c.query)
				if r.code != http.StatusNotModified || r.version != "1" {
					t.Fatalf("got %+v, want 304 at version 1", r)
				}
				if r.after < c.lo || r.after > c.hi {
					t.Fatalf("answered after %v, want within [%v, %v]", r.after, c.lo, c.hi)
				}
			})
		})
	}
}

func TestLongPollEndsWithRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := synctestMothership(t, 0)
		p := poll(m, "version=1&wait=60")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { m.Run(ctx); close(done) }()
		synctest.Wait()
		cancel()
		<-done
		if r := <-p; r.code != http.StatusNotModified || r.after != 0 {
			t.Fatalf("parked poll after Run ended: %+v", r)
		}
	})
}

func TestLongPollNoManifestYet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := New(t.Context(), Config{Store: newMemStore(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		p := poll(m, "version=0&wait=30")
		time.Sleep(time.Second)
		if _, err := m.Publish(context.Background(), buildManifest(t, res{name: "gpu"})); err != nil {
			t.Fatal(err)
		}
		if r := <-p; r.code != http.StatusOK || r.version != "1" || r.after != time.Second {
			t.Fatalf("got %+v", r)
		}
	})
}

func TestReportsRecorded(t *testing.T) {
	h := newHarness(t)
	h.run(t)
	if _, err := h.m.Publish(t.Context(), buildManifest(t, res{name: "gpu"})); err != nil {
		t.Fatal(err)
	}
	h.get(t, "/manifest", map[string]string{
		wire.HeaderResource: "gpu", wire.HeaderInstance: "gpu-0", wire.HeaderAppliedVersion: "1"})
	h.get(t, "/manifest?version=1", map[string]string{
		wire.HeaderResource: "gpu", wire.HeaderInstance: "gpu-1", wire.HeaderAppliedVersion: "1",
		wire.HeaderRejectedVersion: "2", wire.HeaderRejectedReason: "invalid manifest: bad route"})
	eventually(t, "reports in the store", func() bool {
		is, err := h.st.Instances(t.Context())
		return err == nil && len(is) == 2
	})
	is, _ := h.st.Instances(t.Context())
	if is[0].Instance != "gpu-0" || is[0].AppliedVersion != 1 || is[0].LastSeen.IsZero() {
		t.Fatalf("instance 0: %+v", is[0])
	}
	if is[1].RejectedVersion != 2 || is[1].RejectReason != "invalid manifest: bad route" {
		t.Fatalf("instance 1: %+v", is[1])
	}
}

func TestBootServesLocalFileWhenStoreDown(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/flash_manifest.json"
	mf := buildManifest(t, res{name: "gpu"})
	if err := manifest.Save(path, mf, 0o644); err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{Store: openSQLite(t)}
	down := error(errBoom)
	fs.err.Store(&down)
	h := newHarness(t, func(c *Config) { c.Store, c.ManifestPath, c.TTL = fs, path, time.Hour })

	resp, body := h.get(t, "/manifest", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(wire.HeaderManifestVersion) != "0" {
		t.Fatalf("fallback: %d %s", resp.StatusCode, body)
	}
	if _, err := manifest.Parse(body); err != nil {
		t.Fatal(err)
	}
	// A publish elsewhere while we could not read; then the store comes back.
	if _, err := fs.Store.Publish(t.Context(), 0, mustJSON(t, buildManifest(t, res{name: "gpu"}, res{name: "cpu"}))); err != nil {
		t.Fatal(err)
	}
	fs.err.Store(nil)
	h.run(t) // retries the store soon after a failed boot
	eventually(t, "version 1 served", func() bool { _, v := h.m.Current(); return v == 1 })
	eventually(t, "local file rewritten", func() bool {
		got, err := manifest.Load(path)
		return err == nil && len(got.Resources) == 2
	})
}

func TestRunFollowsStoreAndInvalidate(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TTL = time.Hour })
	h.run(t)
	// Another writer publishes: the store's notification brings it.
	if _, err := h.st.Publish(t.Context(), 0, mustJSON(t, buildManifest(t, res{name: "gpu"}))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "version 1 from Watch", func() bool { _, v := h.m.Current(); return v == 1 })

	// Without notification (a plain store), Invalidate forces the read.
	ms := newMemStore()
	m, err := New(t.Context(), Config{Store: ms, Logger: quiet, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Publish(t.Context(), 0, mustJSON(t, buildManifest(t, res{name: "gpu"}))); err != nil {
		t.Fatal(err)
	}
	if _, v := m.Current(); v != 0 {
		t.Fatalf("version %d before invalidate", v)
	}
	mux := http.NewServeMux()
	m.Register(mux.Handle)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/flash/invalidate", nil))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"version":1}` {
		t.Fatalf("invalidate: %d %s", rec.Code, rec.Body)
	}
	// A store failure keeps the last good copy and says so.
	ms.FailLatest(errBoom)
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/flash/invalidate", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("invalidate with the store down: %d", rec.Code)
	}
	if mf, v := m.Current(); v != 1 || mf == nil {
		t.Fatalf("last good copy lost: %d", v)
	}
}

func TestTTLRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMemStore()
		m, err := New(t.Context(), Config{Store: ms, Logger: quiet, TTL: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { m.Run(ctx); close(done) }()
		synctest.Wait()
		if _, err := ms.Publish(ctx, 0, mustJSON(t, buildManifest(t, res{name: "gpu"}))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if _, v := m.Current(); v != 0 {
			t.Fatalf("refreshed before the TTL: %d", v)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if _, v := m.Current(); v != 1 {
			t.Fatalf("not refreshed after the TTL: %d", v)
		}
		cancel()
		<-done
	})
}

func mustJSON(t testing.TB, mf *manifest.Manifest) []byte {
	t.Helper()
	b, err := mf.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublishConflictReturnsToCaller: when another writer published first,
// Publish does not overwrite it with the same manifest: it returns
// store.ErrConflict, serves the store's latest, and the caller decides again.
func TestPublishConflictReturnsToCaller(t *testing.T) {
	h := newHarness(t)
	other := buildManifest(t, res{name: "x"})
	if _, err := h.st.Publish(t.Context(), 0, mustJSON(t, other)); err != nil {
		t.Fatal(err)
	}
	mine := buildManifest(t, res{name: "gpu"})
	v, err := h.m.Publish(t.Context(), mine)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("publish over another writer's version: %d %v, want ErrConflict", v, err)
	}
	if p, err := h.st.Latest(t.Context()); err != nil || p.Version != 1 || !bytes.Contains(p.Manifest, []byte(`"x"`)) {
		t.Fatalf("the other writer's version was replaced: v%d %s %v", p.Version, p.Manifest, err)
	}
	if cur, v := h.m.Current(); v != 1 || cur.Resources["x"] == nil {
		t.Fatalf("served v%d after the conflict, want the store's latest (1)", v)
	}
	// Deciding again from what is served now succeeds.
	if v, err := h.m.Publish(t.Context(), mine); err != nil || v != 2 {
		t.Fatalf("publish after re-reading: %d %v", v, err)
	}
	if _, err := h.m.Publish(t.Context(), nil); err == nil {
		t.Fatal("nil manifest published")
	}
	bad, err := manifest.Decode([]byte(`{"resources":{},"function_registry":{"f":"nope"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Publish(t.Context(), bad); err == nil {
		t.Fatal("invalid manifest published")
	}
}

func TestStatusShowsRestarts(t *testing.T) {
	h := newHarness(t)
	mustReconcile(t, h.m, buildManifest(t, res{name: "gpu"}))
	h.m.EndpointEvent("gpu", "exited", "pid 7: killed", false)
	h.m.EndpointEvent("gpu", "restarted", "pid 8", true)
	st := h.m.Status(t.Context())
	r := st.Resources["gpu"]
	if r.Restarts != 1 || !strings.Contains(r.LastEvent, "restarted: pid 8") {
		t.Fatalf("status %+v", r)
	}
}

// A child's unchanged report is not written to the store at every long poll.
func TestUnchangedReportsAreNotRewritten(t *testing.T) {
	in := newInstances(DefaultMaxInstances, quiet)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	report := func(applied string) {
		r := httptest.NewRequest("GET", "/manifest", nil)
		r.Header.Set("X-Flash-Resource", "api")
		r.Header.Set("X-Flash-Instance", "a1")
		r.Header.Set("X-Flash-Applied-Version", applied)
		in.record(r, clock)
	}
	report("3")
	if n := len(in.take()); n != 1 {
		t.Fatalf("first report: %d to write, want 1", n)
	}
	now = now.Add(time.Second)
	report("3")
	if n := len(in.take()); n != 0 {
		t.Fatalf("unchanged report: %d to write, want 0", n)
	}
	now = now.Add(time.Second)
	report("4")
	if n := len(in.take()); n != 1 {
		t.Fatalf("new version: %d to write, want 1", n)
	}
	now = now.Add(lastSeenRefresh)
	report("4")
	if n := len(in.take()); n != 1 {
		t.Fatalf("stale last-seen: %d to write, want 1", n)
	}
	if all, _ := in.snapshot(); !all[instanceKey{"api", "a1"}].LastSeen.Equal(now) {
		got := all[instanceKey{"api", "a1"}].LastSeen
		t.Fatalf("in-memory last seen %v, want %v", got, now)
	}
}
