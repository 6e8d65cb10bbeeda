//go:build load

// The save → new code serving benchmark of flash dev (issue 18), not part of CI:
//
//	go test -tags load -run TestLoadDevReload -v -timeout 20m ./cmd/flash/
//
// E2E_DEV_EDITS (default 10) is the number of edits of each kind.

package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// await looks for answers containing want from now on.
func (l *callLoad) await(want string) {
	l.firstWanted.Store(0)
	l.want.Store(&want)
}

// percentile is the nearest-rank q-quantile of sorted ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	return ds[max(0, int(math.Ceil(q*float64(len(ds))))-1)]
}

func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	return fmt.Sprintf("p50 %s, p99 %s (min %s, max %s, n=%d)", r(percentile(s, 0.5)), r(percentile(s, 0.99)), r(s[0]), r(s[len(s)-1]), len(s))
}

// phaseRE reads the breakdown of a reload line.
var phaseRE = regexp.MustCompile(`(serving|wait|go build|describe|upload|start|publish) ([0-9.]+[mµn]?s)`)

// phases adds the breakdown of the last reload line of out to into.
func phases(out string, into map[string][]time.Duration) {
	last := out[strings.LastIndex(out, "reloaded"):]
	last, _, _ = strings.Cut(last, "\n")
	for _, m := range phaseRE.FindAllStringSubmatch(last, -1) {
		if d, err := time.ParseDuration(m[2]); err == nil {
			into[m[1]] = append(into[m[1]], d)
		}
	}
}

// Edits a function's body and a resource's config, one after the other,
// while calls go on through the gateway: how long from each save to the
// first answer of the new code (code edits), or to the reload's report
// (config edits, which restart one resource of two). A plain `go build` of
// the same app after each code edit is the baseline.
func TestLoadDevReload(t *testing.T) {
	edits := 10
	if v := os.Getenv("E2E_DEV_EDITS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("E2E_DEV_EDITS=%q: want a positive count", v)
		}
		edits = n
	}
	app, rt := startDev(t)
	main := filepath.Join(app, "main.go")
	reloads := func() int { return strings.Count(rt.out(), "reloaded") }
	// A developer's calls, not a load test: the build needs the cores.
	calls := startCalls(t, helloCall(t, rt), "\x00", 2, 5*time.Millisecond)

	var code, build, config []time.Duration
	codePhases, configPhases := map[string][]time.Duration{}, map[string][]time.Duration{}
	greeting := "Hello"
	for i := range edits {
		next := fmt.Sprintf("Edit%d", i)
		n := reloads()
		calls.await(next + ", ")
		saved := time.Now()
		editFile(t, main, `"`+greeting+`, "`, `"`+next+`, "`)
		greeting = next
		waitFor(t, "the new code serving", func() bool { return calls.firstWanted.Load() != 0 }, rt.out)
		code = append(code, time.Unix(0, calls.firstWanted.Load()).Sub(saved))
		waitFor(t, "the reload's report", func() bool { return reloads() > n }, rt.out)
		phases(rt.out(), codePhases)

		// The baseline: go build of the same sources, default flags.
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "app"), ".")
		cmd.Dir = app
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		build = append(build, time.Since(start))
	}

	before := pidsOf(t, rt.dir, "hello-app")["web"]
	env := `flash.ResourceConfig{}`
	for i := range edits {
		n := reloads()
		next := fmt.Sprintf(`flash.ResourceConfig{Env: map[string]string{"STYLE": "s%d"}}`, i)
		saved := time.Now()
		editFile(t, main, `app.Queue("worker", `+env+`)`, `app.Queue("worker", `+next+`)`)
		env = next
		waitFor(t, "the reload's report", func() bool { return reloads() > n }, rt.out)
		config = append(config, time.Since(saved))
		phases(rt.out(), configPhases)
	}
	webRestarted := !slices.Equal(before, pidsOf(t, rt.dir, "hello-app")["web"])

	calls.end()
	if err := rt.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("flash dev exit: %v", err)
	}
	if n := calls.failures.Load(); n > 0 {
		t.Errorf("%d of %d calls failed, first: %q", n, calls.calls.Load(), calls.firstFailures)
	}
	t.Logf("%d calls through the gateway, %d failed", calls.calls.Load(), calls.failures.Load())
	t.Logf("code edit: save → first answer of the new code: %s", summary(code))
	t.Logf("baseline: go build of the same app, default flags: %s", summary(build))
	logPhases := func(ps map[string][]time.Duration) {
		for _, name := range []string{"serving", "wait", "go build", "describe", "upload", "start", "publish"} {
			if ds := ps[name]; len(ds) > 0 {
				t.Logf("  %-9s %s", name, summary(ds))
			}
		}
	}
	logPhases(codePhases)
	t.Logf("config edit of worker: save → the reload's report: %s; web restarted: %v", summary(config), webRestarted)
	logPhases(configPhases)
	if webRestarted {
		t.Error("a config edit of worker restarted web")
	}
	for l := range strings.Lines(rt.out()) {
		if strings.Contains(l, "reloaded") || strings.Contains(l, "|   ") || strings.HasPrefix(l, "built ") {
			t.Log(strings.TrimSpace(l))
		}
	}
}
