package image

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
	"github.com/google/go-containerregistry/pkg/v1/mutate"
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
	img, err := remote.Image(r, append(remoteOptions(ctx, kc), remote.WithPlatform(*plat))...)
	if err != nil {
		return nil, registryError("pull from", r.Context(), err)
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
	if err := unpackFile(mutate.Extract(img), argv[0], bin, MaxBinary); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return &Extracted{Binary: bin, Args: argv[1:], Env: cf.Config.Env, Digest: d}, nil
}

// unpackFile finds the regular file want (an absolute path) in the
// flattened filesystem fs and writes it to dst, executable, if it holds at
// most max bytes.
func unpackFile(fs io.ReadCloser, want, dst string, max int64) error {
	defer fs.Close()
	want = path.Clean(want)
	tr := tar.NewReader(fs)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("no file %s in the image", want)
		}
		if err != nil {
			return fmt.Errorf("reading the image's layers: %w", err)
		}
		if "/"+strings.TrimPrefix(path.Clean(h.Name), "/") != want {
			continue // also every name that climbs out with ".."
		}
		if h.Typeflag != tar.TypeReg {
			return fmt.Errorf("%s in the image is not a regular file (tar type %q)", want, h.Typeflag)
		}
		if h.Size > max {
			return fmt.Errorf("%s in the image is %d bytes, more than the %d allowed", want, h.Size, max)
		}
		return writeExecutable(dst, io.LimitReader(tr, max))
	}
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
