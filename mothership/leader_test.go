package mothership

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flash-go/flash/store"
)

// memLeaser is a store.Leaser over an in-memory store: one leadership at a
// time, ended by lose (what an expired lease amounts to) or Resign. Writes
// through a lost leadership's Store fail with store.ErrFenced. (etcd's real
// one is tested in store/etcd; the motherships on it in e2e/ha_test.go.)
type memLeaser struct {
	store.Store
	free    chan struct{} // one token: the leadership
	waiting atomic.Int32  // candidates campaigning
	mu      sync.Mutex
	cur     *memLead
}

func newMemLeaser() *memLeaser {
	l := &memLeaser{Store: newMemStore(), free: make(chan struct{}, 1)}
	l.free <- struct{}{}
	return l
}

func (l *memLeaser) Campaign(ctx context.Context, c store.LeaderInfo) (store.Leadership, error) {
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	select {
	case <-l.free:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.Since = time.Now()
	d := &memLead{l: l, info: c, done: make(chan struct{})}
	l.mu.Lock()
	l.cur = d
	l.mu.Unlock()
	return d, nil
}

func (l *memLeaser) Leader(context.Context) (store.LeaderInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return store.LeaderInfo{}, store.ErrNotFound
	}
	return l.cur.info, nil
}

// lose ends the current leadership, if any.
func (l *memLeaser) lose() {
	l.mu.Lock()
	d := l.cur
	l.mu.Unlock()
	if d != nil {
		d.end()
	}
}

type memLead struct {
	l    *memLeaser
	info store.LeaderInfo
	done chan struct{}
	once sync.Once
}

func (d *memLead) end() {
	d.once.Do(func() {
		d.l.mu.Lock()
		if d.l.cur == d {
			d.l.cur = nil
		}
		d.l.mu.Unlock()
		close(d.done)
		d.l.free <- struct{}{}
	})
}

func (d *memLead) Info() store.LeaderInfo       { return d.info }
func (d *memLead) Done() <-chan struct{}        { return d.done }
func (d *memLead) Resign(context.Context) error { d.end(); return nil }
func (d *memLead) Store() store.Store           { return &memFenced{Store: d.l.Store, d: d} }

func fencedErr(d *memLead) error {
	select {
	case <-d.done:
		return store.ErrFenced
	default:
		return nil
	}
}

// memFenced is a leadership's store: writes fail once it is lost.
type memFenced struct {
	store.Store
	d *memLead
}

func (s *memFenced) Publish(ctx context.Context, prev int64, mf []byte) (store.Published, error) {
	if err := fencedErr(s.d); err != nil {
		return store.Published{}, err
	}
	return s.Store.Publish(ctx, prev, mf)
}

func (s *memFenced) PutDesired(ctx context.Context, prev int64, mf []byte, a string) (store.Desired, error) {
	if err := fencedErr(s.d); err != nil {
		return store.Desired{}, err
	}
	return s.Store.PutDesired(ctx, prev, mf, a)
}

func TestFencedRefusesWritesWithoutLeadership(t *testing.T) {
	if _, ok := NewFenced(newMemStore()); ok {
		t.Fatal("NewFenced of a store that cannot elect: ok")
	}
	l := newMemLeaser()
	f, ok := NewFenced(l)
	if !ok {
		t.Fatal("NewFenced of a Leaser: not ok")
	}
	ctx := t.Context()
	writes := map[string]func() error{
		"Publish":          func() error { _, err := f.Publish(ctx, 0, []byte(`{}`)); return err },
		"PutDesired":       func() error { _, err := f.PutDesired(ctx, 0, []byte(`{}`), ""); return err },
		"PutDeployment":    func() error { return f.PutDeployment(ctx, store.Deployment{Resource: "r"}) },
		"DeleteDeployment": func() error { return f.DeleteDeployment(ctx, "r") },
		"PutEndpoint":      func() error { return f.PutEndpoint(ctx, store.Endpoint{ID: "e", App: "a"}) },
		"DeleteEndpoint":   func() error { return f.DeleteEndpoint(ctx, "e") },
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, store.ErrFenced) || !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s without leadership: %v, want ErrNotLeader (store.ErrFenced)", name, err)
		}
	}
	if _, err := l.Latest(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused Publish changed the store: %v", err)
	}
	if _, err := l.Desired(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused PutDesired changed the store: %v", err)
	}
	// Child reports are not the leader's: every mothership writes them.
	if err := f.ReportInstances(ctx, []store.Instance{{Resource: "r", Instance: "i"}}); err != nil {
		t.Errorf("ReportInstances through a follower: %v", err)
	}
}

// TestLeadStepsDownAndHandsDeploysOver: two motherships share a store; the
// first leads and works, the other sends deploys to it; the first loses its
// leadership: its work ends, its writes are refused, the other leads and
// the first sends deploys there; when ctx ends the leader resigns.
func TestLeadStepsDownAndHandsDeploysOver(t *testing.T) {
	l := newMemLeaser()
	newMS := func(url string) *Mothership {
		f, _ := NewFenced(l)
		m, err := New(t.Context(), Config{Store: f, URL: url, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := newMS("http://a"), newMS("http://b")
	ctx, cancel := context.WithCancel(t.Context())
	worked := make(chan string, 4)
	ended := make(chan string, 4)
	var wg sync.WaitGroup
	lead := func(m *Mothership, name string) {
		wg.Go(func() {
			m.Lead(ctx, func(ctx context.Context) {
				worked <- name
				go func() { <-ctx.Done(); ended <- name }()
			})
		})
	}
	lead(a, "a")
	if got := <-worked; got != "a" {
		t.Fatalf("first to work: %s", got)
	}
	lead(b, "b")

	deployTo := func(m *Mothership) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		m.serveDeploy(rec, httptest.NewRequest(http.MethodPost, "/flash/deploy", strings.NewReader(`{}`)))
		return rec
	}
	if rec := deployTo(b); rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "http://a/flash/deploy" {
		t.Errorf("deploy to the follower: %d %q, want 307 to http://a/flash/deploy", rec.Code, rec.Header().Get("Location"))
	}
	if _, err := a.store.Publish(ctx, 0, []byte(`{"resources":{}}`)); err != nil {
		t.Errorf("the leader's publish: %v", err)
	}

	eventually(t, "b campaigns", func() bool { return l.waiting.Load() == 1 })
	l.lose() // a's lease expired
	if got := <-ended; got != "a" {
		t.Fatalf("work ended: %s, want a", got)
	}
	if got := <-worked; got != "b" {
		t.Fatalf("next to work: %s, want b", got)
	}
	if _, err := a.store.Publish(ctx, 1, []byte(`{"resources":{"x":{}}}`)); !errors.Is(err, store.ErrFenced) {
		t.Errorf("the deposed leader's publish: %v, want store.ErrFenced", err)
	}
	if rec := deployTo(a); rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "http://b/flash/deploy" {
		t.Errorf("deploy to the deposed leader: %d %q, want 307 to http://b/flash/deploy", rec.Code, rec.Header().Get("Location"))
	}
	eventually(t, "the status shows a and b, b leading", func() bool {
		st := a.Status(ctx).Motherships
		return len(st) == 2 && !st[0].Leader && st[1].Leader && st[1].URL == "http://b" && !st[1].Since.IsZero()
	})

	cancel()
	wg.Wait()
	if _, err := l.Leader(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after shutdown someone still leads (%v): the leader did not resign", err)
	}
	l.Store.Close()
}

func TestAloneLeadsOnce(t *testing.T) {
	m, err := New(t.Context(), Config{Store: newMemStore(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	m.Lead(t.Context(), func(context.Context) { n++ })
	if n != 1 || !m.leading() {
		t.Errorf("work ran %d times, leading %v; want once, leading", n, m.leading())
	}
}
