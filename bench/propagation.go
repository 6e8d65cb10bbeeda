package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

const propagationLimit = 30 * time.Second // for one publish to reach every client

// propagation measures publish → applied: a real mothership (SQLite store,
// HTTP on loopback) and N real sync clients (child.Sync, in this process,
// each with its own connection, long-polling as children do). The clock
// starts just before Mothership.Publish (so it includes the store's
// compare-and-swap) and stops in each client's OnApply, after the manifest
// was fetched, validated and swapped in. Clients keep no cache file.
func (r *runner) propagation(ctx context.Context) error {
	ns := r.p.propN
	p50s, p99s, srv99s := make([]float64, len(ns)), make([]float64, len(ns)), make([]float64, len(ns))
	var publishMS []float64
	for i, n := range ns {
		r.progress("propagation to %d clients", n)
		pr, err := r.propagate(ctx, n)
		if err != nil {
			return fmt.Errorf("%d clients: %w", n, err)
		}
		p50s[i], p99s[i], srv99s[i] = pr.p50, pr.p99, pr.answeredP99
		publishMS = append(publishMS, pr.publishMS...)
		if n == 100 || n == 500 {
			sfx := "_n" + strconv.Itoa(n)
			r.figure("propagation_p50_ms"+sfx, pr.p50, "ms", fmt.Sprintf("publish on a real mothership → applied by %d sync clients, median client", n))
			r.figure("propagation_p99_ms"+sfx, pr.p99, "ms", fmt.Sprintf("the same, 99th percentile client (median over %d publishes)", r.p.propRounds))
			r.figure("propagation_answered_p99_ms"+sfx, pr.answeredP99, "ms", "publish → the mothership has answered the parked poll, 99th percentile (server side only)")
		}
	}
	r.note("propagation: the N sync clients run in this process and share its %d cores with the mothership", runtime.GOMAXPROCS(0))
	r.figure("publish_ms", Median(publishMS), "ms", "Mothership.Publish itself (validate, store CAS with fsync, swap, wake polls)")
	x := make([]float64, len(ns))
	for i, n := range ns {
		x[i] = float64(n)
	}
	r.curve(Curve{Name: "propagation", Title: "Manifest propagation: publish → applied by N clients",
		XLabel: "sync clients (N)", YLabel: "milliseconds", LogX: true, X: x,
		Series: []Series{{"applied, p50", p50s}, {"applied, p99", p99s}, {"answered by the mothership, p99", srv99s}}})
	return nil
}

// propagated is what propagate measured: medians over publishes.
type propagated struct {
	p50, p99    float64   // publish → applied at the clients
	answeredP99 float64   // publish → long poll answered by the mothership
	publishMS   []float64 // each Publish call
}

// propagate runs N clients against a fresh mothership and publishes
// propRounds times.
func (r *runner) propagate(ctx context.Context, n int) (res propagated, err error) {
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
		target  atomic.Int64 // the version being waited for
		start   atomic.Int64 // when its publish started, ns since base
		applied atomic.Int64 // clients that applied target
		base    = time.Now()
		lat     = make([]int64, n) // each written by its client's OnApply only
		mu      sync.Mutex
		answers []int64 // when the mothership answered each parked poll, ns since base
	)
	answered := func() {
		t := int64(time.Since(base))
		mu.Lock()
		if len(answers) < n {
			answers = append(answers, t)
		}
		mu.Unlock()
	}
	ms.answered.Store(&answered)
	target.Store(first)
	syncCtx, stopSyncs := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var closers []func()
	defer func() {
		stopSyncs()
		wg.Wait()
		for _, c := range closers {
			c()
		}
	}()
	for i := range n {
		tr := wire.NewTransport()
		closers = append(closers, tr.CloseIdleConnections)
		s, err := child.NewSync(child.Config{
			Identity: fmt.Sprintf("res%d", i%3), Instance: "bench-" + strconv.Itoa(i),
			MothershipURL: ms.url, APIKey: apiKey, HTTPClient: &http.Client{Transport: tr}, Logger: r.log,
			OnApply: func(_ *manifest.Manifest, v int64) {
				if v == target.Load() {
					lat[i] = int64(time.Since(base)) - start.Load()
					applied.Add(1)
				}
			},
		})
		if err != nil {
			return res, err
		}
		wg.Go(func() { s.Run(syncCtx) })
	}
	parked := func() bool { return ms.parked.Load() == int64(n) }
	if err := waitFor(ctx, propagationLimit, "every client's first manifest", func() bool { return applied.Load() == int64(n) }); err != nil {
		return res, err
	}

	var p50s, p99s, srv99s []float64
	for round := range r.p.propRounds {
		if err := waitFor(ctx, propagationLimit, fmt.Sprintf("%d parked long polls", n), parked); err != nil {
			return res, err
		}
		_, cur := ms.ms.Current()
		next := m.WithTop("generated_at", fmt.Sprintf("round %d", round))
		applied.Store(0)
		mu.Lock()
		answers = answers[:0]
		mu.Unlock()
		target.Store(cur + 1)
		t0 := time.Now()
		start.Store(int64(t0.Sub(base)))
		v, err := ms.ms.Publish(ctx, next)
		res.publishMS = append(res.publishMS, float64(time.Since(t0))/float64(time.Millisecond))
		if err != nil {
			return res, err
		}
		if v != cur+1 {
			return res, fmt.Errorf("published version %d, expected %d", v, cur+1)
		}
		if err := waitFor(ctx, propagationLimit, fmt.Sprintf("version %d at all %d clients", v, n),
			func() bool { return applied.Load() == int64(n) }); err != nil {
			return res, err
		}
		if err := waitFor(ctx, propagationLimit, "every poll answered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(answers) == n
		}); err != nil {
			return res, err
		}
		appliedMS := make([]float64, n)
		for i, l := range lat {
			appliedMS[i] = float64(l) / float64(time.Millisecond)
		}
		mu.Lock()
		ans := make([]float64, n)
		for i, a := range answers {
			ans[i] = float64(a-start.Load()) / float64(time.Millisecond)
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
