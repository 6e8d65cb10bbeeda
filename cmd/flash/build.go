package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/internal/atomicfile"
	"github.com/flash-go/flash/manifest"
)

// buildDir is where flash build puts the binary, manifest and artifact.
const buildDir = ".flash/build"

// buildResult is what a build produced.
type buildResult struct {
	Binary   string             `json:"binary"`
	Manifest string             `json:"manifest"`
	Artifact string             `json:"artifact"`
	Image    *imageResult       `json:"image,omitempty"`
	App      *manifest.Manifest `json:"-"`
	Took     time.Duration      `json:"-"`
	Compile  time.Duration      `json:"-"` // go build's share of Took
}

// buildOptions vary a build.
type buildOptions struct {
	// artifact also writes artifact.tar.gz (flash build and deploy upload it).
	artifact bool
	// dev links for flash dev's reloads (devBuildFlags).
	dev bool
}

// devBuildFlags are flash dev's go build flags, the same for every build of
// a session. The link is most of a rebuild; without the DWARF data and the
// symbol table (-s -w, as the image build links too) it takes about half as
// long: panics still print their stacks, debuggers and perf see less. No VCS
// stamp either (a git call per build). The compile flags are go build's
// defaults, so the packages cached by the developer's own builds and tests
// are reused. Flags the developer sets in GOFLAGS win.
func devBuildFlags() []string {
	goflags := os.Getenv("GOFLAGS")
	var flags []string
	if !strings.Contains(goflags, "-ldflags") {
		flags = append(flags, "-ldflags=-s -w")
	}
	if !strings.Contains(goflags, "-buildvcs") {
		flags = append(flags, "-buildvcs=false")
	}
	return flags
}

func runBuild(e *env) int {
	fs := flag.NewFlagSet("flash build", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	imageRef := fs.String("image", "", "also make the app's linux/amd64 OCI image, tagged `REF` (REGISTRY/REPO[:TAG])")
	push := fs.Bool("push", false, "push the image to its registry (else write it under "+buildDir+"/image)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: flash build [--json] [--image REF [--push]] [PKG]\n\nBuilds the app (default: the package in the current directory), writes\n"+
			buildDir+"/app, its flash_manifest.json and artifact.tar.gz (binary + manifest).")
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) > 1 {
		return fail(e, usageError{"build: give at most one package"})
	}
	if err := checkImageFlags(*imageRef, *push); err != nil {
		return fail(e, err)
	}
	pkg := "."
	if len(args) == 1 {
		pkg = args[0]
	}
	res, err := build(e, pkg, buildOptions{artifact: true})
	if err != nil {
		return fail(e, err)
	}
	if *imageRef != "" {
		if res.Image, err = buildImage(e, pkg, res.App.ProjectName, *imageRef, *push); err != nil {
			return fail(e, err)
		}
	}
	if *asJSON {
		writeJSON(e, res)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "built %s in %s: %d resource(s)\n  binary    %s\n  manifest  %s\n  artifact  %s\n",
		res.App.ProjectName, res.Took.Round(time.Millisecond), len(res.App.Resources), res.Binary, res.Manifest, res.Artifact)
	if res.Image != nil {
		printImage(e, res.Image)
	}
	return exitOK
}

// describeTimeout bounds how long a built binary may take to print its manifest.
const describeTimeout = 20 * time.Second

// build compiles pkg, asks the binary for its manifest and, with
// opts.artifact, writes the artifact.
func build(e *env, pkg string, opts buildOptions) (*buildResult, error) {
	start := time.Now()
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, errors.New("the Go toolchain is not on PATH: install Go 1.26 or later (https://go.dev/dl) and try again")
	}
	dir, err := filepath.Abs(buildDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	bin := filepath.Join(dir, "app")
	f, err := os.CreateTemp(dir, "app-*.new") // two builds in one directory do not collide
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp) // renamed away on success
	goCmd := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(e.ctx, goTool, append(args, pkg)...)
		if fi, err := os.Stat(pkg); err == nil && fi.IsDir() {
			// A directory may be a module of its own: build it from inside.
			cmd = exec.CommandContext(e.ctx, goTool, append(args, ".")...)
			cmd.Dir = pkg
		}
		return cmd
	}
	args := []string{"build"}
	if opts.dev {
		args = append(args, devBuildFlags()...)
	}
	cmd := goCmd(append(args, "-o", tmp)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stop := showProgress(e.stderr, "building "+pkg, start)
	err = cmd.Run()
	stop()
	compiled := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("go build %s failed:\n%s", pkg, indent(out.String()))
	}
	if fi, err := os.Stat(tmp); err != nil || fi.Mode()&0o111 == 0 {
		name, _ := goCmd("list", "-f", "{{.Name}}").Output()
		return nil, fmt.Errorf("%s is package %s, not a program: flash runs a command (package main).\n"+
			"Point it at the directory of your main package, whose func main calls app.Main()", pkg, strings.TrimSpace(string(name)))
	}
	m, err := describeBinary(e.ctx, tmp, pkg)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, bin); err != nil {
		return nil, err
	}
	mpath := filepath.Join(dir, manifest.FileName)
	if err := manifest.Save(mpath, m, 0o644); err != nil {
		return nil, err
	}
	res := &buildResult{Binary: bin, Manifest: mpath, App: m, Compile: compiled}
	if opts.artifact {
		res.Artifact = filepath.Join(dir, "artifact.tar.gz")
		if err := writeArtifact(res.Artifact, bin, m.Pretty()); err != nil {
			return nil, err
		}
	}
	res.Took = time.Since(start)
	fmt.Fprintf(e.stderr, "built %s in %s: %d resource(s)\n", m.ProjectName, res.Took.Round(100*time.Millisecond), len(m.Resources))
	return res, nil
}

// describeBinary runs bin with --flash-manifest and parses what it prints,
// explaining the usual mistake: a main that never calls app.Main().
func describeBinary(ctx context.Context, bin, pkg string) (*manifest.Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	var mout, merr bytes.Buffer
	describe := exec.CommandContext(ctx, bin, flash.ManifestFlag)
	describe.Stdout, describe.Stderr = &mout, &merr
	describe.WaitDelay = time.Second
	const fix = "its func main must call app.Main() on the flash app it builds, before doing anything else:\n" +
		"    app := flash.NewApp(\"myapp\")\n    … resources and functions …\n    app.Main()"
	err := describe.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return nil, fmt.Errorf("%s did not print its manifest within %s when run with %s: %s", pkg, describeTimeout, flash.ManifestFlag, fix)
	case err != nil:
		msg := strings.TrimSpace(merr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("the app in %s is not a valid flash app (does main call app.Main()?):\n%s", pkg, indent(msg))
	case len(bytes.TrimSpace(mout.Bytes())) == 0:
		return nil, fmt.Errorf("%s printed no manifest when run with %s: %s", pkg, flash.ManifestFlag, fix)
	}
	m, err := manifest.Parse(mout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s printed something other than a flash manifest when run with %s (%w): %s", pkg, flash.ManifestFlag, err, fix)
	}
	return m, nil
}

// showProgress tells a person that slow work goes on: on a terminal, a
// counter updated in place; otherwise the label at once and a line every
// 10 s. stop ends it.
func showProgress(w io.Writer, label string, start time.Time) (stop func()) {
	tty := isTerminal(w)
	every := 10 * time.Second
	if tty {
		every = time.Second
	}
	fmt.Fprintf(w, "%s …", label)
	if !tty {
		fmt.Fprintln(w)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, "\r\x1b[2K")
				}
				return
			case <-t.C:
				took := time.Since(start).Round(time.Second)
				if tty {
					fmt.Fprintf(w, "\r\x1b[2K%s … %s", label, took)
				} else {
					fmt.Fprintf(w, "still %s (%s) …\n", label, took)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// writeArtifact writes a gzip'd tar of the binary ("app") and the manifest,
// the shape POST /flash/deploy accepts.
func writeArtifact(path, bin string, mf []byte) error {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if err := writeTar(gz, bin, mf); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return atomicfile.Write(path, buf.Bytes(), 0o644)
}

// writeTar writes the tar of an artifact, uncompressed, to w.
func writeTar(w io.Writer, bin string, mf []byte) error {
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	now := time.Now()
	if err := tw.WriteHeader(&tar.Header{Name: manifest.FileName, Mode: 0o644, Size: int64(len(mf)), ModTime: now}); err != nil {
		return err
	}
	if _, err := tw.Write(mf); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: fi.Size(), ModTime: now}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return err
	}
	return tw.Close()
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
