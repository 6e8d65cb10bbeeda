package mothership

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/flash-go/flash/manifest"
)

var secretEnv = map[string]string{
	"API_KEY": "sk-live-aaaa", "db_password": "hunter2", "HF_Token": "hf_bbbb", "MY_SECRET_THING": "cccc",
	"LOG_LEVEL": "info", "REGION": "eu",
}

// TestServedManifestMasksSecrets: GET /manifest serves secret-looking env
// values as "***" (ETag of what is served), while the store, the
// mothership's own manifest and the local file keep the real values.
func TestServedManifestMasksSecrets(t *testing.T) {
	h := newHarness(t)
	mf := buildManifest(t, res{name: "gpu", env: secretEnv}, res{name: "cpu"})
	if _, err := h.m.Publish(t.Context(), mf); err != nil {
		t.Fatal(err)
	}
	resp, body := h.get(t, "/manifest", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	served, err := manifest.Parse(body)
	if err != nil {
		t.Fatalf("served manifest: %v", err)
	}
	env := served.Resources["gpu"].Env
	for k, v := range secretEnv {
		want := v
		if k != "LOG_LEVEL" && k != "REGION" {
			want = "***"
		}
		if env[k] != want {
			t.Errorf("served env %s = %q, want %q", k, env[k], want)
		}
		if want == "***" && bytes.Contains(body, []byte(v)) {
			t.Errorf("served manifest contains the value of %s", k)
		}
	}
	sum := sha256.Sum256(body)
	if etag := resp.Header.Get("Etag"); etag != `"`+hex.EncodeToString(sum[:16])+`"` {
		t.Errorf("ETag %s is not the hash of the served bytes", etag)
	}
	if resp, _ := h.get(t, "/manifest", map[string]string{"If-None-Match": resp.Header.Get("Etag")}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}

	// Kept real: the store, the served snapshot's manifest, the local file (0600).
	p, err := h.st.Latest(t.Context())
	if err != nil || !bytes.Contains(p.Manifest, []byte("sk-live-aaaa")) {
		t.Errorf("store lost the real value: %v", err)
	}
	if cur, _ := h.m.Current(); cur.Resources["gpu"].Env["API_KEY"] != "sk-live-aaaa" {
		t.Error("the mothership's own manifest is masked")
	}
	file, err := os.ReadFile(h.m.cfg.ManifestPath)
	if err != nil || !bytes.Contains(file, []byte("sk-live-aaaa")) {
		t.Errorf("local file: %v", err)
	}
	if fi, err := os.Stat(h.m.cfg.ManifestPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("local manifest file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	_, status := h.get(t, "/flash/status", nil)
	for k, v := range secretEnv {
		if k != "LOG_LEVEL" && k != "REGION" && strings.Contains(string(status), v) {
			t.Errorf("/flash/status shows the value of %s", k)
		}
	}
}

func TestMaskManifest(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no env: same bytes", `{"resources":{"a":{"x":1}}}`, `{"resources":{"a":{"x":1}}}`},
		{"nothing secret", `{"resources":{"a":{"env":{"LOG":"1"}}}}`, `{"resources":{"a":{"env":{"LOG":"1"}}}}`},
		{"duplicate keys", `{"resources":{"a":{"env":{"KEY":"s","KEY":"***"}},"b":{"env":{"TOKEN":"t"}},"b":{}}}`,
			`{"resources":{"a":{"env":{"KEY":"***"}},"b":{}}}`},
		{"object", `{"resources":{"a":{"env":{"api_key":"s","LOG":"<1>"},"n":1.50}},"extra":[1]}`,
			`{"extra":[1],"resources":{"a":{"env":{"LOG":"<1>","api_key":"***"},"n":1.50}}}`},
		{"list of key/value", `{"resources":{"a":{"env":[{"key":"TOKEN","value":"t"},{"name":"pw_PASSWORD","value":"p"},{"key":"X","value":"x"}]}}}`,
			`{"resources":{"a":{"env":[{"key":"TOKEN","value":"***"},{"name":"pw_PASSWORD","value":"***"},{"key":"X","value":"x"}]}}}`},
		{"not an object", `[1,"env"]`, `[1,"env"]`},
		{"env of another shape", `{"resources":{"a":{"env":"KEY=1"}}}`, `{"resources":{"a":{"env":"KEY=1"}}}`},
	}
	for _, tt := range tests {
		if got := maskManifest([]byte(tt.in)); string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
	for name, secret := range map[string]bool{"KEY": true, "monkey": true, "Access_Token": true, "SECRETS": true,
		"DB_PASSWORD": true, "passwd": true, "GCP_CREDENTIALS": true, "LOG_LEVEL": false, "REGION": false, "": false} {
		if secretName(name) != secret {
			t.Errorf("secretName(%q) = %v", name, !secret)
		}
	}
}

// TestBoundedParameters: over-long long-poll parameters, resource names and
// job ids are refused (400/404) without being echoed back.
func TestBoundedParameters(t *testing.T) {
	h := newHarness(t)
	if _, err := h.m.Publish(t.Context(), buildManifest(t, res{name: "gpu"})); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("9", 5000)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/manifest?version=" + long, http.StatusBadRequest},
		{"/manifest?version=1&wait=" + long, http.StatusBadRequest},
		{"/manifest?wait=" + strings.Repeat("1", 33) + "s", http.StatusBadRequest},
		{"/v2/" + long + "/health", http.StatusNotFound},
		{"/v2/gpu/status/" + long, http.StatusNotFound},
		{"/v2/gpu/status/a%20b", http.StatusNotFound},
	} {
		resp, body := h.get(t, tc.path, nil)
		if resp.StatusCode != tc.code || len(body) > 300 || bytes.Contains(body, []byte("99999999999999999999999999999999999")) {
			t.Errorf("%.60s…: %d %s", tc.path, resp.StatusCode, body)
		}
		if !json.Valid(body) {
			t.Errorf("%.60s…: body not JSON: %s", tc.path, body)
		}
	}
}

// FuzzMaskManifest: masking never breaks JSON, is idempotent, and leaves
// no secret-looking env value but "***".
func FuzzMaskManifest(f *testing.F) {
	for _, s := range []string{
		`{"resources":{"a":{"env":{"API_KEY":"s","LOG":"x"}}}}`,
		`{"resources":{"a":{"env":[{"key":"TOKEN","value":"t"}]}}}`,
		`{"resources":{"a":{"env":null}},"env":1}`,
		`{"resources":[],"env":{}}`,
		`{"version":"1.0","resources":{"b":{"env":{"secret":{"nested":true}},"functions":[]}}}`,
		`{"resources":{"a":{"env":{"KEY":"s","KEY":"***"}},"a":{"env":{"KEY":"s"}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := maskManifest(in)
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("invalid output %s from %s", out, in)
		}
		if again := maskManifest(out); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %s then %s", out, again)
		}
		// Exactly as the manifest decoder reads it: exact keys, last duplicate wins.
		var doc map[string]json.RawMessage
		var resources map[string]map[string]json.RawMessage
		if json.Unmarshal(out, &doc) != nil || json.Unmarshal(doc["resources"], &resources) != nil {
			return
		}
		for _, r := range resources {
			var env map[string]json.RawMessage
			if json.Unmarshal(r["env"], &env) != nil {
				continue
			}
			for k, v := range env {
				if secretName(k) && string(v) != `"***"` {
					t.Fatalf("env %s served as %s", k, v)
				}
			}
		}
	})
}
