package storetest

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/flash-go/flash/store"
)

// MemStore is an in-memory store.Store for tests that need no files (for
// example inside testing/synctest bubbles) or that inject failures. It keeps
// every version, passes Run, and does not implement store.Watcher. Every
// package's tests use this one fake rather than their own.
type MemStore struct {
	mu        sync.Mutex
	closed    bool
	versions  []store.Published
	deps      map[string]store.Deployment
	endpoints map[string]store.Endpoint
	insts     map[[2]string]store.Instance
	desired   []store.Desired
	latestErr error
}

var _ store.Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{
		deps:      map[string]store.Deployment{},
		endpoints: map[string]store.Endpoint{},
		insts:     map[[2]string]store.Instance{},
	}
}

// FailLatest makes Latest return err until it is called again with nil.
func (s *MemStore) FailLatest(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latestErr = err
}

// lock takes the lock and reports ErrClosed after Close; on nil the caller unlocks.
func (s *MemStore) lock() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return store.ErrClosed
	}
	return nil
}

func clonePublished(p store.Published) store.Published {
	p.Manifest = slices.Clone(p.Manifest)
	return p
}

// Latest returns the newest version.
func (s *MemStore) Latest(ctx context.Context) (store.Published, error) {
	if err := s.lock(); err != nil {
		return store.Published{}, err
	}
	defer s.mu.Unlock()
	if s.latestErr != nil {
		return store.Published{}, s.latestErr
	}
	if len(s.versions) == 0 {
		return store.Published{}, store.ErrNotFound
	}
	return clonePublished(s.versions[len(s.versions)-1]), nil
}

// Get returns one version.
func (s *MemStore) Get(ctx context.Context, v int64) (store.Published, error) {
	if err := s.lock(); err != nil {
		return store.Published{}, err
	}
	defer s.mu.Unlock()
	if v < 1 || v > int64(len(s.versions)) {
		return store.Published{}, store.ErrNotFound
	}
	return clonePublished(s.versions[v-1]), nil
}

// History returns up to limit versions, newest first.
func (s *MemStore) History(ctx context.Context, limit int) ([]store.Published, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]store.Published, 0, min(max(limit, 0), len(s.versions)))
	for i := len(s.versions) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, clonePublished(s.versions[i]))
	}
	return out, nil
}

// Publish stores mf as version prev+1 when the latest version is prev.
func (s *MemStore) Publish(ctx context.Context, prev int64, mf []byte) (store.Published, error) {
	if err := s.lock(); err != nil {
		return store.Published{}, err
	}
	defer s.mu.Unlock()
	if int64(len(s.versions)) != prev {
		return store.Published{}, store.ErrConflict
	}
	p := store.Published{Version: prev + 1, Manifest: slices.Clone(mf), PublishedAt: time.Now()}
	s.versions = append(s.versions, p)
	return clonePublished(p), nil
}

// Desired returns the latest recorded desired state.
func (s *MemStore) Desired(ctx context.Context) (store.Desired, error) {
	if err := s.lock(); err != nil {
		return store.Desired{}, err
	}
	defer s.mu.Unlock()
	if len(s.desired) == 0 {
		return store.Desired{}, store.ErrNotFound
	}
	d := s.desired[len(s.desired)-1]
	d.Manifest = slices.Clone(d.Manifest)
	return d, nil
}

// PutDesired records the desired state as version prev+1 when the latest is prev.
func (s *MemStore) PutDesired(ctx context.Context, prev int64, mf []byte, artifact string) (store.Desired, error) {
	if err := s.lock(); err != nil {
		return store.Desired{}, err
	}
	defer s.mu.Unlock()
	if int64(len(s.desired)) != prev {
		return store.Desired{}, store.ErrConflict
	}
	d := store.Desired{Version: prev + 1, Manifest: slices.Clone(mf), Artifact: artifact, RecordedAt: time.Now()}
	s.desired = append(s.desired, d)
	d.Manifest = slices.Clone(mf)
	return d, nil
}

// PutDeployment inserts or replaces the record of d.Resource.
func (s *MemStore) PutDeployment(ctx context.Context, d store.Deployment) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	d.EndpointURLs = slices.Clone(d.EndpointURLs)
	s.deps[d.Resource] = d
	return nil
}

// Deployments returns every record, sorted by resource.
func (s *MemStore) Deployments(ctx context.Context) ([]store.Deployment, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]store.Deployment, 0, len(s.deps))
	for _, r := range slices.Sorted(maps.Keys(s.deps)) {
		d := s.deps[r]
		d.EndpointURLs = slices.Clone(d.EndpointURLs)
		out = append(out, d)
	}
	return out, nil
}

// DeleteDeployment removes a record.
func (s *MemStore) DeleteDeployment(ctx context.Context, resource string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.deps, resource)
	return nil
}

// PutEndpoint inserts or replaces the endpoint with e.ID.
func (s *MemStore) PutEndpoint(ctx context.Context, e store.Endpoint) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	e.Meta = maps.Clone(e.Meta)
	s.endpoints[e.ID] = e
	return nil
}

// Endpoints returns the endpoints of app, sorted by ID.
func (s *MemStore) Endpoints(ctx context.Context, app string) ([]store.Endpoint, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.Endpoint
	for _, id := range slices.Sorted(maps.Keys(s.endpoints)) {
		if e := s.endpoints[id]; e.App == app {
			e.Meta = maps.Clone(e.Meta)
			out = append(out, e)
		}
	}
	return out, nil
}

// DeleteEndpoint removes one endpoint.
func (s *MemStore) DeleteEndpoint(ctx context.Context, id string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.endpoints, id)
	return nil
}

// ReportInstances inserts or replaces the report of each (Resource, Instance).
func (s *MemStore) ReportInstances(ctx context.Context, is []store.Instance) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, i := range is {
		s.insts[[2]string{i.Resource, i.Instance}] = i
	}
	return nil
}

// Instances returns every report, sorted by resource then instance.
func (s *MemStore) Instances(ctx context.Context) ([]store.Instance, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.insts))
	slices.SortFunc(out, func(a, b store.Instance) int {
		return cmp.Or(cmp.Compare(a.Resource, b.Resource), cmp.Compare(a.Instance, b.Instance))
	})
	return out, nil
}

// Close makes every later call return ErrClosed.
func (s *MemStore) Close() error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
