package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pushImage pushes a linux/amd64 image of the given layers (tar streams)
// with the given entrypoint to a fresh registry and returns its reference.
func pushImage(t *testing.T, host string, entrypoint []string, layers ...[]byte) string {
	t.Helper()
	img := empty.Image
	for _, l := range layers {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.Env = entrypoint, []string{"--flag"}, []string{"A=1"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := host + "/test/app:v1"
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func newRegistry(t *testing.T, h http.Handler) string {
	t.Helper()
	if h == nil {
		h = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestExtract(t *testing.T) {
	reg := func(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755} }
	for _, tc := range []struct {
		name       string
		entrypoint []string
		layers     [][]byte
		want       string // the extracted binary's content; "" = an error
		wantErr    string
	}{
		{"app", []string{"/app"}, [][]byte{tarOf(t, reg("etc/x"), reg("app"))}, "app", ""},
		{"upper layer wins", []string{"/bin/app"}, [][]byte{tarOf(t, reg("bin/app")), tarOf(t, reg("./bin/app"))}, "./bin/app", ""},
		{"no entrypoint", nil, [][]byte{tarOf(t, reg("app"))}, "", "not an absolute path"},
		{"relative entrypoint", []string{"app"}, [][]byte{tarOf(t, reg("app"))}, "", "not an absolute path"},
		{"missing", []string{"/app"}, [][]byte{tarOf(t, reg("bin/app"))}, "", "no file /app"},
		{"symlink", []string{"/app"}, [][]byte{tarOf(t, tar.Header{Name: "app", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})}, "", "not a regular file"},
		{"climbing path", []string{"/app"}, [][]byte{tarOf(t, reg("../../escape"), reg("app"))}, "", "unsafe path"},
		{"deleted by an upper layer", []string{"/app"}, [][]byte{tarOf(t, reg("app")), tarOf(t, reg(".wh.app"))}, "", "no file /app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushImage(t, newRegistry(t, nil), tc.entrypoint, tc.layers...)
			root := t.TempDir()
			dir := filepath.Join(root, "a", "b")
			ex, err := Extract(context.Background(), ref, dir, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(ex.Binary)
				if err != nil || string(b) != tc.want {
					t.Fatalf("extracted %q (%v), want %q", b, err, tc.want)
				}
				if ex.Binary != filepath.Join(dir, "app") || len(ex.Args) != 1 || ex.Args[0] != "--flag" || len(ex.Env) != 1 {
					t.Fatalf("extracted %+v", ex)
				}
			}
			// Nothing but dir/app, ever.
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if !d.IsDir() && p != filepath.Join(dir, "app") {
					t.Errorf("Extract wrote %s", p)
				}
				return nil
			})
		})
	}
}

func TestExtractRegistryErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("not found", func(t *testing.T) {
		host := newRegistry(t, nil)
		_, err := Extract(ctx, host+"/nobody/here:v1", t.TempDir(), nil)
		if err == nil || !strings.Contains(err.Error(), "pull from "+host+"/nobody/here") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unauthorized", func(t *testing.T) {
		host := newRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
		}))
		_, err := Extract(ctx, host+"/private/app:v1", t.TempDir(), Keychain(func(string) string { return "" }))
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "docker login "+host) {
			t.Fatalf("err = %v, want ErrUnauthorized naming docker login", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		_, err = Extract(ctx, addr+"/app:v1", t.TempDir(), nil)
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("err = %v, want ErrUnreachable", err)
		}
	})
	t.Run("bad reference", func(t *testing.T) {
		if _, err := Extract(ctx, "Bad Ref", t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "image reference") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestKeychain(t *testing.T) {
	kc := Keychain(func(k string) string {
		return map[string]string{EnvRegistryUsername: "u", EnvRegistryPassword: "p"}[k]
	})
	repo, _ := name.NewRepository("example.com/app")
	a, err := kc.Resolve(repo)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil || cfg.Username != "u" || cfg.Password != "p" {
		t.Fatalf("credentials %+v (%v), want u/p from the environment", cfg, err)
	}
}
