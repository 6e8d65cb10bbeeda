package flash

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider"
)

// closingProvider counts its calls and whether it was closed.
type closingProvider struct {
	closed bool
	calls  int
}

func (p *closingProvider) Deploy(context.Context, provider.Spec) (provider.Endpoint, error) {
	p.calls++
	return provider.Endpoint{}, nil
}
func (p *closingProvider) Undeploy(context.Context, provider.Endpoint) error { p.calls++; return nil }
func (p *closingProvider) List(context.Context) ([]provider.Endpoint, error) {
	p.calls++
	return nil, nil
}
func (p *closingProvider) Close() error { p.closed = true; return nil }

// isClosed reads p.closed under tp's lock, which closing holds.
func (tp *termProvider) isClosed(p *closingProvider) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return p.closed
}

func TestTermProvider(t *testing.T) {
	var opened []*closingProvider
	tp := &termProvider{open: func() (provider.Provider, error) {
		p := &closingProvider{}
		opened = append(opened, p)
		return p, nil
	}}
	if _, err := tp.List(t.Context()); !errors.Is(err, mothership.ErrNotLeader) {
		t.Fatalf("List between terms: %v, want ErrNotLeader", err)
	}
	term1, end1 := context.WithCancel(t.Context())
	if err := tp.begin(term1); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Deploy(t.Context(), provider.Spec{}); err != nil || opened[0].calls != 1 {
		t.Fatalf("Deploy in term 1: %v, calls %d", err, opened[0].calls)
	}
	if _, err := tp.Adopt(t.Context()); err != nil {
		t.Errorf("Adopt of a provider that cannot: %v", err)
	}
	end1() // the leadership ended: calls refused at once, its provider closed soon after
	if err := tp.Undeploy(t.Context(), provider.Endpoint{}); !errors.Is(err, mothership.ErrNotLeader) {
		t.Fatalf("Undeploy after term 1: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); !tp.isClosed(opened[0]); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("term 1's provider still open 5s after the term ended")
		}
	}
	term2, end2 := context.WithCancel(t.Context())
	defer end2()
	if err := tp.begin(term2); err != nil {
		t.Fatal(err)
	}
	if len(opened) != 2 || opened[1].closed {
		t.Fatalf("term 2 did not open a fresh provider: %d opened", len(opened))
	}
	if _, err := tp.List(t.Context()); err != nil || opened[1].calls != 1 || opened[0].calls != 1 {
		t.Errorf("List in term 2: %v, calls %d / %d", err, opened[0].calls, opened[1].calls)
	}
	tp.Close()
	if !tp.isClosed(opened[1]) {
		t.Error("Close left the term's provider open")
	}
}
