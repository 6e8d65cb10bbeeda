package flash_test

import (
	"context"
	"errors"
	"iter"
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
	remote := flash.BindStream(clientOf(t, gatewayTo(t, "/v2/workers", workers.URL)), count)

	t.Run("10000 values, each once, in order", func(t *testing.T) {
		readInOrder(t, remote.Stream(context.Background(), countIn{N: 10000}), 10000)
	})
	t.Run("cancel half-way stops the producer", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if last := cancelAt(remote.Stream(ctx, countIn{N: 1 << 40}), 5000, cancel); !errors.Is(last, context.Canceled) {
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
