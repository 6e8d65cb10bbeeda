package etcd

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// hub fans one etcd watch of the version key out to every Watch call, so a
// thousand long polls cost the cluster one watch. The follower runs only
// while there are watchers.
type hub struct {
	mu       sync.Mutex
	seen     int64 // newest version known
	watchers map[*watcher]struct{}
	stop     context.CancelFunc // stops the follower; nil when none runs
	done     chan struct{}      // closed when the follower has returned
}

// watcher is one Watch call. ch has room for one value: a newer version
// replaces an unread older one. Only code holding hub.mu sends on ch;
// whoever removes the watcher from hub.watchers closes ch.
type watcher struct {
	ch   chan int64
	last int64 // newest version put on ch (or the caller's after)
}

// Watch implements store.Watcher. The shared follower reads the version key
// and then watches it from the revision of that read, so nothing between the
// two is missed. Whenever the etcd watch ends — compacted past its revision,
// the member lost its raft leader (the watch requires one, so a cut-off
// member cannot stall it silently), the connection broke beyond the client's
// own resumption — it reads the key again and starts a new watch. A watcher
// is only ever sent versions newer than the last it was sent. Publishes
// through this store are sent before Publish returns. The channel is closed
// when ctx ends or the store is closed.
func (s *Store) Watch(ctx context.Context, after int64) <-chan int64 {
	w := &watcher{ch: make(chan int64, 1), last: after}
	h := &s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed.Load() || ctx.Err() != nil {
		close(w.ch)
		return w.ch
	}
	w.offer(h.seen)
	if h.watchers == nil {
		h.watchers = make(map[*watcher]struct{})
	}
	h.watchers[w] = struct{}{}
	if h.stop == nil {
		fctx, stop := context.WithCancel(s.ctx)
		h.stop, h.done = stop, make(chan struct{})
		go s.follow(fctx, h.done)
	}
	context.AfterFunc(ctx, func() { s.unwatch(w) })
	return w.ch
}

// offer sends v if it is newer than what w was last sent; hub.mu must be held.
func (w *watcher) offer(v int64) {
	if v <= w.last {
		return
	}
	w.last = v
	select { // replace an unread older version
	case <-w.ch:
	default:
	}
	w.ch <- v
}

// advance records version v and offers it to every watcher.
func (h *hub) advance(v int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v <= h.seen {
		return
	}
	h.seen = v
	for w := range h.watchers {
		w.offer(v)
	}
}

// unwatch removes w when its context ends, stopping the follower if w was the
// last watcher. The follower has returned by the time w.ch is closed.
func (s *Store) unwatch(w *watcher) {
	h := &s.hub
	h.mu.Lock()
	if _, ok := h.watchers[w]; !ok { // Close got there first
		h.mu.Unlock()
		return
	}
	delete(h.watchers, w)
	var done chan struct{}
	if len(h.watchers) == 0 {
		done = h.stopLocked()
	}
	h.mu.Unlock()
	if done != nil {
		<-done
	}
	close(w.ch)
}

// stopLocked cancels the follower, if running, and returns a channel closed
// when it has returned; wait on it without holding h.mu.
func (h *hub) stopLocked() chan struct{} {
	if h.stop == nil {
		return nil
	}
	done := h.done
	h.stop()
	h.stop, h.done = nil, nil
	return done
}

// closeAll ends every watch; for Close.
func (h *hub) closeAll() {
	h.mu.Lock()
	done := h.stopLocked()
	ws := h.watchers
	h.watchers = nil
	h.mu.Unlock()
	if done != nil {
		<-done
	}
	for w := range ws {
		close(w.ch)
	}
}

// follow keeps hub.seen up to date with the version key until ctx ends.
func (s *Store) follow(ctx context.Context, done chan struct{}) {
	defer close(done)
	versionKey := s.key("version")
	backoff := newBackoff()
	for ctx.Err() == nil {
		resp, err := s.get(ctx, "watch", versionKey)
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Logger.Warn("store/etcd: reading the latest version to watch from", "err", err)
			}
			backoff.wait(ctx)
			continue
		}
		if len(resp.Kvs) > 0 {
			s.hub.advance(resp.Kvs[0].Version) // the key's etcd version is the flash version
		}
		wctx, cancel := context.WithCancel(s.ctx)
		events := s.cli.Watch(clientv3.WithRequireLeader(wctx), versionKey,
			clientv3.WithRev(resp.Header.Revision+1), clientv3.WithCreatedNotify())
		if s.relay(ctx, events) {
			backoff.reset()
		}
		cancel()
		backoff.wait(ctx) // a watch that keeps failing must not spin
	}
}

// relay passes the versions seen on events to the hub until ctx ends or the
// watch fails, and tells whether the watch was established.
func (s *Store) relay(ctx context.Context, events clientv3.WatchChan) (created bool) {
	for {
		select {
		case <-ctx.Done():
			settle(events, created, s.ctx.Done())
			return created
		case wr, ok := <-events:
			if !ok || wr.Err() != nil {
				if ctx.Err() == nil {
					s.cfg.Logger.Info("store/etcd: watch ended; reading the latest version again", "err", wr.Err())
				}
				return created
			}
			created = created || wr.Created
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					s.hub.advance(ev.Kv.Version) // the key's etcd version is the flash version
				}
			}
		}
	}
}

// settle is called before cancelling a watch started WithCreatedNotify: it
// waits, for a few seconds at most or until stop closes, until etcd has
// confirmed the watch. The v3.6 client keeps a stream and its goroutines
// alive until Close when a watch is cancelled before that.
func settle(events clientv3.WatchChan, created bool, stop <-chan struct{}) {
	if created {
		return
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case wr, ok := <-events:
			if !ok || wr.Created || wr.Err() != nil {
				return
			}
		case <-t.C:
			return
		case <-stop:
			return
		}
	}
}

// backoff waits longer after each failure, up to a second.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 50 * time.Millisecond} }

func (b *backoff) reset() { b.d = 50 * time.Millisecond }

// wait sleeps for the current delay (or until ctx ends) and doubles it.
func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.d = min(2*b.d, time.Second)
}
