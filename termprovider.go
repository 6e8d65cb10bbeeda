package flash

import (
	"context"
	"io"
	"sync"

	"github.com/flash-go/flash/mothership"
	"github.com/flash-go/flash/provider"
)

// termProvider is the provider of a mothership that shares its store with
// others: a new one for each leadership term, closed when the term ends, so
// that a deposed leader no longer monitors, restarts or stops what the new
// leader runs (the new leader's provider adopts it). Between terms every
// call fails with mothership.ErrNotLeader.
type termProvider struct {
	open func() (provider.Provider, error)
	mu   sync.Mutex
	cur  provider.Provider // nil between terms
	term context.Context   // the current term, ended with the leadership
}

// begin opens the provider of a term that lasts as long as ctx.
func (p *termProvider) begin(ctx context.Context) error {
	prov, err := p.open()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.closeLocked()
	p.cur, p.term = prov, ctx
	p.mu.Unlock()
	context.AfterFunc(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cur == prov {
			p.closeLocked()
		}
	})
	return nil
}

func (p *termProvider) closeLocked() {
	if c, ok := p.cur.(io.Closer); ok {
		c.Close() // the local provider's processes keep serving
	}
	p.cur = nil
}

func (p *termProvider) get() (provider.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.term.Err() != nil {
		return nil, mothership.ErrNotLeader
	}
	return p.cur, nil
}

func (p *termProvider) Deploy(ctx context.Context, s provider.Spec) (provider.Endpoint, error) {
	prov, err := p.get()
	if err != nil {
		return provider.Endpoint{}, err
	}
	return prov.Deploy(ctx, s)
}

func (p *termProvider) Undeploy(ctx context.Context, e provider.Endpoint) error {
	prov, err := p.get()
	if err != nil {
		return err
	}
	return prov.Undeploy(ctx, e)
}

func (p *termProvider) List(ctx context.Context) ([]provider.Endpoint, error) {
	prov, err := p.get()
	if err != nil {
		return nil, err
	}
	return prov.List(ctx)
}

// Adopt takes over what an earlier leader left running, when the term's
// provider can.
func (p *termProvider) Adopt(ctx context.Context) ([]provider.Endpoint, error) {
	prov, err := p.get()
	if err != nil {
		return nil, err
	}
	if a, ok := prov.(interface {
		Adopt(context.Context) ([]provider.Endpoint, error)
	}); ok {
		return a.Adopt(ctx)
	}
	return nil, nil
}

// Close ends the current term's provider.
func (p *termProvider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
	return nil
}
