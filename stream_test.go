package flash_test

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/flash-go/flash"
)

type countIn struct {
	N      int `json:"n"`
	FailAt int `json:"fail_at"` // 0: never
}

// streamApp has one streaming route; stopped closes when its producer
// returns early, produced counts its values.
func streamApp() (*flash.App, *flash.StreamFunc[countIn, int], chan struct{}, *atomic.Int64) {
	app := flash.NewApp("streams")
	api := app.LoadBalanced("api", flash.ResourceConfig{})
	stopped := make(chan struct{}, 1)
	var produced atomic.Int64
	count := flash.RouteStream(api, "POST /count", "count", func(ctx context.Context, in countIn) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			for i := 1; i <= in.N; i++ {
				if i == in.FailAt {
					yield(0, flash.Errorf(flash.CodeFailedPrecondition, "cannot count to %d", i))
					return
				}
				produced.Add(1)
				if !yield(i, nil) {
					stopped <- struct{}{}
					return
				}
			}
		}
	})
	return app, count, stopped, &produced
}

func TestStreamThroughGateway(t *testing.T) {
	noLeaks(t)
	app, count, stopped, produced := streamApp()
	api := serveApp(t, app, "api", "k")
	gateway := gatewayTo(t, "/api", api.URL)
	remote := flash.BindStream(clientOf(t, gateway), count)

	t.Run("10000 values in order", func(t *testing.T) {
		readInOrder(t, remote.Stream(context.Background(), countIn{N: 10000}), 10000)
	})
	t.Run("cancel half-way stops the producer", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		produced.Store(0)
		if last := cancelAt(remote.Stream(ctx, countIn{N: 1 << 30}), 5000, cancel); !errors.Is(last, context.Canceled) {
			t.Errorf("after cancel: %v, want context.Canceled", last)
		}
		<-stopped // the producer saw yield return false
		if p := produced.Load(); p >= 1<<30 {
			t.Errorf("producer ran to its end: %d", p)
		}
	})
	t.Run("break stops the producer", func(t *testing.T) {
		for v := range remote.Stream(context.Background(), countIn{N: 1 << 30}) {
			if v == 10 {
				break
			}
		}
		<-stopped
	})
	t.Run("error with a code ends the stream", func(t *testing.T) {
		var got []int
		var last error
		for v, err := range remote.Stream(context.Background(), countIn{N: 10, FailAt: 4}) {
			if err != nil {
				last = err
				break
			}
			got = append(got, v)
		}
		var fe *flash.Error
		if len(got) != 3 || flash.CodeOf(last) != flash.CodeFailedPrecondition || !errors.As(last, &fe) || fe.Error() != "cannot count to 4" {
			t.Fatalf("values %v, error %v", got, last)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		wrong, _ := flash.NewClient(gateway, "nope")
		for _, err := range flash.BindStream(wrong, count).Stream(context.Background(), countIn{N: 1}) {
			var se *flash.StatusError
			if !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
				t.Fatalf("got %v", err)
			}
		}
	})
	t.Run("NDJSON on the wire", func(t *testing.T) {
		resp, body := get(t, "POST", api.URL+"/count", `{"n":3,"fail_at":3}`, "Authorization", "Bearer k")
		want := `{"output":1}` + "\n" + `{"output":2}` + "\n" +
			`{"error":"cannot count to 3","error_type":"Error","code":"failed_precondition"}`
		if resp.Header.Get("Content-Type") != "application/x-ndjson" || body != want {
			t.Fatalf("%s %q, want %q", resp.Header.Get("Content-Type"), body, want)
		}
	})
}

func TestStreamInProcess(t *testing.T) {
	_, count, _, _ := streamApp()
	var sum int
	for v, err := range count.Stream(context.Background(), countIn{N: 4}) {
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	if sum != 10 {
		t.Fatalf("sum %d", sum)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range count.Stream(ctx, countIn{N: 4}) {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled stream gave %v", err)
		}
		break
	}
}

// gatewayTo serves a gateway that relays prefix/… to backend and returns its URL.
func gatewayTo(t *testing.T, prefix, backend string) string {
	t.Helper()
	gw := http.NewServeMux()
	gw.Handle(prefix+"/", http.StripPrefix(prefix, proxyTo(backend)))
	gateway := httptest.NewServer(gw)
	t.Cleanup(gateway.Close)
	return gateway.URL
}

// clientOf is a Client of the app at base with key "k".
func clientOf(t *testing.T, base string) *flash.Client {
	t.Helper()
	c, err := flash.NewClient(base, "k")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readInOrder wants the values 1…want of seq, each once and in order.
func readInOrder(t *testing.T, seq iter.Seq2[int, error], want int) {
	t.Helper()
	n := 0
	for v, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		if n++; v != n {
			t.Fatalf("value %d is %d", n, v)
		}
	}
	if n != want {
		t.Fatalf("%d values, want %d", n, want)
	}
}

// cancelAt reads seq, calls cancel at its n-th value, and returns the error
// that ended it.
func cancelAt(seq iter.Seq2[int, error], n int, cancel func()) error {
	i := 0
	for _, err := range seq {
		if err != nil {
			return err
		}
		if i++; i == n {
			cancel()
		}
	}
	return nil
}
