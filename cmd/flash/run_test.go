package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
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

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/store/sqlite"
)

// flashBinary builds the CLI once per test binary.
var flashBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "flash-cli-*")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "flash")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &exec.Error{Name: string(out), Err: err}
	}
	return bin, nil
})

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePortRange returns the first of n consecutive free ports (an --ha run's
// motherships), outside the range the kernel hands out to other programs'
// connections and listeners, so that they are likely to stay free.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(10000)
		free := true
		for p := base; p < base+n && free; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if free = err == nil; free {
				ln.Close()
			}
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// runningTopology is a `flash run` started by a test.
type runningTopology struct {
	cmd    *exec.Cmd
	dir    string
	curls  []string
	output *strings.Builder
	mu     *sync.Mutex
	exited chan error
}

// startFlashRun starts `flash run` on pkg in a fresh working directory and
// returns once it printed its table.
func startFlashRun(t *testing.T, pkg string) *runningTopology {
	t.Helper()
	return startFlashRunIn(t, t.TempDir(), pkg, freePort(t))
}

// startFlashRunIn starts `flash run --port port pkg` in dir.
func startFlashRunIn(t *testing.T, dir, pkg string, port int) *runningTopology {
	t.Helper()
	rt, err := launchFlashRun(t, dir, pkg, port)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// launchFlashRun is startFlashRunIn returning the failure of a run that
// exited before its table, with its output.
// env is added to the CLI's environment.
func launchFlashRun(t *testing.T, dir, pkg string, port int, env ...string) (*runningTopology, error) {
	t.Helper()
	return launchFlash(t, "run", dir, pkg, port, env...)
}

// launchFlash is launchFlashRun of `flash command` (run or dev).
func launchFlash(t *testing.T, command, dir, pkg string, port int, env ...string) (*runningTopology, error) {
	t.Helper()
	return launchFlashWith(t, command, dir, pkg, port, nil, env...)
}

// launchFlashWith is launchFlash with more flags.
func launchFlashWith(t *testing.T, command, dir, pkg string, port int, flags []string, env ...string) (*runningTopology, error) {
	t.Helper()
	bin, err := flashBinary()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{command, "--port", strconv.Itoa(port)}, flags...), pkg)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "FLASH_API_KEY=", "RUNPOD_API_KEY=", "FLASH_LOG_LEVEL=", "FLASH_MOTHERSHIP_URL="), env...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rt := &runningTopology{cmd: cmd, dir: dir, output: &strings.Builder{}, mu: &sync.Mutex{}, exited: make(chan error, 1)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		killRecorded(dir)
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for sc.Scan() {
			line := sc.Text()
			rt.mu.Lock()
			rt.output.WriteString(line + "\n")
			if strings.HasPrefix(strings.TrimSpace(line), "curl ") {
				rt.curls = append(rt.curls, strings.TrimSpace(line))
			}
			if strings.HasPrefix(line, "Ctrl-C stops everything") {
				once.Do(func() { close(ready) })
			}
			rt.mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
		rt.exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-rt.exited:
		return nil, fmt.Errorf("flash run exited early (%v):\n%s", err, rt.out())
	case <-time.After(120 * time.Second):
		t.Fatalf("flash run printed no table in time:\n%s", rt.out())
	}
	return rt, nil
}

// mothership returns the base URL flash run printed.
func (rt *runningTopology) mothership() string {
	out := rt.out()
	i := strings.Index(out, " is up on http://")
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.Fields(out[i+len(" is up on "):])[0], ",") // the first of several (--ha)
}

func (rt *runningTopology) out() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.output.String()
}

// stop sends sig to flash run and waits for it to exit.
func (rt *runningTopology) stop(t *testing.T, sig os.Signal) error {
	t.Helper()
	rt.cmd.Process.Signal(sig)
	select {
	case err := <-rt.exited:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("flash run did not stop on %v:\n%s", sig, rt.out())
		return nil
	}
}

// record is the run.json of app in the topology's directory.
func (rt *runningTopology) record(t *testing.T, app string) runRecord {
	t.Helper()
	r, err := readRecord(layout.In(rt.dir).App(app))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pidsOf is the recorded pids of the app's endpoints, by resource.
func pidsOf(t *testing.T, dir, app string) map[string][]int {
	t.Helper()
	st, err := sqlite.Open(context.Background(), layout.In(dir).App(app).State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eps, err := st.Endpoints(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string][]int{}
	for _, e := range eps {
		pids[e.Resource] = append(pids[e.Resource], e.PID)
	}
	for _, p := range pids {
		slices.Sort(p)
	}
	return pids
}

// recordedPIDs are the endpoint processes the app's state store knows of.
func recordedPIDs(t *testing.T, dir, app string) []int {
	t.Helper()
	var all []int
	for _, pids := range pidsOf(t, dir, app) {
		all = append(all, pids...)
	}
	return all
}

// killRecorded is the cleanup of last resort for a failed test.
func killRecorded(dir string) {
	d := layout.In(dir)
	for _, app := range d.Apps() {
		if r, err := readRecord(d.App(app)); err == nil && r.MothershipPID > 0 {
			syscall.Kill(r.MothershipPID, syscall.SIGKILL)
		}
		st, err := sqlite.Open(context.Background(), d.App(app).State())
		if err != nil {
			continue
		}
		eps, _ := st.Endpoints(context.Background(), app)
		for _, e := range eps {
			syscall.Kill(-e.PID, syscall.SIGKILL)
		}
		st.Close()
	}
}

// waitGone waits until none of pids runs; it fails the test after a bound
// generous enough for a loaded machine.
func waitGone(t *testing.T, what string, pids []int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: processes %v still running", what, left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// doCurl performs a printed curl line with net/http (curl may not be installed).
func doCurl(t *testing.T, line string) (int, string) {
	t.Helper()
	method, url, body, headers := parseCurl(line)
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	req.Header = headers
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// parseCurl reads a printed curl line.
func parseCurl(line string) (method, url, body string, headers http.Header) {
	method, headers = "GET", http.Header{}
	words := shellWords(line)
	for i := 1; i < len(words); i++ {
		switch w := words[i]; w {
		case "-s":
		case "-X":
			i++
			method = words[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(words[i], ":")
			headers.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d":
			i++
			body = words[i]
		default:
			url = w
		}
	}
	return method, url, body, headers
}

// shellWords splits a command line with single-quoted words, as printed.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	quoted, in := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted = !quoted
			in = true
		case r == ' ' && !quoted:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

func TestFlashRunPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	pkg, _ := filepath.Abs("../../examples/pipeline")
	rt, err := launchFlashWith(t, "run", t.TempDir(), pkg, freePort(t), []string{"--trace"})
	if err != nil {
		t.Fatal(err)
	}
	out := rt.out()
	for _, want := range []string{"RESOURCE", "api", "embedder", "summarizer", "POST /process", "deployed"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if len(rt.curls) != 2 {
		t.Fatalf("want an LB and a QB curl, got %q", rt.curls)
	}
	for _, c := range rt.curls {
		code, body := doCurl(t, c)
		if code != 200 {
			t.Fatalf("%s → %d %s", c, code, body)
		}
		switch {
		case strings.Contains(c, "/process"):
			for _, want := range []string{`"process":"api"`, `"embed":"embedder"`, `"summarize":"summarizer"`, `"count_words":"summarizer"`} {
				if !strings.Contains(body, want) {
					t.Errorf("/process answer lacks %s: %s", want, body)
				}
			}
		case strings.Contains(c, "/runsync"):
			if !strings.Contains(body, `"COMPLETED"`) || !strings.Contains(body, `"served_by":"embedder"`) {
				t.Errorf("/runsync answer: %s", body)
			}
		}
	}
	if fi, err := os.Stat(layout.In(rt.dir).APIKey()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("api key file: %v %v", fi, err)
	}
	pids := recordedPIDs(t, rt.dir, "pipeline")
	if len(pids) != 3 {
		t.Fatalf("recorded pids %v, want 3", pids)
	}
	key := checkDashboardLink(t, out)
	checkCollectedTrace(t, rt.mothership(), key, out)

	// The other commands against the running mothership (key from .flash/api_key).
	t.Chdir(rt.dir)
	base := rt.mothership()
	code, out, errOut := runCLI(t, "status") // found through run.json
	if code != exitOK || !strings.Contains(out, "up to date") || strings.Count(out, "deployed") != 3 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "invalidate", "--mothership", strings.TrimPrefix(base, "http://"), "--json"); code != exitOK || !strings.Contains(out, `"version"`) {
		t.Fatalf("invalidate: exit %d %s %s", code, out, errOut)
	}
	// Deploying the same build again changes nothing and calls no provider.
	code, out, errOut = runCLI(t, "deploy", filepath.Join(buildDir, "flash_manifest.json"))
	if code != exitOK || !strings.Contains(out, "provider calls: 0 deploy, 0 undeploy") {
		t.Fatalf("deploy of the same manifest: exit %d\n%s%s", code, out, errOut)
	}

	if err := rt.stop(t, os.Interrupt); err != nil {
		t.Fatalf("flash run exit: %v\n%s", err, rt.out())
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("endpoint process %d still running after Ctrl-C", pid)
		}
	}
	if left := recordedPIDs(t, rt.dir, "pipeline"); len(left) != 0 {
		t.Errorf("records left: %v", left)
	}
}

func TestInitThenRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	src, _ := filepath.Abs("../..")
	dir := filepath.Join(t.TempDir(), "hello-app")
	if code, out, errOut := runCLI(t, "init", "--flash-source", src, dir); code != exitOK {
		t.Fatalf("init: exit %d %s %s", code, out, errOut)
	}
	test := exec.Command("go", "test", "./...")
	test.Dir = dir
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("the skeleton's own test fails: %v\n%s", err, out)
	}
	rt := startFlashRun(t, dir)
	var lb string
	for _, c := range rt.curls {
		if strings.Contains(c, "/hello") {
			lb = c
		}
	}
	code, body := doCurl(t, lb)
	if code != 200 || !strings.Contains(body, `"served_by":"web"`) || !strings.Contains(body, `"greet_served_by":"worker"`) {
		t.Fatalf("%s → %d %s", lb, code, body)
	}
	pids := recordedPIDs(t, rt.dir, "hello-app")

	// flash undeploy removes the endpoints through the running mothership.
	t.Chdir(rt.dir)
	if code, out, errOut := runCLI(t, "undeploy"); code != exitOK {
		t.Fatalf("undeploy: exit %d\n%s%s", code, out, errOut)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d survived flash undeploy", pid)
		}
	}
	if err := rt.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("flash run exit: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d survived", pid)
		}
	}
}

// checkDashboardLink: the printed link opens the page, and the key in its
// fragment is the one the page's data need.
func checkDashboardLink(t *testing.T, out string) (key string) {
	t.Helper()
	const prefix = "Dashboard (logs in with the key): "
	i := strings.Index(out, prefix)
	if i < 0 {
		t.Fatalf("no dashboard link:\n%s", out)
	}
	link := strings.Fields(out[i+len(prefix):])[0]
	page, fragment, _ := strings.Cut(link, "#")
	q, err := url.ParseQuery(fragment)
	if err != nil || q.Get("key") == "" {
		t.Fatalf("link %q: no key in its fragment", link)
	}
	for _, tc := range []struct {
		path, key string
		want      int
	}{{"", "", http.StatusOK}, {"/events", "", http.StatusUnauthorized}, {"/events", q.Get("key"), http.StatusOK}} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, page+tc.path, nil)
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cancel()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s%s (key %q): %d, want %d", page, tc.path, tc.key, resp.StatusCode, tc.want)
		}
	}
	return q.Get("key")
}

// checkCollectedTrace: with --trace, the call made above left one trace in
// the mothership spanning the three processes.
func checkCollectedTrace(t *testing.T, base, key, out string) {
	t.Helper()
	if !strings.Contains(out, "Traces: every process sends its spans to the mothership") {
		t.Errorf("flash run --trace does not say where the traces go:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list struct {
			Traces []struct {
				TraceID  string   `json:"trace_id"`
				Services []string `json:"services"`
			} `json:"traces"`
		}
		err := getJSON(t.Context(), base, "/flash/traces", key, &list)
		for _, tr := range list.Traces {
			if services := strings.Join(tr.Services, ","); strings.Contains(services, "api,embedder,") && strings.HasSuffix(services, "summarizer") {
				var one struct{ Spans []struct{ Name string } }
				if err := getJSON(t.Context(), base, "/flash/traces/"+tr.TraceID, key, &one); err != nil || len(one.Spans) < 5 {
					t.Fatalf("trace %s: %v %+v", tr.TraceID, err, one)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace across api, embedder and summarizer in the mothership: %v %+v", err, list)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
