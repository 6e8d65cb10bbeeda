package mothership

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
)

func TestStatus(t *testing.T) {
	h := newHarness(t)
	h.run(t)
	h.prov.fail["b"] = errBoom
	mustReconcile(t, h.m, buildManifest(t, res{name: "a", min: 2}, res{name: "b"}, res{name: "web", lb: true}))
	h.get(t, "/manifest", map[string]string{wire.HeaderResource: "web", wire.HeaderInstance: "web-0", wire.HeaderAppliedVersion: "3"})
	eventually(t, "report stored", func() bool { is, _ := h.st.Instances(t.Context()); return len(is) == 1 })

	resp, body := h.get(t, "/flash/status", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var st struct {
		Version   int64                     `json:"version"`
		Resources map[string]map[string]any `json:"resources"`
		Instances []map[string]any          `json:"instances"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	_, v := h.m.Current()
	if st.Version != v || len(st.Resources) != 3 {
		t.Fatalf("status %s", body)
	}
	a := st.Resources["a"]
	if a["type"] != "ServerlessResource" || a["status"] != "deployed" || len(a["endpoint_urls"].([]any)) != 2 ||
		a["endpoint_url"] != a["endpoint_urls"].([]any)[0] || a["config_hash"] == "" {
		t.Fatalf("resource a %v", a)
	}
	if b := st.Resources["b"]; b["status"] != "failed" || !strings.Contains(b["error"].(string), "boom") {
		t.Fatalf("resource b %v", b)
	}
	if len(st.Instances) != 1 {
		t.Fatalf("instances %v", st.Instances)
	}
	i := st.Instances[0]
	for _, k := range []string{"resource", "instance", "applied_version", "rejected_version", "reject_reason", "last_seen"} {
		if _, ok := i[k]; !ok {
			t.Fatalf("instance lacks %s: %v", k, i)
		}
	}
	if i["resource"] != "web" || i["applied_version"] != float64(3) {
		t.Fatalf("instance %v", i)
	}
}

// deployPost sends a deploy and returns the status and the NDJSON lines.
func deployPost(t *testing.T, h *harness, contentType string, body io.Reader) (int, []map[string]json.RawMessage) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.srv.URL+"/flash/deploy", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []map[string]json.RawMessage
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return resp.StatusCode, lines
}

func lastReport(t *testing.T, lines []map[string]json.RawMessage) Report {
	t.Helper()
	if len(lines) == 0 {
		t.Fatal("no lines")
	}
	var rep Report
	if err := json.Unmarshal(lines[len(lines)-1]["report"], &rep); err != nil {
		t.Fatalf("last line %v: %v", lines[len(lines)-1], err)
	}
	return rep
}

func TestDeployManifest(t *testing.T) {
	h := newHarness(t)
	code, lines := deployPost(t, h, "application/json", bytes.NewReader(mustJSON(t, buildManifest(t, res{name: "a"}, res{name: "b"}))))
	if code != http.StatusOK {
		t.Fatalf("status %d %v", code, lines)
	}
	rep := lastReport(t, lines)
	if rep.Failed() || len(rep.Resources) != 2 || rep.Deploys != 2 {
		t.Fatalf("report %+v", rep)
	}
	if len(lines) < 1+2*3 { // deploying, deployed, published per resource
		t.Fatalf("progress lines %d", len(lines))
	}
	var e Event
	if err := json.Unmarshal(mustMarshal(t, lines[0]), &e); err != nil || e.Resource == "" || e.Step != StepDeploying {
		t.Fatalf("first line %v", lines[0])
	}
	if mf, _ := h.m.Current(); mf == nil || len(mf.Resources) != 2 {
		t.Fatal("not published")
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// artifact builds a tar (gzip-compressed when gz) of the given files.
func artifact(t testing.TB, gz bool, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

func TestDeployArtifact(t *testing.T) {
	for _, c := range []struct {
		name, ct string
		gz       bool
	}{{"tar", "application/x-tar", false}, {"tar.gz", "application/gzip", true}} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			bin := []byte("#!/bin/sh\necho app " + c.name + "\n")
			body := artifact(t, c.gz, map[string][]byte{
				"./flash_manifest.json": mustJSON(t, buildManifest(t, res{name: "a"})),
				"app":                   bin,
				"README":                []byte("ignored"),
			})
			code, lines := deployPost(t, h, c.ct, bytes.NewReader(body))
			if code != http.StatusOK {
				t.Fatalf("status %d %v", code, lines)
			}
			if rep := lastReport(t, lines); rep.Failed() {
				t.Fatalf("report %+v", rep)
			}
			sum := sha256.Sum256(bin)
			want := filepath.Join(h.m.cfg.ArtifactDir, hex.EncodeToString(sum[:]), "app")
			if len(h.prov.specs) != 1 || h.prov.specs[0].Artifact != want {
				t.Fatalf("spec artifact %q, want %q", h.prov.specs[0].Artifact, want)
			}
			fi, err := os.Stat(want)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("stored binary: %v %v", fi, err)
			}
			got, _ := os.ReadFile(want)
			if !bytes.Equal(got, bin) {
				t.Fatal("stored binary differs")
			}
			// No temporary upload left behind.
			ents, _ := os.ReadDir(h.m.cfg.ArtifactDir)
			if len(ents) != 1 {
				t.Fatalf("artifact dir %v", ents)
			}
		})
	}
}

func TestDeployInvalid(t *testing.T) {
	h := newHarness(t)
	twoProblems := `{"version":"2.0","resources":{"a":{"resource_type":"ServerlessResource"}},"function_registry":{"f":"nope"}}`
	other := mustJSON(t, buildManifest(t, res{name: "a"}).WithTop("project_name", "someone-else"))
	cases := []struct {
		name, ct string
		body     []byte
		want     []string
	}{
		{"not json", "application/json", []byte("{"), []string{"not valid JSON"}},
		{"every problem", "application/json", []byte(twoProblems), []string{"version", "function_registry"}},
		{"another app", "application/json", other, []string{"someone-else"}},
		{"empty tar", "application/x-tar", artifact(t, false, nil), []string{"flash_manifest.json missing", "app"}},
		{"bad manifest in tar", "application/x-tar", artifact(t, false, map[string][]byte{
			"flash_manifest.json": []byte(twoProblems), "app": []byte("x")}), []string{"version", "function_registry"}},
		{"not a tar", "application/x-tar", []byte("hello, this is not a tar archive at all, not even close......"), []string{"artifact"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h.srv.URL+"/flash/deploy", bytes.NewReader(c.body))
			req.Header.Set("Content-Type", c.ct)
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			var e struct {
				Error    string   `json:"error"`
				Problems []string `json:"problems"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("body %s", body)
			}
			all := strings.Join(e.Problems, "\n")
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Fatalf("problems %q lack %q", e.Problems, w)
				}
			}
		})
	}
	if n := len(h.prov.callLog()); n != 0 {
		t.Fatalf("%d provider calls", n)
	}
	// Unsupported media type.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h.srv.URL+"/flash/deploy", strings.NewReader("x"))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d", resp.StatusCode)
	}
}

func TestDeployBusy(t *testing.T) {
	h := newHarness(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.prov.onDeploy = func(ctx context.Context, s provider.Spec) error {
		once.Do(func() { close(entered) })
		<-release
		return nil
	}
	first := make(chan int, 1)
	body := mustJSON(t, buildManifest(t, res{name: "a"}))
	go func() {
		resp, err := h.srv.Client().Post(h.srv.URL+"/flash/deploy", "application/json", bytes.NewReader(body))
		if err != nil {
			first <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-entered
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h.srv.URL+"/flash/deploy",
		bytes.NewReader(mustJSON(t, buildManifest(t, res{name: "b"}))))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("second deploy: %d, want 409", resp.StatusCode)
	}
	// Reconcile (boot) waits instead of failing; with a done context it gives up.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.m.Reconcile(ctx, buildManifest(t, res{name: "b"}), ReconcileOptions{}); err == nil {
		t.Fatal("Reconcile ran beside a deploy")
	}
	close(release)
	if code := <-first; code != http.StatusOK {
		t.Fatalf("first deploy: %d", code)
	}
}

func TestGateway(t *testing.T) {
	var (
		mu        sync.Mutex
		seen      []string
		hops, rid string
	)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization")+" "+string(body))
		hops, rid = r.Header.Get("X-Flash-Hops"), r.Header.Get("X-Request-Id")
		mu.Unlock()
		wire.WriteJSON(w, http.StatusOK, map[string]string{"path": r.URL.Path})
	}))
	defer backend.Close()
	h := newHarness(t)
	h.run(t) // closes idle gateway connections at the end
	h.prov.urlFor = func(resource string, n int) string { return backend.URL }
	h.prov.fail["broken"] = errBoom
	mustReconcile(t, h.m, buildManifest(t, res{name: "gpu"}, res{name: "web", lb: true}, res{name: "broken"}))

	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), method, h.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/v2/gpu/runsync", `{"input":{}}`, `POST /runsync Bearer k {"input":{}}`},
		{"POST", "/v2/gpu/run", `{"input":{}}`, `POST /run Bearer k {"input":{}}`},
		{"GET", "/v2/gpu/status/job-1", "", `GET /status/job-1 Bearer k `},
		{"POST", "/v2/gpu/cancel/job-1", "", `POST /cancel/job-1 Bearer k `},
		{"GET", "/v2/gpu/health", "", `GET /health Bearer k `},
	} {
		code, body := do(c.method, c.path, c.body)
		mu.Lock()
		last := seen[len(seen)-1]
		mu.Unlock()
		if code != http.StatusOK || last != c.want {
			t.Fatalf("%s %s: %d %s; backend saw %q, want %q", c.method, c.path, code, body, last, c.want)
		}
	}
	// The gateway is one more hop of the same request.
	req, _ := http.NewRequestWithContext(t.Context(), "POST", h.srv.URL+"/v2/gpu/runsync", strings.NewReader(`{"input":{}}`))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("X-Request-Id", "rid-1")
	req.Header.Set("X-Flash-Hops", "2")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	if hops != "3" || rid != "rid-1" {
		t.Fatalf("backend saw hops %q and request id %q; want 3 and rid-1", hops, rid)
	}
	mu.Unlock()
	if n := len(resp.Header.Values("X-Request-Id")); n > 1 {
		t.Fatalf("%d X-Request-Id headers in the answer", n)
	}

	code, body := do("POST", "/v2/nope/runsync", "{}")
	if code != http.StatusNotFound || !strings.Contains(body, `"nope"`) || !strings.Contains(body, `"gpu"`) {
		t.Fatalf("unknown: %d %s", code, body)
	}
	if code, _ := do("POST", "/v2/web/runsync", "{}"); code != http.StatusNotFound {
		t.Fatalf("LB resource: %d", code)
	}
	code, body = do("POST", "/v2/broken/runsync", "{}")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `broken`) {
		t.Fatalf("not ready: %d %s", code, body)
	}
	// An endpoint that went away: 502 JSON.
	mf, _ := h.m.Current()
	if _, err := h.m.Publish(t.Context(), mf.WithRuntime("gpu", manifest.Runtime{
		EndpointURLs: []string{"http://127.0.0.1:1"}, Status: manifest.StatusDeployed})); err != nil {
		t.Fatal(err)
	}
	if code, body := do("POST", "/v2/gpu/runsync", "{}"); code != http.StatusBadGateway || !strings.Contains(body, "unreachable") {
		t.Fatalf("unreachable: %d %s", code, body)
	}
}
