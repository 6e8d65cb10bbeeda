package sqlite

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/flash-go/flash/store"
)

// ParseURL returns the file path named by a FLASH_STATE_URL value.
//
// Accepted: "sqlite://" followed by a path, which is absolute when it starts
// with a slash ("sqlite:///var/lib/flash/state.db") and relative to the
// working directory otherwise ("sqlite://.flash/state.db"). The scheme is
// case-insensitive; %XX escapes in the path are decoded; the path is cleaned.
// Rejected: other schemes, a missing path or one naming a directory, query strings and fragments (no
// options are supported, so a '?' or '#' is almost surely a mistake; escape
// it as %3F or %23 if the file name really contains one), and NUL bytes.
func ParseURL(u string) (string, error) {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "", fmt.Errorf("store/sqlite: state URL %q has no scheme; want sqlite:///absolute/path or sqlite://relative/path", u)
	}
	if !strings.EqualFold(scheme, "sqlite") {
		return "", fmt.Errorf("store/sqlite: state URL %q: unsupported scheme %q; supported: sqlite:///absolute/path, sqlite://relative/path", u, scheme)
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return "", fmt.Errorf("store/sqlite: state URL %q: query strings and fragments are not supported (escape '?' as %%3F, '#' as %%23)", u)
	}
	path, err := url.PathUnescape(rest)
	if err != nil {
		return "", fmt.Errorf("store/sqlite: state URL %q: %w", u, err)
	}
	if path == "" {
		return "", fmt.Errorf("store/sqlite: state URL %q names no file", u)
	}
	if base := filepath.Base(path); strings.HasSuffix(path, "/") || base == "." || base == ".." || base == "/" {
		return "", fmt.Errorf("store/sqlite: state URL %q names a directory, not a file", u)
	}
	if strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("store/sqlite: state URL %q: path contains a NUL byte", u)
	}
	return filepath.Clean(path), nil
}

// OpenURL opens the store a FLASH_STATE_URL value names (see ParseURL): the
// store.Opener of this backend.
func OpenURL(ctx context.Context, u string, o store.Options) (store.Store, error) {
	path, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	return OpenConfig(ctx, Config{Path: path, Logger: o.Logger})
}
