package flash

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/serve"
)

// ShutdownGrace is how long a stopping endpoint lets in-flight work finish.
const ShutdownGrace = 30 * time.Second

// Main runs the app as the environment says (SPEC §3) until SIGTERM or
// SIGINT, then drains and exits. With the argument --flash-manifest it prints
// the app's manifest and exits instead. It never returns.
func (a *App) Main() {
	if slices.Contains(os.Args[1:], ManifestFlag) {
		m, err := a.Manifest()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(m.Pretty())
		os.Exit(0)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(os.Getenv("FLASH_LOG_LEVEL"))}))
	cfg, err := ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(2)
	}
	cfg.Logger, cfg.Getenv = log, os.Getenv
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := a.Run(ctx, cfg); err != nil {
		log.Error("stopped", "role", cfg.Role.String(), "err", err)
		stop()
		os.Exit(1)
	}
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(s)) != nil {
		return slog.LevelInfo
	}
	return l
}

// Run runs the app in the role cfg names until ctx ends, then shuts down
// gracefully. It returns an error when the app's registrations are invalid or
// the role cannot start.
func (a *App) Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults(a.name)
	// Only the mothership compares config hashes; other roles skip reading
	// and hashing their whole executable at every start.
	var desired *manifest.Manifest
	var err error
	if cfg.Role == Mothership {
		desired, err = a.Manifest()
	} else {
		desired, err = a.describe("", time.Now())
	}
	if err != nil {
		return err
	}
	switch cfg.Role {
	case Child:
		return a.runChild(ctx, cfg, desired)
	case Mothership:
		return a.runMothership(ctx, cfg, desired)
	default:
		return a.runStandalone(ctx, cfg)
	}
}

func (a *App) setIdentity(id string) { a.identity.Store(&id) }

// runStandalone serves every function in this process: the seed's graceful
// fallback when neither mothership nor child is configured.
func (a *App) runStandalone(ctx context.Context, cfg Config) error {
	a.setIdentity("standalone")
	a.routing.Store(nil)
	cfg.Logger.Warn("no mothership or resource configured: running standalone, every function in this process",
		"hint", "set FLASH_IS_MOTHERSHIP=true or FLASH_RESOURCE_NAME, or use `flash run`")
	srv, err := serve.New(serve.Config{Identity: "standalone", APIKey: cfg.APIKey, MaxBody: cfg.MaxBody, Workers: cfg.Workers, QueueSize: cfg.QueueSize, Logger: cfg.Logger}, a.serveFuncs(""))
	if err != nil {
		return err
	}
	return a.serve(ctx, cfg, srv, srv.Shutdown)
}

// serve listens as cfg says and serves h until ctx ends.
func (a *App) serve(ctx context.Context, cfg Config, h *serve.Server, shutdown ...func(context.Context) error) error {
	ln := cfg.Listener
	if ln == nil {
		var err error
		ln, err = listen(cfg.Host, cfg.Port)
		if err != nil {
			return err
		}
	}
	url := "http://" + ln.Addr().String()
	cfg.Logger.Info("serving", "identity", a.Identity(), "url", url)
	if cfg.Ready != nil {
		cfg.Ready(url)
	}
	return serve.Serve(ctx, ln, h, ShutdownGrace, shutdown...)
}

// listen opens host:port with an error a person can act on when it is taken.
func listen(host string, port int) (net.Listener, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen on %s: the port is already in use; stop what uses it or set PORT to another port: %w", addr, err)
		}
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
