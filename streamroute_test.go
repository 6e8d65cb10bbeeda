package flash

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/manifest"
)

// TestStreamRoutedToOwner: in a deployed app, Stream on an unbound handle
// goes where the manifest places the function, as Call does: an LB route
// (NDJSON) and a queue function (/run + /stream/{id}) on other endpoints,
// 10,000 values each in order; stopping half-way stops the producer there;
// a function without an endpoint yet fails with ErrEndpointNotReady.
func TestStreamRoutedToOwner(t *testing.T) {
	app := NewApp("routed")
	app.Queue("front", ResourceConfig{})
	stopped := make(chan string, 2)
	producer := func(name string) func(context.Context, int) iter.Seq2[int, error] {
		return func(ctx context.Context, n int) iter.Seq2[int, error] {
			return func(yield func(int, error) bool) {
				for i := 1; i <= n; i++ {
					if !yield(i, nil) {
						stopped <- name
						return
					}
				}
			}
		}
	}
	count := RouteStream(app.LoadBalanced("api", ResourceConfig{}), "POST /count", "count", producer("count"))
	countq := RegisterStream(app.Queue("workers", ResourceConfig{}), "countq", producer("countq"))
	m, err := app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	urls := map[string]string{}
	for _, res := range []string{"api", "workers"} {
		h, err := app.Handler(res, Config{APIKey: "k", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			srv.Close()
			h.Shutdown(context.Background())
		})
		urls[res] = srv.URL
	}
	router := child.NewRouter(child.RouterConfig{Identity: "front"})
	app.caller.Store(child.NewCaller(router, child.NewInvoker(child.InvokerConfig{APIKey: "k"}), nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	router.Apply(m, 1) // no endpoint has a URL yet
	for _, err := range count.Stream(ctx, 3) {
		if !errors.Is(err, ErrEndpointNotReady) {
			t.Fatalf("before api has a URL: %v", err)
		}
	}
	for res, u := range urls {
		m = m.WithRuntime(res, manifest.Runtime{EndpointURLs: []string{u}, Status: manifest.StatusDeployed})
	}
	router.Apply(m, 2)
	for _, s := range []*StreamFunc[int, int]{count, countq} {
		n := 0
		for v, err := range s.Stream(ctx, 10000) {
			if err != nil {
				t.Fatalf("%s: %v", s.Name(), err)
			}
			if n++; v != n {
				t.Fatalf("%s: value %d is %d", s.Name(), n, v)
			}
		}
		if n != 10000 {
			t.Fatalf("%s: %d values", s.Name(), n)
		}
		for v := range s.Stream(ctx, 1<<40) {
			if v == 5000 {
				break
			}
		}
		if got := <-stopped; got != s.Name() {
			t.Fatalf("stopped %s, want %s", got, s.Name())
		}
	}
}
