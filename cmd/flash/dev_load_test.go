//go:build load

// The save → new code serving benchmark of flash dev (issue 18), not part of CI:
//
//	go test -tags load -run TestLoadDevReload -v -timeout 20m ./cmd/flash/
//
// E2E_DEV_EDITS (default 10) is the number of edits of each kind.

package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// firstAnswer calls a printed curl from several clients and records when an
// answer first contains the awaited text.
type firstAnswer struct {
	want            atomic.Pointer[string]
	seen            atomic.Int64 // unix nanoseconds of the first answer with want; 0: none yet
	calls, failures atomic.Int64
	firstFailure    atomic.Pointer[string]
	stop            chan struct{}
	wg              sync.WaitGroup
}

func watchAnswers(t *testing.T, curl string, clients int) *firstAnswer {
	t.Helper()
	method, url, body, headers := parseCurl(curl)
	a := &firstAnswer{stop: make(chan struct{})}
	none := "\x00"
	a.want.Store(&none)
	client := &http.Client{Timeout: 60 * time.Second}
	for range clients {
		a.wg.Go(func() {
			for {
				select {
				case <-a.stop:
					return
				default:
				}
				req, _ := http.NewRequest(method, url, strings.NewReader(body))
				req.Header = headers.Clone()
				resp, err := client.Do(req)
				a.calls.Add(1)
				if err != nil {
					a.fail(err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					a.fail(fmt.Sprintf("%d %s", resp.StatusCode, b))
					continue
				}
				if strings.Contains(string(b), *a.want.Load()) {
					a.seen.CompareAndSwap(0, time.Now().UnixNano())
				}
				time.Sleep(5 * time.Millisecond) // a developer's calls, not a load test: the build needs the cores
			}
		})
	}
	t.Cleanup(a.end)
	return a
}

func (a *firstAnswer) fail(msg string) {
	a.failures.Add(1)
	a.firstFailure.CompareAndSwap(nil, &msg)
}

// await starts looking for answers containing want.
func (a *firstAnswer) await(want string) {
	a.seen.Store(0)
	a.want.Store(&want)
}

func (a *firstAnswer) end() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	a.wg.Wait()
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
	app := newHelloApp(t)
	rt, err := launchFlash(t, "dev", t.TempDir(), app, freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch", func() bool { return strings.Contains(rt.out(), "watching ") }, rt.out)
	main := filepath.Join(app, "main.go")
	reloads := func() int { return strings.Count(rt.out(), "reloaded") }
	calls := watchAnswers(t, helloCall(t, rt), 2)

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
		waitFor(t, "the new code serving", func() bool { return calls.seen.Load() != 0 }, rt.out)
		code = append(code, time.Unix(0, calls.seen.Load()).Sub(saved))
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
		t.Errorf("%d of %d calls failed, first: %s", n, calls.calls.Load(), *calls.firstFailure.Load())
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
