package mothership

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/store"
)

// Bounds on store calls made where no caller context applies.
const (
	storeTimeout = 10 * time.Second
	retryMin     = time.Second // first re-read after a failed refresh
	retryMax     = 30 * time.Second
)

// snapshot is one immutable served state. Everything GET /manifest needs is
// computed once, when the snapshot is made.
type snapshot struct {
	mf       *manifest.Manifest // nil when none is known
	version  int64              // 0: none, or the local file served while the store is down
	body     []byte             // the manifest bytes exactly as published
	served   []byte             // what GET /manifest sends: body with env values masked (envMask)
	etag     string             // strong, quoted hash of served
	verStr   string             // version as a header value
	servable bool               // a manifest with at least one resource
	changed  chan struct{}      // closed when a newer snapshot replaces this one
	head     answerHead
}

// answerHead holds GET /manifest's answer header values, made once per
// snapshot and shared by every answer (net/http only reads them).
type answerHead struct {
	version, etag, length, cacheControl, contentType []string
}

func newAnswerHead(verStr, etag string, length int) answerHead {
	return answerHead{version: []string{verStr}, etag: []string{etag}, length: []string{strconv.Itoa(length)},
		cacheControl: []string{"no-cache"}, contentType: []string{wire.ContentTypeJSON}}
}

func emptySnapshot() *snapshot {
	return &snapshot{verStr: "0", changed: make(chan struct{}), head: newAnswerHead("0", "", 0)}
}

func (m *Mothership) newSnapshot(mf *manifest.Manifest, version int64, body []byte) *snapshot {
	served := m.mask.manifest(body)
	sum := sha256.Sum256(served)
	etag, verStr := `"`+hex.EncodeToString(sum[:16])+`"`, strconv.FormatInt(version, 10)
	return &snapshot{
		mf:       mf,
		version:  version,
		body:     body,
		served:   served,
		etag:     etag,
		verStr:   verStr,
		head:     newAnswerHead(verStr, etag, len(served)),
		servable: mf != nil && len(mf.Resources) > 0,
		changed:  make(chan struct{}),
	}
}

// install swaps in s when it is newer than what is served (a version-0
// snapshot only replaces the empty one), wakes the long polls parked on the
// old one, and writes the manifest file. It reports whether s was installed.
func (m *Mothership) install(s *snapshot) bool {
	m.swapMu.Lock()
	old := m.snap.Load()
	if s.version < old.version || (s.version == old.version && old.mf != nil) {
		m.swapMu.Unlock()
		return false
	}
	m.snap.Store(s)
	close(old.changed)
	m.swapMu.Unlock()
	if s.version > 0 {
		m.writeFile(s)
	}
	return true
}

// writeFile writes s to ManifestPath unless a newer version is already there.
func (m *Mothership) writeFile(s *snapshot) {
	if m.cfg.ManifestPath == "" {
		return
	}
	m.fileMu.Lock()
	defer m.fileMu.Unlock()
	if s.version <= m.written {
		return
	}
	// 0600: the file keeps the real env values, secrets included.
	if err := manifest.Save(m.cfg.ManifestPath, s.mf, 0o600); err != nil {
		m.log.Warn("cannot write the local manifest file", "path", m.cfg.ManifestPath, "version", s.version, "err", err)
		return
	}
	m.written = s.version
}

// fromPublished decodes a published version into a snapshot. Decoding is
// tolerant (shape only): the store's latest is what there is to serve, and
// children validate what they apply.
func (m *Mothership) fromPublished(p store.Published) (*snapshot, error) {
	mf, err := manifest.Decode(p.Manifest)
	if err != nil {
		return nil, fmt.Errorf("published manifest version %d: %w", p.Version, err)
	}
	return m.newSnapshot(mf, p.Version, p.Manifest), nil
}

// boot loads what to serve first: the store's latest, else the local file.
func (m *Mothership) boot(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	p, err := m.store.Latest(ctx)
	switch {
	case err == nil:
		s, derr := m.fromPublished(p)
		if derr == nil {
			m.install(s)
			return
		}
		err = derr
	case errors.Is(err, store.ErrNotFound):
		m.log.Info("no manifest published yet")
		return
	}
	m.log.Warn("cannot read the published manifest from the store; serving the local manifest file", "err", err, "path", m.cfg.ManifestPath)
	m.serveLocalFile()
}

// serveLocalFile serves ManifestPath as version 0 (the seed's fallback).
func (m *Mothership) serveLocalFile() {
	if m.cfg.ManifestPath == "" {
		return
	}
	mf, err := manifest.Load(m.cfg.ManifestPath)
	if err != nil {
		m.log.Warn("no local manifest to serve", "err", err)
		return
	}
	body, err := mf.MarshalJSON()
	if err != nil {
		m.log.Warn("cannot encode the local manifest", "err", err)
		return
	}
	m.install(m.newSnapshot(mf, 0, body))
}

// refresh re-reads the store's latest version; only one read runs at a time
// and concurrent callers share its outcome. A failure keeps what is served.
// It returns the served version.
func (m *Mothership) refresh(ctx context.Context) (int64, error) {
	v, err, _ := m.refreshes.Do("latest", func() (any, error) { return m.readLatest(ctx) })
	if err != nil {
		return m.snap.Load().version, err
	}
	return v.(int64), nil
}

func (m *Mothership) readLatest(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	p, err := m.store.Latest(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return m.snap.Load().version, nil
	}
	if err != nil {
		err = fmt.Errorf("mothership: refresh: %w", err)
		m.log.Warn("manifest refresh failed; serving the last good copy", "err", err)
		return m.snap.Load().version, err
	}
	cur := m.snap.Load()
	if p.Version < cur.version {
		m.log.Warn("the store's latest version is older than the served one; keeping the served one",
			"store", p.Version, "served", cur.version)
		return cur.version, nil
	}
	if p.Version == cur.version && cur.mf != nil {
		return cur.version, nil
	}
	s, err := m.fromPublished(p)
	if err != nil {
		err = fmt.Errorf("mothership: refresh: %w", err)
		m.log.Error("published manifest cannot be decoded; serving the last good copy", "err", err)
		return cur.version, err
	}
	if m.install(s) {
		m.log.Info("manifest refreshed", "version", s.version)
	}
	return m.snap.Load().version, nil
}

// Invalidate forces a re-read of the store. The read starts after the call:
// joining a read already in flight could miss a version published just before.
func (m *Mothership) Invalidate(ctx context.Context) error {
	// The read may be shared: it must not end because this caller gives up
	// (readLatest bounds it by storeTimeout).
	rctx := context.WithoutCancel(ctx)
	read := func() (any, error) { return m.readLatest(rctx) }
	var r singleflight.Result
	select {
	case r = <-m.refreshes.DoChan("latest", read):
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.Shared {
		// Possibly joined an older read: run once more.
		select {
		case r = <-m.refreshes.DoChan("latest", read):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return r.Err
}

// follow refreshes on store notifications and every TTL until ctx ends;
// after a failed refresh it retries sooner, backing off up to retryMax.
func (m *Mothership) follow(ctx context.Context) {
	var notify <-chan int64
	if w, ok := m.store.(store.Watcher); ok {
		notify = w.Watch(ctx, m.snap.Load().version)
	}
	retry, first := time.Duration(0), m.cfg.TTL
	if m.snap.Load().version == 0 {
		// Booted without the store's manifest: try again now, and soon
		// after when that fails, not a TTL from now.
		if _, err := m.refresh(ctx); err != nil {
			retry = retryMin
			first = min(first, retry)
		}
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-notify:
			if !ok {
				notify = nil // the store stopped notifying: the TTL re-read remains
				continue
			}
			if v > m.snap.Load().version {
				m.refresh(ctx)
			}
		case <-timer.C:
			next := m.cfg.TTL
			if _, err := m.refresh(ctx); err != nil {
				retry = min(max(2*retry, retryMin), retryMax)
				next = min(next, retry)
			} else {
				retry = 0
			}
			timer.Reset(next)
		}
	}
}
