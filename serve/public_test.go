package serve

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flash-go/flash/internal/spanring"
	"github.com/flash-go/flash/internal/telemetry"
)

// TestPublicSkipsOnlyItsRequests: Config.Public lets its requests through
// without the key; every other request still needs it.
func TestPublicSkipsOnlyItsRequests(t *testing.T) {
	s, err := New(Config{Identity: "t", APIKey: "k", Logger: discard(),
		Public: func(r *http.Request) bool { return r.URL.Path == "/page" }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	s.Handle("GET /page", ok)
	s.Handle("GET /data", ok)
	for _, tc := range []struct {
		path, key string
		want      int
	}{
		{"/page", "", http.StatusOK},
		{"/data", "", http.StatusUnauthorized},
		{"/data", "k", http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("GET %s (key %q): %d, want %d", tc.path, tc.key, rec.Code, tc.want)
		}
	}
}

// TestUntracedMakesNoSpan: a request Config.Untraced names, or a health
// check, is served with no span; the others get theirs.
func TestUntracedMakesNoSpan(t *testing.T) {
	ring := spanring.New(100, 1<<20)
	collector := httptest.NewServer(spanring.NewReceiver(ring))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	tr, err := telemetry.New(t.Context(), "t")
	if err != nil || tr == nil {
		t.Fatalf("tracer: %v %v", tr, err)
	}
	s, err := New(Config{Identity: "t", Logger: discard(), Tracer: tr,
		Untraced: func(r *http.Request) bool { return r.URL.Path == "/quiet" }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	s.Handle("GET /quiet", ok)
	s.Handle("GET /loud", ok)
	for _, path := range []string{"/quiet", "/loud", "/ping", "/quiet"} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code/100 != 2 {
			t.Fatalf("GET %s: %d", path, rec.Code)
		}
	}
	if err := tr.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tr := range ring.Recent(10) {
		names = append(names, tr.Root)
	}
	if len(names) != 1 || names[0] != "GET /loud" {
		t.Fatalf("spans %q, want only GET /loud's", names)
	}
}
