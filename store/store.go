// Package store defines where a mothership keeps its state: published
// manifest versions, the desired state deploys record, per-resource deployment records, the endpoints a
// provider started, and what each child instance last reported.
//
// Backends live in subpackages (store/sqlite, store/etcd) and must
// pass the conformance suite in store/storetest.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every backend returns (wrapped or bare) so callers can branch with errors.Is.
var (
	// ErrNotFound means the asked-for record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means a compare-and-swap lost: another writer published first.
	ErrConflict = errors.New("store: version conflict")
	// ErrClosed means the store was used after Close.
	ErrClosed = errors.New("store: closed")
)

// MinHistory is how many published versions every backend keeps at least.
const MinHistory = 50

// Published is one published manifest version. Versions start at 1 and only grow.
type Published struct {
	Version     int64
	Manifest    []byte // the manifest JSON exactly as published
	PublishedAt time.Time
}

// Deployment is the mothership's record of one resource's last reconciliation outcome.
type Deployment struct {
	Resource     string
	ConfigHash   string
	Status       string // pending | deployed | updated | failed | removing
	EndpointURLs []string
	Error        string
	UpdatedAt    time.Time
}

// Endpoint is a provider's record of something it created, so that a restarted
// mothership can adopt it instead of starting a duplicate, and undeploy can find it.
type Endpoint struct {
	ID         string // provider-unique (local: resource/replica index; runpod: endpoint id)
	Provider   string // "local", "runpod", …
	App        string // the app that owns it; providers never touch another app's endpoints
	Resource   string
	ConfigHash string
	URL        string
	PID        int       // local provider only
	StartedAt  time.Time // when the process or endpoint was started
	Meta       map[string]string
}

// Desired is a recorded desired state (SPEC §4.3): what the last deploy asked for.
type Desired struct {
	Version    int64  // 1, 2, …: grows by one per recorded deploy
	Manifest   []byte // the desired manifest JSON
	Artifact   string // digest ("sha256:<hex>") of the binary the local provider runs; "" = the mothership's own
	RecordedAt time.Time
}

// Instance is what one child instance last reported to the mothership.
type Instance struct {
	Resource        string
	Instance        string
	AppliedVersion  int64
	RejectedVersion int64  // 0 when none
	RejectReason    string // why RejectedVersion was refused
	LastSeen        time.Time
}

// Store is the state a mothership keeps. Implementations are safe for concurrent use.
type Store interface {
	// Latest returns the newest published version, or ErrNotFound when none.
	Latest(ctx context.Context) (Published, error)
	// Get returns one version, or ErrNotFound when it is unknown or pruned.
	Get(ctx context.Context, version int64) (Published, error)
	// History returns up to limit versions, newest first.
	History(ctx context.Context, limit int) ([]Published, error)
	// Publish stores manifest as version prev+1 if and only if the latest version
	// is prev (0 = none yet); otherwise it returns ErrConflict and changes nothing.
	Publish(ctx context.Context, prev int64, manifest []byte) (Published, error)

	// Desired returns the latest recorded desired state, or ErrNotFound when none was recorded.
	Desired(ctx context.Context) (Desired, error)
	// PutDesired records the desired state as version prev+1 if and only if the latest recorded
	// version is prev (0 = none yet); otherwise it returns ErrConflict and changes nothing.
	PutDesired(ctx context.Context, prev int64, manifest []byte, artifact string) (Desired, error)

	// PutDeployment inserts or replaces the record of d.Resource.
	PutDeployment(ctx context.Context, d Deployment) error
	// Deployments returns every record, sorted by resource.
	Deployments(ctx context.Context) ([]Deployment, error)
	// DeleteDeployment removes a record; deleting a missing one is not an error.
	DeleteDeployment(ctx context.Context, resource string) error

	// PutEndpoint inserts or replaces the endpoint with e.ID.
	PutEndpoint(ctx context.Context, e Endpoint) error
	// Endpoints returns the endpoints of app, sorted by ID.
	Endpoints(ctx context.Context, app string) ([]Endpoint, error)
	// DeleteEndpoint removes one; deleting a missing one is not an error.
	DeleteEndpoint(ctx context.Context, id string) error

	// ReportInstances inserts or replaces the report of each (Resource,
	// Instance) in is. A store writes them in as few atomic writes as its
	// limits allow; after an error, some may have been written.
	ReportInstances(ctx context.Context, is []Instance) error
	// Instances returns every report, sorted by resource then instance.
	Instances(ctx context.Context) ([]Instance, error)

	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// Watcher is implemented by stores that can notify of new published versions.
type Watcher interface {
	// Watch sends the latest version each time it grows beyond after, until ctx
	// ends, then closes the channel. Slow readers see only the newest version
	// (intermediate ones may be skipped), never a stale one.
	Watch(ctx context.Context, after int64) <-chan int64
}
