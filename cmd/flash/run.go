package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/flash-go/flash"
	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider/local"
)

// Bounds of flash run's waits.
const (
	upTimeout       = 90 * time.Second // every resource healthy after the mothership started
	appliedWait     = 5 * time.Second  // then every child on the version reached
	previousTimeout = 15 * time.Second // an earlier run's mothership finishing its exit
	watchEvery      = 2 * time.Second  // status polls after start-up, for moved endpoints
)

func runRun(e *env) int { return runTopology(e, false) }

// runTopology is flash run, or with dev flash dev.
func runTopology(e *env, dev bool) int {
	name, what := "run", "Builds the app and runs the whole topology here: the mothership and one\n"+
		"process per resource. Ctrl-C (or closing the terminal) stops everything."
	if dev {
		name, what = "dev", "Runs the app as flash run does, then rebuilds it whenever one of its Go\n"+
			"sources changes and deploys each good build through the running topology\n"+
			"(make-before-break; the public addresses stay). Ctrl-C stops everything."
	}
	fs := flag.NewFlagSet("flash "+name, flag.ContinueOnError)
	port := fs.Int("port", 8080, "the mothership's port")
	asJSON := fs.Bool("json", false, "print the topology as one JSON object (logs go to stderr)")
	verbose := fs.Bool("verbose", false, "show every log line of every process (FLASH_LOG_LEVEL sets their level)")
	ha := fs.Int("ha", 0, "run N motherships (3, 5 or 7) on ports --port … --port+N-1 sharing an N-member etcd cluster, one leading")
	traced := fs.Bool("trace", false, "collect every process's spans in the mothership, shown by its dashboard (instead of any OTEL_* exporter set)")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: flash %s [--port N] [--ha 3] [--trace] [--verbose] [--json] [PKG]\n\n%s\n", name, what)
		fs.PrintDefaults()
	}
	args, code, ok := parseFlags(e, fs, e.args)
	if !ok {
		return code
	}
	if len(args) > 1 {
		return fail(e, usageError{name + ": give at most one package"})
	}
	if *port < 1 || *port+max(*ha, 1)-1 > 65535 {
		return fail(e, usageError{fmt.Sprintf("%s: --port %d is not a port number", name, *port)})
	}
	if err := checkHA(*ha); err != nil {
		return fail(e, err)
	}
	pkg := "."
	if len(args) == 1 {
		pkg = args[0]
	}
	shown := slog.LevelInfo
	if v := os.Getenv("FLASH_LOG_LEVEL"); v != "" {
		if err := shown.UnmarshalText([]byte(v)); err != nil {
			return fail(e, usageError{fmt.Sprintf("FLASH_LOG_LEVEL=%q: want debug, info, warn or error", v)})
		}
	}
	dir := layout.In("")
	for _, r := range runningHere(dir, "") {
		if u, err := url.Parse(r.Mothership); err == nil && u.Port() == strconv.Itoa(*port) {
			return fail(e, alreadyRunning{app: r.App, rec: r, cmd: e.self})
		}
	}
	for _, name := range dir.Apps() {
		if app := dir.App(name); !locked(app) {
			if err := waitPrevious(e, app); err != nil {
				return fail(e, err)
			}
		}
	}
	for i := range max(*ha, 1) {
		if err := checkPort(*port + i); err != nil {
			return fail(e, err)
		}
	}
	var src *sources
	if dev {
		// Read before the build: what the first build may contain.
		src = readSources(e.ctx, pkg)
	}
	b, err := build(e, pkg, buildOptions{dev: dev})
	if err != nil {
		return fail(e, err)
	}
	app := dir.App(b.App.ProjectName)
	lock, err := lockRun(app, b.App.ProjectName, e.self)
	if err != nil {
		return fail(e, err)
	}
	defer lock.release()
	key, keySource, err := dirKey(dir)
	if err != nil {
		return fail(e, err)
	}
	bin, err := install(b.Binary, app)
	if err != nil {
		return fail(e, err)
	}
	t := topologyRun{e: e, m: b.App, pkg: pkg, dev: dev, src: src, bin: bin, app: app, lock: lock, port: *port, ha: *ha, key: key, keySource: keySource, json: *asJSON, trace: *traced,
		verbose: *verbose || os.Getenv("FLASH_LOG_LEVEL") != "", shown: shown}
	if err := t.run(); err != nil {
		return fail(e, err)
	}
	return exitOK
}

// checkPort fails with the fix when the mothership's port is taken.
func checkPort(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d is already in use: stop what uses it, or pick another port with --port", port)
	}
	return ln.Close()
}

// dirKey returns the topology's API key: FLASH_API_KEY or RUNPOD_API_KEY when
// set, else the directory's key in .flash/api_key, made (0600) on first use
// and reused by every later run, so that endpoints one run adopts from an
// earlier one share its key.
func dirKey(dir layout.Dir) (key, source string, err error) {
	for _, name := range []string{"FLASH_API_KEY", "RUNPOD_API_KEY"} {
		if k := os.Getenv(name); k != "" {
			return k, "from " + name, nil
		}
	}
	path := dir.APIKey()
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", "", fmt.Errorf("keep %s private: %w", path, err)
		}
		return string(bytes.TrimSpace(b)), "kept in " + path + " (0600), reused by every run here", nil
	}
	buf := make([]byte, 24)
	rand.Read(buf)
	key = "fl_" + hex.EncodeToString(buf)
	if err := os.MkdirAll(dir.Path(), 0o700); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", path, err)
	}
	return key, "generated, kept in " + path + " (0600), reused by every run here", nil
}

// install links the built binary into the app's directory and returns its
// path there: the mothership restarts children from its own executable, so
// a later build of another app in this directory must not replace it.
func install(built string, app layout.App) (string, error) {
	dst := filepath.Join(app.Path(), "app")
	tmp := dst + ".new"
	os.Remove(tmp)
	if err := os.Link(built, tmp); err != nil {
		data, rerr := os.ReadFile(built)
		if rerr != nil {
			return "", rerr
		}
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	return filepath.Abs(dst)
}

// waitPrevious waits for the mothership of an earlier, ended run of the app
// to finish exiting (it stops by itself once that run's CLI is gone), so that
// its port and endpoints are free.
func waitPrevious(e *env, app layout.App) error {
	rec, err := readRecord(app)
	if err != nil || rec.MothershipPID <= 0 || !isMothershipOf(rec.MothershipPID, app) {
		return nil
	}
	fmt.Fprintf(e.stderr, "waiting for the mothership of an earlier run (pid %d) to stop …\n", rec.MothershipPID)
	deadline := time.After(previousTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for isMothershipOf(rec.MothershipPID, app) {
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-deadline:
			return fmt.Errorf("the mothership of an earlier run (pid %d) is still running; stop it (`kill %d`) and try again", rec.MothershipPID, rec.MothershipPID)
		case <-tick.C:
		}
	}
	return nil
}

// isMothershipOf reports whether pid runs the app's installed binary.
func isMothershipOf(pid int, app layout.App) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return false
	}
	want, _ := filepath.Abs(filepath.Join(app.Path(), "app"))
	return strings.TrimSuffix(exe, " (deleted)") == want
}

// topologyRun is one `flash run` of a built app.
type topologyRun struct {
	e         *env
	m         *manifest.Manifest // the app's manifest as deployed
	pkg       string
	dev       bool     // flash dev: redeploy on every change of the sources
	src       *sources // flash dev: the sources as read before the first build
	bin       string
	app       layout.App
	lock      *runLock
	port      int
	ha        int // motherships sharing an etcd cluster; 0: one, on SQLite
	key       string
	keySource string
	json      bool
	trace     bool // flash run --trace: the mothership collects the spans
	verbose   bool
	shown     slog.Level // FLASH_LOG_LEVEL: with verbose, what is shown
}

// reconciled is the end of one reconciliation of a mothership, read from its log.
type reconciled struct{ msg, detail string }

// run starts the mothership, waits for its reconciliation, prints how to
// call the app, reports what changes, and on Ctrl-C, SIGTERM or SIGHUP stops
// everything it started.
func (t *topologyRun) run() error {
	e := t.e
	base := fmt.Sprintf("http://127.0.0.1:%d", t.port)
	urls := mothershipURLs(t.port, max(t.ha, 1))
	stateAbs, _ := filepath.Abs(t.app.State())
	stateURL := "sqlite://" + stateAbs
	if t.ha > 0 {
		c, u, err := startEtcd(e.ctx, t.app, t.m.ProjectName, t.ha)
		if err != nil {
			return err
		}
		defer c.Shutdown()
		stateURL = u
	}
	out := e.stdout
	if t.json {
		out = e.stderr // stdout stays one JSON object
	}
	done := make(chan reconciled, 8)
	logs := newLogStreamer(out, isTerminal(out), t.verbose, func(r logRecord) {
		if msg := r.get("msg"); strings.HasPrefix(msg, msgReconcilePrefix) {
			select {
			case done <- reconciled{msg: msg, detail: r.get("failed") + r.get("err")}:
			default:
			}
		}
	})
	logs.shown = t.shown
	tail := logs.tail(t.app.Logs(), t.m.ResourceNames())
	cacheAbs, _ := filepath.Abs(t.app.Cache())
	// The mothership logs at Info at least: flash run follows its Info lines.
	// A higher FLASH_LOG_LEVEL applies to what is shown.
	level := min(t.shown, slog.LevelInfo).String()
	rec := runRecord{App: t.m.ProjectName, Mothership: strings.Join(urls, ","), PID: os.Getpid(), Started: time.Now().UTC()}
	exits := make(chan mothershipExit, len(urls))
	cmds := make([]*exec.Cmd, len(urls))
	started := make([]bool, len(urls)) // per mothership: started once already
	start := func(i int) error {
		cmd := exec.Command(t.bin)
		cmd.Env = append(withoutFlashEnv(os.Environ()),
			"FLASH_IS_MOTHERSHIP=true", "FLASH_HOST=127.0.0.1", "PORT="+strconv.Itoa(t.port+i),
			"FLASH_API_KEY="+t.key, "FLASH_STATE_URL="+stateURL, "FLASH_CACHE_DIR="+cacheAbs,
			"FLASH_PROVIDER=local", "FLASH_LOG_LEVEL="+level,
			// The mothership and its children stop by themselves when this
			// process is gone, however it ended.
			flash.ParentPIDEnv+"="+strconv.Itoa(os.Getpid()))
		if t.trace {
			cmd.Env = append(withoutOTelEnv(cmd.Env), collectTracesEnv(urls[i], t.key)...)
		}
		if !started[i] {
			// Its first start deploys this build; a restart after a crash
			// follows what was deployed since (flash dev's builds).
			cmd.Env = append(cmd.Env, flash.DeploySelfEnv+"=1")
		}
		started[i] = true
		if t.ha > 0 {
			cmd.Env = append(cmd.Env, "FLASH_MOTHERSHIP_URL="+strings.Join(urls, ",")) // children may use any
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C and SIGHUP are ours to handle
		mout := logs.writer(mothershipSource)
		cmd.Stdout, cmd.Stderr = mout, mout
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start the mothership %s: %w", t.bin, err)
		}
		cmds[i] = cmd
		go func() { exits <- mothershipExit{i, cmd.Wait()} }()
		if i == 0 {
			rec.MothershipPID = cmd.Process.Pid
		}
		if err := t.lock.record(rec); err != nil {
			return fmt.Errorf("record the run for other commands: %w", err)
		}
		return nil
	}
	var deployed <-chan *manifest.Manifest // flash dev's builds, once deployed
	stopDev := func() {}
	stopAll := func() error {
		stopDev() // no deploy while stopping
		logs.stopping.Store(true)
		fmt.Fprintln(out, "stopping: the mothership, then every endpoint it started …")
		running := 0
		for _, cmd := range cmds {
			if cmd != nil {
				cmd.Process.Signal(syscall.SIGTERM)
				running++
			}
		}
		grace := time.After(flash.ShutdownGrace + 5*time.Second)
		for running > 0 {
			select {
			case x := <-exits:
				cmds[x.i] = nil
				running--
			case <-grace:
				for _, cmd := range cmds {
					if cmd != nil {
						cmd.Process.Kill()
					}
				}
				grace = nil
			}
		}
		err := undeployAll(context.Background(), t.m.ProjectName, t.app, stateURL, out)
		tail()
		return err
	}
	if !t.json {
		fmt.Fprintf(out, "starting %s: mothership %s\n", t.m.ProjectName, strings.Join(urls, ", "))
	}
	for i := range urls {
		if err := start(i); err != nil {
			return errors.Join(err, stopAll())
		}
	}

	st, err := t.waitUp(base, done, exits, cmds)
	if err != nil {
		return errors.Join(err, stopAll())
	}
	topo := describeTopology(base, t.key, t.m, st)
	topo.Traces = t.trace
	if t.ha > 0 {
		topo.Mothership = strings.Join(urls, ", ") // every gateway serves the same URLs
	}
	if t.json {
		writeJSON(e, topo)
	} else {
		printTopology(out, topo, t.keySource, e.self)
	}
	deployed, stopDev = t.startDev(base, logs)

	// A mothership that dies is started again: it adopts the running
	// endpoints, which kept serving meanwhile. Repeated crashes give up.
	var crashes []time.Time
	watch := time.NewTicker(watchEvery)
	defer watch.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return stopAll()
		case m := <-deployed:
			t.m = m
			getJSON(e.ctx, base, "/flash/status", t.key, &st) // its moves were reported already
		case <-watch.C:
			var now statusView
			if getJSON(e.ctx, base, "/flash/status", t.key, &now) == nil {
				for _, line := range statusChanges(st, now, base, t.m) {
					logs.notice(line)
				}
				st = now
			}
		case x := <-exits:
			cmds[x.i] = nil
			err := x.err
			now := time.Now()
			crashes = append(crashes, now)
			if len(crashes) > 3 && now.Sub(crashes[len(crashes)-4]) < time.Minute {
				return errors.Join(fmt.Errorf("the mothership keeps exiting (last: %v); giving up, see the lines above", err), stopAll())
			}
			logs.notice(fmt.Sprintf("the mothership exited (%v); starting it again — the endpoints keep serving meanwhile", err))
			if err := start(x.i); err != nil {
				return errors.Join(err, stopAll())
			}
		}
	}
}

// mothershipExit is one mothership process ending.
type mothershipExit struct {
	i   int // which mothership
	err error
}

// withoutFlashEnv drops FLASH_* role variables that would confuse the mothership.
func withoutFlashEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "FLASH_IS_MOTHERSHIP", "FLASH_RESOURCE_NAME", "FLASH_MOTHERSHIP_URL", "FLASH_MOTHERSHIP_ID", "PORT", "FLASH_HOST",
			"FLASH_STATE_URL", "FLASH_PROVIDER", "FLASH_CACHE_DIR", "FLASH_LOG_LEVEL", "FLASH_MANIFEST_PATH", flash.ParentPIDEnv, flash.DeploySelfEnv,
			flash.TraceCollectEnv:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// withoutOTelEnv drops the OpenTelemetry variables, which --trace replaces.
func withoutOTelEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}

// collectTracesEnv makes a mothership at base collect spans, and every
// process (it and the children, which inherit its variables) export theirs
// to it over OTLP/HTTP with the API key, each second.
func collectTracesEnv(base, key string) []string {
	return []string{
		flash.TraceCollectEnv + "=1",
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + base,
		"OTEL_EXPORTER_OTLP_HEADERS=Authorization=" + url.PathEscape("Bearer "+key),
		"OTEL_BSP_SCHEDULE_DELAY=1000",
	}
}

// waitUp waits for the end of this boot's reconciliation, as the
// mothership's log says it, then reads the status it produced. A failed
// resource is an error naming it and why; gone reports that the mothership exited.
func (t *topologyRun) waitUp(base string, done <-chan reconciled, exits <-chan mothershipExit, cmds []*exec.Cmd) (st statusView, err error) {
	ctx := t.e.ctx
	select {
	case <-ctx.Done():
		return st, errors.New("interrupted before the topology was up")
	case x := <-exits:
		cmds[x.i] = nil // already exited: nothing to stop but its endpoints
		return st, fmt.Errorf("the mothership exited before the topology was up: %v (see its lines above)", x.err)
	case <-time.After(upTimeout):
		return st, fmt.Errorf("the topology was not up after %s (see the lines above; rerun with --verbose for every log line)", upTimeout)
	case r := <-done:
		if t.ha > 0 {
			// The leader reconciled; base may follow it: have it re-read the store first.
			var v struct{ Version int64 }
			if err := callJSON(ctx, "POST", base, "/flash/invalidate", t.key, &v); err != nil {
				return st, err
			}
		}
		if err := getJSON(ctx, base, "/flash/status", t.key, &st); err != nil {
			return st, err
		}
		var failed []string
		for _, name := range t.m.ResourceNames() {
			switch r, ok := st.Resources[name]; {
			case !ok:
				failed = append(failed, name+": not deployed")
			case r.Status == string(manifest.StatusFailed):
				failed = append(failed, fmt.Sprintf("%s: %s", name, r.Error))
			case len(endpointURLs(r)) == 0:
				failed = append(failed, name+": no endpoint")
			}
		}
		if len(failed) > 0 {
			return st, fmt.Errorf("some resources failed to deploy:\n  %s\n(their logs are in %s/)", strings.Join(failed, "\n  "), t.app.Logs())
		}
		if r.msg != msgReconcilePrefix+"done" {
			return st, fmt.Errorf("the mothership's %s: %s", r.msg, r.detail)
		}
		return t.waitApplied(base, st), nil
	}
}

// waitApplied waits, for at most appliedWait, until no child the mothership
// knows is still on an older version than st's: the table's calls cross
// children, which route by the version they applied. It returns the last
// status read.
func (t *topologyRun) waitApplied(base string, st statusView) statusView {
	behind := func(st statusView) bool {
		return slices.ContainsFunc(st.Instances, func(i mothership.InstanceStatus) bool {
			return i.State == mothership.InstanceBehind
		})
	}
	for deadline := time.Now().Add(appliedWait); behind(st) && time.Now().Before(deadline); {
		select {
		case <-t.e.ctx.Done():
			return st
		case <-time.After(20 * time.Millisecond):
		}
		var next statusView
		if getJSON(t.e.ctx, base, "/flash/status", t.key, &next) == nil {
			st = next
		}
	}
	return st
}

func endpointURLs(r statusResource) []string {
	if len(r.EndpointURLs) > 0 {
		return r.EndpointURLs
	}
	if r.EndpointURL != "" {
		return []string{r.EndpointURL}
	}
	return nil
}

// statusChanges describes what changed between two status reads after
// start-up: an endpoint that moved or restarted, a resource that failed.
func statusChanges(before, after statusView, base string, m *manifest.Manifest) []string {
	var lines []string
	for _, name := range m.ResourceNames() {
		a, b := before.Resources[name], after.Resources[name]
		was, now := strings.Join(endpointURLs(a), " "), strings.Join(endpointURLs(b), " ")
		switch {
		case b.Status == string(manifest.StatusFailed) && a.Status != b.Status:
			lines = append(lines, fmt.Sprintf("%s failed: %s", name, b.Error))
		case b.Scaling != "" && a.Scaling != "" && len(endpointURLs(a)) != len(endpointURLs(b)):
			lines = append(lines, fmt.Sprintf("%s scaled from %d to %d replicas (%s)", name, len(endpointURLs(a)), len(endpointURLs(b)), b.Scaling))
		case was != now && now != "":
			lines = append(lines, fmt.Sprintf("%s moved to %s (its public address %s is unchanged)", name, now, publicURL(base, name, m.Resources[name])))
		case b.Restarts > a.Restarts:
			lines = append(lines, fmt.Sprintf("%s restarted, at the same address (restarts so far: %d)", name, b.Restarts))
		}
	}
	return lines
}

// publicURL is the mothership gateway's stable address of a resource: LB
// routes under /{resource}, the Runpod API of a QB resource under /v2/{resource}.
func publicURL(base, name string, r *manifest.Resource) string {
	if r != nil && r.LoadBalanced {
		return base + "/" + name
	}
	return base + "/v2/" + name
}

// topology is what flash run prints once everything is up.
type topology struct {
	App        string             `json:"app"`
	Mothership string             `json:"mothership"`
	Version    int64              `json:"version"`
	Resources  []topologyResource `json:"resources"`
	Examples   []string           `json:"examples"`
	Dashboard  string             `json:"dashboard"` // the dashboard's link, which logs in (it carries the key)
	Traces     bool               `json:"traces"`    // --trace: the dashboard shows the spans
}

type topologyResource struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`      // http or queue
	URL       string   `json:"url"`       // the stable address on the mothership's gateway
	Endpoints []string `json:"endpoints"` // where its processes listen now (they move on restarts)
	Serves    []string `json:"serves"`    // routes of an http resource, functions of a queue one
	Status    string   `json:"status"`
}

// describeTopology pairs the build's manifest with the mothership's status
// and makes a ready-to-paste call for one route and one queue function, all
// through the mothership's gateway.
func describeTopology(base, key string, m *manifest.Manifest, st statusView) topology {
	t := topology{App: m.ProjectName, Mothership: base, Version: st.Version, Examples: []string{}, Dashboard: dashboardLink(base, key)}
	var lbCall, qbCall string
	for _, name := range m.ResourceNames() {
		r := m.Resources[name]
		s := st.Resources[name]
		tr := topologyResource{Name: name, Kind: "queue", URL: publicURL(base, name, r), Endpoints: endpointURLs(s), Status: s.Status, Serves: []string{}}
		if r.LoadBalanced {
			tr.Kind = "http"
		}
		for _, f := range r.Functions {
			if f.IsClass { // a stateful object: no route or job of its own to try
				tr.Serves = append(tr.Serves, "object "+f.Name)
				continue
			}
			if r.LoadBalanced {
				tr.Serves = append(tr.Serves, f.HTTPMethod+" "+f.HTTPPath)
				if lbCall == "" {
					lbCall = curlLB(tr.URL, key, f)
				}
				continue
			}
			tr.Serves = append(tr.Serves, f.Name)
			if qbCall == "" {
				qbCall = curlQB(tr.URL, key, f)
			}
		}
		t.Resources = append(t.Resources, tr)
	}
	for _, c := range []string{lbCall, qbCall} {
		if c != "" {
			t.Examples = append(t.Examples, c)
		}
	}
	return t
}

// printTopology prints the table of resources and ready-to-paste calls.
func printTopology(w io.Writer, t topology, keySource, self string) {
	fmt.Fprintf(w, "\n%s is up on %s (manifest v%d)\n\n", t.App, t.Mothership, t.Version)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tKIND\tSTATUS\tURL\tROUTES / FUNCTIONS")
	for _, r := range t.Resources {
		for i, line := range wrapList(r.Serves, servesWidth) {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, r.Status, r.URL, line)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t%s\n", line)
			}
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nAPI key: %s\n", keySource)
	fmt.Fprintf(w, "Dashboard (logs in with the key): %s\n", t.Dashboard)
	if t.Traces {
		fmt.Fprintln(w, "Traces: every process sends its spans to the mothership; the dashboard shows them")
	}
	fmt.Fprintln(w, "\nTry it:")
	for _, c := range t.Examples {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintf(w, "  %s status\n\nCtrl-C stops everything; --verbose shows every log line.\n", self)
}

// servesWidth is where the table's last column wraps, so that the table of
// an app with many routes still fits a laptop's terminal.
const servesWidth = 44

// wrapList joins items with ", " into lines of at most width characters
// (longer items stand alone); no items is one empty line.
func wrapList(items []string, width int) []string {
	lines := []string{""}
	for _, it := range items {
		last := &lines[len(lines)-1]
		switch {
		case *last == "":
			*last = it
		case len(*last)+2+len(it) <= width:
			*last += ", " + it
		default:
			*last += ","
			lines = append(lines, it)
		}
	}
	return lines
}

func example(f manifest.Function) string {
	var b bytes.Buffer
	if json.Compact(&b, f.ExampleInput) != nil {
		return "{}"
	}
	return b.String()
}

// curlLB is a call of an LB route, path parameters filled with sample values.
func curlLB(url, key string, f manifest.Function) string {
	path, err := wire.FillPath(f.HTTPPath, func(string) (string, error) { return "1h", nil })
	if err != nil {
		path = f.HTTPPath
	}
	if f.HTTPMethod == "GET" || f.HTTPMethod == "DELETE" {
		return fmt.Sprintf("curl -s -H 'Authorization: Bearer %s' %s%s", key, url, path)
	}
	return fmt.Sprintf("curl -s -X %s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '%s' %s%s",
		f.HTTPMethod, key, example(f), url, path)
}

// curlQB is a /runsync call of a queue function in the Runpod shape.
func curlQB(url, key string, f manifest.Function) string {
	body := wire.AppendJobRequest(nil, f.Name, []byte(example(f)))
	return fmt.Sprintf("curl -s -X POST -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '%s' %s/runsync", key, body, url)
}

// undeployAll stops every endpoint of the app recorded in its local state,
// reporting each on w.
func undeployAll(ctx context.Context, name string, app layout.App, stateURL string, w io.Writer) error {
	st, err := openRunStore(ctx, app, stateURL)
	if err != nil {
		return fmt.Errorf("open the state store to stop the endpoints: %w", err)
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := local.New(local.Config{App: name, Store: st, LogDir: app.Logs(), Logger: quiet})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	results, err := p.UndeployAll(ctx)
	var survivors []string
	for _, r := range results {
		if r.Err != nil {
			survivors = append(survivors, fmt.Sprintf("%s (%s): %v", r.Endpoint.Resource, r.Endpoint.ID, r.Err))
			continue
		}
		fmt.Fprintf(w, "stopped %s (%s)\n", r.Endpoint.Resource, strings.Join(r.Endpoint.URLs, " "))
	}
	if len(survivors) > 0 {
		return fmt.Errorf("these endpoints are still running:\n  %s", strings.Join(survivors, "\n  "))
	}
	return err
}
