package mothership

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/flash-go/flash/manifest"
)

var secretEnv = map[string]string{
	"API_KEY": "sk-live-aaaa", "db_password": "hunter2", "HF_Token": "hf_bbbb", "MY_SECRET_THING": "cccc",
	"DATABASE_URL": "postgres://app:pg-pass-dddd@db:5432/app", "HF_AUTH": "hf_eeee",
	"LOG_LEVEL": "info", "REGION": "eu", "PROXY": "http://proxyuser:proxy-pass-ffff@proxy:3128",
}

// visibleEnv is what GET /manifest shows of secretEnv with REGION and PROXY
// allowed (LOG_LEVEL is by default): every other value is masked, and a
// shown URL loses its credentials.
var visibleEnv = map[string]string{"LOG_LEVEL": "info", "REGION": "eu", "PROXY": "http://***@proxy:3128"}

// TestServedManifestMasksSecrets: GET /manifest serves every env value as
// "***" unless its name is allowed, URLs without credentials (ETag of what
// is served), while the store, the mothership's own manifest and the local
// file keep the real values.
func TestServedManifestMasksSecrets(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.EnvVisible = []string{"REGION", "PROXY"} })
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
		want, shown := visibleEnv[k]
		if !shown {
			want = "***"
		}
		if env[k] != want {
			t.Errorf("served env %s = %q, want %q", k, env[k], want)
		}
		if want != v && bytes.Contains(body, []byte(v)) {
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
		if visibleEnv[k] != v && strings.Contains(string(status), v) {
			t.Errorf("/flash/status shows the value of %s", k)
		}
	}
}

func TestMaskManifest(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no env: same bytes", `{"resources":{"a":{"x":1}}}`, `{"resources":{"a":{"x":1}}}`},
		{"allowed", `{"resources":{"a":{"env":{"LOG_LEVEL":"1"}}}}`, `{"resources":{"a":{"env":{"LOG_LEVEL":"1"}}}}`},
		{"duplicate keys", `{"resources":{"a":{"env":{"KEY":"s","KEY":"***"}},"b":{"env":{"TOKEN":"t"}},"b":{}}}`,
			`{"resources":{"a":{"env":{"KEY":"***"}},"b":{}}}`},
		{"object", `{"resources":{"a":{"env":{"DATABASE_URL":"postgres://u:p@h/db","LOG_LEVEL":"<1>","HF_AUTH":"x"},"n":1.50}},"extra":[1]}`,
			`{"extra":[1],"resources":{"a":{"env":{"DATABASE_URL":"***","HF_AUTH":"***","LOG_LEVEL":"<1>"},"n":1.50}}}`},
		{"allowed URL loses its credentials", `{"resources":{"a":{"env":{"TZ":"see https://u:p@h/x"}}}}`,
			`{"resources":{"a":{"env":{"TZ":"see https://***@h/x"}}}}`},
		{"allowed but not a string", `{"resources":{"a":{"env":{"TZ":{"x":1}}}}}`, `{"resources":{"a":{"env":{"TZ":"***"}}}}`},
		{"list of key/value", `{"resources":{"a":{"env":[{"key":"TOKEN","value":"t"},{"name":"pw","value":"p"},{"key":"LOG_LEVEL","value":"x"}]}}}`,
			`{"resources":{"a":{"env":[{"key":"TOKEN","value":"***"},{"name":"pw","value":"***"},{"key":"LOG_LEVEL","value":"x"}]}}}`},
		{"not an object", `[1,"env"]`, `[1,"env"]`},
		{"env of another shape", `{"resources":{"a":{"env":"KEY=1"}}}`, `{"resources":{"a":{"env":"KEY=1"}}}`},
	}
	mask := newEnvMask(nil)
	for _, tt := range tests {
		if got := mask.manifest([]byte(tt.in)); string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:secret@db:5432/x":        "postgres://***@db:5432/x",
		"dial http://u@h:1/p: refused":           "dial http://***@h:1/p: refused",
		"a https://h/p?x=@y b":                   "a https://h/p?x=@y b",
		"two: redis://:pw@r/0 and amqp://a:b@q/": "two: redis://***@r/0 and amqp://***@q/",
		"no url: user@example.com":               "no url: user@example.com",
		`"http://x:y@h"`:                         `"http://***@h"`,
	} {
		if got := RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q, want %q", in, got, want)
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
// no env value but "***" whose name is not allowed.
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
		mask := newEnvMask(nil)
		out := mask.manifest(in)
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("invalid output %s from %s", out, in)
		}
		if again := mask.manifest(out); !bytes.Equal(again, out) {
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
				if !mask.visible[k] && string(v) != `"***"` {
					t.Fatalf("env %s served as %s", k, v)
				}
			}
		}
	})
}

// TestURLCredentialsNeverShown: a provider error naming a URL with
// credentials reaches the report, the progress events, /flash/status and
// the published manifest with the credentials masked.
func TestURLCredentialsNeverShown(t *testing.T) {
	h := newHarness(t)
	h.prov.fail["a"] = errors.New("cannot reach postgres://app:s3cr3t-pw@db:5432/x")
	var events []Event
	rep, err := h.m.Reconcile(t.Context(), buildManifest(t, res{name: "a"}), ReconcileOptions{Progress: func(e Event) {
		events = append(events, e)
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, status := h.get(t, "/flash/status", nil)
	_, served := h.get(t, "/manifest", nil)
	for what, text := range map[string]string{
		"report": string(mustMarshal(t, rep)), "events": string(mustMarshal(t, events)),
		"/flash/status": string(status), "/manifest": string(served),
	} {
		if strings.Contains(text, "s3cr3t-pw") || !strings.Contains(text, "postgres://***@db:5432") {
			t.Errorf("%s: %s", what, text)
		}
	}
}
