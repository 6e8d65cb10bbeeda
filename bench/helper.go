package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HelperEnv, when set in a process's environment, makes it a bench helper:
// the flash binary (or a test binary) re-executed by a run so that load
// generators and sync clients do not share the measured server's process.
// A program that embeds bench calls MaybeHelper first thing in main.
const HelperEnv = "FLASH_BENCH_HELPER"

// Helper roles.
const (
	roleSync = "sync" // N child.Syncs long-polling a mothership; one line per apply
	roleLoad = "load" // the remote figures' callers; one load window per command
	roleApp  = "app"  // the deploy figures' app (mothership and children)
	rolePark = "park" // one parked-poll memory measurement in a fresh process
)

// helperProfileEnv, when set, makes a helper write a CPU profile of its run
// to "<value>.<role>-<pid>" (set by Config.CPUProfile).
const helperProfileEnv = "FLASH_BENCH_CPUPROFILE"

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// MaybeHelper runs the helper role named by HelperEnv and reports true, or
// reports false at once when the variable is not set. A helper stops when
// its stdin closes or ctx ends.
func MaybeHelper(ctx context.Context) (bool, error) {
	role := os.Getenv(HelperEnv)
	if role == "" {
		return false, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if prefix := os.Getenv(helperProfileEnv); prefix != "" {
		stop, err := startCPUProfile(fmt.Sprintf("%s.%s-%d", prefix, role, os.Getpid()))
		if err != nil {
			return true, err
		}
		defer stop()
	}
	switch role {
	case roleSync:
		go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
		return true, syncHelper(ctx, os.Stdout)
	case roleLoad:
		return true, loadHelper(ctx, os.Stdin, os.Stdout)
	case roleApp:
		return true, appHelper()
	case rolePark:
		return true, parkHelper(ctx, os.Stdout)
	}
	return true, fmt.Errorf("%s=%q: unknown bench helper role", HelperEnv, role)
}

// syncHelper runs FLASH_BENCH_N sync clients against FLASH_BENCH_URL (ids
// from FLASH_BENCH_FIRST), or bare clients with FLASH_BENCH_BARE_POLL set,
// and writes "<version> <unix ns>" for each apply.
func syncHelper(ctx context.Context, stdout io.Writer) error {
	url := os.Getenv("FLASH_BENCH_URL")
	n, err1 := strconv.Atoi(os.Getenv("FLASH_BENCH_N"))
	first, err2 := strconv.Atoi(os.Getenv("FLASH_BENCH_FIRST"))
	if err := errors.Join(err1, err2); err != nil || url == "" {
		return fmt.Errorf("sync helper: FLASH_BENCH_URL, _N and _FIRST must be set: %w", err)
	}
	out := bufio.NewWriter(stdout)
	var mu sync.Mutex
	applied := func(v, at int64) {
		mu.Lock()
		fmt.Fprintf(out, "%d %d\n", v, at)
		out.Flush()
		mu.Unlock()
	}
	if os.Getenv("FLASH_BENCH_BARE_POLL") != "" {
		runBarePolls(ctx, url, n, applied)() // until stdin closes
		return nil
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	wait, err := runSyncs(ctx, url, first, n, log, applied)
	if err != nil {
		return err // the process exits: nothing to wait for
	}
	wait() // until stdin closes
	return nil
}

// helperProc is a running helper process.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when its stdout is drained
}

// startHelper re-executes this program (Config.Self) in role, with env added,
// calling line for each line the helper prints.
func (r *runner) startHelper(role string, env []string, line func(string)) (*helperProc, error) {
	self := r.cfg.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("bench helper: %w", err)
		}
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), HelperEnv+"="+role), env...)
	if r.cfg.CPUProfile != "" {
		cmd.Env = append(cmd.Env, helperProfileEnv+"="+r.cfg.CPUProfile)
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bench helper: %w", err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 256<<20) // a load window's latencies come as one line
		for sc.Scan() {
			line(strings.TrimSpace(sc.Text()))
		}
	}()
	return h, nil
}

// stop closes the helper's stdin and waits for it, killing it if it lingers.
func (h *helperProc) stop() {
	h.stdin.Close()
	t := time.AfterFunc(10*time.Second, func() { h.cmd.Process.Kill() })
	<-h.done
	h.cmd.Wait()
	t.Stop()
}

// loadHelper starts the remote figures' callers (remoteCallers) against
// FLASH_BENCH_WORKER and FLASH_BENCH_BARE, then serves commands
// "<flash|raw|rawspec|job> <callers> <window ns>" from stdin, one line each, answering
// "ok <calls> <elapsed ns> <latency ns>..." or "err <message>". It prints
// "ready" once the callers work, and stops at the end of stdin.
func loadHelper(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	dir, err := os.MkdirTemp("", "flash-bench-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	workerURL := os.Getenv("FLASH_BENCH_WORKER")
	viaFlash, raw, rawSpec, stop, err := remoteCallers(ctx, dir, workerURL, os.Getenv("FLASH_BENCH_BARE"), log)
	defer stop()
	if err != nil {
		return err
	}
	client, closeIdle := newClient()
	defer closeIdle()
	asJob := func(ctx context.Context, _ int) error { return runJob(ctx, client, workerURL, benchInput) }
	out := bufio.NewWriter(stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		var kind string
		var conc int
		var window int64
		calls := map[string]func(context.Context, int) error{"flash": viaFlash, "raw": raw, "rawspec": rawSpec, "job": asJob}
		if _, err := fmt.Sscan(sc.Text(), &kind, &conc, &window); err != nil || conc < 1 || calls[kind] == nil {
			fmt.Fprintf(out, "err bad command %q\n", sc.Text())
			out.Flush()
			continue
		}
		res, err := runLoad(ctx, conc, time.Duration(window), calls[kind])
		if err != nil {
			fmt.Fprintf(out, "err %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Fprintf(out, "ok %d %d", res.calls, res.elapsed)
			for _, l := range res.lat {
				fmt.Fprintf(out, " %d", l)
			}
			out.WriteByte('\n')
		}
		out.Flush()
	}
	return sc.Err()
}

// loadHelperProc is a running load helper: one command at a time.
type loadHelperProc struct {
	*helperProc
	mu      sync.Mutex
	answers chan string
}

// startLoadHelper starts a load helper and waits until its callers work.
func (r *runner) startLoadHelper(workerURL, bareURL string) (*loadHelperProc, error) {
	lg := &loadHelperProc{answers: make(chan string, 1)}
	h, err := r.startHelper(roleLoad, []string{"FLASH_BENCH_WORKER=" + workerURL, "FLASH_BENCH_BARE=" + bareURL},
		func(line string) { lg.answers <- line })
	if err != nil {
		return nil, err
	}
	lg.helperProc = h
	if line, err := lg.answer(startTimeout); err != nil || line != "ready" {
		h.stop()
		return nil, fmt.Errorf("load helper did not start: %q %v", line, err)
	}
	return lg, nil
}

// answer waits for the helper's next line.
func (lg *loadHelperProc) answer(limit time.Duration) (string, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case line := <-lg.answers:
		return line, nil
	case <-lg.done:
		return "", errors.New("load helper exited")
	case <-t.C:
		return "", fmt.Errorf("load helper: no answer within %s", limit)
	}
}

// load returns the loadFunc running kind ("flash", "raw", "rawspec" or
// "job") in the helper.
func (lg *loadHelperProc) load(kind string) loadFunc {
	return func(ctx context.Context, conc int, window time.Duration) (loadResult, error) {
		lg.mu.Lock()
		defer lg.mu.Unlock()
		if _, err := fmt.Fprintf(lg.stdin, "%s %d %d\n", kind, conc, window); err != nil {
			return loadResult{}, err
		}
		line, err := lg.answer(window + startTimeout)
		if err != nil {
			return loadResult{}, err
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "ok" {
			return loadResult{}, fmt.Errorf("load helper: %s", line)
		}
		calls, err1 := strconv.Atoi(f[1])
		elapsed, err2 := strconv.ParseInt(f[2], 10, 64)
		res := loadResult{calls: calls, elapsed: time.Duration(elapsed), lat: make([]time.Duration, 0, len(f)-3)}
		for _, l := range f[3:] {
			d, err := strconv.ParseInt(l, 10, 64)
			if err != nil {
				return loadResult{}, fmt.Errorf("load helper: bad latency %q", l)
			}
			res.lat = append(res.lat, time.Duration(d))
		}
		if err := errors.Join(err1, err2); err != nil {
			return loadResult{}, fmt.Errorf("load helper: %w", err)
		}
		return res, nil
	}
}
