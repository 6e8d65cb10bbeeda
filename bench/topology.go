package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider/local"
	"github.com/flash-go/flash/store/sqlite"
)

const (
	modulePath   = "github.com/flash-go/flash"
	pipelineApp  = "pipeline"
	upLimit      = 60 * time.Second // for the topology to come up
	buildLimit   = 5 * time.Minute
	stopLimit    = 35 * time.Second // the mothership's graceful shutdown is 30 s
	undeployWait = 60 * time.Second
)

// topology measures what `flash run` does after its build: start the demo's
// mothership (examples/pipeline with FLASH_IS_MOTHERSHIP=true, the local
// provider, SQLite state) in a fresh working directory and poll GET
// /flash/status until every resource is deployed with a URL. Then the
// mothership is stopped and every child it started is undeployed.
func (r *runner) topology(ctx context.Context) error {
	bin := r.cfg.Pipeline
	if bin == "" {
		root, err := moduleRoot(r.cfg.SourceDir)
		if err != nil {
			return err
		}
		bin = filepath.Join(r.tmp, "pipeline")
		r.progress("building examples/pipeline (not counted)")
		bctx, cancel := context.WithTimeout(ctx, buildLimit)
		t0 := time.Now()
		cmd := exec.CommandContext(bctx, "go", "build", "-o", bin, "./examples/pipeline")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("go build ./examples/pipeline in %s: %w\n%s", root, err, out)
		}
		r.figure("topology_build_ms", float64(time.Since(t0))/float64(time.Millisecond), "ms",
			"go build of examples/pipeline before the measurement (excluded from topology_up_ms; depends on the build cache)")
	}
	names, err := appResources(ctx, bin)
	if err != nil {
		return err
	}
	var ups, childRSS, msRSS []float64
	for i := range r.p.topoRounds {
		up, err := r.upOnce(ctx, appRun{cmd: exec.Command(bin), app: pipelineApp, names: names, dir: "topology-" + strconv.Itoa(i), limit: upLimit})
		if err != nil {
			return err
		}
		ups = append(ups, up.ms)
		if len(up.rss) > 1 {
			msRSS, childRSS = append(msRSS, up.rss[0]), append(childRSS, up.rss[1:]...)
		}
	}
	if len(childRSS) > 0 {
		r.figure("child_idle_rss_mib", Median(childRSS), "MiB", "resident memory of an idle child of examples/pipeline (local provider), 1 s after the topology is up, median over children")
		r.figure("mothership_idle_rss_mib", Median(msRSS), "MiB", "the same for its mothership")
	} else {
		r.note("child_idle_rss_mib: the children could not be found from the mothership's process (/proc/PID/task/*/children)")
	}
	r.figure("topology_up_ms", Median(ups), "ms",
		fmt.Sprintf("mothership start → all %d resources of examples/pipeline deployed and healthy (local provider, median of %d)", len(names), len(ups)))
	return nil
}

// moduleRoot finds the flash module's directory from dir (default: the
// working directory) or one of its parents.
func moduleRoot(dir string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return "", err
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && moduleLine(data) == modulePath {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("topology_up_ms needs the flash source to build examples/pipeline: no go.mod of %s in %s or above (run from a clone, or give --pipeline BINARY)", modulePath, dir)
		}
	}
}

func moduleLine(gomod []byte) string {
	for line := range strings.SplitSeq(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// appResources asks the app binary for its manifest and returns its resources.
func appResources(ctx context.Context, bin string) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(cctx, bin, "--flash-manifest")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s --flash-manifest: %w: %s", bin, err, stderr.Bytes())
	}
	m, err := manifest.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("%s --flash-manifest: %w", bin, err)
	}
	if m.ProjectName != pipelineApp {
		return nil, fmt.Errorf("%s is app %q, not the demo %q", bin, m.ProjectName, pipelineApp)
	}
	return m.ResourceNames(), nil
}

// appRun is one start of an app's whole topology: cmd, its mothership
// (given FLASH_IS_MOTHERSHIP, the local provider and SQLite state here), is
// up when every resource of names is deployed with a URL.
type appRun struct {
	cmd   *exec.Cmd // the app binary; its Env is added to
	app   string    // the app's name, to undeploy its children
	names []string  // its resources
	dir   string    // working directory, under the run's temporary one
	limit time.Duration
}

// upResult is what upOnce measured.
type upResult struct {
	ms  float64            // mothership start → every resource deployed
	rss []float64          // MiB: the mothership's, then each child's, 1 s after up
	per map[string]float64 // ms: each resource's process start → first seen deployed
}

// upOnce starts the mothership, times it to "all up", and stops
// everything it started.
func (r *runner) upOnce(ctx context.Context, a appRun) (res upResult, err error) {
	dir := filepath.Join(r.tmp, a.dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	statePath := filepath.Join(dir, "state.db")
	logPath := filepath.Join(dir, "mothership.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := a.cmd
	cmd.Dir = dir
	cmd.Env = append(append(withoutFlashEnv(os.Environ()), "FLASH_IS_MOTHERSHIP=true", "FLASH_HOST=127.0.0.1",
		"PORT="+strconv.Itoa(port), "FLASH_API_KEY="+apiKey, "FLASH_STATE_URL="+stateURL(statePath)), cmd.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group: signals reach only it
	exited := make(chan error, 1)

	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if stopErr := r.stopTopology(cmd, exited, a.app, statePath, dir); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		if err != nil {
			err = fmt.Errorf("%w\n(mothership log: %s)", err, tail(logPath, 2000))
		}
	}()
	seen, err := waitUp(ctx, base, a.names, exited, a.limit)
	if err != nil {
		return res, err
	}
	res.ms = float64(time.Since(t0)) / float64(time.Millisecond)
	children := childPIDs(cmd.Process.Pid)
	res.per = perResource(cmd.Process.Pid, t0, children, seen)
	time.Sleep(time.Second) // idle
	for _, pid := range append([]int{cmd.Process.Pid}, children...) {
		if kib, ok := rssKiB(pid); ok {
			res.rss = append(res.rss, kib/1024)
		}
	}
	return res, nil
}

// childPIDs lists the direct children of pid (Linux; nil elsewhere).
func childPIDs(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, w := range strings.Fields(string(data)) {
			if p, err := strconv.Atoi(w); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// rssKiB reads VmRSS of pid from /proc (Linux).
func rssKiB(pid int) (float64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kib, err := strconv.ParseFloat(f[0], 64)
				return kib, err == nil
			}
		}
	}
	return 0, false
}

// waitUp polls GET /flash/status every 5 ms until every resource is
// deployed (or updated) with a URL, and returns when each was first seen so.
func waitUp(ctx context.Context, base string, names []string, exited <-chan error, limit time.Duration) (map[string]time.Time, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	seen := make(map[string]time.Time, len(names))
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-exited:
			return nil, fmt.Errorf("the mothership exited before the topology was up: %v", err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the topology was not up after %s: %s", limit, last)
		}
		st, err := getStatus(ctx, client, base)
		if err != nil {
			last = err.Error()
			continue
		}
		now := time.Now()
		pending := []string{}
		for _, n := range names {
			rs := st.Resources[n]
			switch {
			case rs.Status == string(manifest.StatusFailed):
				return nil, fmt.Errorf("resource %s failed to deploy: %s", n, rs.Error)
			case (rs.Status == string(manifest.StatusDeployed) || rs.Status == string(manifest.StatusUpdated)) && rs.EndpointURL != "":
				if _, ok := seen[n]; !ok {
					seen[n] = now
				}
			default:
				pending = append(pending, n+"="+orDash(rs.Status))
			}
		}
		if len(pending) == 0 {
			return seen, nil
		}
		if len(pending) > 10 {
			pending = append(pending[:10], fmt.Sprintf("and %d more", len(pending)-10))
		}
		last = "waiting for " + strings.Join(pending, ", ")
	}
}

func getStatus(ctx context.Context, client *http.Client, base string) (mothership.Status, error) {
	var st mothership.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/flash/status", nil)
	if err != nil {
		return st, err
	}
	req.Header.Set(wire.HeaderAuthorization, "Bearer "+apiKey)
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /flash/status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// stopTopology stops the mothership (SIGTERM to its group, SIGKILL after
// stopLimit), then every child it recorded in the state store.
func (r *runner) stopTopology(cmd *exec.Cmd, exited <-chan error, app, statePath, dir string) error {
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(stopLimit)
	select {
	case <-exited:
	case <-t.C:
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	t.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), undeployWait)
	defer cancel()
	st, err := sqlite.OpenConfig(ctx, sqlite.Config{Path: statePath, Logger: r.log})
	if err != nil {
		return fmt.Errorf("open the topology's state to stop its children: %w", err)
	}
	defer st.Close()
	p, err := local.New(local.Config{App: app, Store: st, LogDir: layout.In(dir).App(app).Logs(), Logger: r.log})
	if err != nil {
		return err
	}
	defer p.Close()
	if _, err := p.UndeployAll(ctx); err != nil {
		return fmt.Errorf("stop the topology's children: %w", err)
	}
	left, err := st.Endpoints(ctx, app)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("%d endpoint(s) of the topology still recorded after undeploy", len(left))
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := listenLoopback()
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	_, p, err := splitPort(ln.Addr().String())
	return p, err
}

func splitPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("address %q has no port", addr)
	}
	p, err := strconv.Atoi(addr[i+1:])
	return addr[:i], p, err
}

// stateURL is FLASH_STATE_URL for an absolute SQLite path.
func stateURL(path string) string {
	return "sqlite://" + strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
}

// withoutFlashEnv drops the variables that would give the mothership
// another role, store, port or key than the ones set here.
func withoutFlashEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "FLASH_") || strings.HasPrefix(name, "RUNPOD_") || name == "PORT" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return strings.TrimSpace(string(data))
}
