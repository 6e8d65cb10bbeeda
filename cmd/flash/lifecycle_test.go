package main

import (
	"bytes"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/internal/wire"
)

var update = flag.Bool("update", false, "rewrite golden files")

func pipelinePkg(t *testing.T) string {
	t.Helper()
	pkg, err := filepath.Abs("../../examples/pipeline")
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

// processesOf lists every process a run of app started: its mothership and
// the endpoints its state records.
func processesOf(t *testing.T, rt *runningTopology, app string) []int {
	t.Helper()
	pids := recordedPIDs(t, rt.dir, app)
	if len(pids) == 0 {
		t.Fatalf("no endpoint recorded for %s", app)
	}
	return append(pids, rt.record(t, app).MothershipPID)
}

// curlsWork performs every printed curl and wants 200.
func curlsWork(t *testing.T, rt *runningTopology) {
	t.Helper()
	if len(rt.curls) == 0 {
		t.Fatalf("no curl printed:\n%s", rt.out())
	}
	for _, c := range rt.curls {
		if code, body := doCurl(t, c); code != 200 {
			t.Errorf("%s → %d %s", c, code, body)
		}
	}
}

// The default output of a clean start: a handful of lines, the table last.
func TestFlashRunOutputGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	rt := startFlashRun(t, pipelinePkg(t))
	out := rt.out()
	// A slow build adds a "still building" line every 10 s; those depend on
	// the machine's load, not on what flash prints, so they are not counted.
	n := strings.Count(out, "\n") - strings.Count(out, "\nstill building ")
	if n > 25 {
		t.Errorf("%d lines before the topology was up, want at most 25:\n%s", n, out)
	}
	if !strings.HasSuffix(out, "Ctrl-C stops everything; --verbose shows every log line.\n") {
		t.Errorf("the table is not the last thing printed:\n%s", out)
	}
	i := strings.Index(out, "\npipeline is up on ")
	if i < 0 {
		t.Fatalf("no table:\n%s", out)
	}
	got := normalizeRunOutput(out[i:])
	golden := filepath.Join("testdata", "run-pipeline.golden")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (-update rewrites it):\n%s", golden, got)
	}
	if err := rt.stop(t, os.Interrupt); err != nil {
		t.Fatal(err)
	}
}

var (
	reKey  = regexp.MustCompile(`fl_[0-9a-f]+`)
	rePort = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	reVer  = regexp.MustCompile(`manifest v\d+`)
)

// normalizeRunOutput replaces what differs between runs: key, ports,
// manifest version (publishes may batch), the CLI's path.
func normalizeRunOutput(s string) string {
	s = reKey.ReplaceAllString(s, "KEY")
	s = rePort.ReplaceAllString(s, "127.0.0.1:PORT")
	s = reVer.ReplaceAllString(s, "manifest vN")
	if bin, err := flashBinary(); err == nil {
		s = strings.ReplaceAll(s, bin, "FLASH")
	}
	return s
}

// Closing the terminal stops everything, as Ctrl-C does.
func TestFlashRunSIGHUPStopsEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	rt := startFlashRun(t, pipelinePkg(t))
	pids := processesOf(t, rt, "pipeline")
	if err := rt.stop(t, syscall.SIGHUP); err != nil {
		t.Fatalf("flash run on SIGHUP: %v\n%s", err, rt.out())
	}
	waitGone(t, "after SIGHUP", pids)
	if _, err := os.Stat(layout.In(rt.dir).App("pipeline").Run()); err == nil {
		t.Error("run.json left behind")
	}
}

// A CLI killed outright leaves nothing running, and the next run in the
// directory, started at once on the same port, starts from the stale state
// with working URLs and the same key.
func TestFlashRunKilledCLIThenRunAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	dir := t.TempDir()
	port := freePort(t)
	rt := startFlashRunIn(t, dir, pipelinePkg(t), port)
	pids := processesOf(t, rt, "pipeline")
	key, _ := os.ReadFile(layout.In(dir).APIKey())
	rt.cmd.Process.Kill()
	<-rt.exited

	// Again at once, on the same port: the new run waits for the old
	// mothership to go, and starts from the state the killed run left.
	rt2 := startFlashRunIn(t, dir, pipelinePkg(t), port)
	waitGone(t, "the killed run's processes", pids)
	if again, _ := os.ReadFile(layout.In(dir).APIKey()); !bytes.Equal(key, again) || len(key) == 0 {
		t.Errorf("the directory's key changed: %q → %q", key, again)
	}
	if !strings.Contains(rt2.out(), "Bearer "+strings.TrimSpace(string(key))) {
		t.Errorf("the curls do not use the directory's key:\n%s", rt2.out())
	}
	curlsWork(t, rt2)
	if err := rt2.stop(t, os.Interrupt); err != nil {
		t.Fatal(err)
	}
}

// Two apps run from one directory keep apart; a second run of one app says
// where the first one is; commands that must pick a mothership ask which.
func TestTwoAppsInOneDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real topologies")
	}
	dir := t.TempDir()
	pipeline := startFlashRunIn(t, dir, pipelinePkg(t), freePort(t))
	other, err := filepath.Abs("testdata/otherapp")
	if err != nil {
		t.Fatal(err)
	}
	otherRun := startFlashRunIn(t, dir, other, freePort(t))
	curlsWork(t, otherRun)
	curlsWork(t, pipeline)
	for _, c := range pipeline.curls {
		if strings.Contains(c, "/process") {
			if _, body := doCurl(t, c); !strings.Contains(body, `"embed":"embedder"`) {
				t.Errorf("pipeline's calls no longer spread over its endpoints: %s", body)
			}
		}
	}
	if n := len(recordedPIDs(t, dir, "pipeline")); n != 3 {
		t.Errorf("pipeline has %d endpoints recorded, want 3", n)
	}

	// A second run of the pipeline here is refused, naming the first one.
	_, err = launchFlashRun(t, dir, pipelinePkg(t), freePort(t))
	if err == nil || !strings.Contains(err.Error(), "already running") || !strings.Contains(err.Error(), pipeline.mothership()) {
		t.Errorf("second run of the same app: %v", err)
	}

	t.Chdir(dir)
	if code, _, errOut := runCLI(t, "status"); code != exitUsage || !strings.Contains(errOut, "several apps") {
		t.Errorf("status with two apps running: exit %d %s", code, errOut)
	}
	if code, out, errOut := runCLI(t, "status", "--mothership", strings.TrimPrefix(otherRun.mothership(), "http://")); code != exitOK || !strings.Contains(out, "web") {
		t.Errorf("status --mothership host:port: exit %d %s %s", code, out, errOut)
	}
	for _, rt := range []*runningTopology{otherRun, pipeline} {
		if err := rt.stop(t, os.Interrupt); err != nil {
			t.Fatal(err)
		}
	}
}

// Build mistakes are explained with their fix.
func TestBuildMistakesSayWhatToDo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds apps")
	}
	for _, tc := range []struct{ pkg, want string }{
		{"testdata/notmain", "not a program"},
		{"testdata/nomain", "must call app.Main()"},
	} {
		src, _ := filepath.Abs(tc.pkg)
		t.Run(tc.pkg, func(t *testing.T) {
			t.Chdir(t.TempDir())
			code, _, errOut := runCLI(t, "run", "--port", strconv.Itoa(freePort(t)), src)
			if code != exitFail || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "permission denied") || strings.Contains(errOut, "unexpected end of JSON") {
				t.Fatalf("exit %d: %s", code, errOut)
			}
		})
	}
}

// An endpoint that dies is restarted by the mothership; flash run says so in
// one line, and the printed (gateway) addresses keep working.
func TestFlashRunReportsARestartedEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	rt := startFlashRun(t, pipelinePkg(t))
	table := len(rt.out())
	var apiPID int
	for _, pid := range recordedPIDs(t, rt.dir, "pipeline") {
		if environ, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ"); bytes.Contains(environ, []byte("FLASH_RESOURCE_NAME=api\x00")) {
			apiPID = pid
		}
	}
	if apiPID == 0 {
		t.Fatal("no api process found")
	}
	syscall.Kill(apiPID, syscall.SIGKILL)
	deadline := time.Now().Add(60 * time.Second)
	for {
		after := rt.out()[table:]
		if strings.Contains(after, "api moved to ") || strings.Contains(after, "api restarted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line about api's restart:\n%s", rt.out())
		}
		time.Sleep(200 * time.Millisecond)
	}
	curlsWork(t, rt)
	if err := rt.stop(t, os.Interrupt); err != nil {
		t.Fatal(err)
	}
}

// FLASH_LOG_LEVEL=warn shows every process's warnings and nothing below,
// and flash run still sees the mothership's reconciliation end.
func TestFlashRunLogLevelWarn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology")
	}
	rt, err := launchFlashRun(t, t.TempDir(), pipelinePkg(t), freePort(t), "FLASH_LOG_LEVEL=warn")
	if err != nil {
		t.Fatal(err)
	}
	if out := rt.out(); strings.Contains(out, "level=INFO") || strings.Contains(out, " up\n") {
		t.Errorf("Info lines or event lines shown at FLASH_LOG_LEVEL=warn:\n%s", out)
	}
	if err := rt.stop(t, os.Interrupt); err != nil {
		t.Fatal(err)
	}
}

// An --ha run keeps its state in its etcd cluster: the next --ha run of the
// app starts the same cluster again, so the manifest's history goes on
// instead of starting over; another size is refused, and changes nothing.
func TestFlashRunHAKeepsItsState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real topology and an etcd cluster")
	}
	dir, port := t.TempDir(), freePortRange(t, 5) // --ha 5 is tried too
	ha := []string{"--ha", "3"}
	rt, err := launchFlashWith(t, "run", dir, pipelinePkg(t), port, ha)
	if err != nil {
		t.Fatal(err)
	}
	curlsWorkSoon(t, rt)
	first := manifestVersion(t, rt)
	if err := rt.stop(t, os.Interrupt); err != nil {
		t.Fatal(err)
	}

	if _, err := launchFlashWith(t, "run", dir, pipelinePkg(t), port, []string{"--ha", "5"}); err == nil ||
		!strings.Contains(err.Error(), "had 3 members") {
		t.Fatalf("--ha 5 after --ha 3: err = %v, want a refusal naming the 3 members", err)
	}

	rt2, err := launchFlashWith(t, "run", dir, pipelinePkg(t), port, ha)
	if err != nil {
		t.Fatal(err)
	}
	curlsWorkSoon(t, rt2)
	if again := manifestVersion(t, rt2); again <= first {
		t.Errorf("manifest version %d after the second --ha run, want more than the first run's %d: the state was lost", again, first)
	}
	if err := rt2.stop(t, os.Interrupt); err != nil {
		t.Fatal(err)
	}
}

// curlsWorkSoon is curlsWork for an --ha run, allowing a few seconds: the
// table waits for the children that report to the mothership it asks, while
// others poll the other motherships, which learn the version from etcd.
func curlsWorkSoon(t *testing.T, rt *runningTopology) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ok := true
		for _, c := range rt.curls {
			if code, _ := doCurl(t, c); code != 200 {
				ok = false
			}
		}
		if ok || time.Now().After(deadline) {
			break
		}
	}
	curlsWork(t, rt)
}

// manifestVersion is the version the run's mothership serves.
func manifestVersion(t *testing.T, rt *runningTopology) int {
	t.Helper()
	key, err := os.ReadFile(layout.In(rt.dir).APIKey())
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, rt.mothership()+"/manifest", nil)
	if err != nil {
		t.Fatalf("no mothership URL in the output (%v):\n%s", err, rt.out())
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	v, err := strconv.Atoi(resp.Header.Get(wire.HeaderManifestVersion))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /manifest: %s, version %q", resp.Status, resp.Header.Get(wire.HeaderManifestVersion))
	}
	return v
}
