package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/flash-go/flash/store"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flash-go/flash/provider"
)

// deployment is one Deploy: a resource's replicas started together.
type deployment struct {
	id, resource, configHash, binary string
	specEnv                          map[string]string
	env                              []string // every child's environment but PORT and FLASH_INSTANCE_ID
	replicas                         []*replica
}

// replica is one process slot of a deployment. The mutable fields are guarded
// by Provider.mu; while a monitor runs, only it replaces proc and port.
type replica struct {
	index int
	id    string // store record id and FLASH_INSTANCE_ID: "<deployment id>/<index>"

	port     int
	proc     *proc
	restarts int

	stop chan struct{} // closed to stop the monitor
	done chan struct{} // closed when the monitor returned; nil when none was started
}

// proc is one running (or once running) process.
type proc struct {
	pid     int
	started time.Time
	exited  chan struct{} // closed when our wait(2) returned; nil for a process we did not start
	waitErr error         // set before exited is closed
}

func (r *replica) url() string { return "http://127.0.0.1:" + strconv.Itoa(r.port) }

func (d *deployment) endpointLocked() provider.Endpoint {
	e := provider.Endpoint{ID: d.id, Resource: d.resource, ConfigHash: d.configHash}
	for _, r := range d.replicas {
		e.URLs = append(e.URLs, r.url())
	}
	return e
}

// childEnv is os.Environ() with base then extra layered on top, the child's
// identity set and FLASH_IS_MOTHERSHIP removed: children are never motherships.
// PORT, FLASH_LISTEN_FD and FLASH_INSTANCE_ID are left out: they differ per process.
func childEnv(base, extra map[string]string, resource string) []string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			m[k] = v
		}
	}
	maps.Copy(m, base)
	maps.Copy(m, extra)
	delete(m, "FLASH_IS_MOTHERSHIP")
	delete(m, "PORT")
	delete(m, "FLASH_LISTEN_FD")
	delete(m, "FLASH_INSTANCE_ID")
	m["FLASH_RESOURCE_NAME"] = resource
	m["FLASH_HOST"] = "127.0.0.1"
	env := make([]string, 0, len(m)+2)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		env = append(env, k+"="+m[k])
	}
	return env
}

// resolveBinary makes bin absolute, so that it can be recognised in
// /proc/<pid>/cmdline later whatever the working directory.
func resolveBinary(bin string) (string, error) {
	if bin == "" {
		return "", errors.New("local: no binary to run (Config.Binary and Spec.Artifact are empty)")
	}
	if !strings.ContainsRune(bin, filepath.Separator) {
		p, err := exec.LookPath(bin)
		if err != nil {
			return "", fmt.Errorf("local: binary: %w", err)
		}
		bin = p
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", fmt.Errorf("local: binary: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("local: binary: %w", err)
	}
	return abs, nil
}

func (p *Provider) logPath(resource string) string {
	return filepath.Join(p.cfg.LogDir, resource+".log")
}

// start starts one process of d for r, serving on ln (r.port), which it
// inherits; the caller closes its own copy of ln afterwards. Its output goes
// straight to the log file (no pipe through us, so our death cannot hurt it)
// and it gets its own process group (the terminal's Ctrl-C does not reach it).
func (p *Provider) start(d *deployment, r *replica, ln *net.TCPListener) (*proc, error) {
	if err := os.MkdirAll(p.cfg.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("local: log dir: %w", err)
	}
	f, err := os.OpenFile(p.logPath(d.resource), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("local: log file: %w", err)
	}
	defer f.Close() // the child has its own copy of the descriptor
	sock, err := ln.File()
	if err != nil {
		return nil, fmt.Errorf("local: pass the socket: %w", err)
	}
	defer sock.Close() // likewise
	port := ln.Addr().(*net.TCPAddr).Port
	cmd := exec.Command(d.binary)
	cmd.Env = append(slices.Clip(d.env), "PORT="+strconv.Itoa(port), "FLASH_LISTEN_FD="+strconv.Itoa(listenFD), "FLASH_INSTANCE_ID="+r.id)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.ExtraFiles = []*os.File{sock}
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("local: start %s: %w", d.binary, err)
	}
	pr := &proc{pid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{})}
	// The reaper outlives Close on purpose: it ends when the child does.
	go func() {
		pr.waitErr = cmd.Wait()
		close(pr.exited)
	}()
	fmt.Fprintf(f, "flash: started %s pid=%d port=%d at %s\n", r.id, pr.pid, port, pr.started.Format(time.RFC3339))
	return pr, nil
}

// exitErr describes why pr ended.
func (pr *proc) exitErr() error {
	if pr.exited == nil {
		return errors.New("process is gone")
	}
	if pr.waitErr == nil {
		return errors.New("exited with status 0")
	}
	return pr.waitErr
}

// gone reports whether pr has ended. A process we did not start is checked by
// signal 0 and by its command line and environment, so that a reused pid does
// not pass for it.
func gone(pr *proc, binary, instance string) bool {
	if pr == nil || pr.pid <= 0 {
		return true
	}
	if pr.exited != nil {
		select {
		case <-pr.exited:
			return true
		default:
			return false
		}
	}
	return !alive(pr.pid, binary, instance)
}

// alive reports whether pid runs binary as instance. A zombie has an empty
// command line and so counts as dead.
func alive(pid int, binary, instance string) bool {
	if pid <= 0 {
		return false
	}
	if !signalZero(pid) {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid)
	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		if _, serr := os.Stat("/proc/self"); serr != nil {
			return true // no procfs: signal 0 is all we have
		}
		return false
	}
	if binary != "" && !bytes.Contains(cmdline, []byte(binary)) {
		return false
	}
	// The environment is readable for our own user's processes; it names the instance.
	if env, err := os.ReadFile(dir + "/environ"); err == nil && instance != "" {
		want := "FLASH_INSTANCE_ID=" + instance
		if !slices.ContainsFunc(bytes.Split(env, []byte{0}), func(b []byte) bool { return string(b) == want }) {
			return false
		}
	}
	return true
}

// recordedPID is the pid of a record, or, for a record written before its
// process started (pid 0), the process that carries its instance id.
func recordedPID(e store.Endpoint) int {
	if e.PID > 0 {
		return e.PID
	}
	return findInstance(e.Meta[metaBinary], e.ID)
}

// findInstance scans /proc for the process running binary as instance; 0
// when there is none.
func findInstance(binary, instance string) int {
	if instance == "" {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		// The instance id must be seen in the environment itself: alive
		// accepts an unreadable one, which would match any process here.
		env, err := os.ReadFile("/proc/" + ent.Name() + "/environ")
		if err != nil || !bytes.Contains(env, []byte("FLASH_INSTANCE_ID="+instance+"\x00")) {
			continue
		}
		if alive(pid, binary, instance) {
			return pid
		}
	}
	return 0
}

// killWait bounds the wait for a process to vanish after SIGKILL.
const killWait = 5 * time.Second

// stopProc ends pr: SIGTERM to its group, then SIGKILL after StopGrace (sooner
// when ctx ends). A process that is already gone is not an error.
func (p *Provider) stopProc(ctx context.Context, d *deployment, r *replica, pr *proc) error {
	if gone(pr, d.binary, r.id) {
		return nil
	}
	if err := signalGroup(pr.pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("local: stop %s: %w", r.id, err)
	}
	if p.waitGone(ctx, d, r, pr, p.cfg.StopGrace) {
		return nil
	}
	p.log.Warn("endpoint ignored SIGTERM, killing", "id", r.id, "pid", pr.pid, "grace", p.cfg.StopGrace)
	if err := signalGroup(pr.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("local: stop %s: %w", r.id, err)
	}
	// SIGKILL is not refused; the wait ignores ctx so that we know the outcome.
	if p.waitGone(context.Background(), d, r, pr, killWait) {
		return nil
	}
	return fmt.Errorf("local: stop %s: pid %d still alive after SIGKILL", r.id, pr.pid)
}

// waitGone waits up to d for pr to end, or until ctx ends.
func (p *Provider) waitGone(ctx context.Context, d *deployment, r *replica, pr *proc, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	if pr.exited != nil {
		select {
		case <-pr.exited:
			return true
		case <-timer.C:
		case <-ctx.Done():
		}
		return gone(pr, d.binary, r.id)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !gone(pr, d.binary, r.id) {
		select {
		case <-tick.C:
		case <-timer.C:
			return gone(pr, d.binary, r.id)
		case <-ctx.Done():
			return gone(pr, d.binary, r.id)
		}
	}
	return true
}

// waitHealthy polls GET url/ping until it answers 200, pr ends, or ctx ends:
// every 10 ms for the first second, when a process usually comes up (a
// reload waits for it no longer than it must), then backing off.
func (p *Provider) waitHealthy(ctx context.Context, d *deployment, r *replica, pr *proc, url string) error {
	delay, fastUntil := 10*time.Millisecond, time.Now().Add(time.Second)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-pr.exited: // nil channel for adopted processes: never ready
			return fmt.Errorf("%w: %s pid %d: %w", ErrExited, r.id, pr.pid, pr.exitErr())
		case <-timer.C:
		}
		if p.ping(ctx, url) {
			return nil
		}
		if pr.exited == nil && gone(pr, d.binary, r.id) {
			return fmt.Errorf("%w: %s pid %d: %w", ErrExited, r.id, pr.pid, pr.exitErr())
		}
		timer.Reset(delay)
		if time.Now().After(fastUntil) {
			delay = min(delay*3/2, 500*time.Millisecond)
		}
	}
}

// ping reports whether url/ping answers 200.
func (p *Provider) ping(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/ping", nil)
	if err != nil {
		return false
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// listenLoopback opens 127.0.0.1:port (0: any free port). The open socket is
// handed to the child (FLASH_LISTEN_FD), so the port is never free between
// being chosen and being served: no other process can take it in between.
func listenLoopback(port int) (*net.TCPListener, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return nil, fmt.Errorf("local: listen on 127.0.0.1:%d: %w", port, err)
	}
	return ln, nil
}

// listenFD is the child's descriptor of the inherited socket: the first of
// exec.Cmd.ExtraFiles.
const listenFD = 3

// Log tail bounds.
const (
	tailBytes = 4 << 10
	tailLines = 20
)

// logSize returns the current size of path, 0 when it does not exist.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns the last lines written to path at or after offset.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	size := logSize(path)
	if start := size - tailBytes; start > offset {
		offset = start
	}
	if offset >= size {
		return ""
	}
	buf := make([]byte, size-offset)
	n, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, fs.ErrClosed) {
		return ""
	}
	return lastLines(string(buf[:n]), tailLines)
}

// lastLines returns the last n lines of s, without a trailing newline.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
