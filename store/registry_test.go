package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flash-go/flash/store"
)

func TestOpenersOpen(t *testing.T) {
	var got string
	var opts store.Options
	o := store.Openers{"mem": func(_ context.Context, url string, o store.Options) (store.Store, error) {
		got, opts = url, o
		return nil, nil
	}}
	if _, err := o.Open(t.Context(), "MEM://x", store.Options{}); err != nil || got != "MEM://x" {
		t.Fatalf("scheme is case-insensitive and the URL is passed whole: got %q, %v", got, err)
	}
	if opts.Logger == nil || opts.Getenv == nil || opts.Getenv("HOME") != "" {
		t.Errorf("Open fills the options' defaults: %+v", opts)
	}
	for _, url := range []string{"etcd://h:2379", "no-scheme", "", "://x"} {
		_, err := o.Open(t.Context(), url, store.Options{})
		if !errors.Is(err, store.ErrUnknownScheme) || !strings.Contains(err.Error(), "mem://") {
			t.Errorf("Open(%q) = %v, want ErrUnknownScheme naming mem://", url, err)
		}
	}
}
