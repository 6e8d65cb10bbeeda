// Package providertest is the conformance suite every provider.Provider runs,
// real or fake, in the manner of store/storetest:
//
//	func TestConformance(t *testing.T) {
//		providertest.Run(t, providertest.Harness{
//			Open: func(t *testing.T, app string) provider.Provider { … },
//		})
//	}
package providertest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/flash-go/flash/provider"
)

// Harness tells Run how to make providers of one implementation.
type Harness struct {
	// Open returns a provider of app. Providers opened for the same app in one
	// test share their state, as a restarted mothership's would, so that an
	// Adopter can take over what an earlier one deployed. Run undeploys what
	// is left and closes every provider (io.Closer) at the end of each test.
	Open func(t *testing.T, app string) provider.Provider
	// Live says that endpoints really serve: each URL answers GET /ping with
	// 200 after Deploy and stops answering after Undeploy.
	Live bool
	// Unhealthy, when set, is the env of a spec that never becomes healthy:
	// its Deploy must fail and leave nothing behind.
	Unhealthy map[string]string
	// InPlace says that a Deploy of a resource that has an endpoint updates
	// that endpoint (same id and URLs, a rolling release, as on Runpod)
	// instead of making a second one beside it (make-before-break).
	InPlace bool
}

// Adopter is implemented by providers that take over, after a restart, the
// endpoints an earlier instance deployed.
type Adopter interface {
	Adopt(ctx context.Context) ([]provider.Endpoint, error)
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	open := func(t *testing.T, app string) provider.Provider {
		t.Helper()
		p := h.Open(t, app)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if eps, err := p.List(ctx); err == nil {
				for _, e := range eps {
					_ = p.Undeploy(ctx, e)
				}
			}
			if c, ok := p.(io.Closer); ok {
				c.Close()
			}
		})
		return p
	}
	t.Run("DeployListUndeploy", func(t *testing.T) { testLifecycle(t, h, open(t, "shop")) })
	t.Run("ReplicasAndCoexistence", func(t *testing.T) { testReplicas(t, h, open(t, "shop")) })
	t.Run("UndeployIdempotent", func(t *testing.T) { testIdempotent(t, open(t, "shop")) })
	t.Run("NeverTouchesAnotherApp", func(t *testing.T) { testTagging(t, h, open(t, "shop"), open(t, "shop-2")) })
	t.Run("ExpiredContext", func(t *testing.T) { testExpired(t, open(t, "shop")) })
	t.Run("Unhealthy", func(t *testing.T) {
		if h.Unhealthy == nil {
			t.Skip("no unhealthy spec for this provider")
		}
		testUnhealthy(t, h, open(t, "shop"))
	})
	t.Run("Adopt", func(t *testing.T) {
		first := open(t, "shop")
		if _, ok := first.(Adopter); !ok {
			t.Skip("provider does not adopt")
		}
		testAdopt(t, h, first, func() provider.Provider { return open(t, "shop") })
	})
}

func deploy(t *testing.T, p provider.Provider, s provider.Spec) provider.Endpoint {
	t.Helper()
	e, err := p.Deploy(t.Context(), s)
	if err != nil {
		t.Fatalf("Deploy(%s): %v", s.Resource, err)
	}
	// One URL per replica, or one for all that balances them.
	if e.ID == "" || e.Resource != s.Resource || e.ConfigHash != s.ConfigHash || (len(e.URLs) != 1 && len(e.URLs) != max(1, s.Replicas)) {
		t.Fatalf("Deploy(%+v) = %+v: want an id, the spec's resource and hash, one URL per replica or one in all", s, e)
	}
	return e
}

func list(t *testing.T, p provider.Provider) []string {
	t.Helper()
	eps, err := p.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	ids := make([]string, 0, len(eps))
	for _, e := range eps {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

func wantList(t *testing.T, p provider.Provider, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := list(t, p); !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
}

func undeploy(t *testing.T, p provider.Provider, e provider.Endpoint) {
	t.Helper()
	if err := p.Undeploy(t.Context(), e); err != nil {
		t.Fatalf("Undeploy(%s): %v", e.ID, err)
	}
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func serves(url string) bool {
	resp, err := client.Get(url + "/ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// checkServing checks that every URL of e serves (want) or not, when h.Live.
func checkServing(t *testing.T, h Harness, e provider.Endpoint, want bool) {
	t.Helper()
	if !h.Live {
		return
	}
	for _, u := range e.URLs {
		if got := serves(u); got != want {
			t.Errorf("%s (%s) serves = %v, want %v", u, e.ID, got, want)
		}
	}
}

func testLifecycle(t *testing.T, h Harness, p provider.Provider) {
	wantList(t, p)
	a := deploy(t, p, provider.Spec{Resource: "cpu", ConfigHash: "h1"})
	b := deploy(t, p, provider.Spec{Resource: "gpu", ConfigHash: "h2"})
	wantList(t, p, a.ID, b.ID)
	checkServing(t, h, a, true)
	undeploy(t, p, a)
	wantList(t, p, b.ID)
	checkServing(t, h, a, false)
	checkServing(t, h, b, true)
	undeploy(t, p, b)
	wantList(t, p)
}

func testReplicas(t *testing.T, h Harness, p provider.Provider) {
	old := deploy(t, p, provider.Spec{Resource: "api", ConfigHash: "h1", Replicas: 2})
	if len(old.URLs) > 1 && old.URLs[0] == old.URLs[1] {
		t.Errorf("replicas share a URL: %v", old.URLs)
	}
	if h.InPlace {
		cur := deploy(t, p, provider.Spec{Resource: "api", ConfigHash: "h2"})
		if cur.ID != old.ID || !slices.Equal(cur.URLs[:1], old.URLs[:1]) {
			t.Errorf("an update in place moved the endpoint: %+v, then %+v", old, cur)
		}
		wantList(t, p, cur.ID)
		checkServing(t, h, cur, true)
		return
	}
	// A new deployment of the resource coexists with the old one (make before break).
	cur := deploy(t, p, provider.Spec{Resource: "api", ConfigHash: "h2"})
	if cur.ID == old.ID || slices.Contains(old.URLs, cur.URLs[0]) {
		t.Errorf("a second deployment reuses the first's id or URL: %+v and %+v", old, cur)
	}
	wantList(t, p, old.ID, cur.ID)
	checkServing(t, h, old, true)
	undeploy(t, p, old)
	checkServing(t, h, cur, true)
	wantList(t, p, cur.ID)
}

func testIdempotent(t *testing.T, p provider.Provider) {
	e := deploy(t, p, provider.Spec{Resource: "cpu", ConfigHash: "h"})
	undeploy(t, p, e)
	undeploy(t, p, e) // already gone
	wantList(t, p)
	// An id of this app's shape that was never deployed is gone too.
	ghost := provider.Endpoint{ID: e.ID + "0", Resource: "cpu"}
	if err := p.Undeploy(t.Context(), ghost); err != nil && !errors.Is(err, provider.ErrNotOwned) {
		t.Errorf("Undeploy of a missing endpoint: %v", err)
	}
}

func testTagging(t *testing.T, h Harness, mine, other provider.Provider) {
	e := deploy(t, mine, provider.Spec{Resource: "cpu", ConfigHash: "h"})
	theirs := deploy(t, other, provider.Spec{Resource: "cpu", ConfigHash: "h"})
	wantList(t, other, theirs.ID)
	wantList(t, mine, e.ID)
	if err := other.Undeploy(t.Context(), e); !errors.Is(err, provider.ErrNotOwned) {
		t.Errorf("another app's Undeploy = %v, want provider.ErrNotOwned", err)
	}
	wantList(t, mine, e.ID)
	checkServing(t, h, e, true)
	undeploy(t, other, theirs)
	wantList(t, mine, e.ID)
	checkServing(t, h, e, true)
}

func testExpired(t *testing.T, p provider.Provider) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if e, err := p.Deploy(ctx, provider.Spec{Resource: "cpu", ConfigHash: "h"}); err == nil {
		t.Errorf("Deploy with a cancelled context = %+v, want an error", e)
	}
	wantList(t, p)
}

func testUnhealthy(t *testing.T, h Harness, p provider.Provider) {
	if e, err := p.Deploy(t.Context(), provider.Spec{Resource: "cpu", ConfigHash: "h", Env: h.Unhealthy}); err == nil {
		t.Errorf("Deploy of an unhealthy spec = %+v, want an error", e)
	}
	wantList(t, p)
}

func testAdopt(t *testing.T, h Harness, first provider.Provider, reopen func() provider.Provider) {
	e := deploy(t, first, provider.Spec{Resource: "cpu", ConfigHash: "h", Replicas: 2})
	if c, ok := first.(io.Closer); ok {
		c.Close() // a mothership going away leaves its endpoints serving
	}
	checkServing(t, h, e, true)
	second := reopen()
	got, err := second.(Adopter).Adopt(t.Context())
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if len(got) != 1 || got[0].ID != e.ID || !slices.Equal(got[0].URLs, e.URLs) {
		t.Fatalf("Adopt = %+v, want the deployed %+v", got, e)
	}
	if _, err := second.(Adopter).Adopt(t.Context()); err != nil { // adopting again changes nothing
		t.Fatalf("second Adopt: %v", err)
	}
	wantList(t, second, e.ID)
	undeploy(t, second, e)
	checkServing(t, h, e, false)
	wantList(t, second)
}
