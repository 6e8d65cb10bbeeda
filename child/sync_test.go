package child

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

func TestMothershipURL(t *testing.T) {
	tests := []struct{ url, id, want string }{
		{"http://127.0.0.1:9000/", "abc", "http://127.0.0.1:9000"},
		{"", "abc123", "https://abc123.api.runpod.ai"},
		{"  ", " ", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := MothershipURL(tt.url, tt.id); got != tt.want {
			t.Errorf("MothershipURL(%q, %q) = %q, want %q", tt.url, tt.id, got, tt.want)
		}
	}
}

func TestNewSyncRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "not a url", "http://"} {
		if _, err := NewSync(Config{MothershipURL: u}); err == nil {
			t.Errorf("NewSync(%q): no error", u)
		}
	}
}

// v2 returns the runtime fixture with the embedder moved to newURL.
func withEmbedderURL(t testing.TB, m *manifest.Manifest, newURL string) []byte {
	return mustJSON(t, m.WithRuntime("embedder", manifest.Runtime{EndpointURLs: []string{newURL}, Status: manifest.StatusDeployed}))
}

func TestSyncAppliesAndFollowsParkedLongPoll(t *testing.T) {
	base := mustParse(t, fixture(t, "valid/pipeline-runtime.json"))
	f := newFakeMothership()
	f.publish(mustJSON(t, base))
	srv, client := startServer(t, f)

	var applied atomic.Int64
	cache := t.TempDir()
	s, err := NewSync(Config{Identity: "api", Instance: "api-1", MothershipURL: srv.URL, APIKey: "k",
		CacheDir: cache, PollWait: 5 * time.Second, HTTPClient: client, Logger: quietLogger(),
		OnApply: func(m *manifest.Manifest, v int64) {
			if m.Validate() != nil {
				t.Error("OnApply got an invalid manifest")
			}
			applied.Store(v)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Ready() {
		t.Fatal("ready before any manifest")
	}
	runSync(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Version() != 1 || applied.Load() != 1 || s.Current().Resources["embedder"].EndpointURL != base.Resources["embedder"].EndpointURL {
		t.Fatalf("version %d, applied %d", s.Version(), applied.Load())
	}

	// The loop parks a long poll; a publish during it is applied at once.
	eventually(t, "a parked long poll", func() bool { return f.parked.Load() == 1 })
	h := f.lastHeader()
	for k, want := range map[string]string{
		"Authorization":            "Bearer k",
		wire.HeaderResource:        "api",
		wire.HeaderInstance:        "api-1",
		wire.HeaderAppliedVersion:  "1",
		wire.HeaderRejectedVersion: "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	f.publish(withEmbedderURL(t, base, "http://127.0.0.1:1/v2"))
	eventually(t, "version 2 applied", func() bool { return s.Version() == 2 && applied.Load() == 2 })
	if got := s.Current().Resources["embedder"].EndpointURL; got != "http://127.0.0.1:1/v2" {
		t.Fatalf("embedder URL %q", got)
	}

	// The applied copy is the last-known-good file, private to the user.
	path := cachePath(cache, "api")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v, want 0600", fi.Mode().Perm())
	}
	sn, err := readCache(path)
	if err != nil || sn == nil || sn.version != 2 {
		t.Fatalf("cache: %+v, %v", sn, err)
	}
}

func TestSyncRejectsInvalidManifest(t *testing.T) {
	good := fixture(t, "valid/pipeline-runtime.json")
	f := newFakeMothership()
	f.publish(good)
	srv, client := startServer(t, f)
	var applies atomic.Int64
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, PollWait: 5 * time.Second,
		HTTPClient: client, Logger: quietLogger(),
		OnApply: func(*manifest.Manifest, int64) { applies.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	runSync(t, s)
	eventually(t, "v1", func() bool { return s.Version() == 1 })
	before := s.Current()

	f.publish(fixture(t, "invalid/version-unsupported.json")) // v2: invalid
	eventually(t, "the rejection reported", func() bool {
		h := f.lastHeader()
		return h.Get(wire.HeaderRejectedVersion) == "2" && f.parked.Load() == 1
	})
	h := f.lastHeader()
	if h.Get(wire.HeaderRejectedReason) == "" || h.Get(wire.HeaderAppliedVersion) != "1" {
		t.Errorf("headers after rejection: %v", h)
	}
	if s.Current() != before || s.Version() != 1 || applies.Load() != 1 {
		t.Fatal("an invalid manifest replaced the one in use")
	}
	// The loop parks on the rejected version instead of refetching it.
	if n := f.requests.Load(); n > 4 {
		t.Errorf("%d requests: the rejected version was fetched again and again", n)
	}

	f.publish(good) // v3: valid again
	eventually(t, "v3", func() bool { return s.Version() == 3 })
	eventually(t, "next poll", func() bool { return f.parked.Load() == 1 })
	if h := f.lastHeader(); h.Get(wire.HeaderRejectedVersion) != "" {
		t.Errorf("still reporting a rejection after a good version: %v", h)
	}
}

func TestSyncSurvivesMothershipGoingAway(t *testing.T) {
	f := newFakeMothership()
	f.publish(fixture(t, "valid/pipeline-runtime.json"))
	srv, client := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, PollWait: time.Second,
		HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(s)
	runSync(t, s)
	eventually(t, "v1", func() bool { return s.Version() == 1 })
	m := s.Current()

	f.setStatus(http.StatusServiceUnavailable)
	n := f.requests.Load()
	eventually(t, "failed polls", func() bool { return f.requests.Load() >= n+5 })
	if s.Current() != m || !s.Ready() {
		t.Fatal("lost the manifest when the mothership failed")
	}
	// And it closes entirely: requests fail at the socket; the copy stays.
	srv.CloseClientConnections()
	srv.Close()
	if s.Current() != m {
		t.Fatal("lost the manifest when the mothership went away")
	}
}

func TestSyncBootsFromCacheWithMothershipDown(t *testing.T) {
	cache := t.TempDir()
	m := mustParse(t, fixture(t, "valid/pipeline-runtime.json"))
	if err := saveCache(cachePath(cache, "api"), m, 7); err != nil {
		t.Fatal(err)
	}
	down, client := startServer(t, http.NotFoundHandler())
	down.Close()

	var applied atomic.Int64
	s, err := NewSync(Config{Identity: "api", MothershipURL: down.URL, CacheDir: cache, HTTPClient: client,
		Logger: quietLogger(), OnApply: func(_ *manifest.Manifest, v int64) { applied.Store(v) }})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Ready() || s.Version() != 7 || applied.Load() != 7 {
		t.Fatalf("ready %v version %d applied %d", s.Ready(), s.Version(), applied.Load())
	}
	r := NewRouter(RouterConfig{Identity: "api", Sync: s, Logger: quietLogger()})
	tg, err := r.Route(context.Background(), "embed")
	if err != nil || tg == nil || tg.URLs[0] != "https://api.runpod.ai/v2/q7emb3dd1ng" {
		t.Fatalf("route from cache: %+v, %v", tg, err)
	}
	fastBackoff(s)
	runSync(t, s) // fails against the dead mothership; keeps the copy
	if err := s.WaitReady(context.Background()); err != nil || s.Version() != 7 {
		t.Fatal(err)
	}
}

func TestSyncIgnoresBadCache(t *testing.T) {
	for name, content := range map[string]string{
		"not json":         "{",
		"invalid manifest": `{"version":1,"manifest":{"version":"9.9","resources":{}}}`,
		"negative version": `{"version":-1,"manifest":{"resources":{}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(cachePath(dir, "api"), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := NewSync(Config{Identity: "api", MothershipURL: "http://127.0.0.1:1", CacheDir: dir, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if s.Ready() {
				t.Fatal("applied a bad cache")
			}
		})
	}
}

func TestCachePathIsPerIdentity(t *testing.T) {
	if a, b := cachePath("d", "api"), cachePath("d", "embedder"); a == b {
		t.Fatal("identities share a cache file")
	}
	if p := cachePath("d", "../../etc/x"); filepath.Dir(p) != "d" {
		t.Fatalf("identity escapes the cache dir: %s", p)
	}
}

func TestSyncWaitsForFirstPublish(t *testing.T) {
	f := newFakeMothership() // nothing published: 404 Manifest not found
	srv, client := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(s)
	runSync(t, s)
	eventually(t, "a few 404s", func() bool { return f.requests.Load() >= 3 })
	if s.Ready() {
		t.Fatal("ready without a manifest")
	}
	f.publish(fixture(t, "valid/minimal.json"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWaitReadyFanIn: a thousand callers waiting for the first manifest
// cause one request upstream.
func TestWaitReadyFanIn(t *testing.T) {
	body := fixture(t, "valid/pipeline-runtime.json")
	release := make(chan struct{})
	var requests atomic.Int64
	srv, client := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		<-release
		w.Header().Set(wire.HeaderManifestVersion, "1")
		wire.WriteRawJSON(w, http.StatusOK, body)
	}))
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs <- s.WaitReady(ctx)
		})
	}
	eventually(t, "the first request", func() bool { return requests.Load() == 1 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := requests.Load(); got != 1 {
		t.Fatalf("%d waiters made %d requests, want 1", n, got)
	}
}

// TestWaitReadyFanInWithRun: with the loop running, waiters make no
// requests of their own: one fetch before the first manifest, in all.
func TestWaitReadyFanInWithRun(t *testing.T) {
	f := newFakeMothership()
	f.publish(fixture(t, "valid/pipeline-runtime.json"))
	srv, client := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, PollWait: 5 * time.Second,
		HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 1000 {
		wg.Go(func() {
			if err := s.WaitReady(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	runSync(t, s)
	wg.Wait()
	eventually(t, "the long poll", func() bool { return f.parked.Load() == 1 })
	before := 0
	for _, h := range f.allHeaders() {
		if h.Get(wire.HeaderAppliedVersion) == "0" {
			before++
		}
	}
	if before != 1 {
		t.Fatalf("%d fetches before the first manifest, want 1", before)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	f := newFakeMothership()
	srv, client := startServer(t, f)
	s, err := NewSync(Config{Identity: "api", MothershipURL: srv.URL, HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestRunTwice(t *testing.T) {
	s, err := NewSync(Config{MothershipURL: "http://127.0.0.1:1", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	eventually(t, "running", s.running.Load)
	if err := s.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSyncTTLMode: a mothership without X-Flash-Manifest-Version (the
// Python original) is re-read every TTL, never in a busy loop.
func TestSyncTTLMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		body := fixture(t, "valid/pipeline-runtime.json")
		var mu sync.Mutex
		var times []time.Duration
		start := time.Now()
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			times = append(times, time.Since(start))
			mu.Unlock()
			wire.WriteRawJSON(w, http.StatusOK, body) // no version header
		})
		var applies atomic.Int64
		s, err := NewSync(Config{Identity: "api", MothershipURL: "http://mothership", TTL: 10 * time.Second,
			HTTPClient: &http.Client{Transport: handlerTransport{h}}, Logger: quietLogger(),
			OnApply: func(*manifest.Manifest, int64) { applies.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(35 * time.Second)
		cancel()
		<-done

		want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 30 * time.Second}
		if len(times) != len(want) {
			t.Fatalf("requests at %v, want %v", times, want)
		}
		for i := range want {
			if times[i] != want[i] {
				t.Fatalf("requests at %v, want %v", times, want)
			}
		}
		if applies.Load() != 1 || s.Version() != 0 || !s.Ready() {
			t.Fatalf("applies %d version %d", applies.Load(), s.Version())
		}
	})
}

// TestSyncBackoff: failures back off exponentially from 0.5 s to the 30 s
// cap (jitter disabled to see the envelope), and a success resets it.
func TestSyncBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type hit struct {
			at     time.Time
			failed bool
		}
		var mu sync.Mutex
		var hits []hit
		var fail atomic.Bool
		fail.Store(true)
		body := fixture(t, "valid/minimal.json")
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			failed := fail.Load()
			mu.Lock()
			hits = append(hits, hit{time.Now(), failed})
			mu.Unlock()
			switch {
			case failed:
				wire.WriteError(w, http.StatusInternalServerError, "down")
			case r.URL.Query().Get("version") == "1": // hold the long poll
				select {
				case <-time.After(60 * time.Second):
					w.WriteHeader(http.StatusNotModified)
				case <-r.Context().Done():
				}
			default:
				w.Header().Set(wire.HeaderManifestVersion, "1")
				wire.WriteRawJSON(w, http.StatusOK, body)
			}
		})
		s, err := NewSync(Config{Identity: "api", MothershipURL: "http://mothership", PollWait: 60 * time.Second,
			HTTPClient: &http.Client{Transport: handlerTransport{h}}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		s.jitter = func(d time.Duration) time.Duration { return d }
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(2 * time.Minute)

		gaps := func(from int) []time.Duration {
			mu.Lock()
			defer mu.Unlock()
			var out []time.Duration
			for i := from + 1; i < len(hits) && hits[i].failed; i++ {
				out = append(out, hits[i].at.Sub(hits[i-1].at))
			}
			return out
		}
		want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
			8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
		if g := gaps(0); len(g) < len(want) || !slices.Equal(g[:len(want)], want) {
			t.Fatalf("gaps %v, want prefix %v", g, want)
		}

		// Recover: the manifest arrives and a long poll is held.
		fail.Store(false)
		time.Sleep(31 * time.Second)
		if !s.Ready() {
			t.Fatal("not recovered")
		}
		// Fail again: the backoff starts over at 0.5 s.
		mu.Lock()
		from := len(hits)
		mu.Unlock()
		fail.Store(true)
		time.Sleep(2 * time.Minute)
		if g := gaps(from); len(g) < 2 || !slices.Equal(g[:2], want[:2]) {
			t.Fatalf("after a success, gaps %v; want 0.5s, 1s after the first failure", g)
		}
		cancel()
		<-done

		// Full jitter by default: within [0, d].
		for range 100 {
			if d := fullJitter(time.Second); d < 0 || d > time.Second {
				t.Fatalf("jitter %v", d)
			}
		}
	})
}

// TestHandle drives the answer handling directly, one case per rule.
func TestHandle(t *testing.T) {
	good := fixture(t, "valid/minimal.json")
	var pretty bytes.Buffer // the same manifest, other bytes
	if err := json.Indent(&pretty, good, "", "    "); err != nil || bytes.Equal(pretty.Bytes(), good) {
		t.Fatalf("indent: %v", err)
	}
	ver := func(v int) http.Header {
		h := http.Header{}
		h.Set(wire.HeaderManifestVersion, strconv.Itoa(v))
		return h
	}
	newSync := func(t *testing.T, ready bool) *Sync {
		s, err := NewSync(Config{MothershipURL: "http://127.0.0.1:1", PollWait: 60 * time.Second, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		s.jitter = func(d time.Duration) time.Duration { return d }
		if ready {
			s.handle(200, ver(1), good, time.Second)
		}
		return s
	}
	tests := []struct {
		name    string
		ready   bool
		status  int
		header  http.Header
		body    string
		elapsed time.Duration
		want    time.Duration
		version int64
	}{
		{"first manifest, versioned: long poll at once", false, 200, ver(1), string(good), 0, 0, 1},
		{"304 after a held poll: poll again", true, 304, nil, "", 30 * time.Second, 0, 1},
		{"304 too fast: back off", true, 304, nil, "", time.Millisecond, backoffBase, 1},
		{"same version again, fast: back off", true, 200, ver(1), string(good), time.Millisecond, backoffBase, 1},
		{"same version pretty-printed, fast: back off", true, 200, ver(1), pretty.String(), time.Millisecond, backoffBase, 1},
		{"unversioned: TTL", false, 200, nil, string(good), 0, DefaultTTL, 0},
		{"no manifest yet", false, 404, nil, `{"error":"Manifest not found"}`, 0, backoffBase, 0},
		{"401", true, 401, nil, `{"error":"bad key"}`, 0, backoffBase, 1},
		{"429 with Retry-After", true, 429, http.Header{"Retry-After": {"7"}}, "", 0, 7 * time.Second, 1},
		{"400: only at the cap", true, 400, nil, `{"error":"bad version"}`, 0, backoffCap, 1},
		{"403: only at the cap", true, 403, nil, "", 0, backoffCap, 1},
		{"500", true, 500, nil, "", 0, backoffBase, 1},
		{"bad version header", true, 200, http.Header{wire.HeaderManifestVersion: {"-3"}}, string(good), 0, backoffBase, 1},
		{"invalid manifest", true, 200, ver(2), `{"resources":7}`, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSync(t, tt.ready)
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			if got := s.handle(tt.status, h, []byte(tt.body), tt.elapsed); got != tt.want {
				t.Errorf("wait %v, want %v", got, tt.want)
			}
			if s.Version() != tt.version {
				t.Errorf("version %d, want %d", s.Version(), tt.version)
			}
		})
	}
}

func TestRejectReasonIsHeaderSafe(t *testing.T) {
	_, err := manifest.Parse([]byte(`{"version":"2","resources":{"a b\n":{}}}`))
	r := rejectReason(err)
	if r == "" || len(r) > maxReasonLen {
		t.Fatalf("reason %q", r)
	}
	for _, c := range []byte(r) {
		if c < 0x20 || c > 0x7e {
			t.Fatalf("unsafe byte in %q", r)
		}
	}
}

// A nudge cuts a long backoff short: after an outage the next fetch comes
// within nudgeGap instead of at the end of a 30 s backoff.
func TestSyncNudgeCutsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fail atomic.Bool
		fail.Store(true)
		var hits atomic.Int64
		body := fixture(t, "valid/minimal.json")
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if fail.Load() {
				wire.WriteError(w, http.StatusInternalServerError, "down")
				return
			}
			if r.URL.Query().Get("version") == "1" {
				<-r.Context().Done() // hold the long poll
				return
			}
			w.Header().Set(wire.HeaderManifestVersion, "1")
			wire.WriteRawJSON(w, http.StatusOK, body)
		})
		s, err := NewSync(Config{Identity: "api", MothershipURL: "http://mothership",
			HTTPClient: &http.Client{Transport: handlerTransport{h}}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		s.jitter = func(d time.Duration) time.Duration { return d }
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(time.Minute) // the backoff has reached its 30 s cap
		fail.Store(false)
		before := hits.Load()
		s.Nudge()
		time.Sleep(nudgeGap + time.Millisecond)
		synctest.Wait()
		if hits.Load() == before || !s.Ready() {
			t.Fatalf("nudge did not cause a fetch (hits %d → %d, ready %v)", before, hits.Load(), s.Ready())
		}
		cancel()
		<-done
	})
}

// A mothership whose store is down serves its local file as version 0: the
// child uses it, and looks again soon for the first real version.
func TestSyncAppliesFallbackVersionZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var version atomic.Int64 // 0: the fallback
		body := fixture(t, "valid/minimal.json")
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v := version.Load()
			if r.URL.Query().Get("version") == strconv.FormatInt(v, 10) && v > 0 {
				<-r.Context().Done()
				return
			}
			w.Header().Set(wire.HeaderManifestVersion, strconv.FormatInt(v, 10))
			wire.WriteRawJSON(w, http.StatusOK, body)
		})
		s, err := NewSync(Config{Identity: "api", MothershipURL: "http://mothership",
			HTTPClient: &http.Client{Transport: handlerTransport{h}}, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		synctest.Wait()
		if !s.Ready() || s.Version() != 0 {
			t.Fatalf("fallback not applied: ready %v version %d", s.Ready(), s.Version())
		}
		version.Store(1)
		time.Sleep(fallbackRecheck + time.Millisecond)
		synctest.Wait()
		if s.Version() != 1 {
			t.Fatalf("version %d after the recheck, want 1", s.Version())
		}
		cancel()
		<-done
	})
}

// TestSyncMovesToAnotherMothership: with several motherships listed, a
// child polls one; when it fails (5xx, then gone) the child moves to another
// and gets the versions published there, none missed.
func TestSyncMovesToAnotherMothership(t *testing.T) {
	mf := fixture(t, "valid/pipeline-runtime.json")
	a, b := newFakeMothership(), newFakeMothership()
	a.publish(mf)
	b.publish(mf)
	srvA, client := startServer(t, a)
	srvB, _ := startServer(t, b)
	// Whichever the child starts on, it must end up on the other.
	s, err := NewSync(Config{Identity: "api", MothershipURL: srvA.URL + "," + srvB.URL + "/", PollWait: time.Second,
		HTTPClient: client, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(s)
	runSync(t, s)
	eventually(t, "v1", func() bool { return s.Version() == 1 })
	first, firstSrv, other := a, srvA, b
	if s.bases[s.at] == srvB.URL {
		first, firstSrv, other = b, srvB, a
	}
	first.setStatus(http.StatusServiceUnavailable)
	firstSrv.CloseClientConnections()
	other.publish(withEmbedderURL(t, s.Current(), "http://127.0.0.1:9"))
	eventually(t, "v2 from the other mothership", func() bool { return s.Version() == 2 })
	if got := s.Current().Resources["embedder"].URLs(); len(got) != 1 || got[0] != "http://127.0.0.1:9" {
		t.Errorf("embedder URLs %v after moving", got)
	}
}

func TestNewSyncMothershipList(t *testing.T) {
	for _, u := range []string{"http://a:1,", "http://a:1,ftp://b", ",http://a:1"} {
		if _, err := NewSync(Config{MothershipURL: u}); err == nil {
			t.Errorf("NewSync(%q): no error", u)
		}
	}
	seen := map[int]bool{}
	for i := range 64 {
		s, err := NewSync(Config{Identity: "r", Instance: fmt.Sprint("i", i), MothershipURL: "http://a:1, http://b:2/,http://c:3"})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.bases) != 3 || s.bases[1] != "http://b:2" {
			t.Fatalf("bases %q", s.bases)
		}
		seen[s.at] = true
	}
	if len(seen) != 3 {
		t.Errorf("64 children started on %d of 3 motherships, want all three", len(seen))
	}
}

// TestReadBounded: the announced size only sizes the buffer; what is read
// and the bound do not depend on it, even when it is wrong.
func TestReadBounded(t *testing.T) {
	body := strings.Repeat("x", 1000)
	for _, c := range []struct {
		name        string
		body        string
		limit, size int64
		tooLarge    bool
	}{
		{"size right", body, 2000, 1000, false},
		{"size unknown", body, 2000, -1, false},
		{"size too small", body, 2000, 10, false},
		{"size too large", body, 2000, 5000, false},
		{"at the limit", body, 1000, 1000, false},
		{"over the limit", body, 999, 1000, true},
		{"over the limit, size unknown", body, 999, -1, true},
		{"empty", "", 10, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readBounded(strings.NewReader(c.body), c.limit, c.size)
			if c.tooLarge {
				if !errors.Is(err, errTooLarge) {
					t.Fatalf("err = %v, want errTooLarge", err)
				}
				return
			}
			if err != nil || string(got) != c.body {
				t.Fatalf("read %d bytes, err %v; want %d bytes", len(got), err, len(c.body))
			}
		})
	}
}
