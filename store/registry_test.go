package store_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/flash-go/flash/store"
)

func TestOpenersOpen(t *testing.T) {
	var got string
	o := store.Openers{"mem": func(_ context.Context, url string, _ *slog.Logger) (store.Store, error) {
		got = url
		return nil, nil
	}}
	if _, err := o.Open(t.Context(), "MEM://x", nil); err != nil || got != "MEM://x" {
		t.Fatalf("scheme is case-insensitive and the URL is passed whole: got %q, %v", got, err)
	}
	for _, url := range []string{"etcd://h:2379", "no-scheme", "", "://x"} {
		_, err := o.Open(t.Context(), url, nil)
		if !errors.Is(err, store.ErrUnknownScheme) || !strings.Contains(err.Error(), "mem://") {
			t.Errorf("Open(%q) = %v, want ErrUnknownScheme naming mem://", url, err)
		}
	}
}
