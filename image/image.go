// Package image makes an OCI image of a flash app without Docker, the way
// ko does: the app compiled as a static linux/amd64 binary, layered onto an
// empty image with CA certificates and a writable /tmp. Every input that
// could vary between two builds of the same source is fixed (timestamps,
// owners, modes, entry order, build paths), so the same source, toolchain
// and certificate bundle give the same digest.
//
// It also pushes images with the user's registry credentials, writes them
// as OCI layouts, and extracts an image's binary (for the Runpod emulator,
// which runs images as local processes).
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/flash-go/flash/internal/oci"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths and labels inside the image.
const (
	// Entrypoint is where the app binary sits in the image; it is the
	// image's entrypoint.
	Entrypoint = "/app"
	// CertsPath is where the CA certificates sit in the image (the path Go's
	// crypto/x509 reads first on Linux).
	CertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// LabelApp is the label holding the app's name.
	LabelApp = "dev.flash.app"
	// LabelVersion is the label holding the version of flash that built the image.
	LabelVersion = "dev.flash.version"
	// Platform is the only platform flash builds images for.
	Platform = oci.Platform
)

// epoch is every timestamp in an image: fixed, so that builds are reproducible.
var epoch = time.Unix(0, 0).UTC()

// Options says what to build and how to label it.
type Options struct {
	// Pkg is the app's main package: a directory (built from inside, so it
	// may be a module of its own) or an import path. "" means ".".
	Pkg string
	// App is the app's name, recorded in a label.
	App string
	// FlashVersion is the version of flash building the image, recorded in a label.
	FlashVersion string
	// CACerts is the PEM bundle of CA certificates to put in the image;
	// "" means the build machine's (see FindCACerts).
	CACerts string
	// Getenv reads the environment (SSL_CERT_FILE); nil means os.Getenv.
	Getenv func(string) string
}

// Built is a built image.
type Built struct {
	Image v1.Image
	// Digest is the image manifest's digest: the image's identity.
	Digest v1.Hash
	// CACerts is the file the image's CA certificates came from.
	CACerts string
	// BinarySize is the size of the app binary in bytes.
	BinarySize int64
}

// Build compiles the app for linux/amd64 and makes its image. A package that
// does not compile gives a *CompileError carrying the compiler's message.
func Build(ctx context.Context, opts Options) (*Built, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	certsPath := opts.CACerts
	if certsPath == "" {
		p, err := FindCACerts(getenv)
		if err != nil {
			return nil, err
		}
		certsPath = p
	}
	certs, err := readCACerts(certsPath)
	if err != nil {
		return nil, err
	}
	bin, err := Compile(ctx, opts.Pkg)
	if err != nil {
		return nil, err
	}
	img, err := assemble(bin, certs, opts.App, opts.FlashVersion)
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	return &Built{Image: img, Digest: d, CACerts: certsPath, BinarySize: int64(len(bin))}, nil
}

// assemble layers the binary and the certificates onto an empty image: a
// base layer (certificates, /tmp) that rarely changes, so a registry already
// holds it on the next push, and the app layer.
func assemble(bin, certs []byte, app, version string) (v1.Image, error) {
	base, err := tarLayer([]entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: CertsPath[1:], mode: 0o644, data: certs},
		{name: "tmp/", mode: 0o1777},
	})
	if err != nil {
		return nil, err
	}
	appLayer, err := tarLayer([]entry{{name: Entrypoint[1:], mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer,
			History: v1.History{Author: "flash", Created: v1.Time{Time: epoch}, CreatedBy: "flash build: CA certificates, /tmp"}},
		mutate.Addendum{Layer: appLayer, MediaType: types.OCILayer,
			History: v1.History{Author: "flash", Created: v1.Time{Time: epoch}, CreatedBy: "flash build: app binary"}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Author = "flash"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: []string{Entrypoint},
		WorkingDir: "/",
		Env: []string{
			"PATH=/",
			"SSL_CERT_FILE=" + CertsPath,
			"FLASH_IN_IMAGE=1",
			// A container is reached from outside it: listen on every interface.
			"FLASH_HOST=0.0.0.0",
		},
		Labels: map[string]string{LabelApp: app, LabelVersion: version},
	}
	return mutate.ConfigFile(img, cf)
}

// entry is one file or directory (name ends in "/") of a layer.
type entry struct {
	name string
	mode int64
	data []byte
}

// tarLayer makes a gzip'd layer of entries, given in tar order (parents
// first, sorted), all owned by root and dated epoch.
func tarLayer(entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch}
		if e.name[len(e.name)-1] == '/' {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image layer %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("image layer %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}
