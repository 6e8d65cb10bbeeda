// Package fake is an in-memory provider for tests and benchmarks. It is the
// one fake provider of the repository; it passes provider/providertest.
package fake

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/flash-go/flash/provider"
)

// Provider deploys nothing real, hands out URLs nobody serves, and counts
// its calls. Its zero value is not ready: use New.
type Provider struct {
	app string

	mu                       sync.Mutex
	live                     map[string]provider.Endpoint // by id
	seq                      int
	deploys, undeploys, list int
}

var _ provider.Provider = (*Provider)(nil)

// New returns a Provider for app; its ids are "<app>/<resource>/<n>".
func New(app string) *Provider {
	return &Provider{app: app, live: map[string]provider.Endpoint{}}
}

// Deploy records an endpoint with one made-up URL per replica. A cancelled
// ctx deploys nothing.
func (f *Provider) Deploy(ctx context.Context, s provider.Spec) (provider.Endpoint, error) {
	if err := ctx.Err(); err != nil {
		return provider.Endpoint{}, fmt.Errorf("fake: deploy %s: %w", s.Resource, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deploys++
	f.seq++
	e := provider.Endpoint{ID: fmt.Sprintf("%s/%s/%d", f.app, s.Resource, f.seq), Resource: s.Resource, ConfigHash: s.ConfigHash}
	for i := range max(1, s.Replicas) {
		e.URLs = append(e.URLs, fmt.Sprintf("http://fake.invalid/%s/%d/%d", s.Resource, f.seq, i))
	}
	f.live[e.ID] = e
	return e, nil
}

// Undeploy forgets e; one of another app is provider.ErrNotOwned.
func (f *Provider) Undeploy(ctx context.Context, e provider.Endpoint) error {
	if !strings.HasPrefix(e.ID, f.app+"/") {
		return fmt.Errorf("fake: undeploy %q: %w", e.ID, provider.ErrNotOwned)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.undeploys++
	delete(f.live, e.ID)
	return nil
}

// List returns the live endpoints, sorted by id.
func (f *Provider) List(ctx context.Context) ([]provider.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list++
	out := make([]provider.Endpoint, 0, len(f.live))
	for _, id := range slices.Sorted(maps.Keys(f.live)) {
		out = append(out, f.live[id])
	}
	return out, nil
}

// Calls returns how many times Deploy, Undeploy and List were called.
func (f *Provider) Calls() (deploys, undeploys, lists int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deploys, f.undeploys, f.list
}

// ResetCalls sets the counts back to zero.
func (f *Provider) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deploys, f.undeploys, f.list = 0, 0, 0
}
