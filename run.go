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
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, unwatch := watchParent(ctx, os.Getenv(ParentPIDEnv), parentPollEvery, log)
	defer unwatch()
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
	a.caller.Store(nil)
	a.table.Store(nil)
	cfg.Logger.Warn("no mothership or resource configured: running standalone, every function in this process",
		"hint", "set FLASH_IS_MOTHERSHIP=true or FLASH_RESOURCE_NAME, or use `flash run`")
	tracer, flush, err := startTracing(ctx, "standalone", cfg.Logger)
	if err != nil {
		return err
	}
	defer flush()
	srv, err := serve.New(serve.Config{Identity: "standalone", APIKey: cfg.APIKey, MaxBody: cfg.MaxBody, Workers: cfg.Workers, QueueSize: cfg.QueueSize, Limits: cfg.Limits, Logger: cfg.Logger, Tracer: tracer}, a.serveFuncs(""))
	if err != nil {
		return err
	}
	a.host.log.Store(cfg.Logger)
	return a.serve(ctx, cfg, srv, srv.Shutdown, a.host.shutdown)
}

// serve listens as cfg says and serves h until ctx ends.
func (a *App) serve(ctx context.Context, cfg Config, h *serve.Server, shutdown ...func(context.Context) error) error {
	ln, err := cfg.listen()
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	cfg.Logger.Info("serving", "identity", a.Identity(), "url", url)
	if cfg.Ready != nil {
		cfg.Ready(url)
	}
	return h.Run(ctx, ln, cfg.Runpod, ShutdownGrace, shutdown...)
}

// ErrNoAPIKey is returned by Run when it would serve without an API key on an
// address other processes than this machine's can reach.
var ErrNoAPIKey = errors.New("no API key")

// listen returns the Listener, else the inherited socket of ListenFD, else
// opens Host:Port. Without an API key it warns, and refuses an address that
// is not loopback unless Insecure.
func (c Config) listen() (net.Listener, error) {
	ln, err := c.Listener, error(nil)
	switch {
	case ln != nil:
	case c.ListenFD > 0:
		ln, err = inheritedListener(c.ListenFD)
	default:
		ln, err = listen(c.Host, c.Port)
	}
	if err != nil || c.APIKey != "" {
		return ln, err
	}
	addr := ln.Addr()
	if !c.Insecure && !machineOnly(addr) {
		if c.Listener == nil {
			ln.Close()
		}
		return nil, fmt.Errorf("%w: refusing to serve on %s, which is not a loopback address: anyone who reaches it could call every function; "+
			"set FLASH_API_KEY (or RUNPOD_API_KEY), or FLASH_INSECURE=1 to serve openly anyway", ErrNoAPIKey, addr)
	}
	c.Logger.Warn("NO API KEY: every endpoint of this process answers anyone who reaches "+addr.String(),
		"hint", "set FLASH_API_KEY (flash run sets one for you)", "insecure", c.Insecure)
	return ln, nil
}

// machineOnly reports whether only this machine can reach addr: a loopback TCP
// address or a Unix socket.
func machineOnly(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// inheritedListener serves on the listening socket a parent passed as fd (the
// local provider does, so that no other process can take the port first).
func inheritedListener(fd int) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), "FLASH_LISTEN_FD")
	if f == nil {
		return nil, fmt.Errorf("FLASH_LISTEN_FD=%d: no such descriptor", fd)
	}
	defer f.Close() // the listener has its own copy
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("FLASH_LISTEN_FD=%d: not a listening socket: %w", fd, err)
	}
	return ln, nil
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
