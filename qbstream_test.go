package flash_test

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flash-go/flash"
)

// TestQueueStream: a streaming queue function's values reach a Client
// through /run and /stream/{id} at the gateway's paths, each once and in
// order; stopping early cancels the job and stops the producer; an error
// keeps its code.
func TestQueueStream(t *testing.T) {
	noLeaks(t)
	app := flash.NewApp("qstreams")
	stopped := make(chan struct{}, 1)
	count := flash.RegisterStream(app.Queue("workers", flash.ResourceConfig{}), "countq",
		func(ctx context.Context, in countIn) iter.Seq2[int, error] {
			return func(yield func(int, error) bool) {
				for i := 1; i <= in.N; i++ {
					if i == in.FailAt {
						yield(0, flash.Errorf(flash.CodeOutOfRange, "past %d", i-1))
						return
					}
					if !yield(i, nil) {
						stopped <- struct{}{}
						return
					}
				}
			}
		})
	workers := serveApp(t, app, "workers", "k")
	gw := http.NewServeMux()
	gw.Handle("/v2/workers/", http.StripPrefix("/v2/workers", proxyTo(workers.URL)))
	gateway := httptest.NewServer(gw)
	t.Cleanup(gateway.Close)
	c, err := flash.NewClient(gateway.URL, "k")
	if err != nil {
		t.Fatal(err)
	}
	remote := flash.BindStream(c, count)

	t.Run("10000 values, each once, in order", func(t *testing.T) {
		n := 0
		for v, err := range remote.Stream(context.Background(), countIn{N: 10000}) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; v != n {
				t.Fatalf("value %d is %d", n, v)
			}
		}
		if n != 10000 {
			t.Fatalf("%d values", n)
		}
	})
	t.Run("cancel half-way stops the producer", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		n := 0
		var last error
		for _, err := range remote.Stream(ctx, countIn{N: 1 << 40}) {
			if err != nil {
				last = err
				break
			}
			if n++; n == 5000 {
				cancel()
			}
		}
		if !errors.Is(last, context.Canceled) {
			t.Errorf("after cancel: %v", last)
		}
		<-stopped
	})
	t.Run("error keeps its code", func(t *testing.T) {
		var got []int
		var last error
		for v, err := range remote.Stream(context.Background(), countIn{N: 10, FailAt: 3}) {
			if err != nil {
				last = err
				break
			}
			got = append(got, v)
		}
		if len(got) != 2 || flash.CodeOf(last) != flash.CodeOutOfRange {
			t.Fatalf("values %v, error %v", got, last)
		}
	})
}
