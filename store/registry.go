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

// Opener opens the store a state URL names ("sqlite:///var/lib/app/state.db").
// Each backend package provides one; log receives the store's background errors.
type Opener func(ctx context.Context, url string, log *slog.Logger) (Store, error)

// Openers maps state URL schemes ("sqlite", "etcd") to their backend's
// Opener. It is a plain value built where backends are chosen (the flash
// package's defaults, or an embedder's Config): no backend registers itself.
type Openers map[string]Opener

// Open opens url with the Opener of its scheme (case-insensitive).
func (o Openers) Open(ctx context.Context, url string, log *slog.Logger) (Store, error) {
	scheme, _, ok := strings.Cut(url, "://")
	open := o[strings.ToLower(scheme)]
	if !ok || open == nil {
		return nil, fmt.Errorf("state URL %q: %w; want one of %s", url, ErrUnknownScheme, o.schemes())
	}
	if log == nil {
		log = slog.Default()
	}
	return open(ctx, url, log)
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
