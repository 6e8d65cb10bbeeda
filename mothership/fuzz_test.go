package mothership

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
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
		"version=1&wait=-1", "wait=NaN", "wait=1e308", "version=18446744073709551616", "version=1&version=2", "version=%31&wait=1", "a;b=1&version=2", "version=%zz&version=3", "wai%74=2",
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
		// queryParam reads a parameter as url.Values does.
		q, _ := url.ParseQuery(query)
		for _, name := range []string{"version", "wait"} {
			v, ok := queryParam(query, name)
			if want, has := q[name]; ok != has || (ok && v != want[0]) {
				t.Fatalf("%q: %s = %q %v, url.ParseQuery says %q", query, name, v, ok, want)
			}
		}
		if lp, err := parseLongPoll(query); err == nil {
			if lp.wait < 0 || lp.wait > maxWaitParam || (lp.hasVersion && lp.version < 0) {
				t.Fatalf("%q parsed to %+v", query, lp)
			}
			if w := m.herdWait(lp.wait); w < 0 || w > m.cfg.MaxWait {
				t.Fatalf("%q: herd wait %v", query, w)
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

// FuzzReadArtifact feeds arbitrary bytes to the artifact reader: it never
// panics, answers either a manifest with a kept binary or an error, and
// leaves no file behind when it refuses.
func FuzzReadArtifact(f *testing.F) {
	mf := []byte(`{"version":"1.0","project_name":"app","resources":{"a":{"resource_type":"ServerlessResource",` +
		`"functions":[{"name":"f","module":"m","is_async":false,"is_class":false}]}},"function_registry":{"f":"a"}}`)
	f.Add(artifact(f, false, map[string][]byte{"flash_manifest.json": mf, "app": []byte("bin")}))
	f.Add(artifact(f, true, map[string][]byte{"flash_manifest.json": mf, "app": []byte("bin")}))
	f.Add(artifact(f, false, nil))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	dir := f.TempDir()
	m, err := New(f.Context(), Config{Store: newMemStore(), Logger: quiet, ArtifactDir: dir, MaxArtifactUnpacked: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := m.readArtifact(bytes.NewReader(data))
		if err != nil {
			if left := files(t, dir); len(left) != 0 {
				t.Fatalf("refused (%v) but left %v", err, left)
			}
			return
		}
		req.discard()
		if req.mf == nil || req.upload == "" || !strings.HasPrefix(req.digest, digestPrefix) {
			t.Fatalf("accepted without a manifest and a binary: %+v", req)
		}
	})
}

// FuzzRedactURLs: redacting is idempotent and leaves no URL user
// information but "***".
func FuzzRedactURLs(f *testing.F) {
	for _, s := range []string{"postgres://u:p@h/db", "x http://a@b y https://c:d@e", "mailto:a@b", "://@", "a://b:c@d@e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := RedactURLs(s)
		if again := RedactURLs(out); again != out {
			t.Fatalf("not idempotent: %q → %q → %q", s, out, again)
		}
		for _, m := range urlCredentials.FindAllStringSubmatchIndex(out, -1) {
			if user := out[m[3]:m[1]]; user != masked+"@" {
				t.Fatalf("%q → %q keeps user information %q", s, out, user)
			}
		}
	})
}

// FuzzWaitValue: the whole-seconds fast path of a wait value agrees with
// reading it as a float, as every other form is read.
func FuzzWaitValue(f *testing.F) {
	for _, s := range []string{"0", "30", "007", "86400", "86401", "99999999999999999999999", "1.5", "30s", "-1", "+1", "1_0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := waitValue(s)
		fl, err := strconv.ParseFloat(s, 64)
		if err != nil || fl != fl || fl < 0 {
			return // not a number of seconds: the duration form, or refused
		}
		want := time.Duration(fl * float64(time.Second))
		if fl > maxWaitParam.Seconds() {
			want = maxWaitParam
		}
		if !ok || got != want {
			t.Fatalf("waitValue(%q) = %v %v, want %v", s, got, ok, want)
		}
	})
}
