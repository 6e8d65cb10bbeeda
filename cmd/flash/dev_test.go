package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/flash-go/flash/mothership"
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

// callLoad calls one printed curl from several clients until stopped,
// counting the calls, the failures and the answers that contain want, and
// noting when such an answer first came.
type callLoad struct {
	calls, failures, wanted atomic.Int64
	want                    atomic.Pointer[string]
	firstWanted             atomic.Int64 // unix nanoseconds; 0: none since await
	mu                      sync.Mutex
	firstFailures           []string
	stop                    chan struct{}
	wg                      sync.WaitGroup
}

// startCalls starts clients calling curl, each pausing between its calls.
func startCalls(t *testing.T, curl, want string, clients int, pause time.Duration) *callLoad {
	t.Helper()
	method, url, body, headers := parseCurl(curl)
	l := &callLoad{stop: make(chan struct{})}
	l.want.Store(&want)
	client := &http.Client{Timeout: 60 * time.Second}
	call := func() {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header = headers.Clone()
		resp, err := client.Do(req)
		l.calls.Add(1)
		var msg string
		if err != nil {
			msg = err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				msg = fmt.Sprintf("%d %s", resp.StatusCode, b)
			} else if strings.Contains(string(b), *l.want.Load()) {
				l.wanted.Add(1)
				l.firstWanted.CompareAndSwap(0, time.Now().UnixNano())
			}
		}
		if msg != "" {
			l.failures.Add(1)
			l.mu.Lock()
			if len(l.firstFailures) < 10 {
				l.firstFailures = append(l.firstFailures, msg)
			}
			l.mu.Unlock()
		}
	}
	for range clients {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(pause):
					call()
				}
			}
		})
	}
	t.Cleanup(l.end)
	return l
}

// end stops the clients and waits for them.
func (l *callLoad) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// waitFor polls cond until it holds, failing after a generous bound (a
// bound against hanging, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool, out func() string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s never happened:\n%s", what, out())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startDev starts flash dev on a fresh `flash init` app and waits for its watch.
func startDev(t *testing.T) (app string, rt *runningTopology) {
	t.Helper()
	app = newHelloApp(t)
	rt, err := launchFlash(t, "dev", t.TempDir(), app, freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch", func() bool { return strings.Contains(rt.out(), "watching ") }, rt.out)
	return app, rt
}

// flash dev redeploys an edited function while calls go on through the
// gateway: the new code is served and no call fails; a syntax error is shown
// with the compiler's message and the last good build keeps serving.
func TestFlashDevReloadsWithoutFailedCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	app, rt := startDev(t)
	hello := helloCall(t, rt)
	load := startCalls(t, hello, "Howdy, ", 4, 0)
	waitFor(t, "calls before the edit", func() bool { return load.calls.Load() >= 20 }, rt.out)
	main := filepath.Join(app, "main.go")
	// Two saves in a row: the second usually comes during the first's build,
	// which is then abandoned; either way the second is what ends up served.
	editFile(t, main, `"Hello, "`, `"Hi, "`)
	time.Sleep(300 * time.Millisecond)
	editFile(t, main, `"Hi, "`, `"Howdy, "`)
	waitFor(t, "the edited greeting served", func() bool { return load.wanted.Load() > 0 }, rt.out)
	after := load.calls.Load()
	waitFor(t, "calls after the switch", func() bool { return load.calls.Load() >= after+20 }, rt.out)
	load.end()
	t.Logf("%d calls during the reload, %d failed", load.calls.Load(), load.failures.Load())
	if n := load.failures.Load(); n > 0 {
		t.Errorf("%d of %d calls failed during the reload, first: %q\n%s", n, load.calls.Load(), load.firstFailures, rt.out())
	}
	waitFor(t, "the reload's report", func() bool { return strings.Contains(rt.out(), "reloaded") }, rt.out)
	// A code change restarts every resource: the binary is new for all.
	if out := rt.out(); !strings.Contains(out, "reloaded: manifest v") || !strings.Contains(out, "worker (changed): updated at http://") ||
		!strings.Contains(out, "web (changed): updated at http://") {
		t.Errorf("the reload does not say what changed:\n%s", out)
	}
	if out := rt.out(); !strings.Contains(out, "is up on "+rt.mothership()) {
		t.Errorf("the public address moved:\n%s", out)
	}

	// A syntax error: the compiler's message, and the last good build serves.
	editFile(t, main, "func main() {\n", "func main() {\n\tbroken(\n")
	waitFor(t, "the build error shown", func() bool { return strings.Contains(rt.out(), "the last good build keeps serving") }, rt.out)
	if out := rt.out(); !strings.Contains(out, "main.go:") || !strings.Contains(out, "syntax error") {
		t.Errorf("the compiler's message is not shown:\n%s", out)
	}
	if code, body := doCurl(t, hello); code != 200 || !strings.Contains(body, "Howdy, ") {
		t.Errorf("after a failed build: %d %s", code, body)
	}
	if err := rt.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("flash dev exit: %v\n%s", err, rt.out())
	}
	t.Log(rt.out())
}

// A change of one resource's config restarts that resource alone, while
// calls go on through the gateway: the other keeps its processes.
func TestFlashDevConfigChangeRestartsOnlyThatResource(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	app, rt := startDev(t)
	before := pidsOf(t, rt.dir, "hello-app")
	if len(before["web"]) != 1 || len(before["worker"]) != 1 {
		t.Fatalf("endpoints before the change: %v", before)
	}

	load := startCalls(t, helloCall(t, rt), "Hello, ", 2, 0)
	waitFor(t, "calls before the edit", func() bool { return load.calls.Load() >= 10 }, rt.out)
	editFile(t, filepath.Join(app, "main.go"), `app.Queue("worker", flash.ResourceConfig{})`,
		`app.Queue("worker", flash.ResourceConfig{Env: map[string]string{"GREETING_STYLE": "warm"}})`)
	waitFor(t, "the reload", func() bool { return strings.Contains(rt.out(), "reloaded") }, rt.out)
	after := load.calls.Load()
	waitFor(t, "calls after the reload", func() bool { return load.calls.Load() >= after+10 }, rt.out)
	load.end()
	if n := load.failures.Load(); n > 0 || load.wanted.Load() != load.calls.Load() {
		t.Errorf("%d of %d calls failed (%d answered as expected), first: %q", n, load.calls.Load(), load.wanted.Load(), load.firstFailures)
	}

	out := rt.out()
	if !strings.Contains(out, "worker (changed): updated at http://") || strings.Contains(out, "web (changed)") ||
		!strings.Contains(out, "1 unchanged, left running") {
		t.Errorf("the reload does not say that worker alone changed:\n%s", out)
	}
	now := pidsOf(t, rt.dir, "hello-app")
	if !slices.Equal(now["web"], before["web"]) {
		t.Errorf("web restarted: pids %v, then %v", before["web"], now["web"])
	}
	if len(now["worker"]) != 1 || now["worker"][0] == before["worker"][0] {
		t.Errorf("worker was not restarted: pids %v, then %v", before["worker"], now["worker"])
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", now["worker"][0])); err == nil && !strings.Contains(string(env), "GREETING_STYLE=warm") {
		t.Errorf("the new worker process runs without its new env")
	}
	if err := rt.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("flash dev exit: %v\n%s", err, rt.out())
	}
}

// A change of a source while a build runs cancels it; none leaves it be.
func TestCancelOnChange(t *testing.T) {
	watch := func() (*devLoop, string) {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		dir := t.TempDir()
		if err := w.Add(dir); err != nil {
			t.Fatal(err)
		}
		return &devLoop{w: w}, dir
	}

	d, dir := watch()
	ctx, cancel := context.WithCancel(context.Background())
	stop := d.cancelOnChange(cancel)
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main"), 0o644); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done() // bounded by the test's timeout
	if !stop() {
		t.Error("stop does not report the change")
	}

	d, _ = watch()
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	stop = d.cancelOnChange(cancel)
	if stop() || ctx.Err() != nil {
		t.Error("cancelled without a change")
	}
}

func TestIsSource(t *testing.T) {
	for name, want := range map[string]bool{
		"/a/main.go": true, "/a/main_test.go": true, "/a/go.mod": true, "/a/go.sum": true,
		"/a/.main.go.swp": false, "/a/.#main.go": false, "/a/main.go~": false, "/a/README.md": false, "/a/4913": false,
	} {
		if got := isSource(name); got != want {
			t.Errorf("isSource(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestDeployLines(t *testing.T) {
	r := mothership.Report{Version: 7, Resources: []mothership.ResourceReport{
		{Name: "api", Action: mothership.ActionChanged, Status: "updated", EndpointURLs: []string{"http://127.0.0.1:1"}},
		{Name: "db", Action: mothership.ActionUnchanged, Status: "deployed"},
		{Name: "gpu", Action: mothership.ActionNew, Status: "failed", Error: "no port"},
	}}
	at := func(ms int) time.Time { return time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond) }
	times := reloadTimes{saved: at(0), building: at(50), compile: 900 * time.Millisecond, posted: at(1000),
		first: at(1080), up: at(1200), serving: at(1210), done: at(1300)}
	got := strings.Join(deployLines(r, times), "\n")
	want := "reloaded with failures: manifest v7\n  api (changed): updated at http://127.0.0.1:1\n  gpu (new): failed: no port\n  1 unchanged, left running"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	r.Resources = r.Resources[:2]
	want = "reloaded: manifest v7, serving 1.21s after the save (wait 50ms, go build 900ms, describe 50ms, upload 80ms, start 120ms, publish 10ms); old processes stopped 90ms later"
	if got := deployLines(r, times)[0]; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// Nothing restarted: serving once the report is in.
	times.first, times.up, times.serving = time.Time{}, time.Time{}, time.Time{}
	want = "reloaded: manifest v7, serving 1.3s after the save (wait 50ms, go build 900ms, describe 50ms, upload 300ms, start 0s, publish 0s); old processes stopped 0s later"
	if got := deployLines(r, times)[0]; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
