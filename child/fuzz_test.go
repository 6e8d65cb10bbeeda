package child

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// FuzzSyncHandle feeds the sync client arbitrary answers (status, version
// header, Retry-After, body, timing): it must never panic, never apply an
// invalid manifest, never lose the manifest in use, and never ask for a
// negative or unbounded wait.
func FuzzSyncHandle(f *testing.F) {
	files, _ := filepath.Glob("../testdata/manifests/*/*.json")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		f.Add(200, "2", "", data, int64(0))
		f.Add(200, "", "", data, int64(5000))
	}
	f.Add(304, "1", "", []byte(nil), int64(1))
	f.Add(404, "", "", []byte(`{"error":"Manifest not found"}`), int64(0))
	f.Add(429, "", "9999999999999", []byte(`{}`), int64(0))
	f.Add(200, "99999999999999999999", "", []byte(`{"resources":{}}`), int64(0))
	f.Add(200, "3", "", []byte(`{"resources":{"a":{"x":1e400}}}`), int64(0))

	initial, err := os.ReadFile("../testdata/manifests/valid/pipeline-runtime.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, version, retryAfter string, body []byte, elapsedMS int64) {
		var applied []*manifest.Manifest
		s, err := NewSync(Config{MothershipURL: "http://127.0.0.1:1", PollWait: 60 * time.Second,
			Logger: quietLogger(), OnApply: func(m *manifest.Manifest, _ int64) { applied = append(applied, m) }})
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		h.Set(wire.HeaderManifestVersion, "1")
		s.handle(200, h, initial, time.Second)
		before := s.Current()

		h = http.Header{}
		if version != "" {
			h.Set(wire.HeaderManifestVersion, version)
		}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		// Twice: the second sees the state the first left (rejections, modes).
		for range 2 {
			d := s.handle(status, h, body, time.Duration(elapsedMS)*time.Millisecond)
			if d < 0 || d > max(backoffCap, DefaultTTL) {
				t.Fatalf("wait %v", d)
			}
		}
		cur := s.Current()
		if cur == nil {
			t.Fatal("lost the manifest in use")
		}
		for _, m := range append(applied, cur) {
			if err := m.Validate(); err != nil {
				t.Fatalf("applied an invalid manifest: %v", err)
			}
		}
		if cur != before {
			if status != 200 {
				t.Fatalf("status %d changed the manifest", status)
			}
			if _, err := manifest.Parse(body); err != nil {
				t.Fatalf("applied a body that does not parse: %v", err)
			}
		}
		if s.rejVersion != 0 && len(s.rejReason) > maxReasonLen {
			t.Fatalf("reason too long: %d", len(s.rejReason))
		}
	})
}

// FuzzInvokeAnswer feeds the invoker's decoders arbitrary answers: they
// must never panic, and every error must be a flash error.
func FuzzInvokeAnswer(f *testing.F) {
	f.Add(200, []byte(`{"id":"1","status":"COMPLETED","output":{"success":true,"json_result":{"vector":[1]}}}`))
	f.Add(200, []byte(`{"status":"FAILED","error":"ValueError: x","output":"str"}`))
	f.Add(500, []byte(`{"error":"boom","error_type":"KeyError"}`))
	f.Add(508, []byte(``))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		tg := &Target{Function: "f", Resource: "r", LB: code%2 == 0}
		if job, err := wire.DecodeJobAnswer(body); err == nil {
			var out embedOut
			switch job.Status {
			case "COMPLETED":
				tg.decodeResult(job, &out)
			case "FAILED":
				if tg.remoteError(job) == nil {
					t.Fatal("nil remote error")
				}
			}
		}
		iv := NewInvoker(InvokerConfig{Logger: quietLogger()})
		if err := iv.statusError(tg, "http://x", code, body); err == nil {
			t.Fatal("nil status error")
		}
	})
}
