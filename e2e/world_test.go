package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/store"
)

// apiKey is the bearer key of every topology.
const apiKey = "k"

// world is one test's sandbox: a working directory, the processes started in
// it, and a cleanup that leaves none of them behind.
type world struct {
	t   *testing.T
	dir string // working directory of every process, symlinks resolved
	app string // the app's name: it tags the state store's records
	bin string // the app binary

	// stateURL, when set, is the etcd store the motherships share (ha_test.go);
	// otherwise the state store is statePath's SQLite file.
	stateURL string

	mu    sync.Mutex
	procs []*proc
	logs  map[string]int // log name → processes started under it
}

// newWorld skips under -short, else makes a sandbox for app (built as bin).
func newWorld(t *testing.T, bin, app string) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if bins.dir == "" {
		t.Fatal("the apps were not built (see TestMain)")
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: dir, app: app, bin: bin, logs: map[string]int{}}
	t.Cleanup(w.cleanup) // runs before TempDir's removal (cleanups are LIFO)
	return w
}

// statePath is the SQLite state store of this world's motherships.
func (w *world) statePath() string { return filepath.Join(w.dir, "state.db") }

// appDir is the app's state directory under the world's .flash.
func (w *world) appDir() layout.App { return layout.In(w.dir).App(w.app) }

// cacheDir is where the local provider tells children to keep their
// last-known-good manifest (the mothership's FLASH_CACHE_DIR default).
func (w *world) cacheDir() string { return w.appDir().Cache() }

// proc is a process the test started itself.
type proc struct {
	name string
	pid  int
	log  string        // its stdout and stderr
	done chan struct{} // closed once reaped
	err  error         // cmd.Wait's answer, set before done is closed
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// baseEnv is this process's environment without anything that would give
// an app a role or a setting the test did not choose, plus the test
// binary's pid as the parent whose end stops the app: a test killed by its
// timeout leaves no process behind.
func baseEnv() []string {
	env := []string{flash.ParentPIDEnv + "=" + strconv.Itoa(os.Getpid())}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "FLASH_") || strings.HasPrefix(k, "RUNPOD_") || k == "PORT" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// start runs w.bin in w.dir with env on top of baseEnv, in its own process
// group, its output in <name>-<n>.log.
func (w *world) start(name string, env ...string) *proc {
	w.t.Helper()
	w.mu.Lock()
	w.logs[name]++
	n := w.logs[name]
	w.mu.Unlock()
	logPath := filepath.Join(w.dir, fmt.Sprintf("%s-%d.log", name, n))
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(w.bin)
	cmd.Dir = w.dir
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	return p
}

// kill sends SIGKILL to p's process group and waits until p is reaped.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	if p.exited() {
		return // reaped: its pid may belong to someone else by now
	}
	syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s (pid %d) still running 10s after SIGKILL", p.name, p.pid)
	}
}

// stop sends SIGTERM to p alone and returns how it exited, failing the test
// when it is still running after timeout.
func (p *proc) stop(t testing.TB, timeout time.Duration) error {
	t.Helper()
	if !p.exited() {
		syscall.Kill(p.pid, syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s (pid %d) still running %s after SIGTERM", p.name, p.pid, timeout)
		return nil
	}
}

// exited reports whether p has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ours lists the live processes that run one of the suite's binaries in
// w.dir: every process of this world, whoever started it.
func (w *world) ours() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if w.alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid is alive (not a zombie) and runs one of the
// suite's binaries in w.dir, so that a reused pid is never taken for ours.
func (w *world) alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(dir + "/exe")
	if err != nil || (exe != bins.pipeline && exe != bins.testapp) {
		return false
	}
	if cwd, err := os.Readlink(dir + "/cwd"); err != nil || cwd != w.dir {
		return false
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S …".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

// endpoints returns the local provider's records of this world's app, or nil
// when there is no state store.
func (w *world) endpoints() ([]store.Endpoint, error) {
	if _, err := os.Stat(w.statePath()); err != nil && w.stateURL == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := w.openStore(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Endpoints(ctx, w.app)
}

// endpointOf returns the single record of resource; the test fails when
// there is not exactly one.
func (w *world) endpointOf(t testing.TB, resource string) store.Endpoint {
	t.Helper()
	e, err := w.record(resource)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// record returns the single record of resource, or an error saying why not.
func (w *world) record(resource string) (store.Endpoint, error) {
	eps, err := w.endpoints()
	if err != nil {
		return store.Endpoint{}, fmt.Errorf("read the state store: %w", err)
	}
	var found []store.Endpoint
	for _, e := range eps {
		if e.Resource == resource {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		return store.Endpoint{}, fmt.Errorf("state store: want 1 endpoint record of %s, have %+v", resource, found)
	}
	return found[0], nil
}

// cleanup kills every process of the world — those the test started, those
// the state store records, any other running our binaries in w.dir — and
// fails the test when one survives. It also fails it when a log shows a data
// race or a crash, and prints the logs of a failed test.
func (w *world) cleanup() {
	t := w.t
	w.mu.Lock()
	procs := slices.Clone(w.procs)
	w.mu.Unlock()

	// Before anything is killed: every live process must be one the test
	// started or one the state store records (SPEC §6.1), else `flash
	// undeploy` could not find it.
	recorded := map[int]bool{}
	eps, err := w.endpoints()
	if err != nil {
		t.Errorf("cleanup: read the state store: %v", err)
	}
	for _, e := range eps {
		recorded[e.PID] = true
	}
	if !t.Failed() {
		for _, pid := range w.ours() {
			if !recorded[pid] && !slices.ContainsFunc(procs, func(p *proc) bool { return p.pid == pid }) {
				t.Errorf("pid %d (%s) is alive but neither started by the test nor recorded in the state store", pid, cmdline(pid))
			}
		}
	}

	// Motherships and hand-started children first, so that nothing restarts
	// what is killed next.
	for _, p := range procs {
		p.kill(t)
	}
	victims := map[int]bool{}
	for pid := range recorded {
		victims[pid] = true
	}
	for _, pid := range w.ours() {
		victims[pid] = true
	}
	for pid := range victims {
		if w.alive(pid) {
			syscall.Kill(-pid, syscall.SIGKILL) // its group (the provider starts each in its own)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var left []int
	deadline := time.Now().Add(10 * time.Second)
	for {
		left = left[:0]
		for pid := range victims {
			if w.alive(pid) {
				left = append(left, pid)
			}
		}
		left = append(left, w.ours()...)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("processes left behind after cleanup: %v", left)
	}
	w.checkLogs()
	if t.Failed() {
		w.dumpLogs()
	}
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// logFiles are every log of the world: the test's processes' and the local
// provider's (.flash/apps/<app>/logs/<resource>.log).
func (w *world) logFiles() []string {
	a, _ := filepath.Glob(filepath.Join(w.dir, "*.log"))
	b, _ := filepath.Glob(filepath.Join(w.appDir().Logs(), "*.log"))
	return append(a, b...)
}

// checkLogs fails the test on a data race or a crash in any process.
func (w *world) checkLogs() {
	for _, path := range w.logFiles() {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, bad := range []string{"WARNING: DATA RACE", "\npanic: ", "\nfatal error: "} {
			if i := bytes.Index(data, []byte(bad)); i >= 0 {
				end := min(len(data), i+3000)
				w.t.Errorf("%s shows %q:\n%s", filepath.Base(path), strings.TrimSpace(bad), data[i:end])
			}
		}
	}
}

// dumpLogs prints, for a failed test, each log's notable lines (warnings,
// errors, manifests applied or rejected, the provider's own lines) and its end.
func (w *world) dumpLogs() {
	for _, path := range w.logFiles() {
		name := strings.TrimPrefix(path, w.dir+"/")
		w.t.Logf("---- %s (notable lines) ----\n%s", name, grep(path, 40, "level=WARN", "level=ERROR", "manifest", "flash: ", "endpoint "))
		w.t.Logf("---- %s (last lines) ----\n%s", name, tail(path, 15))
	}
}

// grep returns the last n lines of the file at path holding any of parts.
func grep(path string, n int, parts ...string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if slices.ContainsFunc(parts, func(p string) bool { return strings.Contains(line, p) }) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// logContains reports whether the log at path has a line containing every
// one of parts.
func logContains(path string, parts ...string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}

// eventually calls cond until it returns nil, failing the test with cond's
// last error when timeout passes first.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// killPID sends SIGKILL to a process of the world the test did not start
// (and its group), after checking it is one.
func (w *world) killPID(t testing.TB, pid int) {
	t.Helper()
	if !w.alive(pid) {
		t.Fatalf("pid %d is not a live process of this test", pid)
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	eventually(t, 5*time.Second, fmt.Sprintf("pid %d gone", pid), func() error {
		if w.alive(pid) {
			return errors.New("still alive")
		}
		return nil
	})
}
