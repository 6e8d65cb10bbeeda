// Package etcd is a store.Store kept in an etcd cluster, so that several
// motherships share one state (SPEC §4.6, §7). It uses etcd's official Go client.
//
// Open it with a FLASH_STATE_URL such as
//
//	etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/flash/myapp
//	etcd://flash:secret@etcd-a:2379,etcd-b:2379/myapp?ca=/etc/flash/ca.pem&cert=/etc/flash/c.pem&key=/etc/flash/c.key
//
// (see ParseURL for every option and the FLASH_ETCD_* variables).
//
// All of an app's keys live under its prefix P, in a namespace no other
// prefix can reach (':' is not allowed in prefixes):
//
//	P/:version                   the latest manifest; its etcd key version is its version
//	P/:manifests/<20-digit v>    every published manifest; the newest historyKept are kept
//	P/:desired                   the desired state (its etcd key version is Desired.Version)
//	P/:deployments/<resource>    deployment records
//	P/:endpoints/<id>            endpoint records
//	P/:instances/<res>/<inst>    instance reports, both parts path-escaped
//	P/:leader/<lease>            election candidates (concurrency.Election)
//
// Publishing is one transaction that compares the version key's etcd version
// with prev, so two writers can never both publish a version. Watch follows
// the version key with an etcd watch and re-lists whenever that watch ends
// (compaction, lost etcd leader, reconnection), sending only versions newer
// than the last sent. The store is also a store.Leaser: see Campaign.
package etcd

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/flash-go/flash/store"
)

const (
	// historyKept is how many published versions stay readable.
	historyKept = 2 * store.MinHistory
	minLeaseTTL = 2 * time.Second
	// maxRequest bounds what the client sends in one request. A publish
	// carries its manifest twice (the version key and its own), so a cluster
	// takes manifests up to half its --max-request-bytes: etcd's default of
	// 1.5 MiB allows about 750 KiB; internal/etcdcluster's members allow
	// maxRequest, for manifests up to 16 MiB.
	maxRequest = 32 << 20
)

// Store is a store.Store, store.Watcher and store.Leaser on etcd. A Store
// returned by Leadership.Store shares the connection and fences its writes.
type Store struct {
	*conn
	fence *fence // nil on the plain store
}

// conn is what a store and its fenced views share.
type conn struct {
	cli    *clientv3.Client
	cfg    Config
	ctx    context.Context // ends at Close; watches and sessions hang off it
	cancel context.CancelFunc
	closed atomic.Bool
	hub    hub            // shared by every Watch
	wg     sync.WaitGroup // leadership goroutines
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
	_ store.Leaser  = (*Store)(nil)
)

// Open connects to the cluster a FLASH_STATE_URL names; see ParseURL. What
// the URL leaves out is taken from the FLASH_ETCD_* environment variables.
func Open(ctx context.Context, stateURL string) (*Store, error) {
	return open(ctx, stateURL, nil, os.Getenv)
}

// OpenURL is Open as a store.Opener: o.Logger receives the store's
// background errors (its watch failing and starting again), o.Getenv reads
// the FLASH_ETCD_* settings.
func OpenURL(ctx context.Context, stateURL string, o store.Options) (store.Store, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	s, err := open(ctx, stateURL, o.Logger, getenv)
	if err != nil {
		return nil, err // not a nil *Store in a non-nil interface
	}
	return s, nil
}

func open(ctx context.Context, stateURL string, log *slog.Logger, getenv func(string) string) (*Store, error) {
	cfg, err := ParseURL(stateURL)
	if err != nil {
		return nil, err
	}
	if err := cfg.applyEnv(getenv); err != nil {
		return nil, err
	}
	cfg.Logger = log
	return OpenConfig(ctx, cfg)
}

// OpenConfig connects to the cluster and checks that it answers within
// cfg.DialTimeout (or ctx's deadline, whichever comes first).
func OpenConfig(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("store/etcd: no endpoints")
	}
	if cfg.Prefix != "" {
		rest, ok := strings.CutPrefix(cfg.Prefix, "/")
		p, err := cleanPrefix(rest)
		if !ok || err != nil {
			return nil, fmt.Errorf("store/etcd: prefix %q: want \"\" or /seg[/seg…] (%v)", cfg.Prefix, err)
		}
		cfg.Prefix = p
	}
	cfg.DialTimeout = cmp.Or(cfg.DialTimeout, 5*time.Second)
	cfg.OpTimeout = cmp.Or(cfg.OpTimeout, 10*time.Second)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 5*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeaseTTL < minLeaseTTL {
		return nil, fmt.Errorf("store/etcd: lease TTL %v is below %v", cfg.LeaseTTL, minLeaseTTL)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  cfg.TLS,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		MaxCallSendMsgSize:   maxRequest, // let the cluster's --max-request-bytes decide
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("store/etcd: connecting to %v: %w", cfg.Endpoints, err)
	}
	// clientv3.New does not wait for a connection; one read proves the cluster answers.
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, cfg.Prefix+"/:version"); err != nil {
		cli.Close()
		return nil, fmt.Errorf("store/etcd: cluster %v does not answer: %w", cfg.Endpoints, err)
	}
	sctx, stop := context.WithCancel(context.Background())
	return &Store{conn: &conn{cli: cli, cfg: cfg, ctx: sctx, cancel: stop}}, nil
}

// Close ends every watch and leadership and disconnects; the leaderships'
// leases are left to expire. Close on a fenced view does nothing.
func (s *Store) Close() error {
	if s.fence != nil {
		return nil
	}
	if s.closed.Swap(true) {
		return store.ErrClosed
	}
	s.cancel()
	s.hub.closeAll()
	s.wg.Wait()
	return s.cli.Close()
}

// key is the full etcd key of a name inside the app's namespace.
func (c *conn) key(name string) string { return c.cfg.Prefix + "/:" + name }

// call starts a store call: it checks the store is open and bounds ctx.
func (c *conn) call(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if c.closed.Load() {
		return nil, nil, store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout) // an earlier deadline of ctx still holds
	return ctx, cancel, nil
}

// fail wraps an etcd error, turning one caused by Close into ErrClosed.
func (c *conn) fail(op string, err error) error {
	if c.closed.Load() {
		return fmt.Errorf("store/etcd: %s: %w", op, store.ErrClosed)
	}
	return fmt.Errorf("store/etcd: %s: %w", op, err)
}

// get reads one key or a prefix; opts as clientv3.Get.
func (s *Store) get(ctx context.Context, op, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, key, opts...)
	if err != nil {
		return nil, s.fail(op, err)
	}
	return resp, nil
}

// commit applies ops if every cmp holds and, on a fenced store, the
// leadership still does. A failed cmp gives ErrConflict; lost leadership ErrFenced.
func (s *Store) commit(ctx context.Context, op string, cmps []clientv3.Cmp, ops ...clientv3.Op) error {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	var orElse []clientv3.Op
	if s.fence != nil {
		cmps = append(slices.Clone(cmps), s.fence.cmp())
		orElse = append(orElse, clientv3.OpGet(s.fence.key))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
	switch {
	case err != nil:
		return s.fail(op, err)
	case resp.Succeeded:
		return nil
	case s.fence != nil && !s.fence.holds(resp.Responses[0].GetResponseRange().Kvs):
		return fmt.Errorf("store/etcd: %s: %w", op, store.ErrFenced)
	default:
		return fmt.Errorf("store/etcd: %s: %w", op, store.ErrConflict)
	}
}

// ---- manifests ----

// header leads a stored manifest: a JSON line, then the manifest's bytes as
// they are (not base64, so a manifest costs its own size in etcd's request limit).
type header struct {
	At       time.Time `json:"at"`
	Artifact string    `json:"artifact,omitempty"`
}

func encodeManifest(h header, manifest []byte) string {
	line, _ := json.Marshal(h) // a present-day time and a string: cannot fail
	return string(line) + "\n" + string(manifest)
}

func decodeManifest(value []byte) (header, []byte, error) {
	line, manifest, ok := bytes.Cut(value, []byte("\n"))
	var h header
	if !ok {
		return h, nil, errors.New("no header line")
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, nil, err
	}
	return h, manifest, nil
}

func (s *Store) manifestKey(v int64) string {
	return s.key(fmt.Sprintf("manifests/%020d", v))
}

func (s *Store) decodePublished(op string, value []byte, v int64) (store.Published, error) {
	h, manifest, err := decodeManifest(value)
	if err != nil {
		return store.Published{}, fmt.Errorf("store/etcd: %s: version %d is corrupt: %w", op, v, err)
	}
	return store.Published{Version: v, Manifest: manifest, PublishedAt: h.At}, nil
}

// versionOf reads the version from a manifests/ key.
func (s *Store) versionOf(key []byte) (int64, error) {
	digits := bytes.TrimPrefix(key, []byte(s.key("manifests/")))
	v, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("store/etcd: unexpected key %q", key)
	}
	return v, nil
}

// Latest implements store.Store with one read: the version key holds the
// newest manifest too.
func (s *Store) Latest(ctx context.Context) (store.Published, error) {
	resp, err := s.get(ctx, "latest", s.key("version"))
	if err != nil {
		return store.Published{}, err
	}
	if len(resp.Kvs) == 0 {
		return store.Published{}, fmt.Errorf("store/etcd: latest: %w", store.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return s.decodePublished("latest", kv.Value, kv.Version)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, version int64) (store.Published, error) {
	if version < 1 {
		return store.Published{}, fmt.Errorf("store/etcd: get %d: %w", version, store.ErrNotFound)
	}
	resp, err := s.get(ctx, "get", s.manifestKey(version))
	if err != nil {
		return store.Published{}, err
	}
	if len(resp.Kvs) == 0 {
		return store.Published{}, fmt.Errorf("store/etcd: get %d: %w", version, store.ErrNotFound)
	}
	return s.decodePublished("get", resp.Kvs[0].Value, version)
}

// History implements store.Store. It reads the newest version, then the
// range of keys below it in etcd's native ascending order (a descending
// sort would make etcd read every kept version).
func (s *Store) History(ctx context.Context, limit int) ([]store.Published, error) {
	latest, err := s.Latest(ctx)
	if errors.Is(err, store.ErrNotFound) || (err == nil && limit <= 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	from := max(1, latest.Version-int64(limit)+1)
	resp, err := s.get(ctx, "history", s.manifestKey(from), clientv3.WithRange(s.manifestKey(latest.Version)))
	if err != nil {
		return nil, err
	}
	out := make([]store.Published, 0, len(resp.Kvs)+1)
	out = append(out, latest)
	for _, kv := range slices.Backward(resp.Kvs) {
		v, err := s.versionOf(kv.Key)
		if err != nil {
			return nil, err
		}
		p, err := s.decodePublished("history", kv.Value, v)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Publish implements store.Store as one transaction: if the version key's
// etcd version (the number of puts since it was created) is prev, write the
// manifest to the version key and to its own key, and drop the version that
// falls out of history.
func (s *Store) Publish(ctx context.Context, prev int64, manifest []byte) (store.Published, error) {
	if prev < 0 {
		return store.Published{}, fmt.Errorf("store/etcd: publish after %d: %w", prev, store.ErrConflict)
	}
	p := store.Published{Version: prev + 1, Manifest: bytes.Clone(manifest), PublishedAt: time.Now().UTC()}
	value := encodeManifest(header{At: p.PublishedAt}, p.Manifest)
	versionKey := s.key("version")
	ops := []clientv3.Op{
		clientv3.OpPut(versionKey, value),
		clientv3.OpPut(s.manifestKey(p.Version), value),
	}
	if old := p.Version - historyKept; old > 0 {
		ops = append(ops, clientv3.OpDelete(s.manifestKey(old)))
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Version(versionKey), "=", prev)}
	if err := s.commit(ctx, fmt.Sprintf("publish version %d", p.Version), cmps, ops...); err != nil {
		return store.Published{}, err
	}
	s.hub.advance(p.Version)
	return p, nil
}

// ---- desired state ----

// Desired returns the latest recorded desired state, or ErrNotFound when none was recorded.
func (s *Store) Desired(ctx context.Context) (store.Desired, error) {
	resp, err := s.get(ctx, "desired", s.key("desired"))
	if err != nil {
		return store.Desired{}, err
	}
	if len(resp.Kvs) == 0 {
		return store.Desired{}, fmt.Errorf("store/etcd: desired: %w", store.ErrNotFound)
	}
	kv := resp.Kvs[0]
	h, manifest, err := decodeManifest(kv.Value)
	if err != nil {
		return store.Desired{}, fmt.Errorf("store/etcd: desired state is corrupt: %w", err)
	}
	// The key's etcd version (puts since it was created) is the desired version.
	return store.Desired{Version: kv.Version, Manifest: manifest, Artifact: h.Artifact, RecordedAt: h.At}, nil
}

// PutDesired records the desired state as version prev+1 if and only if the
// latest recorded version is prev (0 = none yet); otherwise it returns
// ErrConflict and changes nothing.
func (s *Store) PutDesired(ctx context.Context, prev int64, manifest []byte, artifact string) (store.Desired, error) {
	if prev < 0 {
		return store.Desired{}, fmt.Errorf("store/etcd: put desired after %d: %w", prev, store.ErrConflict)
	}
	d := store.Desired{Version: prev + 1, Manifest: bytes.Clone(manifest), Artifact: artifact, RecordedAt: time.Now().UTC()}
	value := encodeManifest(header{At: d.RecordedAt, Artifact: artifact}, d.Manifest)
	key := s.key("desired")
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Version(key), "=", prev)}
	if err := s.commit(ctx, fmt.Sprintf("put desired version %d", d.Version), cmps, clientv3.OpPut(key, value)); err != nil {
		return store.Desired{}, err
	}
	return d, nil
}

// ---- records ----

// put stores v as JSON under key.
func (s *Store) put(ctx context.Context, op, key string, v any) error {
	value, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store/etcd: %s: %w", op, err)
	}
	return s.commit(ctx, op, nil, clientv3.OpPut(key, string(value)))
}

// list decodes every record under a key prefix, in key order.
func list[T any](ctx context.Context, s *Store, op, prefix string) ([]T, error) {
	resp, err := s.get(ctx, op, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("store/etcd: %s: record %q is corrupt: %w", op, kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// PutDeployment implements store.Store.
func (s *Store) PutDeployment(ctx context.Context, d store.Deployment) error {
	return s.put(ctx, "put deployment "+d.Resource, s.key("deployments/"+d.Resource), d)
}

// Deployments implements store.Store.
func (s *Store) Deployments(ctx context.Context) ([]store.Deployment, error) {
	return list[store.Deployment](ctx, s, "deployments", s.key("deployments/"))
}

// DeleteDeployment implements store.Store.
func (s *Store) DeleteDeployment(ctx context.Context, resource string) error {
	return s.commit(ctx, "delete deployment "+resource, nil, clientv3.OpDelete(s.key("deployments/"+resource)))
}

// PutEndpoint implements store.Store.
func (s *Store) PutEndpoint(ctx context.Context, e store.Endpoint) error {
	return s.put(ctx, "put endpoint "+e.ID, s.key("endpoints/"+e.ID), e)
}

// Endpoints implements store.Store. Endpoints of every app share one prefix
// (IDs are provider-unique), so this lists them all and keeps app's.
func (s *Store) Endpoints(ctx context.Context, app string) ([]store.Endpoint, error) {
	all, err := list[store.Endpoint](ctx, s, "endpoints", s.key("endpoints/"))
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(e store.Endpoint) bool { return e.App != app }), nil
}

// DeleteEndpoint implements store.Store.
func (s *Store) DeleteEndpoint(ctx context.Context, id string) error {
	return s.commit(ctx, "delete endpoint "+id, nil, clientv3.OpDelete(s.key("endpoints/"+id)))
}

// ReportInstances implements store.Store. Reports go in transactions of at most maxTxnPuts puts, under etcd's
// default limit of 128 operations per transaction.
func (s *Store) ReportInstances(ctx context.Context, is []store.Instance) error {
	// etcd refuses a transaction that puts a key twice: the last report wins.
	last := make(map[string]int, len(is))
	keys := make([]string, len(is))
	for n, i := range is {
		keys[n] = s.key("instances/" + url.PathEscape(i.Resource) + "/" + url.PathEscape(i.Instance))
		last[keys[n]] = n
	}
	ops := make([]clientv3.Op, 0, min(len(last), maxTxnPuts))
	for n, i := range is {
		if last[keys[n]] != n {
			continue
		}
		value, err := json.Marshal(i)
		if err != nil {
			return fmt.Errorf("store/etcd: report instance %s/%s: %w", i.Resource, i.Instance, err)
		}
		ops = append(ops, clientv3.OpPut(keys[n], string(value)))
		if len(ops) == maxTxnPuts {
			if err := s.commit(ctx, fmt.Sprintf("report %d instances", len(ops)), nil, ops...); err != nil {
				return err
			}
			ops = ops[:0]
		}
	}
	if len(ops) == 0 {
		return nil
	}
	return s.commit(ctx, fmt.Sprintf("report %d instances", len(ops)), nil, ops...)
}

// maxTxnPuts bounds the puts of one ReportInstances transaction (one more
// operation is the leader's fence check, and etcd allows 128 by default).
const maxTxnPuts = 100

// Instances implements store.Store.
func (s *Store) Instances(ctx context.Context) ([]store.Instance, error) {
	all, err := list[store.Instance](ctx, s, "instances", s.key("instances/"))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b store.Instance) int {
		return cmp.Or(cmp.Compare(a.Resource, b.Resource), cmp.Compare(a.Instance, b.Instance))
	})
	return all, nil
}
