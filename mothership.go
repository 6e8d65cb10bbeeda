package flash

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/flash-go/flash/internal/layout"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/provider/local"
	"github.com/flash-go/flash/serve"
	"github.com/flash-go/flash/store/sqlite"
)

// Paths the mothership uses under its working directory unless configured.
const (
	DefaultLogDir = ".flash/logs"
)

// runMothership serves the manifest and reconciles the app's endpoints toward
// the stored desired state; the app's own manifest (or FLASH_MANIFEST_PATH's
// file, which is only read) is the first desired state of an empty store.
func (a *App) runMothership(ctx context.Context, cfg Config, desired *manifest.Manifest) error {
	a.setIdentity("mothership")
	log := cfg.Logger.With("role", "mothership")
	appDir := layout.In("").App(a.name)
	if cfg.ManifestPath != "" {
		m, err := manifest.Load(cfg.ManifestPath)
		if err != nil {
			return fmt.Errorf("FLASH_MANIFEST_PATH: %w", err)
		}
		desired = m
	}
	statePath, err := statePath(cfg.StateURL)
	if err != nil {
		return err
	}
	st, err := sqlite.OpenConfig(ctx, sqlite.Config{Path: statePath, Logger: log})
	if err != nil {
		return fmt.Errorf("open the state store: %w", err)
	}
	defer st.Close()

	ln := cfg.Listener
	if ln == nil {
		if ln, err = listen(cfg.Host, cfg.Port); err != nil {
			return err
		}
		cfg.Listener = ln
	}
	self := "http://" + ln.Addr().String()

	var ms *mothership.Mothership
	var prov provider.Provider
	switch cfg.Provider {
	case "local":
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("local provider: find this binary: %w", err)
		}
		cacheDir, _ := filepath.Abs(cfg.CacheDir)
		env := map[string]string{"FLASH_MOTHERSHIP_URL": self, "FLASH_CACHE_DIR": cacheDir}
		if cfg.APIKey != "" {
			env["FLASH_API_KEY"] = cfg.APIKey
		}
		lp, err := local.New(local.Config{
			App: a.name, Binary: exe, LogDir: DefaultLogDir, Env: env, Store: st, Logger: log,
			// A restart that moved an endpoint to a new port is published at once.
			OnChange: func(ep provider.Endpoint) { go ms.EndpointChanged(ctx, ep) },
			OnEvent: func(ev local.Event) {
				detail := fmt.Sprintf("pid %d %s", ev.PID, ev.URL)
				if ev.Err != nil {
					detail += ": " + ev.Err.Error()
				}
				ms.EndpointEvent(ev.Resource, ev.Kind, detail, ev.Kind == local.EventRestarted)
			},
		})
		if err != nil {
			return err
		}
		defer lp.Close() // children keep serving: they do not depend on the mothership
		prov = lp
	case "none":
	default:
		return fmt.Errorf("FLASH_PROVIDER=%q: want local or none", cfg.Provider)
	}

	ms, err = mothership.New(ctx, mothership.Config{
		App: a.name, Store: st, Provider: prov, ManifestPath: appDir.Published(), ArtifactDir: appDir.Artifacts(),
		TTL: cfg.ManifestTTL, Logger: log,
	})
	if err != nil {
		return err
	}
	srv, err := serve.New(serve.Config{Identity: "mothership", APIKey: cfg.APIKey, MaxBody: cfg.MaxBody, Logger: cfg.Logger}, nil)
	if err != nil {
		return err
	}
	ms.Register(srv.Handle)

	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { ms.Run(runCtx) })
	wg.Go(func() {
		report, err := ms.ReconcileStored(runCtx, desired, mothership.ReconcileOptions{Progress: func(ev mothership.Event) {
			log.Info("reconcile", "resource", ev.Resource, "action", ev.Action, "step", ev.Step,
				"urls", strings.Join(ev.EndpointURLs, " "), "err", ev.Error)
		}})
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
	})
	return a.serve(ctx, cfg, srv, srv.Shutdown)
}

// statePath turns FLASH_STATE_URL into the SQLite file to open.
func statePath(stateURL string) (string, error) {
	if stateURL == "" {
		return DefaultStatePath, nil
	}
	if strings.HasPrefix(strings.ToLower(stateURL), "etcd://") {
		return "", fmt.Errorf("FLASH_STATE_URL=%q: the etcd state store is not available yet; use sqlite:///path", stateURL)
	}
	p, err := sqlite.ParseURL(stateURL)
	if err != nil {
		return "", fmt.Errorf("FLASH_STATE_URL: %w", err)
	}
	return p, nil
}
