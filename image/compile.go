package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/flash-go/flash/internal/oci"
)

// CompileError is an app that does not compile for linux/amd64.
type CompileError struct {
	Pkg    string
	Output string // the compiler's message
	Err    error  // how go build ended
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("go build %s for %s failed:\n%s", e.Pkg, Platform, indent(e.Output))
}

func (e *CompileError) Unwrap() error { return e.Err }

// buildArgs are the arguments of the go build that makes an image's binary:
// no build paths, no VCS stamp (both would change the digest between two
// checkouts of the same source), no symbol table or DWARF (smaller image;
// stack traces still work).
func buildArgs(out, pkg string) []string {
	return []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg}
}

// Compile builds pkg (a directory or an import path; "" means ".") as a
// static linux/amd64 binary and returns its bytes.
func Compile(ctx context.Context, pkg string) ([]byte, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, errors.New("the Go toolchain is not on PATH: install Go 1.26 or later (https://go.dev/dl) and try again")
	}
	if pkg == "" {
		pkg = "."
	}
	tmp, err := os.MkdirTemp("", "flash-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "app")

	cmd := exec.CommandContext(ctx, goTool, buildArgs(out, pkg)...)
	if fi, err := os.Stat(pkg); err == nil && fi.IsDir() {
		// A directory may be a module of its own: build it from inside.
		cmd = exec.CommandContext(ctx, goTool, buildArgs(out, ".")...)
		cmd.Dir = pkg
	}
	// Later entries win: these override whatever the user's environment says.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("go build %s: %w", pkg, ctx.Err())
		}
		return nil, &CompileError{Pkg: pkg, Output: msg.String(), Err: err}
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	if fi.Size() > oci.MaxBinary {
		return nil, fmt.Errorf("the binary of %s is %d bytes, more than the %d an image may hold", pkg, fi.Size(), oci.MaxBinary)
	}
	return os.ReadFile(out)
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
