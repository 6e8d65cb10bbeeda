package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo app's image, built once per test binary (a linux/amd64 build of
// it takes a while).
var pipeline struct {
	once  sync.Once
	built *Built
	err   error
}

func pipelineImage(t *testing.T) *Built {
	t.Helper()
	pipeline.once.Do(func() {
		pipeline.built, pipeline.err = Build(context.Background(), Options{
			Pkg: "../examples/pipeline", App: "pipeline", FlashVersion: "test"})
	})
	if pipeline.err != nil {
		t.Fatalf("build the pipeline image: %v", pipeline.err)
	}
	return pipeline.built
}

// newRegistry starts a registry on loopback, its handler wrapped by wrap
// when given, and returns its host:port.
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// basicAuth refuses every request without the credentials user:pass, the
// way a registry does.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func env(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return ""
	}
}

// files lists an image's flattened filesystem: name → header, and the bytes
// of regular files.
func files(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	hs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimSuffix(h.Name, "/")
		hs[n] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			data[n] = b
		}
	}
}

func TestPushPullPipeline(t *testing.T) {
	b := pipelineImage(t)
	host := newRegistry(t, nil)
	ctx := context.Background()
	ref, err := Push(ctx, b.Image, host+"/flash/pipeline:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := host + "/flash/pipeline@" + b.Digest.String(); ref != want {
		t.Fatalf("Push returned %q, want %q", ref, want)
	}

	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{Entrypoint}) || cf.Config.WorkingDir != "/" {
		t.Errorf("entrypoint %q, working dir %q", cf.Config.Entrypoint, cf.Config.WorkingDir)
	}
	if cf.Config.Labels[LabelApp] != "pipeline" || cf.Config.Labels[LabelVersion] != "test" {
		t.Errorf("labels %v", cf.Config.Labels)
	}
	if !slices.Contains(cf.Config.Env, "FLASH_IN_IMAGE=1") {
		t.Errorf("env %q lacks FLASH_IN_IMAGE=1", cf.Config.Env)
	}
	if !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("created %v, want the epoch", cf.Created)
	}

	hs, data := files(t, img)
	app := hs[Entrypoint[1:]]
	if app == nil || app.Typeflag != tar.TypeReg || app.Mode&0o111 == 0 {
		t.Fatalf("entrypoint %s: %+v, want an executable file", Entrypoint, app)
	}
	if !bytes.HasPrefix(data[Entrypoint[1:]], []byte("\x7fELF")) {
		t.Errorf("entrypoint is not an ELF binary")
	}
	if tmp := hs["tmp"]; tmp == nil || tmp.Typeflag != tar.TypeDir || tmp.Mode&0o7777 != 0o1777 {
		t.Errorf("/tmp: %+v, want a directory with mode 1777", tmp)
	}
	hostCerts, err := os.ReadFile(b.CACerts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[CertsPath[1:]], hostCerts) {
		t.Errorf("%s in the image differs from %s", CertsPath, b.CACerts)
	}
	for n, h := range hs {
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d, want epoch and root", n, h.ModTime, h.Uid, h.Gid)
		}
	}
}

// TestLayersSorted checks that each layer lists its entries in order,
// parents first: one of the conditions of a reproducible layer.
func TestLayersSorted(t *testing.T) {
	b := pipelineImage(t)
	layers, err := b.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want 2 (base, app)", len(layers))
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		tr := tar.NewReader(rc)
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			names = append(names, h.Name)
		}
		rc.Close()
		if !slices.IsSorted(names) {
			t.Errorf("layer %d entries %q are not sorted", i, names)
		}
	}
}

func TestSameSourceSameDigest(t *testing.T) {
	first := pipelineImage(t)
	again, err := Build(context.Background(), Options{Pkg: "../examples/pipeline", App: "pipeline", FlashVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != first.Digest {
		t.Fatalf("two builds of the same source: %s then %s", first.Digest, again.Digest)
	}
}

// TestSameSourceTwoCheckouts builds one app from two directories: the
// build path must not reach the image.
func TestSameSourceTwoCheckouts(t *testing.T) {
	var digests []v1.Hash
	for range 2 {
		dir := filepath.Join(t.TempDir(), "checkout")
		if err := os.CopyFS(dir, os.DirFS("testdata/hello")); err != nil {
			t.Fatal(err)
		}
		b, err := Build(context.Background(), Options{Pkg: dir, App: "hello"})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, b.Digest)
	}
	if digests[0] != digests[1] {
		t.Fatalf("the same source in two directories: %s and %s", digests[0], digests[1])
	}
}

func TestLabelsChangeDigest(t *testing.T) {
	b := pipelineImage(t)
	other, err := Build(context.Background(), Options{Pkg: "../examples/pipeline", App: "pipeline", FlashVersion: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if other.Digest == b.Digest {
		t.Fatal("a different flash version label gave the same digest")
	}
}

func TestPushAuth(t *testing.T) {
	b := pipelineImage(t)
	host := newRegistry(t, basicAuth("alice", "s3cret"))
	ctx := context.Background()
	ref := host + "/private/app:v1"

	t.Run("no credentials", func(t *testing.T) {
		t.Setenv("HOME", t.TempDir())
		_, err := Push(ctx, b.Image, ref, oci.Keychain(env()))
		if !errors.Is(err, oci.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		for _, want := range []string{"401", "docker login " + host, oci.EnvRegistryUsername} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		_, err := Push(ctx, b.Image, ref, oci.Keychain(env(oci.EnvRegistryUsername, "alice", oci.EnvRegistryPassword, "nope")))
		if !errors.Is(err, oci.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("env", func(t *testing.T) {
		got, err := Push(ctx, b.Image, ref, oci.Keychain(env(oci.EnvRegistryUsername, "alice", oci.EnvRegistryPassword, "s3cret")))
		if err != nil {
			t.Fatal(err)
		}
		if want := host + "/private/app@" + b.Digest.String(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("docker config", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("HOME", home)
		auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
		cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
		if err := os.MkdirAll(filepath.Join(home, ".docker"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Push(ctx, b.Image, ref, oci.Keychain(env())); err != nil {
			t.Fatal(err)
		}
		if _, err := oci.Extract(ctx, ref, t.TempDir(), oci.Keychain(env())); err != nil {
			t.Fatalf("pull with the docker config: %v", err)
		}
	})
}

// TestPushSkipsBaseLayer: a second app pushed to the same repository
// uploads its own layer and config, not the base layer the registry holds.
func TestPushSkipsBaseLayer(t *testing.T) {
	var mu sync.Mutex
	var uploaded []string // digests of committed blob uploads
	host := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d := r.URL.Query().Get("digest"); r.Method == http.MethodPut && d != "" {
				mu.Lock()
				uploaded = append(uploaded, d)
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx := context.Background()
	if _, err := Push(ctx, pipelineImage(t).Image, host+"/apps:pipeline", nil); err != nil {
		t.Fatal(err)
	}
	hello, err := Build(ctx, Options{Pkg: "testdata/hello", App: "hello", FlashVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	layers, err := hello.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	base, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	first := len(uploaded)
	mu.Unlock()
	if _, err := Push(ctx, hello.Image, host+"/apps:hello", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(uploaded[:first], base.String()) {
		t.Fatalf("the first push did not upload the base layer %s: %q", base, uploaded)
	}
	if second := uploaded[first:]; slices.Contains(second, base.String()) || len(second) != 2 {
		t.Fatalf("the second push uploaded %q, want the app layer and the config only", second)
	}
}

func TestPushUnreachable(t *testing.T) {
	b := pipelineImage(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	_, err = Push(context.Background(), b.Image, addr+"/app:v1", nil)
	if !errors.Is(err, oci.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name the registry %s", err, addr)
	}
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		ref, want string
		ok        bool
	}{
		{"127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1", true},
		{"127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app:latest", true},
		{"ghcr.io/me/app:2", "ghcr.io/me/app:2", true},
		{"127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64), "", false},
		{"", "", false},
		{"UPPER/case", "", false},
		{"host/app:bad tag", "", false},
	} {
		got, err := ParseRef(tc.ref)
		if (err == nil) != tc.ok {
			t.Errorf("ParseRef(%q): err = %v, want ok=%v", tc.ref, err, tc.ok)
			continue
		}
		if tc.ok && got.Name() != tc.want {
			t.Errorf("ParseRef(%q) = %q, want %q", tc.ref, got, tc.want)
		}
	}
}

func TestCompileErrorShowsCompiler(t *testing.T) {
	_, err := Build(context.Background(), Options{Pkg: "testdata/notlinux"})
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *CompileError", err)
	}
	if !strings.Contains(ce.Output, "undefined: hostOnly") || !strings.Contains(err.Error(), "undefined: hostOnly") {
		t.Fatalf("error %q lacks the compiler's message", err)
	}
	if !strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("error %q does not say which platform", err)
	}
}

func TestCACerts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notPEM := write("not.pem", "hello")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"missing file", Options{Pkg: "testdata/hello", CACerts: filepath.Join(dir, "nope.pem")}, "no such file"},
		{"not PEM", Options{Pkg: "testdata/hello", CACerts: notPEM}, "no PEM certificate"},
		{"SSL_CERT_FILE", Options{Pkg: "testdata/hello", Getenv: env("SSL_CERT_FILE", notPEM)}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(ctx, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestWriteLayout(t *testing.T) {
	b := pipelineImage(t)
	dir := filepath.Join(t.TempDir(), "image")
	for range 2 { // a second write replaces the first
		if err := WriteLayout(dir, b.Image, "example.com/app:v1"); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Digest != b.Digest {
		t.Fatalf("layout holds %+v, want the one image %s", m.Manifests, b.Digest)
	}
}

// TestExtractAndRun is the Runpod emulator's path: pull the pushed image by
// digest, unpack its binary, run it standalone and call GET /ping.
func TestExtractAndRun(t *testing.T) {
	b := pipelineImage(t)
	host := newRegistry(t, nil)
	ctx := context.Background()
	ref, err := Push(ctx, b.Image, host+"/flash/pipeline:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ex, err := oci.Extract(ctx, ref, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Digest != b.Digest || ex.Binary != filepath.Join(dir, "app") {
		t.Fatalf("extracted %+v", ex)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("Extract left %d entries in %s, want only app", len(entries), dir)
	}

	port := freePort(t)
	cmd := exec.Command(ex.Binary, ex.Args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(ex.Env, "FLASH_HOST=127.0.0.1", "PORT="+port, "HOME="+cmd.Dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	url := "http://127.0.0.1:" + port + "/ping"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s never answered 200 (last error %v); output:\n%s", url, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
