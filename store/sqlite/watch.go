package sqlite

import (
	"context"
	"time"
)

// watcher is one Watch call. ch has room for one value: a newer version
// replaces an unread older one, so a slow reader only ever finds the newest.
// Only code holding Store.mu sends on ch; whoever removes the watcher from
// Store.watchers closes ch.
type watcher struct {
	ch   chan int64
	last int64       // newest version put on ch (or the caller's after)
	stop func() bool // unregisters the context.AfterFunc
}

// Watch implements store.Watcher. Publishes through this Store are sent before
// Publish returns; those by other processes on the same file are noticed by a
// poll every Config.PollInterval, shared by all watchers and run only while
// there are any. The channel is closed when ctx ends or the store is closed.
func (s *Store) Watch(ctx context.Context, after int64) <-chan int64 {
	w := &watcher{ch: make(chan int64, 1), last: after}
	// Read the file once now: another process may have published since the
	// last poll, and the poller may not be running.
	latest, err := s.maxVersion(ctx)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() || ctx.Err() != nil {
		close(w.ch)
		return w.ch
	}
	if err == nil {
		s.advanceLocked(latest)
	}
	if s.seen > w.last {
		w.last = s.seen
		w.ch <- s.seen
	}
	s.watchers[w] = struct{}{}
	if s.pollStop == nil {
		pctx, stop := context.WithCancel(context.Background())
		s.pollStop, s.pollDone = stop, make(chan struct{})
		go s.pollLoop(pctx, s.pollDone)
	}
	w.stop = context.AfterFunc(ctx, func() { s.unwatch(w) })
	return w.ch
}

// unwatch removes w when its context ends, stopping the poller if w was the
// last watcher. The poller has exited by the time w.ch is closed.
func (s *Store) unwatch(w *watcher) {
	s.mu.Lock()
	if _, ok := s.watchers[w]; !ok { // Close got there first
		s.mu.Unlock()
		return
	}
	delete(s.watchers, w)
	var done chan struct{}
	if len(s.watchers) == 0 {
		done = s.stopPollerLocked()
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	close(w.ch)
}

// stopPollerLocked cancels the poller, if running, and returns a channel
// closed when it has exited. The caller must wait on it without holding s.mu.
func (s *Store) stopPollerLocked() chan struct{} {
	if s.pollStop == nil {
		return nil
	}
	done := s.pollDone
	s.pollStop()
	s.pollStop, s.pollDone = nil, nil
	return done
}

func (s *Store) pollLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.poll)
	defer t.Stop()
	failing := false // log the first failure and the recovery, not every tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// max(version) reads the last entry of the primary-key b-tree: a few page
		// reads, usually from cache, and it also sees other processes' commits.
		v, err := s.maxVersion(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			s.log.Warn("polling for published versions failed; watchers may miss other processes' publishes", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("polling for published versions works again")
			failing = false
		}
		if err == nil {
			s.advance(v)
		}
	}
}

func (s *Store) maxVersion(ctx context.Context) (int64, error) {
	if err := s.checkOpen("read latest version"); err != nil {
		return 0, err
	}
	var v int64
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM manifests`).Scan(&v); err != nil {
		return 0, s.fail("read latest version", err)
	}
	return v, nil
}

// advance records that version v exists and notifies watchers behind it.
func (s *Store) advance(v int64) {
	s.mu.Lock()
	s.advanceLocked(v)
	s.mu.Unlock()
}

func (s *Store) advanceLocked(v int64) {
	if v <= s.seen {
		return
	}
	s.seen = v
	for w := range s.watchers {
		if v <= w.last {
			continue
		}
		select { // drop an unread older version; this never blocks as we are the only sender
		case <-w.ch:
		default:
		}
		w.ch <- v
		w.last = v
	}
}
