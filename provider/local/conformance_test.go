package local

import (
	"testing"
	"time"

	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/provider/providertest"
)

func TestConformance(t *testing.T) {
	stores := map[*testing.T]*testStore{} // one store per test, shared by its apps
	providertest.Run(t, providertest.Harness{
		Open: func(t *testing.T, app string) provider.Provider {
			st, ok := stores[t]
			if !ok {
				st = newTestStore(t)
				stores[t] = st
			}
			cfg := testConfig(t, app, st, nil)
			cfg.HealthTimeout = 3 * time.Second
			return newProvider(t, cfg)
		},
		Live:      true,
		Unhealthy: map[string]string{"TESTCHILD_NEVER_HEALTHY": "1"},
	})
}
