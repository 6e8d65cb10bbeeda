package store

import (
	"context"
	"errors"
	"time"
)

// ErrFenced means a write was refused because the leadership it was made
// under has been lost (SPEC §4.6): a deposed leader's late writes change nothing.
var ErrFenced = errors.New("store: leadership lost; write fenced")

// LeaderInfo names the mothership that leads, or wants to.
type LeaderInfo struct {
	ID    string    // the mothership's id (FLASH_MOTHERSHIP_ID or a generated one)
	URL   string    // where that mothership serves, for followers to hand deploys to
	Since time.Time // when it became leader; zero while only a candidate
}

// Leaser is implemented by stores that several motherships can share (SPEC §4.6).
// Exactly one candidate leads at a time; only it reconciles and calls the provider.
type Leaser interface {
	// Campaign blocks until candidate leads, ctx ends (returning ctx's error)
	// or the store fails. The leadership lasts until its Done channel closes.
	Campaign(ctx context.Context, candidate LeaderInfo) (Leadership, error)
	// Leader tells who leads now, or returns ErrNotFound when nobody does.
	Leader(ctx context.Context) (LeaderInfo, error)
}

// Leadership is one won campaign. Writes through Store are fenced: once the
// leadership is lost (its lease expired or was revoked, or Resign was called)
// they fail with ErrFenced and change nothing, even if this process has not
// noticed the loss yet. Reads through Store behave as on the shared store.
type Leadership interface {
	// Info is the leader as recorded in the store, Since set.
	Info() LeaderInfo
	// Store is the shared store with every write conditioned on this leadership.
	// Its Close is a no-op: the leadership does not own the underlying store.
	Store() Store
	// Done is closed once the leadership is known to be lost or resigned.
	Done() <-chan struct{}
	// Resign gives the leadership up so another candidate is elected at once.
	// It closes Done; resigning twice is not an error.
	Resign(ctx context.Context) error
}
