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
	"sync/atomic"
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
	bareP99 := map[int]float64{}
	for _, k := range []pollKind{pollBare, pollFlash, pollFlashInproc} {
		p50s, p99s, srv99s := make([]float64, len(ns)), make([]float64, len(ns)), make([]float64, len(ns))
		for i, n := range ns {
			r.progress("propagation to %d clients: %s", n, k.what())
			pr, err := r.propagate(ctx, n, k)
			if err != nil {
				return fmt.Errorf("%d clients, %s: %w", n, k.what(), err)
			}
			p50s[i], p99s[i], srv99s[i] = pr.p50, pr.p99, pr.answeredP99
			if k != pollBare {
				publishMS = append(publishMS, pr.publishMS...)
			}
			if n != 100 && n != 500 && n != 1000 {
				continue
			}
			sfx := k.suffix() + "_n" + strconv.Itoa(n)
			switch k {
			case pollBare:
				bareP99[n] = pr.p99
				r.figure("propagation_p50_ms"+sfx, pr.p50, "ms", fmt.Sprintf("baseline: a bare net/http long-poll handler, version set in memory, → %d bare clients (json.Unmarshal) in helper processes, median client", n))
				r.figure("propagation_p99_ms"+sfx, pr.p99, "ms", "the same, 99th percentile client")
			default:
				r.figure("propagation_p50_ms"+sfx, pr.p50, "ms", fmt.Sprintf("publish on a real mothership → applied by %d sync clients %s, median client", n, k.what()))
				r.figure("propagation_p99_ms"+sfx, pr.p99, "ms", fmt.Sprintf("the same, 99th percentile client (median over %d publishes)", r.p.propRounds))
				r.figure("propagation_answered_p99_ms"+sfx, pr.answeredP99, "ms", "publish → the mothership has answered the parked poll, 99th percentile (server side only)")
			}
			if k == pollFlash && bareP99[n] > 0 {
				r.figure("propagation_p99_ratio_n"+strconv.Itoa(n), pr.p99/bareP99[n], "×", "propagation_p99_ms / the bare baseline's (both with the clients in helper processes)")
			}
		}
		series = append(series, Series{"applied, p50" + k.suffix(), p50s}, Series{"applied, p99" + k.suffix(), p99s})
		if k != pollBare {
			series = append(series, Series{"answered by the mothership, p99" + k.suffix(), srv99s})
		}
	}
	r.note("propagation: clients in %d-client helper processes; _inproc: in this process, sharing its %d cores with the mothership; _bare: a bare long-poll handler and bare clients", syncsPerHelper, runtime.GOMAXPROCS(0))
	r.figure("publish_ms", Median(publishMS), "ms", "Mothership.Publish itself (validate, store CAS with fsync, swap, wake polls)")
	x := make([]float64, len(ns))
	for i, n := range ns {
		x[i] = float64(n)
	}
	r.curve(Curve{Name: "propagation", Title: "Manifest propagation: publish → applied by N clients",
		XLabel: "sync clients (N)", YLabel: "milliseconds", LogX: true, X: x, Series: series})
	return nil
}

// pollKind is what a propagation run measures.
type pollKind int

const (
	pollFlash       pollKind = iota // the mothership, sync clients in helper processes
	pollFlashInproc                 // the mothership, sync clients in this process
	pollBare                        // the baseline: barePoll, bare clients in helper processes
)

func (k pollKind) what() string {
	return [...]string{"sync clients in helper processes", "sync clients in this process", "bare baseline"}[k]
}

func (k pollKind) suffix() string { return [...]string{"", "_inproc", "_bare"}[k] }

// syncsPerHelper is how many sync clients one helper process runs.
const syncsPerHelper = 250

// propagated is what propagate measured: medians over publishes.
type propagated struct {
	p50, p99    float64   // publish → applied at the clients
	answeredP99 float64   // publish → long poll answered by the server
	publishMS   []float64 // each publish call
}

// pollService is a long-poll service propagate measures.
type pollService struct {
	url      string
	parked   func() int64                                        // polls waiting now
	answered *atomic.Pointer[func()]                             // run after each poll answered with a new version
	publish  func(ctx context.Context, round int) (int64, error) // the next version
	stop     func()
}

// startPollService starts a fresh mothership (SQLite store) or, for the
// baseline, a bare long-poll server, serving a manifest of 30 functions.
func (r *runner) startPollService(ctx context.Context, k pollKind) (*pollService, error) {
	data, m, err := genManifest(30)
	if err != nil {
		return nil, err
	}
	if k == pollBare {
		bp := newBarePoll(data)
		srv, err := startServer(ctx, bp)
		if err != nil {
			return nil, err
		}
		return &pollService{url: srv.url, parked: bp.parked.Load, answered: &bp.answered,
			publish: func(_ context.Context, round int) (int64, error) {
				next, err := m.WithTop("generated_at", fmt.Sprintf("round %d", round)).MarshalJSON()
				if err != nil {
					return 0, err
				}
				return bp.publish(next), nil
			},
			stop: func() { srv.stop() }}, nil
	}
	dir, err := os.MkdirTemp(r.tmp, "propagation-")
	if err != nil {
		return nil, err
	}
	ms, err := startMothership(ctx, dir, r.log)
	if err != nil {
		return nil, err
	}
	if _, err := ms.ms.Publish(ctx, m); err != nil {
		ms.stop()
		return nil, err
	}
	return &pollService{url: ms.url, parked: ms.parked.Load, answered: &ms.answered,
		publish: func(ctx context.Context, round int) (int64, error) {
			return ms.ms.Publish(ctx, m.WithTop("generated_at", fmt.Sprintf("round %d", round)))
		},
		stop: func() { ms.stop() }}, nil
}

// propagate runs N clients of kind k against a fresh service and publishes
// propRounds times.
func (r *runner) propagate(ctx context.Context, n int, k pollKind) (res propagated, err error) {
	svc, err := r.startPollService(ctx, k)
	if err != nil {
		return res, err
	}
	defer svc.stop()

	var (
		mu      sync.Mutex
		target  = int64(1) // the version being waited for; the service starts at 1
		start   int64      // when its publish started, unix ns
		lat     []int64    // publish → applied of target, per client
		answers []int64    // when the server answered each parked poll, unix ns
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
	svc.answered.Store(&answered)
	stopClients, err := r.startSyncs(ctx, svc.url, n, k, applied)
	defer stopClients()
	if err != nil {
		return res, err
	}
	parked := func() bool { return svc.parked() == int64(n) }
	if err := waitFor(ctx, propagationLimit, "every client's first manifest", appliedAll); err != nil {
		return res, err
	}

	var p50s, p99s, srv99s []float64
	for round := range r.p.propRounds {
		if err := waitFor(ctx, propagationLimit, fmt.Sprintf("%d parked long polls", n), parked); err != nil {
			return res, err
		}
		t0 := time.Now()
		mu.Lock()
		// Versions go up by one from the first (1): round+2 is the next.
		lat, answers, target, start = lat[:0], answers[:0], int64(round)+2, t0.UnixNano()
		mu.Unlock()
		v, err := svc.publish(ctx, round)
		res.publishMS = append(res.publishMS, float64(time.Since(t0))/float64(time.Millisecond))
		if err != nil {
			return res, err
		}
		if v != int64(round)+2 {
			return res, fmt.Errorf("published version %d, expected %d", v, round+2)
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
func (r *runner) startSyncs(ctx context.Context, url string, n int, k pollKind, applied func(v, at int64)) (stop func(), err error) {
	if k != pollFlashInproc {
		var hs []*helperProc
		stop = func() {
			for _, h := range hs {
				h.stop()
			}
		}
		for first := 0; first < n; first += syncsPerHelper {
			env := []string{"FLASH_BENCH_URL=" + url, "FLASH_BENCH_N=" + strconv.Itoa(min(syncsPerHelper, n-first)),
				"FLASH_BENCH_FIRST=" + strconv.Itoa(first)}
			if k == pollBare {
				env = append(env, "FLASH_BENCH_BARE_POLL=1")
			}
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
