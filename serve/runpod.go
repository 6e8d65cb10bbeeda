package serve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// Runpod is what Runpod's environment asks of an endpoint (SPEC §5.7,
// RUNPOD.md §4–5). The zero value asks nothing.
type Runpod struct {
	// Worker, when set (RUNPOD_WEBHOOK_GET_JOB is present), makes a
	// queue-based endpoint take its jobs from Runpod's queue (Server.Work).
	Worker *WorkerConfig
	// HealthPort is PORT_HEALTH: the port of the health server of a
	// load-balanced endpoint; 0 = the main port.
	HealthPort int
	// HealthPath is HEALTH_CHECK_PATH, default /ping: answered 200 when
	// ready, 204 while initialising, without auth.
	HealthPath string
}

// RunpodFromEnv reads Runpod's variables through getenv.
func RunpodFromEnv(getenv func(string) string) (Runpod, error) {
	var rp Runpod
	var errs []error
	if cfg, ok, err := WorkerConfigFromEnv(getenv); err != nil {
		errs = append(errs, err)
	} else if ok {
		rp.Worker = &cfg
	}
	if v := getenv("PORT_HEALTH"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("PORT_HEALTH=%q: want a port number 1-65535", v))
		}
		rp.HealthPort = n
	}
	if v := getenv("HEALTH_CHECK_PATH"); v != "" {
		if !strings.HasPrefix(v, "/") {
			errs = append(errs, fmt.Errorf("HEALTH_CHECK_PATH=%q: want a path starting with /", v))
		}
		rp.HealthPath = v
	}
	return rp, errors.Join(errs...)
}

// Run serves s on ln as Serve does, plus what rp asks: the health answer at
// rp.HealthPath (on its own port when rp.HealthPort differs from ln's), and
// worker mode when rp.Worker is set and s has queue-based functions. When
// ctx ends, the worker stops taking jobs first; the shutdown functions run
// once it has answered the jobs it holds (or the grace is over).
func (s *Server) Run(ctx context.Context, ln net.Listener, rp Runpod, grace time.Duration, shutdown ...func(context.Context) error) error {
	var h http.Handler = s
	health := http.HandlerFunc(s.ping)
	path := rp.HealthPath
	if path == "" {
		path = "/ping"
	}
	if path != "/ping" {
		h = healthAt(path, health, h)
	}

	var side []chan error // what runs beside the main server
	if port := listenerPort(ln); rp.HealthPort != 0 && rp.HealthPort != port {
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		hl, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(rp.HealthPort)))
		if err != nil {
			return fmt.Errorf("health server (PORT_HEALTH): %w", err)
		}
		only := healthAt(path, health, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			wire.WriteError(w, http.StatusNotFound, "this port answers only "+path)
		}))
		done := make(chan error, 1)
		go func() { done <- Serve(ctx, hl, only, grace) }()
		side = append(side, done)
		s.log.Info("health server", "addr", hl.Addr().String(), "path", path)
	}

	if rp.Worker != nil && len(s.qb) == 0 {
		s.log.Info("Runpod worker variables ignored: this endpoint has no queue-based functions")
	} else if rp.Worker != nil {
		cfg := *rp.Worker
		cfg.Grace = grace
		done := make(chan error, 1)
		worked := make(chan struct{})
		go func() { done <- s.Work(ctx, cfg); close(worked) }()
		side = append(side, done)
		// Jobs taken by a pending long poll after ctx ended still run, so the
		// job pool closes only once the worker is through.
		shutdown = slices.Clone(shutdown)
		for i, f := range shutdown {
			shutdown[i] = func(g context.Context) error {
				select {
				case <-worked:
				case <-g.Done():
				}
				return f(g)
			}
		}
	}

	errs := []error{Serve(ctx, ln, h, grace, shutdown...)}
	for _, done := range side {
		errs = append(errs, <-done)
	}
	return errors.Join(errs...)
}

// healthAt answers GET and HEAD of path with health, before auth and
// everything else (Runpod's balancer sends no key), and the rest with next.
func healthAt(path string, health, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			health.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func listenerPort(ln net.Listener) int {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}
