package bench

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/internal/wire"
)

const faninCallers = 1000

// fanin counts the upstream fetches caused by 1,000 concurrent callers that
// all need a manifest before the first one arrives: a fresh child.Sync (no
// cache, sync loop not started) under a child.Router, every caller routing a
// call at once. The mothership holds the first GET /manifest until every
// caller has started, so that all of them are waiting while it is in flight.
// Reported: the worst round.
func (r *runner) fanin(ctx context.Context) error {
	dir := filepath.Join(r.tmp, "fanin")
	ms, err := startMothership(ctx, dir, r.log)
	if err != nil {
		return err
	}
	defer ms.stop()
	_, m, err := genManifest(30)
	if err != nil {
		return err
	}
	if _, err := ms.ms.Publish(ctx, m); err != nil {
		return err
	}
	var counts []float64
	for range r.p.fanRounds {
		n, err := r.faninRound(ctx, ms)
		if err != nil {
			return err
		}
		counts = append(counts, float64(n))
	}
	r.figure("fanin_upstream_fetches_k1000", slices.Max(counts), "fetches",
		fmt.Sprintf("GET /manifest requests caused by %d concurrent callers needing the first manifest (worst of %d rounds)", faninCallers, len(counts)))
	return nil
}

func (r *runner) faninRound(ctx context.Context, ms *msServer) (int64, error) {
	var arrived atomic.Int64
	hold := func() {
		// Hold the request until every caller has started, then a little
		// longer so that each reaches its wait (bounded either way).
		waitFor(ctx, 5*time.Second, "every caller", func() bool { return arrived.Load() == faninCallers })
		t := time.NewTimer(20 * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	ms.hold.Store(&hold)
	defer ms.hold.Store(nil)
	before := ms.gets.Load()

	tr := wire.NewTransport()
	defer tr.CloseIdleConnections()
	s, err := child.NewSync(child.Config{Identity: "res0", Instance: "fanin", MothershipURL: ms.url, APIKey: apiKey,
		HTTPClient: &http.Client{Transport: tr}, Logger: r.log})
	if err != nil {
		return 0, err
	}
	router := child.NewRouter(child.RouterConfig{Identity: "res0", Sync: s, Logger: r.log})
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, faninCallers)
	for i := range faninCallers {
		wg.Go(func() {
			arrived.Add(1)
			_, errs[i] = router.Route(cctx, "fn_0") // on res0: this endpoint
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("a caller failed: %w", err)
		}
	}
	return ms.gets.Load() - before, nil
}
