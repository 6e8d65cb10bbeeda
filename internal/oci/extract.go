package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Extracted is an image's entrypoint binary unpacked on disk, with what is
// needed to run it as the image would.
type Extracted struct {
	// Binary is the path of the unpacked entrypoint, executable.
	Binary string
	// Args are the arguments after the binary: the entrypoint's rest, then Cmd.
	Args []string
	// Env is the image's environment (KEY=VALUE).
	Env []string
	// Digest is the pulled image's digest.
	Digest v1.Hash
}

// Extract pulls the linux/amd64 image ref (by tag or by digest) and unpacks
// its entrypoint binary as dir/app. Nothing else of the image is written,
// and no path from the image is used on disk, so an image cannot write
// outside dir; a binary over MaxBinary bytes is refused. A nil keychain
// pulls anonymously.
func Extract(ctx context.Context, ref, dir string, kc authn.Keychain) (*Extracted, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	plat, err := v1.ParsePlatform(Platform)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, append(RemoteOptions(ctx, kc), remote.WithPlatform(*plat))...)
	if err != nil {
		return nil, RegistryError("pull from", r.Context(), err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", ref, err)
	}
	argv := append(append([]string(nil), cf.Config.Entrypoint...), cf.Config.Cmd...)
	if len(argv) == 0 || !path.IsAbs(argv[0]) {
		return nil, fmt.Errorf("image %s: its entrypoint %q is not an absolute path to a binary", ref, argv)
	}
	bin := filepath.Join(dir, "app")
	if err := unpackEntrypoint(img, argv[0], bin); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return &Extracted{Binary: bin, Args: argv[1:], Env: cf.Config.Env, Digest: d}, nil
}

// unpackEntrypoint writes the file want (an absolute path) of img to dst:
// from the topmost layer that has it, unless a layer above deleted it.
// (go-containerregistry's mutate.Extract ends its stream cleanly on a bad
// layer, so its errors would read as "no such file": hence this walk.)
func unpackEntrypoint(img v1.Image, want, dst string) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for i := len(layers) - 1; i >= 0; i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		found, hidden, err := unpackFile(rc, want, dst, MaxBinary)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if found {
			return nil
		}
		if hidden {
			break
		}
	}
	return fmt.Errorf("no file %s in the image", want)
}

// unpackFile looks for the file want (an absolute path) in one layer, a tar
// stream. When the layer has it, it writes it to dst, executable, if it is a
// regular file of at most max bytes, and found is true. When the layer
// deletes it or one of its directories (whiteouts), hidden is true: lower
// layers must not be searched.
func unpackFile(layer io.Reader, want, dst string, max int64) (found, hidden bool, err error) {
	want = strings.TrimPrefix(path.Clean(want), "/")
	tr := tar.NewReader(layer)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false, hidden, nil
		}
		if err != nil {
			return false, false, fmt.Errorf("reading the layer: %w", err)
		}
		name := strings.TrimPrefix(path.Clean(h.Name), "/")
		if name == ".." || strings.HasPrefix(name, "../") {
			return false, false, fmt.Errorf("unsafe path %q in the layer", h.Name)
		}
		if deletes(name, want) {
			hidden = true
			continue
		}
		if name != want {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return false, false, fmt.Errorf("/%s in the image is not a regular file (tar type %q)", want, h.Typeflag)
		}
		if h.Size > max {
			return false, false, fmt.Errorf("/%s in the image is %d bytes, more than the %d allowed", want, h.Size, max)
		}
		return true, false, writeExecutable(dst, io.LimitReader(tr, max))
	}
}

// deletes reports whether the layer entry name is a whiteout removing want
// from lower layers: ".wh.<name>" beside want or beside one of its
// directories, or an opaque marker ".wh..wh..opq" in one of its directories.
func deletes(name, want string) bool {
	dir, base := path.Split(name)
	if !strings.HasPrefix(base, ".wh.") {
		return false
	}
	if base == ".wh..wh..opq" {
		return strings.HasPrefix(want, dir)
	}
	gone := dir + strings.TrimPrefix(base, ".wh.")
	return want == gone || strings.HasPrefix(want, gone+"/")
}

// writeExecutable writes r to path through a temporary file, so that a
// reader never sees half a binary.
func writeExecutable(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".app-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}
