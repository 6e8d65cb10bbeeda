package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/flash-go/flash/store"
)

// fence is the condition every write of a leader is made under: its
// election key still exists with the create revision it won with. Only the
// candidate whose key is the oldest under the election prefix leads, and a
// key disappears only with its lease, so once this fails the leadership has
// ended for good, whatever the deposed leader believes.
type fence struct {
	key string
	rev int64
}

func (f *fence) cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(f.key), "=", f.rev)
}

// holds reports whether the fence key, as read in a failed txn, is still ours.
func (f *fence) holds(kvs []*mvccpb.KeyValue) bool {
	return len(kvs) == 1 && kvs[0].CreateRevision == f.rev
}

// Campaign implements store.Leaser with concurrency.Election on a session
// whose lease lives Config.LeaseTTL past the last renewal. The candidate's
// info, Since set on winning, is the election value that Leader reads.
func (s *Store) Campaign(ctx context.Context, candidate store.LeaderInfo) (store.Leadership, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	ttl := int((s.cfg.LeaseTTL + time.Second - 1) / time.Second)
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(ttl), concurrency.WithContext(s.ctx))
	if err != nil {
		return nil, s.fail("campaign", err)
	}
	el := concurrency.NewElection(sess, s.key("leader/"))
	candidate.Since = time.Time{}
	value, _ := json.Marshal(candidate) // strings and a time: cannot fail
	if err := el.Campaign(ctx, string(value)); err != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("store/etcd: campaign: %w", ctx.Err())
		}
		return nil, s.fail("campaign", err)
	}
	// Campaign also returns when our own key vanished while we waited (the
	// lease expired); Proclaim compares the key's create revision, so it
	// succeeds only if we really lead.
	info := candidate
	info.Since = time.Now().UTC()
	value, _ = json.Marshal(info)
	pctx, cancel, err := s.call(ctx)
	if err != nil {
		sess.Close()
		return nil, err
	}
	defer cancel()
	if err := el.Proclaim(pctx, string(value)); err != nil {
		sess.Close()
		if errors.Is(err, concurrency.ErrElectionNotLeader) {
			return nil, fmt.Errorf("store/etcd: campaign: lease lost while waiting: %w", store.ErrFenced)
		}
		return nil, s.fail("campaign", err)
	}
	l := &leadership{
		info:    info,
		fenced:  &Store{conn: s.conn, fence: &fence{key: el.Key(), rev: el.Rev()}},
		el:      el,
		sess:    sess,
		done:    make(chan struct{}),
		resign:  make(chan struct{}),
		stopped: make(chan struct{}),
	}
	s.wg.Go(func() { l.watch(el.Header().Revision + 1) })
	return l, nil
}

// Leader implements store.Leaser.
func (s *Store) Leader(ctx context.Context) (store.LeaderInfo, error) {
	resp, err := s.get(ctx, "leader", s.key("leader/"), clientv3.WithFirstCreate()...)
	if err != nil {
		return store.LeaderInfo{}, err
	}
	if len(resp.Kvs) == 0 {
		return store.LeaderInfo{}, fmt.Errorf("store/etcd: leader: %w", store.ErrNotFound)
	}
	var info store.LeaderInfo
	if err := json.Unmarshal(resp.Kvs[0].Value, &info); err != nil {
		return store.LeaderInfo{}, fmt.Errorf("store/etcd: leader record %q is corrupt: %w", resp.Kvs[0].Key, err)
	}
	return info, nil
}

// leadership is a won campaign; see store.Leadership.
type leadership struct {
	info    store.LeaderInfo
	fenced  *Store
	el      *concurrency.Election
	sess    *concurrency.Session
	done    chan struct{} // closed by watch when the leadership ends
	resign  chan struct{} // closed by Resign to stop watch
	once    sync.Once
	stopped chan struct{} // closed when watch has returned
}

func (l *leadership) Info() store.LeaderInfo { return l.info }
func (l *leadership) Store() store.Store     { return l.fenced }
func (l *leadership) Done() <-chan struct{}  { return l.done }

// Resign deletes the election key (if it is still ours), so the next
// candidate leads at once, and ends the session.
func (l *leadership) Resign(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		err = l.el.Resign(ctx)
		close(l.resign)
	})
	<-l.stopped
	if err != nil {
		return fmt.Errorf("store/etcd: resign: %w", err)
	}
	return nil
}

// watch closes done as soon as the leadership is known to be over: the
// session's lease could not be renewed (expired, revoked, store closed), the
// election key was deleted, or Resign was called.
func (l *leadership) watch(rev int64) {
	defer close(l.stopped)
	defer l.sess.Close() // revokes the lease if it still exists
	end := sync.OnceFunc(func() { close(l.done) })
	defer end()
	f, cli, storeDone := l.fenced.fence, l.fenced.cli, l.fenced.ctx.Done()
	backoff := newBackoff()
	for {
		wctx, cancel := context.WithCancel(l.fenced.ctx)
		events := cli.Watch(wctx, f.key, clientv3.WithRev(rev), clientv3.WithCreatedNotify())
		lost, created := false, false
	read:
		for {
			select {
			case <-l.sess.Done():
				lost = true
				break read
			case <-l.resign:
				lost = true
				break read
			case wr, ok := <-events:
				if !ok || wr.Err() != nil {
					break read
				}
				created = created || wr.Created
				for _, ev := range wr.Events {
					lost = lost || ev.Type == clientv3.EventTypeDelete
				}
				if lost {
					break read
				}
			}
		}
		if lost {
			end() // before settle: the loss is known now
		}
		settle(events, created, storeDone)
		cancel()
		if lost {
			return
		}
		// The watch broke (compaction, connection): check the key by hand.
		backoff.wait(l.sess.Ctx())
		resp, err := cli.Get(l.sess.Ctx(), f.key)
		switch {
		case l.sess.Ctx().Err() != nil:
			return
		case err != nil:
			continue
		case !f.holds(resp.Kvs):
			return
		}
		rev = resp.Header.Revision + 1
	}
}
