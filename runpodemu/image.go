package runpodemu

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Images: an endpoint's workers run its image, pulled from the registry it
// names and unpacked into a directory (a flash image holds one static
// binary; there is no container runtime). An image that cannot be pulled
// (no such registry offline, say) leaves the endpoint's args as the start
// command.

const (
	pullTimeout   = 2 * time.Minute
	maxImageBytes = 4 << 30 // unpacked
	maxImageFiles = 100000
)

// unpacked is an image on disk, or why it could not be pulled.
type unpacked struct {
	root       string   // the image's filesystem
	entrypoint []string // the config's Entrypoint, Cmd and Env
	cmd        []string
	env        []string
	err        error
}

// imageState is the pull of one endpoint's current image.
type imageState struct {
	ref  string
	done bool
	img  unpacked
}

// imageLocked reports whether the endpoint's image is settled (pulled or
// known not to be pullable), starting its pull when it is not.
func (e *Emulator) imageLocked(run *endpointRun) bool {
	ref := run.rec.Image
	if st := run.img; st != nil && st.ref == ref {
		return st.done
	}
	st := &imageState{ref: ref}
	run.img = st
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		ctx, cancel := context.WithTimeout(e.ctx, pullTimeout)
		img := e.pull(ctx, ref)
		cancel()
		e.mu.Lock()
		defer e.mu.Unlock()
		if run.img != st {
			return // the image changed meanwhile
		}
		st.done, st.img = true, img
		if img.err != nil {
			e.log.Info("image not pulled: workers run the endpoint's args", "endpoint", run.rec.ID, "image", ref, "err", img.err)
		} else {
			e.log.Info("image pulled", "endpoint", run.rec.ID, "image", ref, "root", img.root)
		}
		if !run.deleted && !e.closed {
			e.scaleLocked(run, time.Now())
		}
	}()
	return false
}

// pull fetches ref for this machine's platform and unpacks it under
// Dir/images/<digest>, once per digest.
func (e *Emulator) pull(ctx context.Context, ref string) unpacked {
	r, err := name.ParseReference(ref) // loopback registries are spoken to over http
	if err != nil {
		return unpacked{err: fmt.Errorf("image reference: %w", err)}
	}
	img, err := remote.Image(r, remote.WithContext(ctx),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err != nil {
		return unpacked{err: fmt.Errorf("pull %s: %w", ref, err)}
	}
	digest, err := img.Digest()
	if err != nil {
		return unpacked{err: fmt.Errorf("pull %s: %w", ref, err)}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return unpacked{err: fmt.Errorf("pull %s: config: %w", ref, err)}
	}
	root := filepath.Join(e.cfg.Dir, "images", digest.Hex)
	out := unpacked{root: root, entrypoint: cfg.Config.Entrypoint, cmd: cfg.Config.Cmd, env: cfg.Config.Env}
	if _, err := os.Stat(root); err == nil {
		return out
	}
	tmp, err := os.MkdirTemp(filepath.Join(e.cfg.Dir), ".image-")
	if err != nil {
		return unpacked{err: err}
	}
	defer os.RemoveAll(tmp)
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := untar(rc, tmp); err != nil {
		return unpacked{err: fmt.Errorf("unpack %s: %w", ref, err)}
	}
	if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
		return unpacked{err: err}
	}
	if err := os.Rename(tmp, root); err != nil {
		if _, serr := os.Stat(root); serr != nil { // not a concurrent pull of the same image
			return unpacked{err: fmt.Errorf("unpack %s: %w", ref, err)}
		}
	}
	return out
}

// untar writes a flattened image filesystem into dir. Entries may not leave
// dir; links pointing outside it and device files are skipped.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	var total int64
	for files := 0; ; files++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if files > maxImageFiles {
			return fmt.Errorf("more than %d files", maxImageFiles)
		}
		rel := path.Clean("/" + h.Name)
		if rel == "/" {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			total += h.Size
			if total > maxImageBytes {
				return fmt.Errorf("image larger than %d bytes", maxImageBytes)
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			target := h.Linkname
			if !path.IsAbs(target) && !strings.HasPrefix(path.Clean(path.Join(path.Dir(rel), target)), "/..") {
				os.Symlink(target, dst)
			}
		}
	}
}

// imageCommand is the shell line that starts an unpacked image: its
// entrypoint (inside its root) followed by args, which replaces the image's
// Cmd as on Runpod. Without an entrypoint, args (or else Cmd) is the command.
func imageCommand(img unpacked, args string) (string, bool) {
	argv := img.entrypoint
	rest := args
	if len(argv) == 0 {
		if strings.TrimSpace(args) != "" || len(img.cmd) == 0 {
			return "", false
		}
		argv = img.cmd
		rest = ""
	} else if strings.TrimSpace(args) == "" {
		rest = shellQuote(img.cmd...)
	}
	bin := argv[0]
	if path.IsAbs(bin) {
		bin = filepath.Join(img.root, filepath.FromSlash(bin))
	}
	line := "exec " + shellQuote(append([]string{bin}, argv[1:]...)...)
	if rest != "" {
		line += " " + rest
	}
	return line, true
}

func shellQuote(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
