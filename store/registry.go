package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// ErrUnknownScheme means a state URL names a scheme no backend was registered for.
var ErrUnknownScheme = errors.New("store: unknown state URL scheme")

// Options is what an Opener gets besides the URL.
type Options struct {
	// Logger receives the store's background errors. Never nil.
	Logger *slog.Logger
	// Getenv reads the backend's own settings (credentials, TLS files). Never nil.
	Getenv func(string) string
}

// Opener opens the store a state URL names ("sqlite:///var/lib/app/state.db").
// Each backend package provides one.
type Opener func(ctx context.Context, url string, o Options) (Store, error)

// Openers maps state URL schemes ("sqlite", "etcd") to their backend's
// Opener. It is a plain value built where backends are chosen (the flash
// package's defaults, or an embedder's Config): no backend registers itself.
type Openers map[string]Opener

// Open opens url with the Opener of its scheme (case-insensitive). Nil
// fields of opts mean slog.Default() and no settings.
func (o Openers) Open(ctx context.Context, url string, opts Options) (Store, error) {
	scheme, _, ok := strings.Cut(url, "://")
	open := o[strings.ToLower(scheme)]
	if !ok || open == nil {
		return nil, fmt.Errorf("state URL %q: %w; want one of %s", url, ErrUnknownScheme, o.schemes())
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	return open(ctx, url, opts)
}

// schemes lists the known schemes as "a://…, b://…".
func (o Openers) schemes() string {
	var out []string
	for _, s := range slices.Sorted(maps.Keys(o)) {
		out = append(out, s+"://…")
	}
	if len(out) == 0 {
		return "(no backend configured)"
	}
	return strings.Join(out, ", ")
}
