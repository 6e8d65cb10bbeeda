package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Errors a registry can end a push or pull with; the returned error wraps
// one of these and the registry's own answer.
var (
	// ErrUnauthorized means the registry wanted credentials, or refused the ones given.
	ErrUnauthorized = errors.New("the registry refused access (credentials missing or wrong)")
	// ErrUnreachable means no connection to the registry could be made.
	ErrUnreachable = errors.New("the registry cannot be reached")
)

// Environment variables holding registry credentials; when set they are used
// for every registry, before Docker's config file.
const (
	EnvRegistryUsername = "FLASH_REGISTRY_USERNAME"
	EnvRegistryPassword = "FLASH_REGISTRY_PASSWORD"
)

// dialTimeout bounds connecting to a registry.
const dialTimeout = 10 * time.Second

// Keychain returns the registry credentials of the user: FLASH_REGISTRY_USERNAME
// and FLASH_REGISTRY_PASSWORD when set, else Docker's config file
// (~/.docker/config.json or $DOCKER_CONFIG/config.json, with its credential
// helpers, as `docker login` leaves them), else none.
func Keychain(getenv func(string) string) authn.Keychain {
	user, pass := getenv(EnvRegistryUsername), getenv(EnvRegistryPassword)
	if user == "" && pass == "" {
		return authn.DefaultKeychain
	}
	return staticKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}
}

// staticKeychain gives the same credentials for every registry.
type staticKeychain struct{ auth authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }

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
	if err := remote.Write(tag, img, remoteOptions(ctx, kc)...); err != nil {
		return "", registryError("push to", tag.Context(), err)
	}
	return ByDigest(tag, d), nil
}

// remoteOptions are the options of every registry call.
func remoteOptions(ctx context.Context, kc authn.Keychain) []remote.Option {
	if kc == nil {
		kc = authn.NewMultiKeychain() // anonymous
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(t)}
}

// registryError says what went wrong in words a user can act on.
func registryError(op string, repo name.Repository, err error) error {
	host := repo.RegistryStr()
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: %s %s (HTTP %d): log in with `docker login %s`, or set %s and %s: %w",
			ErrUnauthorized, op, repo, te.StatusCode, host, EnvRegistryUsername, EnvRegistryPassword, err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("%w: %s %s: is the registry address %s right, and is it up? %w", ErrUnreachable, op, repo, host, err)
	}
	return fmt.Errorf("%s %s: %w", op, repo, err)
}

// WriteLayout writes img as an OCI image layout in dir (replacing what was
// there), tagged ref, for tools such as crane, skopeo or `docker load` to
// push or run later.
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
