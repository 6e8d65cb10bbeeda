package flash

import (
	"context"
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/serve"
)

// runChild serves one resource and routes calls by the mothership's manifest
// (or, without a mothership, by a local manifest file when there is one).
func (a *App) runChild(ctx context.Context, cfg Config, desired *manifest.Manifest) error {
	res, ok := desired.Resources[cfg.Resource]
	if !ok {
		return fmt.Errorf("FLASH_RESOURCE_NAME=%q names no resource of app %q (it has: %s)",
			cfg.Resource, a.name, strings.Join(desired.ResourceNames(), ", "))
	}
	log := cfg.Logger.With("resource", cfg.Resource)
	a.setIdentity(cfg.Resource)

	tracer, flush, err := startTracing(ctx, cfg.Resource, log)
	if err != nil {
		return err
	}
	defer flush()
	metrics := telemetry.NewMetrics(cfg.Resource, time.Now)
	invoker := child.NewInvoker(child.InvokerConfig{APIKey: cfg.APIKey, RunpodAPIKey: cfg.RunpodAPIKey,
		RunpodBaseURL: cfg.RunpodBaseURL, Logger: log, Metrics: metrics})
	var sync *child.Sync
	ready := func() bool { return true }
	if cfg.MothershipURL != "" {
		var err error
		sync, err = child.NewSync(child.Config{
			Identity: cfg.Resource, Instance: cfg.Instance, MothershipURL: cfg.MothershipURL, APIKey: cfg.APIKey,
			CacheDir: cfg.CacheDir, TTL: cfg.ManifestTTL, Logger: log, Tracer: tracer, Metrics: metrics,
		})
		if err != nil {
			return err
		}
		ready = sync.Ready
	}
	router := child.NewRouter(child.RouterConfig{Identity: cfg.Resource, Sync: sync, Logger: log, Table: &a.table})
	if sync == nil {
		if m, err := localManifest(cfg.ManifestPath); err == nil {
			router.Apply(m, 0)
		} else if !errors.Is(err, manifest.ErrNoFile) {
			return err
		}
	}
	a.caller.Store(child.NewCaller(router, invoker, sync))

	srv, err := serve.New(serve.Config{Identity: cfg.Resource, Instance: cfg.Instance, APIKey: cfg.APIKey, MaxBody: cfg.MaxBody, Workers: cfg.Workers, QueueSize: cfg.QueueSize, Limits: cfg.Limits, Logger: cfg.Logger, Ready: ready, Tracer: tracer},
		a.serveFuncs(res.Name))
	if err != nil {
		return err
	}
	srv.Registry().MustRegister(metrics)
	if sync != nil {
		var wg gosync.WaitGroup
		ctx, stopSync := context.WithCancel(ctx)
		wg.Go(func() {
			if err := sync.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("manifest sync stopped", "err", err)
			}
		})
		// The dashboard's call rates per edge (docs/metrics.md).
		wg.Go(func() { sync.ReportEdges(ctx, child.EdgeReportEvery, metrics.Edges) })
		defer func() { stopSync(); wg.Wait() }()
	}
	a.host.log.Store(cfg.Logger)
	return a.serve(ctx, cfg, srv, srv.Shutdown, a.host.shutdown)
}

// localManifest reads the manifest file of SPEC §2.5's lookup order.
func localManifest(explicit string) (*manifest.Manifest, error) {
	path, err := manifest.Locate(explicit)
	if err != nil {
		return nil, err
	}
	return manifest.Load(path)
}
