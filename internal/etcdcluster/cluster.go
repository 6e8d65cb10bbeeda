// Package etcdcluster runs a real etcd cluster on loopback, each member in its
// own process with its own data directory, for tests now and for
// `flash run --ha N` later.
//
// A member process is this program started again (or Options.Executable)
// with its settings in the environment; RunIfMember, called first thing in
// main or TestMain, makes such a process serve as the member:
//
//	func TestMain(m *testing.M) {
//		etcdcluster.RunIfMember()
//		os.Exit(m.Run())
//	}
//
// Members die with the process that started them (they watch their standard
// input), so a crashed test leaves nothing behind.
package etcdcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/atomicfile"
)

// Options tune Start.
type Options struct {
	// Executable runs the members; it must call RunIfMember. Default: this program.
	Executable string
	// Args are given to Executable. Default: none, or, in a test binary,
	// flags that would make it run no test should RunIfMember be missing.
	Args []string
	// NoFsync skips fsync in the members: faster, and fine for throwaway
	// clusters in tests, never for data that must survive a machine crash.
	NoFsync bool
}

// withDefaults fills Executable and Args.
func (opts Options) withDefaults() (Options, error) {
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return opts, fmt.Errorf("etcdcluster: %w", err)
		}
		opts.Executable = exe
		if opts.Args == nil && testing.Testing() {
			opts.Args = []string{"-test.run=^$", "-test.bench=^$"}
		}
	}
	return opts, nil
}

// Cluster is a running set of members. Its methods are safe for concurrent use.
type Cluster struct {
	dir     string
	opts    Options
	mu      sync.Mutex
	members []*member
}

// member is one etcd member; proc is nil while it is not running.
type member struct {
	cfg  memberConfig
	proc *process
}

// process is one run of a member.
type process struct {
	cmd    *exec.Cmd
	stdin  *os.File // closing it tells the member to stop
	exited chan struct{}
	err    error // set before exited is closed
}

// Start starts a new n-member cluster with its data under dir, which should
// be empty, and waits until every member is healthy or ctx ends.
func Start(ctx context.Context, dir string, n int, opts Options) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcdcluster: %d members", n)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, opts: opts}
	var initial []string
	for i := range n {
		name := "m" + strconv.Itoa(i)
		mc := memberConfig{
			Name:      name,
			Dir:       filepath.Join(dir, name),
			ClientURL: "http://127.0.0.1:" + strconv.Itoa(ports[2*i]),
			PeerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			Token:     "flash-" + strconv.Itoa(ports[0]),
			NoFsync:   opts.NoFsync,
		}
		initial = append(initial, name+"="+mc.PeerURL)
		c.members = append(c.members, &member{cfg: mc})
	}
	cfgs := make([]memberConfig, n)
	for i, m := range c.members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		if err := os.MkdirAll(m.cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("etcdcluster: %w", err)
		}
		cfgs[i] = m.cfg
	}
	raw, _ := json.MarshalIndent(cfgs, "", "  ") // strings and bools: cannot fail
	if err := atomicfile.Write(filepath.Join(dir, stateFile), raw, 0o600); err != nil {
		return nil, fmt.Errorf("etcdcluster: recording the members: %w", err)
	}
	if err := c.startAll(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// stateFile, in a cluster's directory, records its members for Reopen.
const stateFile = "cluster.json"

// ErrNoCluster is Reopen's error when the directory holds no cluster that
// Start made.
var ErrNoCluster = errors.New("etcdcluster: no cluster recorded")

// ErrPortTaken is Reopen's error when another program listens on an address
// of a member: a member's peer address is part of the cluster's data, so it
// cannot move.
var ErrPortTaken = errors.New("etcdcluster: a member's port is taken")

// Reopen starts again the cluster that Start made in dir, on its data and
// addresses, and waits until every member is healthy or ctx ends. Its size
// is Size. opts.NoFsync applies to this run.
func Reopen(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoCluster, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("etcdcluster: %w", err)
	}
	var cfgs []memberConfig
	if err := json.Unmarshal(raw, &cfgs); err != nil || len(cfgs) == 0 {
		return nil, fmt.Errorf("%w in %s: %s is not a list of members", ErrNoCluster, dir, stateFile)
	}
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, opts: opts}
	for _, mc := range cfgs {
		if _, err := os.Stat(filepath.Join(mc.Dir, "data")); err != nil {
			return nil, fmt.Errorf("%w in %s: member %s has no data: %w", ErrNoCluster, dir, mc.Name, err)
		}
		for _, u := range []string{mc.ClientURL, mc.PeerURL} {
			if err := portFree(u); err != nil {
				return nil, fmt.Errorf("%w: member %s, %s: %w", ErrPortTaken, mc.Name, u, err)
			}
		}
		mc.NoFsync = opts.NoFsync
		c.members = append(c.members, &member{cfg: mc})
	}
	if err := c.startAll(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// portFree checks that nothing listens on the host:port of URL u.
func portFree(u string) error {
	ln, err := net.Listen("tcp", strings.TrimPrefix(u, "http://"))
	if err != nil {
		return err
	}
	return ln.Close()
}

// startAll starts every member and waits until each is healthy; on failure
// it stops them all.
func (c *Cluster) startAll(ctx context.Context) error {
	for i := range c.members {
		if err := c.start(i); err != nil {
			c.Close()
			return err
		}
	}
	for i := range c.members {
		if err := c.WaitHealthy(ctx, i); err != nil {
			c.Close()
			return err
		}
	}
	return nil
}

// Size is the number of members, running or not.
func (c *Cluster) Size() int { return len(c.members) }

// Endpoints are the members' client addresses ("127.0.0.1:port"), running or not.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = strings.TrimPrefix(m.cfg.ClientURL, "http://")
	}
	return eps
}

// URL is a FLASH_STATE_URL for the whole cluster and key prefix (such as "/flash/app").
func (c *Cluster) URL(prefix string) string {
	return "etcd://" + strings.Join(c.Endpoints(), ",") + prefix
}

// Running reports whether member i's process is running (it may not be healthy).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].proc != nil
}

// PID is member i's process id, or 0 when it is not running.
func (c *Cluster) PID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.members[i].proc; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// start runs member i's process (it must not be running).
func (c *Cluster) start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.proc != nil {
		return fmt.Errorf("etcdcluster: member %s is already running", m.cfg.Name)
	}
	raw, _ := json.Marshal(m.cfg) // strings and a bool: cannot fail
	logf, err := os.OpenFile(filepath.Join(m.cfg.Dir, "member.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("etcdcluster: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("etcdcluster: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(c.opts.Executable, c.opts.Args...)
	cmd.Env = append(os.Environ(), memberEnv+"="+string(raw))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's Ctrl-C is the parent's to handle
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("etcdcluster: starting member %s: %w", m.cfg.Name, err)
	}
	p := &process{cmd: cmd, stdin: w, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	m.proc = p
	return nil
}

// Restart starts member i again on its data directory and addresses, and
// waits until it is healthy. The member must have been stopped or killed.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.WaitHealthy(ctx, i)
}

// Kill ends member i with SIGKILL, as a crash would, and waits for it to exit.
func (c *Cluster) Kill(i int) error { return c.end(i, syscall.SIGKILL) }

// Stop ends member i with SIGTERM, as a shutdown would, and waits for it to exit.
func (c *Cluster) Stop(i int) error { return c.end(i, syscall.SIGTERM) }

// Pause freezes member i with SIGSTOP (it keeps its sockets but answers nothing).
func (c *Cluster) Pause(i int) error { return c.signal(i, syscall.SIGSTOP) }

// Resume undoes Pause.
func (c *Cluster) Resume(i int) error { return c.signal(i, syscall.SIGCONT) }

func (c *Cluster) signal(i int, sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.members[i].proc
	if p == nil {
		return fmt.Errorf("etcdcluster: member %s is not running", c.members[i].cfg.Name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("etcdcluster: member %s: %w", c.members[i].cfg.Name, err)
	}
	return nil
}

func (c *Cluster) end(i int, sig syscall.Signal) error {
	c.mu.Lock()
	p := c.members[i].proc
	c.members[i].proc = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused member cannot act on SIGTERM
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second): // a member stuck in shutdown
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.stdin.Close()
	return nil
}

// Close kills every member and waits for them to exit. The data stays in the
// directory given to Start.
func (c *Cluster) Close() error {
	for i := range c.members {
		_ = c.Kill(i)
	}
	return nil
}

// Shutdown stops every member as a shutdown would (SIGTERM) and waits for
// them to exit; Reopen starts the cluster again.
func (c *Cluster) Shutdown() {
	for i := range c.members {
		_ = c.Stop(i)
	}
}

// WaitHealthy waits until member i answers its /health endpoint as healthy
// (it has a raft leader and serves requests), or fails when ctx ends or the
// member's process exits.
func (c *Cluster) WaitHealthy(ctx context.Context, i int) error {
	c.mu.Lock()
	m, p := c.members[i], c.members[i].proc
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("etcdcluster: member %s is not running", m.cfg.Name)
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		if healthy(ctx, client, m.cfg.ClientURL) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcdcluster: member %s not healthy: %w\n%s", m.cfg.Name, ctx.Err(), c.logTail(i))
		case <-p.exited:
			return fmt.Errorf("etcdcluster: member %s exited (%v) (does %s call etcdcluster.RunIfMember?)\n%s",
				m.cfg.Name, p.err, c.opts.Executable, c.logTail(i))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// healthy asks one member's /health endpoint.
func healthy(ctx context.Context, client *http.Client, clientURL string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientURL+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct{ Health string }
	err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&h)
	return err == nil && resp.StatusCode == http.StatusOK && h.Health == "true"
}

// logTail is the end of member i's logs, for error messages.
func (c *Cluster) logTail(i int) string {
	var out []byte
	for _, name := range []string{"member.log", "etcd.log"} {
		b, _ := os.ReadFile(filepath.Join(c.members[i].cfg.Dir, name))
		b = bytes.TrimSpace(b)
		out = append(out, b[max(0, len(b)-2000):]...)
		out = append(out, '\n')
	}
	return string(out)
}

// freePorts finds n distinct free ports on loopback. They are released before
// use, so another program could take one meanwhile; on loopback in tests
// that is rare, and the member then fails to start with a clear error.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("etcdcluster: finding a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
