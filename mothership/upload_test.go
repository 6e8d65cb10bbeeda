package mothership

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeployArtifactBomb: an artifact that unpacks to more than
// MaxArtifactUnpacked is refused with 413, and leaves no file behind.
func TestDeployArtifactBomb(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxArtifactUnpacked = 1 << 20 })
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "flash_manifest.json", Mode: 0o644, Size: int64(len(mustJSON(t, buildManifest(t, res{name: "a"}))))})
	tw.Write(mustJSON(t, buildManifest(t, res{name: "a"})))
	const size = 64 << 20
	tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: size})
	zeros := make([]byte, 1<<20)
	for range size / len(zeros) {
		tw.Write(zeros)
	}
	tw.Close()
	zw.Close()
	t.Logf("%d bytes of gzip unpack to %d", buf.Len(), size)
	code, lines := deployPost(t, h, "application/gzip", &buf)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(mustMarshal(t, lines)), "unpacks to more than") {
		t.Fatalf("status %d %v, want 413", code, lines)
	}
	if left := files(t, h.m.cfg.ArtifactDir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if n := len(h.prov.callLog()); n != 0 {
		t.Fatalf("%d provider calls", n)
	}
}

// files lists the regular files under dir.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// withTypeflag rewrites the type of the first entry of a plain tar, in the
// GNU format (archive/tar writes no sparse entries itself).
func withTypeflag(t *testing.T, data []byte, flag byte) []byte {
	t.Helper()
	out := bytes.Clone(data)
	hdr := out[:512]
	hdr[156] = flag
	copy(hdr[257:265], "ustar  \x00") // the GNU format, which has sparse entries
	copy(hdr[148:156], "        ")
	sum := 0
	for _, b := range hdr {
		sum += int(b)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return out
}

// TestDeployArtifactRefusesSpecialEntries: links, devices and sparse files
// are refused as a whole (400), wherever they are in the archive.
func TestDeployArtifactRefusesSpecialEntries(t *testing.T) {
	mf := mustJSON(t, buildManifest(t, res{name: "a"}))
	withEntry := func(hdr *tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(hdr)
		tw.WriteHeader(&tar.Header{Name: "flash_manifest.json", Mode: 0o644, Size: int64(len(mf))})
		tw.Write(mf)
		tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: 2})
		tw.Write([]byte("hi"))
		tw.Close()
		return buf.Bytes()
	}
	sparse := withTypeflag(t, withEntry(&tar.Header{Name: "holes", Mode: 0o644, Size: 0}), tar.TypeGNUSparse)
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"symlink", withEntry(&tar.Header{Name: "etc-passwd", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), "links, devices"},
		{"hard link", withEntry(&tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "app"}), "links, devices"},
		{"char device", withEntry(&tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}), "links, devices"},
		{"fifo", withEntry(&tar.Header{Name: "pipe", Typeflag: tar.TypeFifo}), "links, devices"},
		{"sparse", sparse, "sparse"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			code, lines := deployPost(t, h, "application/x-tar", bytes.NewReader(c.body))
			if code != http.StatusBadRequest || !strings.Contains(string(mustMarshal(t, lines)), c.want) {
				t.Fatalf("status %d %v, want 400 naming %q", code, lines, c.want)
			}
			if left := files(t, h.m.cfg.ArtifactDir); len(left) != 0 {
				t.Fatalf("left behind: %v", left)
			}
		})
	}
}

// TestUnusedArtifactsRemoved: once a deploy is done, only the artifact the
// desired state refers to is kept.
func TestUnusedArtifactsRemoved(t *testing.T) {
	h := newHarness(t)
	mf := mustJSON(t, buildManifest(t, res{name: "a"}))
	deploy := func(bin string) string {
		code, lines := deployPost(t, h, "application/x-tar", bytes.NewReader(artifact(t, false,
			map[string][]byte{"flash_manifest.json": mf, "app": []byte(bin)})))
		if code != http.StatusOK || lastReport(t, lines).Failed() {
			t.Fatalf("deploy %s: %d %v", bin, code, lines)
		}
		sum := sha256.Sum256([]byte(bin))
		return filepath.Join(h.m.cfg.ArtifactDir, hex.EncodeToString(sum[:]), "app")
	}
	first := deploy("binary one")
	second := deploy("binary two")
	if _, err := os.Stat(second); err != nil {
		t.Fatalf("the deployed artifact is gone: %v", err)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Fatalf("the replaced artifact is kept (%v); artifacts: %v", err, files(t, h.m.cfg.ArtifactDir))
	}
	if got := files(t, h.m.cfg.ArtifactDir); len(got) != 1 {
		t.Fatalf("artifacts %v, want only %s", got, second)
	}

	// A manifest alone (an env change) keeps the deployed binary.
	code, lines := deployPost(t, h, "application/json",
		bytes.NewReader(mustJSON(t, buildManifest(t, res{name: "a", env: map[string]string{"V": "2"}}))))
	if code != http.StatusOK || lastReport(t, lines).Failed() {
		t.Fatalf("manifest deploy: %d %v", code, lines)
	}
	if last := h.prov.specs[len(h.prov.specs)-1]; last.Artifact != second {
		t.Fatalf("the env change was deployed from %q, want the deployed binary %s", last.Artifact, second)
	}
	if _, err := os.Stat(second); err != nil {
		t.Fatalf("the deployed artifact is gone after a manifest deploy: %v", err)
	}
}

// TestSlowUploadHoldsNoLock: a deploy whose body trickles in does not hold
// the deploy lock: another deploy runs meanwhile. Past DeployReadTimeout the
// slow one is answered 408.
func TestSlowUploadHoldsNoLock(t *testing.T) {
	h := newHarness(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	slow := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/flash/deploy", pr)
		req.Header.Set("Content-Type", "application/json")
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			slow <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	body := mustJSON(t, buildManifest(t, res{name: "b"}))
	pw.Write(body[:10]) // the server is now reading the slow body
	eventually(t, "the slow upload read", func() bool { return len(h.m.uploads) == 1 })

	code, lines := deployPost(t, h, "application/json", bytes.NewReader(mustJSON(t, buildManifest(t, res{name: "a"}))))
	if code != http.StatusOK || lastReport(t, lines).Failed() {
		t.Fatalf("deploy beside a slow upload: %d %v, want 200", code, lines)
	}
	pw.Write(body[10:])
	pw.Close()
	if code := <-slow; code != http.StatusOK {
		t.Fatalf("slow deploy, once complete: %d", code)
	}

	// A body that never completes is cut at the read deadline.
	h2 := newHarness(t, func(c *Config) { c.DeployReadTimeout = 100 * time.Millisecond })
	pr2, pw2 := io.Pipe()
	defer pw2.Close()
	go func() {
		pw2.Write([]byte(`{"version":`))
	}()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h2.srv.URL+"/flash/deploy", pr2)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h2.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled upload: %d, want 408", resp.StatusCode)
	}
}
