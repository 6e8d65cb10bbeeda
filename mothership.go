package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/internal/spanring"
	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/serve"
	"github.com/flash-go/flash/store"
)

// runMothership serves the manifest and reconciles the app's endpoints toward
// the stored desired state; the app's own manifest (or FLASH_MANIFEST_PATH's
// file, which is only read) is the first desired state of an empty store.
func (a *App) runMothership(ctx context.Context, cfg Config, desired *manifest.Manifest) error {
	a.setIdentity("mothership")
	log := cfg.Logger.With("role", "mothership")
	dir := layout.In("").App(a.name)
	if cfg.ManifestPath != "" {
		m, err := manifest.Load(cfg.ManifestPath)
		if err != nil {
			return fmt.Errorf("FLASH_MANIFEST_PATH: %w", err)
		}
		desired = m
	}
	st, closeStore, err := openStore(ctx, cfg, dir)
	if err != nil {
		return err
	}
	defer closeStore()
	// A store several motherships can share (etcd) elects one leader; every
	// write, the provider's records included, is then fenced by its leadership.
	shared := false
	if f, ok := mothership.NewFenced(st); ok {
		st, shared = f, true
	}

	ln, err := cfg.listen()
	if err != nil {
		return err
	}
	cfg.Listener = ln
	self := "http://" + ln.Addr().String()
	children := self
	if shared && cfg.MothershipURL != "" {
		children = cfg.MothershipURL // every mothership sharing the store: children move on when one fails
	}

	var ms *mothership.Mothership
	open := func() (provider.Provider, error) {
		return a.newProvider(ctx, cfg, dir, st, children, func() *mothership.Mothership { return ms })
	}
	prov, err := open()
	if err != nil {
		return err
	}
	var terms *termProvider
	if shared && prov != nil {
		// Each leadership term opens its own provider: this one only
		// checked the settings.
		if c, ok := prov.(io.Closer); ok {
			c.Close()
		}
		terms = &termProvider{open: open}
		prov = terms
	}
	if c, ok := prov.(io.Closer); ok {
		defer c.Close() // local children keep serving: they do not depend on the mothership
	}

	tracer, flush, err := startTracing(ctx, "mothership", log)
	if err != nil {
		return err
	}
	defer flush()
	metrics := telemetry.NewMetrics("mothership", time.Now)
	var traces *spanring.Ring
	if cfg.Getenv(TraceCollectEnv) == "1" {
		traces = spanring.New(collectSpans, collectBytes)
	}
	ms, err = mothership.New(ctx, mothership.Config{
		App: a.name, Store: st, Provider: prov, ManifestPath: dir.Published(), ArtifactDir: dir.Artifacts(),
		TTL: cfg.ManifestTTL, Logger: log, URL: self, Tracer: tracer, Metrics: metrics, Traces: traces, APIKey: cfg.APIKey, MaxResources: cfg.MaxResources,
	})
	if err != nil {
		return err
	}
	srv, err := serve.New(serve.Config{Identity: "mothership", APIKey: cfg.APIKey, MaxBody: cfg.MaxBody, Logger: cfg.Logger, Tracer: tracer,
		Public: mothership.PublicUI, Untraced: mothership.Untraced}, nil)
	if err != nil {
		return err
	}
	ms.Register(srv.Handle)
	srv.Registry().MustRegister(metrics)

	// flash run deploys its fresh build: the first leadership term records
	// the binary's own manifest instead of following the stored one, unless
	// a deploy was recorded since this process started (another mothership
	// of the same run led first).
	deploySelf := cfg.Getenv(DeploySelfEnv) == "1"
	started := time.Now()
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { ms.Run(runCtx) })
	wg.Go(func() {
		ms.Lead(runCtx, func(ctx context.Context) {
			if terms != nil {
				if err := terms.begin(ctx); err != nil {
					log.Error("cannot open the provider; this leader deploys nothing", "err", err)
					return
				}
			}
			self := deploySelf && !deployedSince(ctx, st, started)
			deploySelf = false // a later term follows what was deployed since
			a.reconcileStored(ctx, log, ms, desired, self)
		})
	})
	return a.serve(ctx, cfg, srv, srv.Shutdown)
}

// TraceCollectEnv, set to 1 by `flash run --trace`, makes the mothership
// collect the topology's spans (OTLP/HTTP at /v1/traces, kept in memory
// within collectSpans and collectBytes, oldest traces dropped first) for
// its dashboard. flash run points every process's OTLP exporter at it.
const TraceCollectEnv = "FLASH_TRACE_COLLECT"

// Bounds of the spans a collecting mothership keeps.
const (
	collectSpans = 20000
	collectBytes = 32 << 20
)

// DeploySelfEnv, set to 1 by `flash run` on a mothership's first start, makes
// its boot deploy the binary's own manifest (recorded as the new desired
// state) rather than reconcile toward the stored one: a run is a deploy of a
// fresh build.
const DeploySelfEnv = "FLASH_DEPLOY_SELF"

// deployedSince reports whether a desired state was recorded after t.
func deployedSince(ctx context.Context, st store.Store, t time.Time) bool {
	d, err := st.Desired(ctx)
	return err == nil && d.RecordedAt.After(t)
}

// reconcileStored reconciles toward the stored desired state, as every boot
// (and every newly elected leader) does, or with self toward desired,
// recorded first; it logs the outcome.
func (a *App) reconcileStored(ctx context.Context, log *slog.Logger, ms *mothership.Mothership, desired *manifest.Manifest, self bool) {
	opts := mothership.ReconcileOptions{Progress: func(ev mothership.Event) {
		log.Info("reconcile", "resource", ev.Resource, "action", ev.Action, "step", ev.Step,
			"urls", strings.Join(ev.EndpointURLs, " "), "err", ev.Error)
	}}
	var report mothership.Report
	var err error
	if self {
		report, err = ms.Reconcile(ctx, desired, opts)
	} else {
		report, err = ms.ReconcileStored(ctx, desired, opts)
	}
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		log.Error("reconciliation failed", "err", err)
	case report.Failed():
		var failed []string
		for _, r := range report.Resources {
			if r.Error != "" {
				failed = append(failed, r.Name+": "+r.Error)
			}
		}
		log.Error("reconciliation finished with failures", "version", report.Version,
			"failed", strings.Join(append(failed, report.Errors...), "; "))
	case err == nil:
		log.Info("reconciliation done", "version", report.Version, "deploys", report.Deploys, "undeploys", report.Undeploys)
	}
}

// openStore returns cfg.Store, or opens the store FLASH_STATE_URL names
// (default: the app's SQLite file). The returned func closes what was opened here.
func openStore(ctx context.Context, cfg Config, dir layout.App) (store.Store, func(), error) {
	if cfg.Store != nil {
		return cfg.Store, func() {}, nil
	}
	url := cfg.StateURL
	if url == "" {
		abs, err := filepath.Abs(dir.State())
		if err != nil {
			return nil, nil, fmt.Errorf("state store: %w", err)
		}
		url = "sqlite://" + abs
	}
	st, err := cfg.Stores.Open(ctx, url, store.Options{Logger: cfg.Logger.With("role", "mothership"), Getenv: cfg.Getenv})
	if err != nil {
		return nil, nil, fmt.Errorf("FLASH_STATE_URL: open the state store: %w", err)
	}
	return st, func() { st.Close() }, nil
}

// newProvider builds the provider FLASH_PROVIDER names; nil means none. Its
// events go to the mothership ms returns once it exists.
func (a *App) newProvider(ctx context.Context, cfg Config, dir layout.App, st store.Store, self string, ms func() *mothership.Mothership) (provider.Provider, error) {
	cacheDir, err := filepath.Abs(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("FLASH_CACHE_DIR: %w", err)
	}
	env := map[string]string{"FLASH_MOTHERSHIP_URL": self, "FLASH_CACHE_DIR": cacheDir}
	if cfg.APIKey != "" {
		env["FLASH_API_KEY"] = cfg.APIKey
	}
	return cfg.Providers.New(ctx, cfg.Provider, provider.Setup{
		App: a.name, Env: env, Dir: dir, Store: st, Getenv: cfg.Getenv, Logger: cfg.Logger.With("role", "mothership"),
		// A restart that moved an endpoint to a new port is published at once.
		Changed: func(ep provider.Endpoint) {
			if m := ms(); m != nil {
				go m.EndpointChanged(ctx, ep)
			}
		},
		Event: func(ev provider.Event) {
			if m := ms(); m != nil {
				m.EndpointEvent(ev.Resource, ev.Kind, ev.Detail, ev.Kind == provider.EventRestarted)
			}
		},
	})
}
