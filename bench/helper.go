package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

// HelperEnv, when set in a process's environment, makes it a bench helper:
// the flash binary (or a test binary) re-executed by a run so that load
// generators and sync clients do not share the measured server's process.
// A program that embeds bench calls MaybeHelper first thing in main.
const HelperEnv = "FLASH_BENCH_HELPER"

// Helper roles.
const roleSync = "sync" // N child.Syncs long-polling a mothership; one line per apply

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
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	switch role {
	case roleSync:
		return true, syncHelper(ctx, os.Stdout)
	}
	return true, fmt.Errorf("%s=%q: unknown bench helper role", HelperEnv, role)
}

// syncHelper runs FLASH_BENCH_N sync clients against FLASH_BENCH_URL (ids
// from FLASH_BENCH_FIRST) and writes "<version> <unix ns>" for each apply.
func syncHelper(ctx context.Context, stdout io.Writer) error {
	url := os.Getenv("FLASH_BENCH_URL")
	n, err1 := strconv.Atoi(os.Getenv("FLASH_BENCH_N"))
	first, err2 := strconv.Atoi(os.Getenv("FLASH_BENCH_FIRST"))
	if err := errors.Join(err1, err2); err != nil || url == "" {
		return fmt.Errorf("sync helper: FLASH_BENCH_URL, _N and _FIRST must be set: %w", err)
	}
	out := bufio.NewWriter(stdout)
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var wg sync.WaitGroup
	var trs []*http.Transport
	defer func() {
		wg.Wait()
		for _, tr := range trs {
			tr.CloseIdleConnections()
		}
	}()
	for i := first; i < first+n; i++ {
		tr := wire.NewTransport()
		trs = append(trs, tr)
		s, err := child.NewSync(child.Config{
			Identity: fmt.Sprintf("res%d", i%3), Instance: "bench-" + strconv.Itoa(i),
			MothershipURL: url, APIKey: apiKey, HTTPClient: &http.Client{Transport: tr}, Logger: log,
			OnApply: func(_ *manifest.Manifest, v int64) {
				t := time.Now().UnixNano()
				mu.Lock()
				fmt.Fprintf(out, "%d %d\n", v, t)
				out.Flush()
				mu.Unlock()
			},
		})
		if err != nil {
			return err
		}
		wg.Go(func() { s.Run(ctx) })
	}
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
