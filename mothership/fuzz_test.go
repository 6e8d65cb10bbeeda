package mothership

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// FuzzLongPollQuery drives GET /manifest with arbitrary query strings: the
// answer is always 200, 304 or 400 (never a panic, never a park beyond the
// cap), and a parsed wait is never negative.
func FuzzLongPollQuery(f *testing.F) {
	for _, q := range []string{"", "version=1", "version=1&wait=30", "wait=1.5", "wait=10s", "version=-1",
		"version=1&wait=-1", "wait=NaN", "wait=1e308", "version=18446744073709551616", "version=1&version=2",
		"wait=%zz", "wait=+Inf", "wait=1h", "version=0&wait=0",
		"version=" + strings.Repeat("9", 300), "wait=" + strings.Repeat("0", 300) + "1", "version=1&wait=" + strings.Repeat("1", 33) + "s"} {
		f.Add(q)
	}
	m, err := New(f.Context(), Config{Store: newMemStore(), Logger: quiet, MaxWait: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := m.Publish(f.Context(), buildManifest(f, res{name: "gpu"})); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query string) {
		if q, err := url.ParseQuery(query); err == nil {
			if lp, err := parseLongPoll(q); err == nil {
				if lp.wait < 0 || lp.wait > maxWaitParam || (lp.hasVersion && lp.version < 0) {
					t.Fatalf("%q parsed to %+v", query, lp)
				}
				if w := m.herdWait(lp.wait); w < 0 || w > m.cfg.MaxWait {
					t.Fatalf("%q: herd wait %v", query, w)
				}
			}
		}
		req := httptest.NewRequest(http.MethodGet, "/manifest", nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		m.serveManifest(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusNotModified:
			if rec.Header().Get(wire.HeaderManifestVersion) != "1" {
				t.Fatalf("%q: %d without version header", query, rec.Code)
			}
		case http.StatusBadRequest:
			// Bounded parameters: the refusal never grows with the input.
			if rec.Body.Len() > 512 {
				t.Fatalf("%q: 400 body of %d bytes", query, rec.Body.Len())
			}
		default:
			t.Fatalf("%q: status %d", query, rec.Code)
		}
	})
}
