package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// newHelloApp makes a fresh `flash init` app in a temporary directory.
func newHelloApp(t *testing.T) string {
	t.Helper()
	src, _ := filepath.Abs("../..")
	dir := filepath.Join(t.TempDir(), "hello-app")
	if code, out, errOut := runCLI(t, "init", "--flash-source", src, dir); code != exitOK {
		t.Fatalf("init: exit %d %s %s", code, out, errOut)
	}
	return dir
}

// editFile replaces old with new in path, failing when old is not there.
func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// helloCall is the printed curl of POST /hello.
func helloCall(t *testing.T, rt *runningTopology) string {
	t.Helper()
	for _, c := range rt.curls {
		if strings.Contains(c, "/hello") {
			return c
		}
	}
	t.Fatalf("no /hello curl printed:\n%s", rt.out())
	return ""
}

// A second flash run of an edited app deploys the new build: its new
// resource comes up and its changed function is served, though the state of
// the first run (its desired state) is still in .flash.
func TestFlashRunAgainDeploysTheEditedApp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	app := newHelloApp(t)
	work := t.TempDir()
	rt := startFlashRunIn(t, work, app, freePort(t))
	if code, body := doCurl(t, helloCall(t, rt)); code != 200 || !strings.Contains(body, "Hello, ") {
		t.Fatalf("first run: %d %s", code, body)
	}
	if err := rt.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("flash run exit: %v\n%s", err, rt.out())
	}

	main := filepath.Join(app, "main.go")
	editFile(t, main, `"Hello, "`, `"Howdy, "`)
	editFile(t, main, "\treturn app, h\n}", `	extra := app.Queue("extra", flash.ResourceConfig{})
	flash.Register(extra, "ping", func(ctx context.Context, in GreetIn) (GreetOut, error) {
		return GreetOut{Greeting: "pong", ServedBy: app.Identity()}, nil
	})
	return app, h
}`)

	// The run prints its table once every resource of the new build has an
	// endpoint: extra included.
	rt = startFlashRunIn(t, work, app, freePort(t))
	out := rt.out()
	if !strings.Contains(out, "/v2/extra") || !strings.Contains(out, "ping") {
		t.Errorf("the table does not show the new resource:\n%s", out)
	}
	if code, body := doCurl(t, helloCall(t, rt)); code != 200 || !strings.Contains(body, "Howdy, ") {
		t.Errorf("second run serves the old code: %d %s", code, body)
	}
	if err := rt.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("flash run exit: %v", err)
	}
}
