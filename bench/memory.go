package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

const parkLimit = 60 * time.Second // to open and park every connection

// memory measures the memory a mothership holds for parked long polls: the
// growth of a process's live heap plus goroutine stacks (after a full GC)
// while N GET /manifest?version=V&wait=120 requests are parked, against a
// bare handler that parks requests the same way. Each measurement runs in a
// fresh helper process, so that memory the bench's other groups still
// release cannot count against it. The mothership is real (endpoint server
// and middleware, SQLite store); the clients are raw TCP connections in the
// same helper that wrote a request and wait, so they add no goroutine and
// only a few hundred bytes each, alike on both sides.
func (r *runner) memory(ctx context.Context) error {
	ns := r.p.parked
	msMiB, bareMiB := make([]float64, len(ns)), make([]float64, len(ns))
	var perMS, perBare float64
	for i, n := range ns {
		r.progress("memory with %d parked long polls", n)
		mothershipSide := func(ctx context.Context) (float64, error) { return r.parkedInHelper(ctx, n, true) }
		bareSide := func(ctx context.Context) (float64, error) { return r.parkedInHelper(ctx, n, false) }
		ms, bs, err := interleave(ctx, r.p.memRounds, mothershipSide, bareSide)
		if err != nil {
			return fmt.Errorf("%d parked polls: %w", n, err)
		}
		msMiB[i], bareMiB[i] = Median(ms)/(1<<20), Median(bs)/(1<<20)
		perMS, perBare = Median(ms)/float64(n)/1024, Median(bs)/float64(n)/1024
	}
	r.note("memory_parked and parked_poll_kib: mothership or bare server in a fresh helper process per measurement; live heap + goroutine stacks after GC, raw TCP clients")
	last := ns[len(ns)-1]
	r.figure("parked_poll_kib", perMS, "KiB/poll", fmt.Sprintf("heap + stack growth per parked long poll on the mothership, at %d parked", last))
	r.figure("parked_poll_kib_bare", perBare, "KiB/poll", "the same for a bare net/http handler that parks requests (baseline)")
	r.figure("parked_poll_ratio", perMS/perBare, "×", "parked_poll_kib / parked_poll_kib_bare")
	x := make([]float64, len(ns))
	for i, n := range ns {
		x[i] = float64(n)
	}
	r.curve(Curve{Name: "memory_parked", Title: "Memory vs parked long polls (in-process heap + stacks)",
		XLabel: "parked long polls", YLabel: "MiB", LogX: true, X: x,
		Series: []Series{{"mothership", msMiB}, {"bare handler", bareMiB}}})
	return nil
}

// parkedInHelper is parkedBytes in a fresh helper process.
func (r *runner) parkedInHelper(ctx context.Context, n int, real bool) (float64, error) {
	got := make(chan string, 1)
	h, err := r.startHelper(rolePark, []string{"FLASH_BENCH_N=" + strconv.Itoa(n), "FLASH_BENCH_REAL=" + strconv.FormatBool(real)},
		func(line string) {
			select {
			case got <- line:
			default:
			}
		})
	if err != nil {
		return 0, err
	}
	defer h.stop()
	select {
	case line := <-got:
		v, err := strconv.ParseFloat(line, 64)
		if err != nil {
			return 0, fmt.Errorf("park helper: %q", line)
		}
		return v, nil
	case <-h.done:
		return 0, errors.New("park helper stopped without a figure (its error is above)")
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(2*parkLimit + startTimeout):
		return 0, errors.New("park helper: no figure in time")
	}
}

// parkHelper measures parkedBytes for FLASH_BENCH_N polls on the mothership
// (FLASH_BENCH_REAL=true) or the bare handler, and prints it.
func parkHelper(ctx context.Context, stdout io.Writer) error {
	n, err1 := strconv.Atoi(os.Getenv("FLASH_BENCH_N"))
	real, err2 := strconv.ParseBool(os.Getenv("FLASH_BENCH_REAL"))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("park helper: FLASH_BENCH_N and _REAL must be set: %w", err)
	}
	tmp, err := os.MkdirTemp("", "flash-bench-park-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	r := &runner{tmp: tmp, log: slog.New(slog.DiscardHandler)}
	b, err := r.parkedBytes(ctx, n, real)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, b)
	return err
}

// parkedBytes starts a server (the mothership or the bare one), parks n
// polls on it and returns the growth of live heap + stacks.
func (r *runner) parkedBytes(ctx context.Context, n int, real bool) (float64, error) {
	var (
		addr    string
		parked  func() int64
		version = "1"
	)
	if real {
		dir := filepath.Join(r.tmp, "memory-"+strconv.Itoa(n))
		defer os.RemoveAll(dir)
		ms, err := startMothership(ctx, dir, r.log)
		if err != nil {
			return 0, err
		}
		defer ms.stop()
		_, m, err := genManifest(30)
		if err != nil {
			return 0, err
		}
		v, err := ms.ms.Publish(ctx, m)
		if err != nil {
			return 0, err
		}
		addr, parked, version = ms.addr, ms.parked.Load, strconv.FormatInt(v, 10)
	} else {
		var count atomic.Int64
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			count.Add(1)
			defer count.Add(-1)
			t := time.NewTimer(120 * time.Second)
			defer t.Stop()
			select {
			case <-r.Context().Done():
			case <-t.C:
			}
			w.WriteHeader(http.StatusNotModified)
		})
		srv, err := startServer(ctx, h)
		if err != nil {
			return 0, err
		}
		defer srv.stop()
		addr, parked = srv.addr, count.Load
	}

	before := liveBytes()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	deadline := time.Now().Add(parkLimit)
	for i := range n {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("opened only %d of %d connections in %s", i, n, parkLimit)
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		req := "GET /manifest?version=" + version + "&wait=120 HTTP/1.1\r\nHost: " + addr +
			"\r\nAuthorization: Bearer " + apiKey + "\r\nX-Flash-Resource: res" + strconv.Itoa(i%3) +
			"\r\nX-Flash-Instance: mem-" + strconv.Itoa(i) + "\r\nX-Flash-Applied-Version: " + version + "\r\n\r\n"
		if _, err := c.Write([]byte(req)); err != nil {
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
	}
	if err := waitFor(ctx, time.Until(deadline), fmt.Sprintf("%d parked polls", n), func() bool { return parked() == int64(n) }); err != nil {
		return 0, err
	}
	return float64(liveBytes() - before), nil
}

// liveBytes is the live heap plus goroutine stacks after a full collection.
func liveBytes() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc) + int64(m.StackInuse)
}
