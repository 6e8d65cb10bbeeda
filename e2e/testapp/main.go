// Command testapp is the small flash app the end-to-end tests run: two
// queue-based resources whose functions exercise deadlines, cancellation and
// routing loops across real processes.
//
//	front  relay, ping
//	back   slow, cancelled, pong
//	edge   POST /sleep (load-balanced; only the load runs start it)
//
// relay calls slow with the caller's context, so a deadline on relay must
// cancel slow on back; back counts those cancellations and cancelled reports
// the count. ping calls pong, which calls ping again: a cycle that only the
// hop limit ends.
package main

import (
	"context"
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
	// edge is deployed with the rest but only the load runs call it: a slow
	// load-balanced route to overload.
	edge := app.LoadBalanced("edge", flash.ResourceConfig{})
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
	return app
}
