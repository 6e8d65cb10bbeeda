package mothership

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/store"
)

// Bounds on what children may make the mothership remember.
const (
	maxInstances    = 10000 // distinct (resource, instance) pairs kept in memory
	maxLabelLen     = 128
	maxReasonLen    = 512
	flushStoreLimit = 5 * time.Second
)

type instanceKey struct{ resource, instance string }

// instances holds what children report on GET /manifest. Recording is a map
// update under a mutex; the store is written by flushLoop, off the request
// path, coalescing every report that arrived while the previous write ran.
type instances struct {
	mu      sync.Mutex
	all     map[instanceKey]store.Instance
	dirty   map[instanceKey]struct{}
	flushed map[instanceKey]time.Time // when a report was last queued for the store
	wake    chan struct{}             // capacity 1: "something is dirty"
}

func newInstances() instances {
	return instances{
		all:     make(map[instanceKey]store.Instance),
		dirty:   make(map[instanceKey]struct{}),
		flushed: make(map[instanceKey]time.Time),
		wake:    make(chan struct{}, 1),
	}
}

// record notes the report headers of r, if any.
func (in *instances) record(r *http.Request, now func() time.Time) {
	res := r.Header.Get(wire.HeaderResource)
	if res == "" {
		return
	}
	inst := r.Header.Get(wire.HeaderInstance)
	if inst == "" {
		inst = res
	}
	if len(res) > maxLabelLen || len(inst) > maxLabelLen {
		return
	}
	k := instanceKey{res, inst}
	applied := headerVersion(r.Header.Get(wire.HeaderAppliedVersion))
	rejected := headerVersion(r.Header.Get(wire.HeaderRejectedVersion))
	reason := r.Header.Get(wire.HeaderRejectedReason)
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	t := now()

	in.mu.Lock()
	old, known := in.all[k]
	if !known && len(in.all) >= maxInstances {
		in.mu.Unlock()
		return
	}
	i := store.Instance{Resource: res, Instance: inst, AppliedVersion: applied,
		RejectedVersion: rejected, RejectReason: reason, LastSeen: t}
	if i.AppliedVersion == 0 {
		i.AppliedVersion = old.AppliedVersion // a report without it keeps what we knew
	}
	if i.RejectedVersion == 0 && i.RejectReason == "" {
		i.RejectedVersion, i.RejectReason = old.RejectedVersion, old.RejectReason
	}
	in.all[k] = i
	// The store gets a report when it says something new, and a fresh
	// last-seen time now and then: not at every long poll, which would put a
	// SQLite write behind every GET /manifest.
	changed := !known || i.AppliedVersion != old.AppliedVersion || i.RejectedVersion != old.RejectedVersion ||
		i.RejectReason != old.RejectReason
	if !changed && t.Sub(in.flushed[k]) < lastSeenRefresh {
		in.mu.Unlock()
		return
	}
	in.flushed[k] = t
	in.dirty[k] = struct{}{}
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// lastSeenRefresh is how stale a stored last-seen time may get (the
// in-memory one is always current).
const lastSeenRefresh = 30 * time.Second

// headerVersion parses a version header; absent or malformed is 0 (and, by
// skipping ParseInt for "", costs no allocation on the common path).
func headerVersion(s string) int64 {
	if s == "" {
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// take removes and returns every dirty report.
func (in *instances) take() []store.Instance {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]store.Instance, 0, len(in.dirty))
	for k := range in.dirty {
		out = append(out, in.all[k])
	}
	clear(in.dirty)
	return out
}

// snapshot returns every report known in memory.
func (in *instances) snapshot() map[instanceKey]store.Instance {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[instanceKey]store.Instance, len(in.all))
	for k, v := range in.all {
		out[k] = v
	}
	return out
}

// flushLoop writes dirty reports to the store until ctx ends, then once more.
func (in *instances) flushLoop(ctx context.Context, st store.Store, log *slog.Logger) {
	flush := func(ctx context.Context) {
		for _, i := range in.take() {
			if err := st.ReportInstance(ctx, i); err != nil {
				log.Warn("cannot record a child report", "resource", i.Resource, "instance", i.Instance, "err", err)
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushStoreLimit)
			flush(fctx)
			cancel()
			return
		case <-in.wake:
			fctx, cancel := context.WithTimeout(ctx, flushStoreLimit)
			flush(fctx)
			cancel()
		}
	}
}

// Status is the answer of GET /flash/status (SPEC §4.4).
type Status struct {
	Version   int64                     `json:"version"`
	Resources map[string]ResourceStatus `json:"resources"`
	Instances []InstanceStatus          `json:"instances"`
}

// ResourceStatus is one resource in Status.
type ResourceStatus struct {
	Type         string   `json:"type"`
	Status       string   `json:"status"`
	EndpointURL  string   `json:"endpoint_url"`
	EndpointURLs []string `json:"endpoint_urls"`
	ConfigHash   string   `json:"config_hash"`
	Error        string   `json:"error"`
	// Restarts counts the provider's restarts of the resource's processes
	// since this mothership started; LastEvent describes the latest one.
	Restarts  int    `json:"restarts"`
	LastEvent string `json:"last_event,omitempty"`
}

// EndpointEvent records something a provider did to a resource's endpoint on
// its own (a process exited, was restarted, was adopted), for the status.
func (m *Mothership) EndpointEvent(resource, kind, detail string, restarted bool) {
	m.events.note(resource, kind, detail, restarted, m.cfg.Now())
}

// endpointEvents keeps, per resource, the restarts and the latest event.
type endpointEvents struct {
	mu  sync.Mutex
	res map[string]resourceEvents
}

type resourceEvents struct {
	restarts int
	last     string
}

func (e *endpointEvents) note(resource, kind, detail string, restarted bool, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.res == nil {
		e.res = map[string]resourceEvents{}
	}
	r := e.res[resource]
	if restarted {
		r.restarts++
	}
	r.last = at.UTC().Format(time.RFC3339) + " " + kind
	if detail != "" {
		r.last += ": " + detail
	}
	e.res[resource] = r
}

func (e *endpointEvents) of(resource string) resourceEvents {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.res[resource]
}

// InstanceStatus is one child instance in Status.
type InstanceStatus struct {
	Resource        string    `json:"resource"`
	Instance        string    `json:"instance"`
	AppliedVersion  int64     `json:"applied_version"`
	RejectedVersion int64     `json:"rejected_version"`
	RejectReason    string    `json:"reject_reason"`
	LastSeen        time.Time `json:"last_seen"`
}

// Status returns the published version, each resource's state and each known
// child instance. Instances come from memory, completed by the store's records
// (those of earlier motherships) when the store answers within ctx.
func (m *Mothership) Status(ctx context.Context) Status {
	mf, version := m.Current()
	st := Status{Version: version, Resources: map[string]ResourceStatus{}, Instances: []InstanceStatus{}}
	if mf != nil {
		for name, r := range mf.Resources {
			urls := r.URLs()
			if urls == nil {
				urls = []string{}
			}
			ev := m.events.of(name)
			st.Resources[name] = ResourceStatus{Type: r.Type, Status: string(r.Status), EndpointURL: firstOf(urls),
				EndpointURLs: urls, ConfigHash: r.ConfigHash, Error: r.Error, Restarts: ev.restarts, LastEvent: ev.last}
		}
	}
	all := m.inst.snapshot()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if stored, err := m.store.Instances(sctx); err != nil {
		m.log.Debug("status: child reports from the store unavailable", "err", err)
	} else {
		for _, i := range stored {
			k := instanceKey{i.Resource, i.Instance}
			if cur, ok := all[k]; !ok || cur.LastSeen.Before(i.LastSeen) {
				all[k] = i
			}
		}
	}
	since := m.cfg.Now().Add(-instanceRecent)
	for _, i := range all {
		if i.LastSeen.Before(since) {
			continue // gone: a live child reports at every long poll
		}
		st.Instances = append(st.Instances, InstanceStatus{Resource: i.Resource, Instance: i.Instance,
			AppliedVersion: i.AppliedVersion, RejectedVersion: i.RejectedVersion, RejectReason: i.RejectReason,
			LastSeen: i.LastSeen.UTC()})
	}
	slices.SortFunc(st.Instances, func(a, b InstanceStatus) int {
		return cmp.Or(cmp.Compare(a.Resource, b.Resource), cmp.Compare(a.Instance, b.Instance))
	})
	return st
}

func (m *Mothership) serveStatus(w http.ResponseWriter, r *http.Request) {
	wire.WriteJSON(w, http.StatusOK, m.Status(r.Context()))
}
