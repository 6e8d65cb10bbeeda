package flash

import (
	"context"
	"testing"

	"github.com/flash-go/flash/child"
)

type benchIn struct{ N int }

// BenchmarkCall compares Func.Call routed in-process (one atomic load and one
// map lookup in the router) with calling the function directly.
func BenchmarkCall(b *testing.B) {
	fn := func(ctx context.Context, in benchIn) (int, error) { return in.N + 1, nil }
	app := NewApp("bench")
	f := Register(app.Queue("worker", ResourceConfig{}), "inc", fn)
	m, err := app.Manifest()
	if err != nil {
		b.Fatal(err)
	}
	router := child.NewRouter(child.RouterConfig{Identity: "worker"})
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
	router := child.NewRouter(child.RouterConfig{Identity: "worker"})
	router.Apply(m, 1)
	app.caller.Store(child.NewCaller(router, child.NewInvoker(child.InvokerConfig{}), nil))
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { f.Call(ctx, benchIn{N: 1}) }); n != 0 {
		t.Fatalf("a routed local call allocates %v times", n)
	}
}
