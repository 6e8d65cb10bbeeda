// Command testapp is the small flash app the end-to-end tests run: two
// queue-based resources whose functions exercise deadlines, cancellation and
// routing loops across real processes.
//
//	front  relay, ping, find, drain (reads count or countq)
//	back   slow, cancelled, pong, lookup, countq (streams), backstops
//	edge   GET /items/{id}, POST /count and POST /hold (LB; they stream), GET /stops,
//	       POST /sleep (the load runs overload it)
//	keeper the object Counter (inc reports the serving process's pid);
//	       front's open and bump make and call Counters from a child
//
// relay calls slow with the caller's context, so a deadline on relay must
// cancel slow on back; back counts those cancellations and cancelled reports
// the count. ping calls pong, which calls ping again: a cycle that only the
// hop limit ends. lookup fails with a code (flash.CodeNotFound) that find
// (QB) and GET /items/{id} (LB) pass on: an error code across two hops.
package main

import (
	"context"
	"iter"
	"os"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash"
)

// SlowIn is the input of slow and relay: how long to work.
type SlowIn struct {
	MS int `json:"ms"`
}

// SlowOut says whether the work ran to its end.
type SlowOut struct {
	Finished bool   `json:"finished"`
	ServedBy string `json:"served_by"`
}

// CountOut is cancelled's result.
type CountOut struct {
	Cancelled int64  `json:"cancelled"`
	ServedBy  string `json:"served_by"`
}

// PingIn is the input of ping and pong.
type PingIn struct {
	N int `json:"n"`
}

// PingOut is never produced: the cycle has no end but the hop limit.
type PingOut struct {
	N int `json:"n"`
}

func main() { newApp().Main() }

func newApp() *flash.App {
	app := flash.NewApp("testapp")
	front := app.Queue("front", flash.ResourceConfig{})
	back := app.Queue("back", flash.ResourceConfig{})

	// Cancellations seen by slow in this process; the test reads it through
	// the cancelled function.
	var cancelled atomic.Int64

	slow := flash.Register(back, "slow", func(ctx context.Context, in SlowIn) (SlowOut, error) {
		t := time.NewTimer(time.Duration(in.MS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return SlowOut{Finished: true, ServedBy: app.Identity()}, nil
		case <-ctx.Done():
			cancelled.Add(1)
			return SlowOut{}, ctx.Err()
		}
	})
	flash.Register(back, "cancelled", func(ctx context.Context, _ struct{}) (CountOut, error) {
		return CountOut{Cancelled: cancelled.Load(), ServedBy: app.Identity()}, nil
	})
	flash.Register(front, "relay", func(ctx context.Context, in SlowIn) (SlowOut, error) {
		return slow.Call(ctx, in)
	})

	var pong *flash.Func[PingIn, PingOut]
	ping := flash.Register(front, "ping", func(ctx context.Context, in PingIn) (PingOut, error) {
		return pong.Call(ctx, PingIn{N: in.N + 1})
	})
	pong = flash.Register(back, "pong", func(ctx context.Context, in PingIn) (PingOut, error) {
		return ping.Call(ctx, PingIn{N: in.N + 1})
	})

	lookup := flash.Register(back, "lookup", func(ctx context.Context, in ItemIn) (ItemOut, error) {
		if in.ID == "missing" {
			// The message names an internal address, which must not reach
			// a caller outside the app.
			return ItemOut{}, flash.Errorf(flash.CodeNotFound, "no item %q (looked at http://127.0.0.1:1/items)", in.ID)
		}
		return ItemOut(in), nil
	})
	flash.Register(front, "find", func(ctx context.Context, in ItemIn) (ItemOut, error) {
		return lookup.Call(ctx, in)
	})
	edge := app.LoadBalanced("edge", flash.ResourceConfig{})
	flash.Route(edge, "GET /items/{id}", "item", func(ctx context.Context, in ItemIn) (ItemOut, error) {
		return lookup.Call(ctx, in)
	})
	// count streams 1..N; stops counts the producers that stopped early.
	var stops atomic.Int64
	count := flash.RouteStream(edge, "POST /count", "count", func(ctx context.Context, in CountIn) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			for i := 1; i <= in.N; i++ {
				if !yield(i, nil) {
					stops.Add(1)
					return
				}
			}
		}
	})
	countq := flash.RegisterStream(back, "countq", func(ctx context.Context, in CountIn) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			for i := 1; i <= in.N; i++ {
				if !yield(i, nil) {
					stops.Add(1)
					return
				}
			}
		}
	})
	flash.Route(edge, "GET /stops", "stops", func(ctx context.Context, _ struct{}) (int64, error) {
		return stops.Load(), nil
	})
	flash.Register(back, "backstops", func(ctx context.Context, _ struct{}) (int64, error) {
		return stops.Load(), nil
	})
	// hold yields one value, then nothing until its caller goes away.
	flash.RouteStream(edge, "POST /hold", "hold", func(ctx context.Context, _ struct{}) iter.Seq2[string, error] {
		return func(yield func(string, error) bool) {
			if yield("first", nil) {
				<-ctx.Done()
			}
			stops.Add(1)
		}
	})
	// drain reads count (edge, NDJSON) or countq (back, /stream/{id}) from
	// this endpoint, checking the order, and stops or cancels at StopAt.
	flash.Register(front, "drain", func(ctx context.Context, in DrainIn) (DrainOut, error) {
		src := count
		if in.Queue {
			src = countq
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		out := DrainOut{InOrder: true}
		for v, err := range src.Stream(ctx, CountIn{N: in.N}) {
			if err != nil {
				out.Err = err.Error()
				break
			}
			if out.Values++; v != out.Values {
				out.InOrder = false
			}
			if out.Values == in.StopAt {
				if !in.Cancel {
					break
				}
				cancel()
			}
		}
		return out, nil
	})
	// A slow route for the load runs to overload.
	flash.Route(edge, "POST /sleep", "sleep", func(ctx context.Context, in SlowIn) (SlowOut, error) {
		t := time.NewTimer(time.Duration(in.MS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return SlowOut{Finished: true, ServedBy: app.Identity()}, nil
		case <-ctx.Done():
			return SlowOut{}, ctx.Err()
		}
	})
	counter := flash.RegisterObject(app.Queue("keeper", flash.ResourceConfig{}), "Counter",
		func(ctx context.Context, in CounterInit) (*Counter, error) { return &Counter{n: in.Start}, nil })
	inc := flash.Method(counter, "inc", func(ctx context.Context, c *Counter, in IncIn) (IncOut, error) {
		c.n += in.By
		return IncOut{N: c.n, PID: os.Getpid()}, nil
	})
	flash.Register(front, "open", func(ctx context.Context, in CounterInit) (flash.Handle[Counter], error) {
		return counter.New(ctx, in)
	})
	flash.Register(front, "bump", func(ctx context.Context, in BumpIn) (IncOut, error) {
		return inc.Call(ctx, in.Counter, IncIn{By: in.By})
	})
	return app
}

// Counter is a count that lives on one replica of keeper.
type Counter struct{ n int }

// CounterInit is Counter's constructor input.
type CounterInit struct {
	Start int `json:"start"`
}

// IncIn is inc's input.
type IncIn struct {
	By int `json:"by"`
}

// IncOut is inc's result: the count, and the process that holds it.
type IncOut struct {
	N   int `json:"n"`
	PID int `json:"pid"`
}

// BumpIn is bump's input: a Counter to increment from front.
type BumpIn struct {
	Counter flash.Handle[Counter] `json:"counter"`
	By      int                   `json:"by"`
}

// CountIn is count's input.
type CountIn struct {
	N int `json:"n"`
}

// DrainIn says which stream drain reads, how far, and whether it stops by
// breaking out of the loop or by cancelling its context.
type DrainIn struct {
	N      int  `json:"n"`
	StopAt int  `json:"stop_at"`
	Cancel bool `json:"cancel"`
	Queue  bool `json:"queue"`
}

// DrainOut is what drain read.
type DrainOut struct {
	Values  int    `json:"values"`
	InOrder bool   `json:"in_order"`
	Err     string `json:"err"`
}

// ItemIn names an item.
type ItemIn struct {
	ID string `json:"id"`
}

// ItemOut is a found item.
type ItemOut struct {
	ID string `json:"id"`
}
