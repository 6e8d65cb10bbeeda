package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tarOf makes a tar stream of headers; a regular file's content is its name.
func tarOf(t testing.TB, hs ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Name))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, h.Name)
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestUnpackFile(t *testing.T) {
	reg := func(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755} }
	for _, tc := range []struct {
		name    string
		tar     []byte
		max     int64
		want    string // content of the unpacked file; "" = an error
		wantErr string
	}{
		{"plain", tarOf(t, reg("etc/x"), reg("app")), 100, "app", ""},
		{"dot slash", tarOf(t, reg("./app")), 100, "./app", ""},
		{"absolute", tarOf(t, reg("/app")), 100, "/app", ""},
		{"climbing name is not the entrypoint", tarOf(t, reg("../../app")), 100, "", "no file /app"},
		{"missing", tarOf(t, reg("bin/app")), 100, "", "no file /app"},
		{"symlink", tarOf(t, tar.Header{Name: "app", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), 100, "", "not a regular file"},
		{"directory", tarOf(t, tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755}), 100, "", "not a regular file"},
		{"too big", tarOf(t, reg("app")), 2, "", "more than the 2 allowed"},
		{"not a tar", []byte("garbage that is not a tar stream at all, but long enough to look at"), 100, "", "reading the image's layers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "out", "app")
			err := unpackFile(io.NopCloser(bytes.NewReader(tc.tar)), "/app", dst, tc.max)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if _, err := os.Stat(dst); !os.IsNotExist(err) {
					t.Fatalf("a failed unpack left %s", dst)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(dst)
			if err != nil || string(b) != tc.want {
				t.Fatalf("unpacked %q (%v), want %q", b, err, tc.want)
			}
			if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o755 {
				t.Fatalf("mode %v, want 0755", fi.Mode())
			}
		})
	}
}

// FuzzUnpackFile: whatever the stream, unpacking never panics and never
// writes anything but the one destination file.
func FuzzUnpackFile(f *testing.F) {
	f.Add(tarOf(f, tar.Header{Name: "app", Typeflag: tar.TypeReg, Mode: 0o755}))
	f.Add(tarOf(f, tar.Header{Name: "../app", Typeflag: tar.TypeReg}, tar.Header{Name: "app", Typeflag: tar.TypeSymlink, Linkname: "../x"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		unpackFile(io.NopCloser(bytes.NewReader(data)), "/app", filepath.Join(dir, "app"), 1<<16)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "app" {
				t.Fatalf("unpack wrote %s", e.Name())
			}
		}
	})
}
