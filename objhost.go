package flash

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// objectHost holds the object instances this process serves, one table
// per object type. Its replica id is random per App value, so a restarted
// process is another replica and knows none of the old instances.
type objectHost struct {
	replica string
	log     atomic.Pointer[slog.Logger] // nil: slog.Default()
	mu      sync.Mutex
	tables  map[*objectType]*instanceTable
}

func newObjectHost() *objectHost {
	return &objectHost{replica: wire.NewReplicaID(), tables: make(map[*objectType]*instanceTable)}
}

// instanceTable holds the instances of one object type, within its limits.
type instanceTable struct {
	host     *objectHost
	typ      *objectType
	mu       sync.Mutex
	m        map[string]*instance
	reserved int // constructions under way, counted against the bound
}

// instance is one object. sem holds one token while a method runs: calls
// are served one at a time, and a waiting call gives up when its context
// ends.
type instance struct {
	id      string
	value   any
	sem     chan struct{}
	waiting atomic.Int32 // calls running or waiting for sem
	used    atomic.Int64 // when the last call ended (Unix ns)
	gone    atomic.Bool  // closed or evicted: calls that still reach it fail
	timer   *time.Timer  // eviction check
}

func (h *objectHost) table(t *objectType) *instanceTable {
	h.mu.Lock()
	defer h.mu.Unlock()
	tb := h.tables[t]
	if tb == nil {
		tb = &instanceTable{host: h, typ: t, m: make(map[string]*instance)}
		h.tables[t] = tb
	}
	return tb
}

func (h *objectHost) logger() *slog.Logger {
	if l := h.log.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// create makes an instance with construct, within t's bound, and returns
// its id.
func (h *objectHost) create(ctx context.Context, t *objectType, construct func(context.Context) (any, error)) (string, error) {
	tb := h.table(t)
	tb.mu.Lock()
	if len(tb.m)+tb.reserved >= t.limits.max {
		tb.mu.Unlock()
		return "", flasherr.Errorf(flasherr.CodeResourceExhausted,
			"object %s: this replica holds its maximum of %d instances; close some, or retry when idle ones are evicted", t.name, t.limits.max)
	}
	tb.reserved++
	tb.mu.Unlock()

	v, err := construct(ctx)
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.reserved--
	if err != nil {
		return "", err
	}
	in := &instance{id: wire.NewObjectID(h.replica), value: v, sem: make(chan struct{}, 1)}
	in.used.Store(time.Now().UnixNano())
	tb.m[in.id] = in
	in.timer = time.AfterFunc(t.limits.idle, func() { tb.expire(in) })
	return in.id, nil
}

// lost is the error of a call to an instance this replica does not hold.
func (h *objectHost) lost(t *objectType, id string) error {
	reason := "this replica does not hold it: it was closed, or evicted after being idle"
	if r, _ := wire.ObjectReplica(id); r != h.replica {
		reason = "it was made by replica " + r + ", which is not this one (" + h.replica + "): that replica stopped or restarted"
	}
	return &flasherr.ObjectLostError{Object: t.name, ID: id, Reason: reason}
}

// run calls fn with instance id's value, after the calls before it.
func (h *objectHost) run(ctx context.Context, t *objectType, id string, fn func(context.Context, any) error) error {
	tb := h.table(t)
	tb.mu.Lock()
	in := tb.m[id]
	tb.mu.Unlock()
	if in == nil {
		return h.lost(t, id)
	}
	if int(in.waiting.Add(1)) > t.limits.waiting+1 {
		in.waiting.Add(-1)
		return flasherr.Errorf(flasherr.CodeResourceExhausted,
			"object %s instance %s: %d calls are already waiting for it", t.name, id, t.limits.waiting)
	}
	defer in.waiting.Add(-1)
	select {
	case in.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() {
		in.used.Store(time.Now().UnixNano())
		<-in.sem
	}()
	if in.gone.Load() {
		return h.lost(t, id)
	}
	return fn(ctx, in.value)
}

// close forgets instance id and retires it.
func (h *objectHost) close(ctx context.Context, t *objectType, id string) error {
	tb := h.table(t)
	tb.mu.Lock()
	in := tb.m[id]
	if in != nil {
		tb.drop(in)
	}
	tb.mu.Unlock()
	if in == nil {
		return h.lost(t, id)
	}
	return in.retire(ctx)
}

// drop removes in from the table; tb.mu is held.
func (tb *instanceTable) drop(in *instance) {
	delete(tb.m, in.id)
	in.gone.Store(true)
	in.timer.Stop()
}

// expire evicts in when it has been idle for the object's idle timeout,
// and checks again later otherwise.
func (tb *instanceTable) expire(in *instance) {
	idle := tb.typ.limits.idle
	tb.mu.Lock()
	if tb.m[in.id] != in {
		tb.mu.Unlock()
		return
	}
	since := time.Since(time.Unix(0, in.used.Load()))
	if in.waiting.Load() > 0 || since < idle {
		in.timer.Reset(max(idle-since, time.Millisecond))
		tb.mu.Unlock()
		return
	}
	tb.drop(in)
	tb.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	if err := in.retire(ctx); err != nil {
		tb.host.logger().Warn("closing an evicted object", "object", tb.typ.name, "id", in.id, "err", err)
	}
}

// retire waits for the method running on in, then closes its value when it
// has a Close method. in is out of its table already.
func (in *instance) retire(ctx context.Context) error {
	in.sem <- struct{}{}
	defer func() { <-in.sem }()
	switch c := in.value.(type) {
	case interface{ Close(context.Context) error }:
		return c.Close(ctx)
	case io.Closer:
		return c.Close()
	}
	return nil
}

// shutdown retires every instance (the process is stopping).
func (h *objectHost) shutdown(ctx context.Context) error {
	h.mu.Lock()
	tables := make([]*instanceTable, 0, len(h.tables))
	for _, tb := range h.tables {
		tables = append(tables, tb)
	}
	h.mu.Unlock()
	var errs []error
	for _, tb := range tables {
		tb.mu.Lock()
		all := make([]*instance, 0, len(tb.m))
		for _, in := range tb.m {
			all = append(all, in)
		}
		for _, in := range all {
			tb.drop(in)
		}
		tb.mu.Unlock()
		for _, in := range all {
			errs = append(errs, in.retire(ctx))
		}
	}
	return errors.Join(errs...)
}
