package runpodemu

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pushWorkerImage pushes an image holding this test binary as /bin/worker
// (its entrypoint) to a registry on loopback and returns its reference.
func pushWorkerImage(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "bin/worker", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	tw.Write([]byte("x"))
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Entrypoint = []string{"/bin/worker"}
	cfg.Config.Env = []string{"PATH=/bin", "FROM_IMAGE=yes"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/flash/worker:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestWorkersRunThePulledImage(t *testing.T) {
	ref := pushWorkerImage(t)
	e := startEmu(t, testConfig(t))
	// No args: only the image can start the workers.
	id := queueEndpoint(t, e, map[string]any{"image": ref, "args": ""})
	ans := final(t, e, id, submit(t, e, id, map[string]any{}))
	if ans["status"] != statusCompleted {
		t.Fatalf("job on the pulled image: %v", ans)
	}
	e.mu.Lock()
	root := e.runs[id].img.img.root
	e.mu.Unlock()
	if _, err := os.Stat(root + "/bin/worker"); err != nil {
		t.Errorf("unpacked binary: %v", err)
	}
	if _, err := os.Stat(root + "/../escape"); err == nil {
		t.Errorf("a ../ entry was written outside the image's root")
	}
}

func TestImageCommand(t *testing.T) {
	img := unpacked{root: "/r", entrypoint: []string{"/app", "serve"}, cmd: []string{"--port", "80"}}
	for _, tt := range []struct {
		img  unpacked
		args string
		want string
		ok   bool
	}{
		{img, "", "exec '/r/app' 'serve' '--port' '80'", true},
		{img, "--port 9", "exec '/r/app' 'serve' --port 9", true},
		{unpacked{root: "/r", cmd: []string{"/app", "x y"}}, "", "exec '/r/app' 'x y'", true},
		{unpacked{root: "/r", cmd: []string{"/app"}}, "echo hi", "", false},
		{unpacked{root: "/r"}, "", "", false},
	} {
		got, ok := imageCommand(tt.img, tt.args)
		if got != tt.want || ok != tt.ok {
			t.Errorf("imageCommand(%+v, %q) = %q %v, want %q %v", tt.img, tt.args, got, ok, tt.want, tt.ok)
		}
	}
}
