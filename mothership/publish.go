package mothership

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// maxConflicts bounds how often one caller decides again after losing a
// compare-and-swap to another writer.
const maxConflicts = 3

// publish is the one path by which a manifest is published. Under publishMu
// it asks next for the manifest to publish given the one served now (nil:
// nothing to publish) and, when that differs from what is served, stores it as
// the next version by compare-and-swap on the served version, then serves it.
// It returns the served version.
//
// When another writer published first, the served snapshot is refreshed from
// the store and the error wraps store.ErrConflict: the caller re-reads what it
// depends on and decides again; nothing is retried here with the same data.
func (m *Mothership) publish(ctx context.Context, next func(served *manifest.Manifest) (*manifest.Manifest, error)) (int64, error) {
	m.publishMu.Lock()
	defer m.publishMu.Unlock()
	cur := m.snap.Load()
	mf, err := next(cur.mf)
	if err != nil || mf == nil {
		return cur.version, err
	}
	if err := mf.Validate(); err != nil {
		return cur.version, fmt.Errorf("mothership: publish: %w", err)
	}
	body, err := mf.MarshalJSON()
	if err != nil {
		return cur.version, fmt.Errorf("mothership: publish: %w", err)
	}
	if cur.version > 0 && sameJSON(body, cur.body) {
		return cur.version, nil
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	p, err := m.store.Publish(sctx, cur.version, body)
	if err != nil {
		err = fmt.Errorf("mothership: publish after version %d: %w", cur.version, err)
		if _, rerr := m.readLatest(sctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return m.snap.Load().version, err
	}
	m.install(m.newSnapshot(mf, p.Version, p.Manifest))
	m.log.Info("manifest published", "version", p.Version)
	return p.Version, nil
}

// Publish stores mf as the next version (compare-and-swap in the store),
// serves it at once, wakes parked long polls and writes the local copy. It
// refuses an invalid manifest, returns the served version unchanged when mf
// is what is served, and an error wrapping store.ErrConflict when another
// writer published first (what is served is then the store's latest).
func (m *Mothership) Publish(ctx context.Context, mf *manifest.Manifest) (int64, error) {
	if mf == nil {
		return 0, errors.New("mothership: publish: nil manifest")
	}
	return m.publish(ctx, func(*manifest.Manifest) (*manifest.Manifest, error) { return mf, nil })
}

// sameJSON reports whether a and b are the same JSON value: edited manifests
// serialise with sorted keys, so equal content may differ in bytes.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	decode := func(data []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	va, okA := decode(a)
	vb, okB := decode(b)
	return okA && okB && reflect.DeepEqual(va, vb)
}

// EndpointChanged is told that a provider restarted ep on new URLs. When ep
// is the resource's published deployment, the new URLs are published at once.
// It calls the store: from a provider callback that must stay short, run it
// in its own goroutine.
func (m *Mothership) EndpointChanged(ctx context.Context, ep provider.Endpoint) {
	if len(ep.URLs) == 0 {
		return // a restart never empties an endpoint
	}
	if v, ok := m.publishURLs(ctx, ep); ok && v > 0 {
		m.log.Info("endpoint moved; new URLs published", "resource", ep.Resource, "urls", redactAll(ep.URLs), "version", v)
	}
}

// publishURLs publishes ep's URLs as its resource's endpoint_urls when ep is
// the resource's published deployment (none: status idle, scaled to zero).
// It returns the version that carries them, 0 when nothing changed, and
// false when they could not be published (logged).
func (m *Mothership) publishURLs(ctx context.Context, ep provider.Endpoint) (int64, bool) {
	changed := false
	moved := func(served *manifest.Manifest) (*manifest.Manifest, error) {
		changed = false
		if served == nil {
			return nil, nil
		}
		r, ok := served.Resources[ep.Resource]
		if !ok {
			return nil, nil
		}
		m.mu.Lock()
		d, known := m.deployed[ep.Resource]
		current := (known && d.ID == ep.ID) || (!known && ep.ConfigHash != "" && ep.ConfigHash == r.ConfigHash)
		if current {
			m.deployed[ep.Resource] = ep
		}
		m.mu.Unlock()
		status := scaledStatus(r.Status, len(ep.URLs))
		if !current || (slices.Equal(r.URLs(), ep.URLs) && status == r.Status) {
			return nil, nil
		}
		changed = true
		return served.WithRuntime(ep.Resource, manifest.Runtime{ConfigHash: r.ConfigHash, EndpointURLs: ep.URLs,
			Status: status, Error: r.Error}), nil
	}
	for attempt := 1; ; attempt++ {
		v, err := m.publish(ctx, moved)
		if err == nil {
			if !changed {
				return 0, true
			}
			return v, true
		}
		if !isConflict(err) || attempt == maxConflicts {
			m.log.Error("cannot publish an endpoint's new URLs", "resource", ep.Resource, "urls", redactAll(ep.URLs), "err", err)
			return 0, false
		}
		// Another writer published: decide again from what it published.
	}
}

func isConflict(err error) bool { return errors.Is(err, store.ErrConflict) }

func (m *Mothership) setDeployed(name string, e provider.Endpoint) {
	m.mu.Lock()
	m.deployed[name] = e
	m.mu.Unlock()
}

func (m *Mothership) clearDeployed(name string) {
	m.mu.Lock()
	delete(m.deployed, name)
	m.mu.Unlock()
}

func (m *Mothership) deployedOf(name string) (provider.Endpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.deployed[name]
	return e, ok
}
