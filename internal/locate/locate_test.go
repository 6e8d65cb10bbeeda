package locate

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// replicas is a fake set of replicas: URL → replica id ("" refuses).
type replicas struct {
	mu    sync.Mutex
	ids   map[string]string
	asked map[string]int
}

func (r *replicas) probe(ctx context.Context, url string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked[url]++
	id, ok := r.ids[url]
	if !ok || id == "" {
		return "", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
	}
	return id, nil
}

func (r *replicas) count(url string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[url]
}

func TestFind(t *testing.T) {
	defer goleak.VerifyNone(t)
	now := time.Unix(1000, 0)
	l := New(func() time.Time { return now })
	r := &replicas{ids: map[string]string{"a": "A", "b": "B", "c": "C"}, asked: map[string]int{}}
	urls := []string{"a", "b", "c"}
	ctx := context.Background()
	if got := l.Find(ctx, "B", urls, r.probe); got != "b" {
		t.Fatalf("Find(B) = %q", got)
	}
	// Known now: no more probes, for B or for the others answered.
	before := r.count("a") + r.count("b") + r.count("c")
	if got := l.Find(ctx, "B", urls, r.probe); got != "b" {
		t.Fatalf("Find(B) again = %q", got)
	}
	if after := r.count("a") + r.count("b") + r.count("c"); after != before {
		t.Errorf("a known replica cost %d probes", after-before)
	}
	// A replica none is: "" — and, within Fresh, no second round of probes.
	l.Learn("a", "A")
	l.Learn("c", "C")
	if got := l.Find(ctx, "Z", urls, r.probe); got != "" {
		t.Fatalf("Find(Z) = %q", got)
	}
	n := r.count("a")
	l.Find(ctx, "Z", urls, r.probe)
	if r.count("a") != n {
		t.Error("a fresh answer was asked again")
	}
	now = now.Add(Fresh)
	l.Find(ctx, "Z", urls, r.probe)
	if r.count("a") != n+1 {
		t.Error("a stale answer was not asked again")
	}
	// A single URL is returned unasked.
	if got := l.Find(ctx, "Z", []string{"x"}, r.probe); got != "x" || r.count("x") != 0 {
		t.Errorf("Find with one URL = %q after %d probes", got, r.count("x"))
	}
}

func TestGone(t *testing.T) {
	defer goleak.VerifyNone(t)
	l := New(nil)
	r := &replicas{ids: map[string]string{"a": "A", "b": "B2"}, asked: map[string]int{}}
	ctx := context.Background()
	if l.Gone(ctx, "A", "a", r.probe) {
		t.Error("a replica that answers as itself is gone")
	}
	if !l.Gone(ctx, "B", "b", r.probe) {
		t.Error("a replica restarted as another is not gone")
	}
	if !l.Gone(ctx, "C", "c", r.probe) {
		t.Error("a refusing replica is not gone")
	}
	// A replica whose probe fails otherwise is not gone (within ctx).
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	failing := func(context.Context, string) (string, error) { return "", errors.New("connection reset") }
	if l.Gone(ctx, "D", "d", failing) {
		t.Error("a replica that resets is gone")
	}
}
