package oci

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
		want    string // content of the unpacked file; "" = not unpacked
		hidden  bool
		wantErr string
	}{
		{"plain", tarOf(t, reg("etc/x"), reg("bin/app")), 100, "bin/app", false, ""},
		{"dot slash", tarOf(t, reg("./bin/app")), 100, "./bin/app", false, ""},
		{"absolute", tarOf(t, reg("/bin/app")), 100, "/bin/app", false, ""},
		{"missing", tarOf(t, reg("app")), 100, "", false, ""},
		{"whiteout", tarOf(t, reg("bin/.wh.app")), 100, "", true, ""},
		{"directory whiteout", tarOf(t, reg(".wh.bin")), 100, "", true, ""},
		{"opaque directory", tarOf(t, reg("bin/.wh..wh..opq")), 100, "", true, ""},
		{"opaque elsewhere", tarOf(t, reg("etc/.wh..wh..opq"), reg(".wh.binary")), 100, "", false, ""},
		{"opaque directory, file in this layer", tarOf(t, reg("bin/.wh..wh..opq"), reg("bin/app")), 100, "bin/app", false, ""},
		{"climbing path", tarOf(t, reg("../../bin/app")), 100, "", false, "unsafe path"},
		{"symlink", tarOf(t, tar.Header{Name: "bin/app", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), 100, "", false, "not a regular file"},
		{"directory", tarOf(t, tar.Header{Name: "bin/app/", Typeflag: tar.TypeDir, Mode: 0o755}), 100, "", false, "not a regular file"},
		{"too big", tarOf(t, reg("bin/app")), 2, "", false, "more than the 2 allowed"},
		{"not a tar", []byte(strings.Repeat("garbage, not a tar stream ", 40)), 100, "", false, "reading the layer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "out", "app")
			found, hidden, err := unpackFile(bytes.NewReader(tc.tar), "/bin/app", dst, tc.max)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if found != (tc.want != "") || hidden != tc.hidden {
				t.Fatalf("found %v hidden %v, want %v %v", found, hidden, tc.want != "", tc.hidden)
			}
			if !found {
				if _, err := os.Stat(dst); !os.IsNotExist(err) {
					t.Fatalf("%s exists after nothing was unpacked", dst)
				}
				return
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

// FuzzUnpackFile: whatever the layer, unpacking never panics and never
// writes anything but the one destination file.
func FuzzUnpackFile(f *testing.F) {
	f.Add(tarOf(f, tar.Header{Name: "app", Typeflag: tar.TypeReg, Mode: 0o755}))
	f.Add(tarOf(f, tar.Header{Name: "../app", Typeflag: tar.TypeReg}, tar.Header{Name: "app", Typeflag: tar.TypeSymlink, Linkname: "../x"}))
	f.Add(tarOf(f, tar.Header{Name: ".wh..wh..opq", Typeflag: tar.TypeReg}, tar.Header{Name: "./app", Typeflag: tar.TypeReg}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		unpackFile(bytes.NewReader(data), "/app", filepath.Join(dir, "app"), 1<<16)
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
