package flash

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
)

type benchIn struct{ N int }

// BenchmarkCall compares Func.Call routed in-process (the Func's cached
// route: atomic loads and one pointer compare, no map lookup) with calling
// the function directly.
func BenchmarkCall(b *testing.B) {
	fn := func(ctx context.Context, in benchIn) (int, error) { return in.N + 1, nil }
	app := NewApp("bench")
	f := Register(app.Queue("worker", ResourceConfig{}), "inc", fn)
	m, err := app.Manifest()
	if err != nil {
		b.Fatal(err)
	}
	router := child.NewRouter(child.RouterConfig{Identity: "worker", Table: &app.table})
	router.Apply(m, 1)
	app.caller.Store(child.NewCaller(router, child.NewInvoker(child.InvokerConfig{}), nil))
	ctx := context.Background()

	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := fn(ctx, benchIn{N: i}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("routed-local", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := f.Call(ctx, benchIn{N: i}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestRoutedLocalCallAllocatesNothing(t *testing.T) {
	app := NewApp("alloc")
	f := Register(app.Queue("worker", ResourceConfig{}), "inc", func(ctx context.Context, in benchIn) (int, error) { return in.N + 1, nil })
	m, err := app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	router := child.NewRouter(child.RouterConfig{Identity: "worker", Table: &app.table})
	router.Apply(m, 1)
	app.caller.Store(child.NewCaller(router, child.NewInvoker(child.InvokerConfig{}), nil))
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { f.Call(ctx, benchIn{N: 1}) }); n != 0 {
		t.Fatalf("a routed local call allocates %v times", n)
	}
}

// TestCallFollowsNewTable: a Func's cached route lasts only as long as the
// routing table it came from: a new manifest's route is used at once.
func TestCallFollowsNewTable(t *testing.T) {
	app := NewApp("cache")
	app.LoadBalanced("api", ResourceConfig{})
	f := Register(app.Queue("worker", ResourceConfig{}), "inc", func(ctx context.Context, in benchIn) (int, error) { return in.N + 1, nil })
	m, err := app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wire.WriteRawJSON(w, 200, []byte(`{"id":"j","status":"COMPLETED","output":{"success":true,"json_result":42}}`))
	}))
	defer srv.Close()
	router := child.NewRouter(child.RouterConfig{Identity: "api", Table: &app.table}) // calls to worker are remote
	app.caller.Store(child.NewCaller(router, child.NewInvoker(child.InvokerConfig{}), nil))
	ctx := context.Background()

	router.Apply(m, 1) // worker has no URL yet
	for range 2 {
		if _, err := f.Call(ctx, benchIn{N: 1}); !errors.Is(err, ErrEndpointNotReady) {
			t.Fatalf("before worker has a URL: %v", err)
		}
	}
	router.Apply(m.WithRuntime("worker", manifest.Runtime{EndpointURLs: []string{srv.URL}, Status: manifest.StatusDeployed}), 2)
	if got, err := f.Call(ctx, benchIn{N: 1}); err != nil || got != 42 {
		t.Fatalf("after worker got a URL: %v, %v; want the remote answer 42", got, err)
	}
}

// TestLocalRouteFollowsNewTable: the in-process fast path of a Func lasts
// only as long as the table it came from: when a new manifest moves the
// function to another endpoint, the next call goes there.
func TestLocalRouteFollowsNewTable(t *testing.T) {
	app := NewApp("cache")
	f := Register(app.Queue("worker", ResourceConfig{}), "inc", func(ctx context.Context, in benchIn) (int, error) { return in.N + 1, nil })
	m, err := app.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	moved := NewApp("cache") // the same function, now on "api"
	Register(moved.Queue("api", ResourceConfig{}), "inc", func(ctx context.Context, in benchIn) (int, error) { return 0, nil })
	m2, err := moved.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wire.WriteRawJSON(w, 200, []byte(`{"id":"j","status":"COMPLETED","output":{"success":true,"json_result":42}}`))
	}))
	defer srv.Close()
	router := child.NewRouter(child.RouterConfig{Identity: "worker", Table: &app.table})
	app.caller.Store(child.NewCaller(router, child.NewInvoker(child.InvokerConfig{}), nil))
	ctx := context.Background()

	router.Apply(m, 1)
	for range 2 { // the second call takes the cached route
		if got, err := f.Call(ctx, benchIn{N: 1}); err != nil || got != 2 {
			t.Fatalf("in-process: %v, %v; want 2", got, err)
		}
	}
	router.Apply(m2.WithRuntime("api", manifest.Runtime{EndpointURLs: []string{srv.URL}, Status: manifest.StatusDeployed}), 2)
	if got, err := f.Call(ctx, benchIn{N: 1}); err != nil || got != 42 {
		t.Fatalf("after the function moved: %v, %v; want the remote answer 42", got, err)
	}
}
