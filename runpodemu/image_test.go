package runpodemu

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/flash-go/flash/internal/oci"
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
	cfg.OS, cfg.Architecture = "linux", "amd64" // oci.Platform
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
	bin := e.runs[id].img.img.Binary
	e.mu.Unlock()
	if !strings.HasPrefix(bin, e.cfg.Dir) {
		t.Errorf("unpacked binary %s is outside the emulator's directory", bin)
	}
}

func TestImageCommand(t *testing.T) {
	img := &oci.Extracted{Binary: "/r/app", Args: []string{"serve", "x y"}}
	if got := imageCommand(img, ""); got != "exec '/r/app' 'serve' 'x y'" {
		t.Errorf("image's own arguments: %q", got)
	}
	if got := imageCommand(img, "--port 9"); got != "exec '/r/app' --port 9" {
		t.Errorf("args replace them: %q", got)
	}
}
