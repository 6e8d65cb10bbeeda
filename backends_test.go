package flash

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/provider/fake"
	"github.com/flash-go/flash/store"
	"github.com/flash-go/flash/store/storetest"
)

// TestMothershipUsesConfiguredBackends runs a mothership on a store and a
// provider given in Config: it deploys through them, and leaves the store open.
func TestMothershipUsesConfiguredBackends(t *testing.T) {
	t.Chdir(t.TempDir()) // the mothership keeps its files under ./.flash
	app := NewApp("inject")
	Register(app.Queue("worker", ResourceConfig{}), "echo", echo)
	st := storetest.NewMemStore()
	prov := fake.New("inject")
	var setup provider.Setup
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, Config{Role: Mothership, Store: st, Provider: "mine", Logger: slog.New(slog.DiscardHandler),
			Providers: provider.Factories{"mine": func(_ context.Context, s provider.Setup) (provider.Provider, error) {
				setup = s
				return prov, nil
			}}})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		eps, _ := prov.List(t.Context())
		_, err := st.Latest(t.Context())
		if len(eps) == 1 && eps[0].Resource == "worker" && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the configured provider and store were not used: endpoints %+v, latest: %v", eps, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if setup.App != "inject" || setup.Env["FLASH_MOTHERSHIP_URL"] == "" || setup.Store == nil {
		t.Errorf("provider setup: %+v", setup)
	}
	if err := st.Close(); err != nil {
		t.Errorf("Run closed a store it did not open: %v", err)
	}
}

func TestMothershipUnknownBackends(t *testing.T) {
	t.Chdir(t.TempDir())
	app := NewApp("x")
	Register(app.Queue("worker", ResourceConfig{}), "echo", echo)
	quiet := slog.New(slog.DiscardHandler)
	err := app.Run(t.Context(), Config{Role: Mothership, StateURL: "consul://127.0.0.1:8500", Logger: quiet})
	if !errors.Is(err, store.ErrUnknownScheme) {
		t.Errorf("consul:// has no backend: %v", err)
	}
	err = app.Run(t.Context(), Config{Role: Mothership, Store: storetest.NewMemStore(), Provider: "nosuch", Logger: quiet})
	if !errors.Is(err, provider.ErrUnknown) {
		t.Errorf("FLASH_PROVIDER=nosuch: %v", err)
	}
}

// TestBackendSettingsFromEnv: backends read their own settings through the
// getenv ConfigFromEnv was given, so that embedders need not set it twice.
func TestBackendSettingsFromEnv(t *testing.T) {
	c, err := ConfigFromEnv(func(k string) string { return map[string]string{"FLASH_LOG_KEEP": "9"}[k] })
	if err != nil || c.Getenv == nil || c.Getenv("FLASH_LOG_KEEP") != "9" {
		t.Fatalf("Getenv not carried: %v", err)
	}
}
