package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/flash-go/flash/image"
	"github.com/flash-go/flash/internal/oci"
)

// imageResult is what flash build --image made.
type imageResult struct {
	// Ref is the image by digest, REPO@sha256:…: what a deployment names.
	Ref     string `json:"ref"`
	Pushed  bool   `json:"pushed"`
	Layout  string `json:"layout,omitempty"` // the OCI layout written when not pushed
	CACerts string `json:"ca_certs"`         // where the image's CA certificates came from
	Took    string `json:"took"`
}

// checkImageFlags refuses --push without --image and a malformed REF before
// any build starts.
func checkImageFlags(ref string, push bool) error {
	if ref == "" {
		if push {
			return usageError{"build: --push needs --image REF"}
		}
		return nil
	}
	if _, err := image.ParseRef(ref); err != nil {
		return usageError{"build: --image: " + err.Error()}
	}
	return nil
}

// buildImage makes the app's linux/amd64 image, then pushes it, or writes it
// as an OCI layout under the build directory.
func buildImage(e *env, pkg, app, ref string, push bool) (*imageResult, error) {
	start := time.Now()
	fmt.Fprintf(e.stderr, "building image %s for %s …\n", ref, image.Platform)
	b, err := image.Build(e.ctx, image.Options{Pkg: pkg, App: app, FlashVersion: flashVersion()})
	if err != nil {
		return nil, err
	}
	tag, err := image.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	res := &imageResult{Ref: image.ByDigest(tag, b.Digest), CACerts: b.CACerts}
	if push {
		fmt.Fprintf(e.stderr, "pushing %s …\n", tag)
		if res.Ref, err = image.Push(e.ctx, b.Image, ref, oci.Keychain(os.Getenv)); err != nil {
			return nil, err
		}
		res.Pushed = true
	} else {
		if res.Layout, err = filepath.Abs(filepath.Join(buildDir, "image")); err != nil {
			return nil, err
		}
		if err := image.WriteLayout(res.Layout, b.Image, tag.Name()); err != nil {
			return nil, err
		}
	}
	res.Took = time.Since(start).Round(time.Millisecond).String()
	return res, nil
}

// printImage says what flash build --image made, the digest reference first.
func printImage(e *env, r *imageResult) {
	fmt.Fprintf(e.stdout, "  image     %s\n", r.Ref)
	if r.Pushed {
		fmt.Fprintf(e.stdout, "            pushed in %s (CA certificates from %s)\n", r.Took, r.CACerts)
		return
	}
	fmt.Fprintf(e.stdout, "            OCI layout %s, not pushed (--push to push) (CA certificates from %s)\n", r.Layout, r.CACerts)
}

// flashVersion is the version of the flash module this CLI was built from.
func flashVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == "github.com/flash-go/flash" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/flash-go/flash" {
			return d.Version
		}
	}
	return "unknown"
}
