package child

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fixture reads a manifest from the project's testdata.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/manifests/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, b []byte) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustJSON(t testing.TB, m *manifest.Manifest) []byte {
	t.Helper()
	b, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeMothership serves GET /manifest with the long-poll contract of SPEC
// §4.1, or as the Python original did (noVersion: no version header, no
// long poll).
type fakeMothership struct {
	mu        sync.Mutex
	body      []byte // nil → 404 Manifest not found
	version   int64
	changed   chan struct{}
	noVersion bool
	status    int // when set, every request gets this status
	headers   []http.Header

	requests atomic.Int64
	parked   atomic.Int64
}

func newFakeMothership() *fakeMothership {
	return &fakeMothership{changed: make(chan struct{})}
}

func (f *fakeMothership) publish(body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.body = body
	f.version++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeMothership) setStatus(code int) {
	f.mu.Lock()
	f.status = code
	f.mu.Unlock()
}

func (f *fakeMothership) lastHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.headers) == 0 {
		return nil
	}
	return f.headers[len(f.headers)-1]
}

func (f *fakeMothership) allHeaders() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.headers...)
}

func (f *fakeMothership) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	status := f.status
	f.mu.Unlock()
	if r.URL.Path != "/manifest" {
		wire.WriteError(w, http.StatusNotFound, "not found")
		return
	}
	if status != 0 {
		wire.WriteError(w, status, "forced")
		return
	}
	asked, _ := strconv.ParseInt(r.URL.Query().Get("version"), 10, 64)
	wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
	for {
		f.mu.Lock()
		body, version, changed, noVersion := f.body, f.version, f.changed, f.noVersion
		f.mu.Unlock()
		if body == nil {
			wire.WriteError(w, http.StatusNotFound, "Manifest not found", "detail", "nothing published")
			return
		}
		if noVersion || r.URL.Query().Get("version") == "" || asked != version || wait <= 0 {
			if !noVersion {
				w.Header().Set(wire.HeaderManifestVersion, strconv.FormatInt(version, 10))
			}
			wire.WriteRawJSON(w, http.StatusOK, body)
			return
		}
		f.parked.Add(1)
		t := time.NewTimer(time.Duration(wait) * time.Second)
		select {
		case <-changed:
			f.parked.Add(-1)
			t.Stop()
			continue
		case <-t.C:
			f.parked.Add(-1)
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			f.parked.Add(-1)
			t.Stop()
			return
		}
	}
}

// startServer runs h on loopback and returns its URL and a client whose
// idle connections are closed at the end of the test.
func startServer(t testing.TB, h http.Handler) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(h)
	tr := wire.NewTransport()
	client := &http.Client{Transport: tr}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	return srv, client
}

// handlerTransport serves requests with a handler in memory: for
// testing/synctest bubbles, where real sockets would keep time from moving.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, r)
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// runSync starts s.Run and stops it at the end of the test.
func runSync(t testing.TB, s *Sync) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// fastBackoff makes a Sync's backoff tiny, for tests of outcomes, not timing.
func fastBackoff(s *Sync) { s.jitter = func(d time.Duration) time.Duration { return d / 500 } }
