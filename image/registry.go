package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flash-go/flash/internal/oci"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ParseRef parses where an image goes: a repository with an optional tag
// ("latest" when none). A digest is refused: a push names a tag, and the
// digest is what the push returns.
func ParseRef(ref string) (name.Tag, error) {
	t, err := name.NewTag(ref)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q: want REGISTRY/REPOSITORY[:TAG] (%w)", ref, err)
	}
	return t, nil
}

// ByDigest is the reference REPO@sha256:… of the image with digest d in ref's repository.
func ByDigest(ref name.Tag, d v1.Hash) string {
	return ref.Context().Digest(d.String()).String()
}

// Push pushes img to ref and returns it referenced by digest, REPO@sha256:…,
// the form every deployment uses so that moving the tag never changes what
// runs. Layers the registry already holds are not uploaded again.
func Push(ctx context.Context, img v1.Image, ref string, kc authn.Keychain) (string, error) {
	tag, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, oci.RemoteOptions(ctx, kc)...); err != nil {
		return "", oci.RegistryError("push to", tag.Context(), err)
	}
	return ByDigest(tag, d), nil
}

// WriteLayout writes img as an OCI image layout in dir (replacing what was
// there), tagged ref, for tools such as crane or skopeo to push later.
func WriteLayout(dir string, img v1.Image, ref string) error {
	tmp := dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}
