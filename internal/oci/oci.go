// Package oci talks to OCI registries for flash: the user's credentials,
// errors a person can act on, and pulling an image's entrypoint binary (the
// Runpod emulator runs images as local processes). Making and pushing images
// is package image's job; this package is what both it and the emulator,
// which imports only internal packages, need.
package oci

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Platform is the only platform flash builds and runs images for.
const Platform = "linux/amd64"

// MaxBinary bounds the size of an app binary that goes into or comes out of
// an image.
const MaxBinary = 512 << 20

// Errors a registry can end a push or pull with; the returned error wraps
// one of these and the registry's own answer.
var (
	// ErrUnauthorized means the registry wanted credentials, or refused the ones given.
	ErrUnauthorized = errors.New("the registry refused access (credentials missing or wrong)")
	// ErrUnreachable means no connection to the registry could be made.
	ErrUnreachable = errors.New("the registry cannot be reached")
)

// Environment variables holding registry credentials; when set they are used
// for every registry, instead of Docker's config file.
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

// RemoteOptions are the options of every registry call: ctx bounds it, kc
// gives the credentials (nil: anonymous), connecting is bounded.
func RemoteOptions(ctx context.Context, kc authn.Keychain) []remote.Option {
	if kc == nil {
		kc = authn.NewMultiKeychain() // resolves to anonymous
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(t)}
}

// RegistryError says what went wrong in words a user can act on; op is
// what was being done ("push to", "pull from"). The result wraps
// ErrUnauthorized or ErrUnreachable when it is one of those, and err.
func RegistryError(op string, repo name.Repository, err error) error {
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
