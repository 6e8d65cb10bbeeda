package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

const propagationLimit = 30 * time.Second // for one publish to reach every client

// propagation measures publish → applied: a real mothership (SQLite store,
// HTTP on loopback) and N real sync clients (child.Sync, each with its own
// connection, long-polling as children do). By default the clients run in
// helper processes (this program re-executed), so the mothership runs as it
// will; the same figures with the clients in this process follow with the
// suffix _inproc. The clock starts just before Mothership.Publish (so it
// includes the store's compare-and-swap) and stops in each client's
// OnApply, after the manifest was fetched, validated and swapped in (wall
// clock, shared by the processes). Clients keep no cache file.
func (r *runner) propagation(ctx context.Context) error {
	ns := r.p.propN
	var series []Series
	var publishMS []float64
	for _, inproc := range []bool{false, true} {
		sfx0, where := "", "in helper processes"
		if inproc {
			sfx0, where = "_inproc", "in this process"
		}
		p50s, p99s, srv99s := make([]float64, len(ns)), make([]float64, len(ns)), make([]float64, len(ns))
		for i, n := range ns {
			r.progress("propagation to %d clients %s", n, where)
			pr, err := r.propagate(ctx, n, inproc)
			if err != nil {
				return fmt.Errorf("%d clients %s: %w", n, where, err)
			}
			p50s[i], p99s[i], srv99s[i] = pr.p50, pr.p99, pr.answeredP99
			publishMS = append(publishMS, pr.publishMS...)
			if n == 100 || n == 500 || n == 1000 {
				sfx := sfx0 + "_n" + strconv.Itoa(n)
				r.figure("propagation_p50_ms"+sfx, pr.p50, "ms", fmt.Sprintf("publish on a real mothership → applied by %d sync clients %s, median client", n, where))
				r.figure("propagation_p99_ms"+sfx, pr.p99, "ms", fmt.Sprintf("the same, 99th percentile client (median over %d publishes)", r.p.propRounds))
				r.figure("propagation_answered_p99_ms"+sfx, pr.answeredP99, "ms", "publish → the mothership has answered the parked poll, 99th percentile (server side only)")
			}
		}
		series = append(series, Series{"applied, p50" + sfx0, p50s}, Series{"applied, p99" + sfx0, p99s},
			Series{"answered by the mothership, p99" + sfx0, srv99s})
	}
	r.note("propagation: clients in %d-client helper processes; _inproc: in this process, sharing its %d cores with the mothership", syncsPerHelper, runtime.GOMAXPROCS(0))
	r.figure("publish_ms", Median(publishMS), "ms", "Mothership.Publish itself (validate, store CAS with fsync, swap, wake polls)")
	x := make([]float64, len(ns))
	for i, n := range ns {
		x[i] = float64(n)
	}
	r.curve(Curve{Name: "propagation", Title: "Manifest propagation: publish → applied by N clients",
		XLabel: "sync clients (N)", YLabel: "milliseconds", LogX: true, X: x, Series: series})
	return nil
}

// syncsPerHelper is how many sync clients one helper process runs.
const syncsPerHelper = 250

// propagated is what propagate measured: medians over publishes.
type propagated struct {
	p50, p99    float64   // publish → applied at the clients
	answeredP99 float64   // publish → long poll answered by the mothership
	publishMS   []float64 // each Publish call
}

// propagate runs N clients against a fresh mothership and publishes
// propRounds times; inproc runs the clients in this process.
func (r *runner) propagate(ctx context.Context, n int, inproc bool) (res propagated, err error) {
	dir, err := os.MkdirTemp(r.tmp, "propagation-")
	if err != nil {
		return res, err
	}
	ms, err := startMothership(ctx, dir, r.log)
	if err != nil {
		return res, err
	}
	defer ms.stop()
	_, m, err := genManifest(30)
	if err != nil {
		return res, err
	}
	first, err := ms.ms.Publish(ctx, m)
	if err != nil {
		return res, err
	}

	var (
		mu      sync.Mutex
		target  = first // the version being waited for
		start   int64   // when its publish started, unix ns
		lat     []int64 // publish → applied of target, per client
		answers []int64 // when the mothership answered each parked poll, unix ns
	)
	applied := func(v, at int64) {
		mu.Lock()
		if v == target {
			lat = append(lat, at-start)
		}
		mu.Unlock()
	}
	appliedAll := func() bool { mu.Lock(); defer mu.Unlock(); return len(lat) == n }
	answered := func() {
		t := time.Now().UnixNano()
		mu.Lock()
		if len(answers) < n {
			answers = append(answers, t)
		}
		mu.Unlock()
	}
	ms.answered.Store(&answered)
	stopClients, err := r.startSyncs(ctx, ms.url, n, inproc, applied)
	defer stopClients()
	if err != nil {
		return res, err
	}
	parked := func() bool { return ms.parked.Load() == int64(n) }
	if err := waitFor(ctx, propagationLimit, "every client's first manifest", appliedAll); err != nil {
		return res, err
	}

	var p50s, p99s, srv99s []float64
	for round := range r.p.propRounds {
		if err := waitFor(ctx, propagationLimit, fmt.Sprintf("%d parked long polls", n), parked); err != nil {
			return res, err
		}
		_, cur := ms.ms.Current()
		next := m.WithTop("generated_at", fmt.Sprintf("round %d", round))
		t0 := time.Now()
		mu.Lock()
		lat, answers, target, start = lat[:0], answers[:0], cur+1, t0.UnixNano()
		mu.Unlock()
		v, err := ms.ms.Publish(ctx, next)
		res.publishMS = append(res.publishMS, float64(time.Since(t0))/float64(time.Millisecond))
		if err != nil {
			return res, err
		}
		if v != cur+1 {
			return res, fmt.Errorf("published version %d, expected %d", v, cur+1)
		}
		if err := waitFor(ctx, propagationLimit, fmt.Sprintf("version %d at all %d clients", v, n),
			appliedAll); err != nil {
			return res, err
		}
		if err := waitFor(ctx, propagationLimit, "every poll answered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(answers) == n
		}); err != nil {
			return res, err
		}
		mu.Lock()
		appliedMS := make([]float64, len(lat))
		for i, l := range lat {
			appliedMS[i] = float64(l) / float64(time.Millisecond)
		}
		ans := make([]float64, len(answers))
		for i, a := range answers {
			ans[i] = float64(a-start) / float64(time.Millisecond)
		}
		mu.Unlock()
		p50s, p99s = append(p50s, Percentile(appliedMS, 50)), append(p99s, Percentile(appliedMS, 99))
		srv99s = append(srv99s, Percentile(ans, 99))
	}
	if len(p50s) == 0 {
		return res, errors.New("no publish measured")
	}
	res.p50, res.p99, res.answeredP99 = Median(p50s), Median(p99s), Median(srv99s)
	return res, nil
}

// startSyncs starts n sync clients of the mothership at url, in this process
// or in helper processes of syncsPerHelper clients, calling applied with the
// version and the wall-clock time (unix ns) of each apply. stop is never
// nil, even with an error.
func (r *runner) startSyncs(ctx context.Context, url string, n int, inproc bool, applied func(v, at int64)) (stop func(), err error) {
	if !inproc {
		var hs []*helperProc
		stop = func() {
			for _, h := range hs {
				h.stop()
			}
		}
		for first := 0; first < n; first += syncsPerHelper {
			env := []string{"FLASH_BENCH_URL=" + url, "FLASH_BENCH_N=" + strconv.Itoa(min(syncsPerHelper, n-first)),
				"FLASH_BENCH_FIRST=" + strconv.Itoa(first)}
			h, err := r.startHelper(roleSync, env, func(line string) {
				v, at, ok := strings.Cut(line, " ")
				vn, err1 := strconv.ParseInt(v, 10, 64)
				an, err2 := strconv.ParseInt(at, 10, 64)
				if ok && err1 == nil && err2 == nil {
					applied(vn, an)
				}
			})
			if err != nil {
				return stop, err
			}
			hs = append(hs, h)
		}
		return stop, nil
	}
	syncCtx, cancel := context.WithCancel(ctx)
	wait, err := runSyncs(syncCtx, url, 0, n, r.log, applied)
	return func() { cancel(); wait() }, err
}

// runSyncs runs n sync clients (ids first, first+1, …) of the mothership at
// url until ctx ends, each with its own connection, calling applied with the
// version and wall-clock time (unix ns) of each apply. wait waits for them
// to stop and closes their connections; it is never nil.
func runSyncs(ctx context.Context, url string, first, n int, log *slog.Logger, applied func(v, at int64)) (wait func(), err error) {
	var wg sync.WaitGroup
	var closers []func()
	wait = func() {
		wg.Wait()
		for _, c := range closers {
			c()
		}
	}
	for i := first; i < first+n; i++ {
		tr := wire.NewTransport()
		closers = append(closers, tr.CloseIdleConnections)
		s, err := child.NewSync(child.Config{
			Identity: fmt.Sprintf("res%d", i%3), Instance: "bench-" + strconv.Itoa(i),
			MothershipURL: url, APIKey: apiKey, HTTPClient: &http.Client{Transport: tr}, Logger: log,
			OnApply: func(_ *manifest.Manifest, v int64) { applied(v, time.Now().UnixNano()) },
		})
		if err != nil {
			return wait, err
		}
		wg.Go(func() { s.Run(ctx) })
	}
	return wait, nil
}
