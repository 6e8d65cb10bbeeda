package provider_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flash-go/flash/provider"
)

func TestFactoriesNew(t *testing.T) {
	var setup provider.Setup
	f := provider.Factories{
		"none": provider.None,
		"spy": func(_ context.Context, s provider.Setup) (provider.Provider, error) {
			setup = s
			return nil, nil
		},
	}
	if p, err := f.New(t.Context(), "spy", provider.Setup{App: "a"}); p != nil || err != nil {
		t.Fatalf("spy: %v %v", p, err)
	}
	if setup.App != "a" || setup.Logger == nil || setup.Getenv == nil || setup.Getenv("HOME") != "" {
		t.Errorf("New passes the setup with defaults filled: %+v", setup)
	}
	if p, err := f.New(t.Context(), "none", provider.Setup{}); p != nil || err != nil {
		t.Errorf("none is no provider: %v %v", p, err)
	}
	_, err := f.New(t.Context(), "runpod", provider.Setup{})
	if !errors.Is(err, provider.ErrUnknown) || !strings.Contains(err.Error(), "none, spy") {
		t.Errorf("unknown provider: %v", err)
	}
}
