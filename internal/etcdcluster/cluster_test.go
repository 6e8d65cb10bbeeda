package etcdcluster_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/flash-go/flash/internal/etcdcluster"
)

// parentEnv makes the test binary act as a parent that starts a member and
// then waits to be killed.
const parentEnv = "ETCDCLUSTER_TEST_PARENT_DIR"

func TestMain(m *testing.M) {
	etcdcluster.RunIfMember()
	if dir := os.Getenv(parentEnv); dir != "" {
		c, err := etcdcluster.Start(context.Background(), dir, 1, etcdcluster.Options{NoFsync: true})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(c.PID(0))
		select {}
	}
	os.Exit(m.Run())
}

// A member outlives neither a crashed parent nor a killed test binary.
func TestMembersDieWithTheirParent(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(exe, "-test.run=^$")
	parent.Env = append(os.Environ(), parentEnv+"="+t.TempDir())
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		parent.Process.Kill()
		parent.Wait()
		t.Fatalf("parent said %q (%v)", line, err)
	}
	parent.Process.Kill()
	parent.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("member %d still runs after its parent was killed", pid)
		}
		time.Sleep(20 * time.Millisecond) // polling for the exit, not asserting on time
	}
}

func TestLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := etcdcluster.Start(ctx, t.TempDir(), 1, etcdcluster.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if eps := c.Endpoints(); len(eps) != 1 || !strings.HasPrefix(eps[0], "127.0.0.1:") {
		t.Fatalf("Endpoints = %v", eps)
	}
	if u := c.URL("/flash/app"); u != "etcd://"+c.Endpoints()[0]+"/flash/app" {
		t.Errorf("URL = %q", u)
	}
	pid := c.PID(0)
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	if c.Running(0) || c.PID(0) != 0 {
		t.Error("member still running after Kill")
	}
	if alive(pid) {
		t.Errorf("process %d still exists after Kill", pid)
	}
	if err := c.WaitHealthy(ctx, 0); err == nil {
		t.Error("WaitHealthy on a killed member: no error")
	}
	// Restarted on its data, paused and resumed, it is healthy again.
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Resume(0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, 0); err != nil {
		t.Fatal(err)
	}
	pid = c.PID(0)
	c.Close()
	if alive(pid) {
		t.Errorf("process %d still exists after Close", pid)
	}
}

// alive reports whether process pid exists and is not a zombie (which an
// init that does not reap, as in some containers, would leave).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestExecutableWithoutRunIfMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := etcdcluster.Start(ctx, t.TempDir(), 1, etcdcluster.Options{Executable: "/bin/true"})
	if err == nil || !strings.Contains(err.Error(), "RunIfMember") {
		t.Fatalf("Start with /bin/true: err = %v, want one naming RunIfMember", err)
	}
}

func TestBadSize(t *testing.T) {
	if _, err := etcdcluster.Start(t.Context(), t.TempDir(), 0, etcdcluster.Options{}); err == nil {
		t.Error("Start with 0 members: no error")
	}
}

// A cluster stopped and reopened on its directory keeps its data and its
// addresses; a missing record or a taken port is a clear error.
func TestReopenKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if _, err := etcdcluster.Reopen(ctx, dir, etcdcluster.Options{}); !errors.Is(err, etcdcluster.ErrNoCluster) {
		t.Fatalf("Reopen of an empty directory: err = %v, want ErrNoCluster", err)
	}
	c, err := etcdcluster.Start(ctx, dir, 3, etcdcluster.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	put(ctx, t, c.Endpoints(), "k", "v1")
	c.Shutdown()
	for i := range c.Size() {
		if c.Running(i) {
			t.Fatalf("member %d still running after Shutdown", i)
		}
	}

	// A program on a member's port keeps the cluster from starting.
	ln, err := net.Listen("tcp", c.Endpoints()[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := etcdcluster.Reopen(ctx, dir, etcdcluster.Options{NoFsync: true}); !errors.Is(err, etcdcluster.ErrPortTaken) {
		t.Errorf("Reopen with a taken port: err = %v, want ErrPortTaken", err)
	}
	ln.Close()

	again, err := etcdcluster.Reopen(ctx, dir, etcdcluster.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got, want := again.URL("/p"), c.URL("/p"); got != want {
		t.Errorf("reopened URL = %q, want the same addresses %q", got, want)
	}
	if got := get(ctx, t, again.Endpoints(), "k"); got != "v1" {
		t.Errorf("after Reopen, k = %q, want v1", got)
	}
}

func client(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func put(ctx context.Context, t *testing.T, endpoints []string, k, v string) {
	t.Helper()
	if _, err := client(t, endpoints).Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
}

func get(ctx context.Context, t *testing.T, endpoints []string, k string) string {
	t.Helper()
	resp, err := client(t, endpoints).Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}
