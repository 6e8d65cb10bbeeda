package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/child"
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
	p50s, p99s := make([]float64, len(ns)), make([]float64, len(ns))
	var publishMS []float64
	for i, n := range ns {
		r.progress("propagation to %d clients", n)
		p50, p99, pub, err := r.propagate(ctx, n)
		if err != nil {
			return fmt.Errorf("N=%d: %w", n, err)
		}
		p50s[i], p99s[i] = p50, p99
		publishMS = append(publishMS, pub...)
		if n == 100 || n == 500 {
			sfx := "_n" + strconv.Itoa(n)
			r.figure("propagation_p50_ms"+sfx, p50, "ms", fmt.Sprintf("publish on a real mothership → applied by %d sync clients, median client", n))
			r.figure("propagation_p99_ms"+sfx, p99, "ms", fmt.Sprintf("the same, 99th percentile client (median over %d publishes)", r.p.propRounds))
		}
	}
	r.figure("publish_ms", Median(publishMS), "ms", "Mothership.Publish itself (validate, store CAS with fsync, swap, wake polls)")
	x := make([]float64, len(ns))
	for i, n := range ns {
		x[i] = float64(n)
	}
	r.curve(Curve{Name: "propagation", Title: "Manifest propagation: publish → applied by N clients",
		XLabel: "sync clients (N)", YLabel: "milliseconds", LogX: true, X: x,
		Series: []Series{{"p50", p50s}, {"p99", p99s}}})
	return nil
}

// propagate runs N clients against a fresh mothership and publishes
// propRounds times; it returns the medians over publishes of the clients'
// p50 and p99, and each publish call's duration.
func (r *runner) propagate(ctx context.Context, n int) (p50, p99 float64, publishMS []float64, err error) {
	dir, err := os.MkdirTemp(r.tmp, "propagation-")
	if err != nil {
		return 0, 0, nil, err
	}
	ms, err := startMothership(ctx, dir, r.log)
	if err != nil {
		return 0, 0, nil, err
	}
	defer ms.stop()
	_, m, err := genManifest(30)
	if err != nil {
		return 0, 0, nil, err
	}
	first, err := ms.ms.Publish(ctx, m)
	if err != nil {
		return 0, 0, nil, err
	}

	var (
		target  atomic.Int64 // the version being waited for
		start   atomic.Int64 // when its publish started, ns since base
		applied atomic.Int64 // clients that applied target
		base    = time.Now()
		lat     = make([]int64, n) // each written by its client's OnApply only
	)
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
		tr := child.NewTransport()
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
			return 0, 0, nil, err
		}
		wg.Go(func() { s.Run(syncCtx) })
	}
	parked := func() bool { return ms.parked.Load() == int64(n) }
	if err := waitFor(ctx, propagationLimit, "every client's first manifest", func() bool { return applied.Load() == int64(n) }); err != nil {
		return 0, 0, nil, err
	}

	var p50s, p99s []float64
	for round := range r.p.propRounds {
		if err := waitFor(ctx, propagationLimit, fmt.Sprintf("%d parked long polls", n), parked); err != nil {
			return 0, 0, nil, err
		}
		_, cur := ms.ms.Current()
		next := m.WithTop("generated_at", fmt.Sprintf("round %d", round))
		applied.Store(0)
		target.Store(cur + 1)
		t0 := time.Now()
		start.Store(int64(t0.Sub(base)))
		v, err := ms.ms.Publish(ctx, next)
		publishMS = append(publishMS, float64(time.Since(t0))/float64(time.Millisecond))
		if err != nil {
			return 0, 0, nil, err
		}
		if v != cur+1 {
			return 0, 0, nil, fmt.Errorf("published version %d, expected %d", v, cur+1)
		}
		if err := waitFor(ctx, propagationLimit, fmt.Sprintf("version %d at all %d clients", v, n),
			func() bool { return applied.Load() == int64(n) }); err != nil {
			return 0, 0, nil, err
		}
		ms := make([]float64, n)
		for i, l := range lat {
			ms[i] = float64(l) / float64(time.Millisecond)
		}
		p50s, p99s = append(p50s, Percentile(ms, 50)), append(p99s, Percentile(ms, 99))
	}
	if len(p50s) == 0 {
		return 0, 0, nil, errors.New("no publish measured")
	}
	return Median(p50s), Median(p99s), publishMS, nil
}
