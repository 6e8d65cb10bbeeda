package flash

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/flash-go/flash/serve"
)

// Handler is an app, or one of its resources, served as an http.Handler to
// mount in an existing server: the same routes, answers and API key check
// as an endpoint of the app (/runsync, /run, /status/{id}, … for queue
// functions, the routes of load-balanced ones, /ping). Calls between the
// app's functions run in this process. Mount it under a prefix with
// http.StripPrefix.
type Handler struct {
	srv  *serve.Server
	host *objectHost
}

// Handler returns a Handler for the functions of resource, or of every
// resource when resource is "". cfg gives the API key callers must send
// (none when empty), the body and queue bounds and the logger; its other
// fields are not used. Shutdown the Handler when done: it waits for
// queued jobs.
func (a *App) Handler(resource string, cfg Config) (*Handler, error) {
	if _, err := a.describe("", time.Now()); err != nil {
		return nil, err
	}
	if resource != "" && !slices.ContainsFunc(a.resources, func(r *Resource) bool { return r.name == resource }) {
		return nil, fmt.Errorf("app %s has no resource %q", a.name, resource)
	}
	cfg = cfg.withDefaults(a.name)
	identity := resource
	if identity == "" {
		identity = "standalone"
	}
	srv, err := serve.New(serve.Config{Identity: identity, APIKey: cfg.APIKey, MaxBody: cfg.MaxBody, Workers: cfg.Workers,
		QueueSize: cfg.QueueSize, Limits: cfg.Limits, Logger: cfg.Logger}, a.serveFuncs(resource))
	if err != nil {
		return nil, err
	}
	return &Handler{srv: srv, host: a.host}, nil
}

// ServeHTTP serves a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.srv.ServeHTTP(w, r) }

// Shutdown stops taking jobs and waits for queued and running ones until
// ctx ends, then cancels those left, and closes the objects' instances.
func (h *Handler) Shutdown(ctx context.Context) error {
	return errors.Join(h.srv.Shutdown(ctx), h.host.shutdown(ctx))
}
