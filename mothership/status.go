package mothership

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/scaler"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/manifest"
	"github.com/flash-go/flash/provider"
	"github.com/flash-go/flash/store"
)

// Bounds on what children may make the mothership remember.
const (
	maxLabelLen     = 128
	maxReasonLen    = 512
	flushStoreLimit = 5 * time.Second
	// A child asks for the manifest again as soon as a long poll is
	// answered: an instance unheard for longer than the wait of its last
	// long poll (defaultPollWait when unknown) plus silentMargin has stopped,
	// and cannot answer. It stays listed as gone for instanceRecent more,
	// then expires.
	defaultPollWait = 60 * time.Second // the child's default (child.DefaultPollWait)
	silentMargin    = 15 * time.Second
	instanceRecent  = 2 * time.Minute
)

type instanceKey struct{ resource, instance string }

// instances holds what children report on GET /manifest. Recording is a map
// update under a mutex; the store is written by flushLoop, off the request
// path, coalescing every report that arrived while the previous write ran.
// At most max instances are kept: those that stopped reporting expire, a
// live one is never dropped (a new one past the bound is refused, loudly).
type instances struct {
	mu     sync.Mutex
	max    int
	log    *slog.Logger
	all    map[instanceKey]*instanceState
	dirty  map[instanceKey]struct{} // reports the store has not had yet
	warned time.Time                // when a full table was last logged
	wake   chan struct{}            // capacity 1: "something is dirty"
}

// instanceState is what is known of one instance: one map entry, so that
// a report that says nothing new costs one lookup.
type instanceState struct {
	report  store.Instance
	wait    time.Duration // the wait of its last long poll
	gone    bool          // its endpoint was undeployed: it cannot answer
	flushed time.Time     // when a report was last queued for the store
}

func newInstances(max int, log *slog.Logger) instances {
	return instances{
		max:   max,
		log:   log,
		all:   make(map[instanceKey]*instanceState),
		dirty: make(map[instanceKey]struct{}),
		wake:  make(chan struct{}, 1),
	}
}

// record notes the report headers of r, if any; wait is the long-poll wait
// the request asked for (0: none).
func (in *instances) record(r *http.Request, now func() time.Time, wait time.Duration) {
	h := r.Header
	res := wire.HeaderGet(h, wire.HeaderResource)
	if res == "" {
		return
	}
	inst := wire.HeaderGet(h, wire.HeaderInstance)
	if inst == "" {
		inst = res
	}
	if len(res) > maxLabelLen || len(inst) > maxLabelLen {
		return
	}
	k := instanceKey{res, inst}
	applied := headerVersion(wire.HeaderGet(h, wire.HeaderAppliedVersion))
	rejected := headerVersion(wire.HeaderGet(h, wire.HeaderRejectedVersion))
	reason := wire.HeaderGet(h, wire.HeaderRejectedReason)
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	t := now()

	in.mu.Lock()
	st := in.all[k]
	if st == nil {
		if len(in.all) >= in.max {
			in.expireLocked(t)
		}
		if len(in.all) >= in.max {
			if t.Sub(in.warned) > time.Minute {
				in.warned = t
				in.log.Warn("child reports refused: too many live instances (Config.MaxInstances)",
					"max", in.max, "resource", res, "instance", inst)
			}
			in.mu.Unlock()
			return
		}
		st = &instanceState{report: store.Instance{Resource: res, Instance: inst}}
		in.all[k] = st
	}
	old := st.report
	st.gone = false // it reports: it answers
	st.wait = wait
	i := store.Instance{Resource: old.Resource, Instance: old.Instance, AppliedVersion: applied,
		RejectedVersion: rejected, RejectReason: reason, LastSeen: t}
	if i.AppliedVersion == 0 {
		i.AppliedVersion = old.AppliedVersion // a report without it keeps what we knew
	}
	if i.RejectedVersion == 0 && i.RejectReason == "" {
		i.RejectedVersion, i.RejectReason = old.RejectedVersion, old.RejectReason
	}
	st.report = i
	// The store gets a report when it says something new, and a fresh
	// last-seen time now and then: not at every long poll, which would put a
	// SQLite write behind every GET /manifest.
	changed := old.LastSeen.IsZero() || i.AppliedVersion != old.AppliedVersion ||
		i.RejectedVersion != old.RejectedVersion || i.RejectReason != old.RejectReason
	if !changed && t.Sub(st.flushed) < lastSeenRefresh {
		in.mu.Unlock()
		return
	}
	st.flushed = t
	in.dirty[k] = struct{}{}
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// silentAfter is how long an instance may stay unheard before it counts as gone.
func (st *instanceState) silentAfter() time.Duration {
	w := st.wait
	if w <= 0 {
		w = defaultPollWait
	}
	return w + silentMargin
}

// view says whether the instance is gone at now, and whether it has been
// for so long that it expired.
func (st *instanceState) view(now time.Time) (gone, expired bool) {
	unheard, after := now.Sub(st.report.LastSeen), st.silentAfter()
	return st.gone || unheard > after, unheard > after+instanceRecent
}

// expireLocked drops the instances that expired at now.
func (in *instances) expireLocked(now time.Time) {
	for k, st := range in.all {
		if _, expired := st.view(now); expired {
			in.dropLocked(k)
		}
	}
}

func (in *instances) dropLocked(k instanceKey) {
	delete(in.all, k)
	delete(in.dirty, k)
}

// endpointGone marks the instances of an undeployed endpoint as gone: their
// id is the endpoint's id, or starts with it and a slash (provider/local's
// "<deployment id>/<replica>").
func (in *instances) endpointGone(e provider.Endpoint) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k, st := range in.all {
		if k.resource == e.Resource && (k.instance == e.ID || strings.HasPrefix(k.instance, e.ID+"/")) {
			st.gone = true
		}
	}
}

// instanceGone marks one instance of resource as gone (a replica the
// autoscaler stopped): waitApplied no longer waits for it.
func (in *instances) instanceGone(resource, instance string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if st := in.all[instanceKey{resource, instance}]; st != nil {
		st.gone = true
	}
}

// forget drops every instance of a removed resource.
func (in *instances) forget(resource string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k := range in.all {
		if k.resource == resource {
			in.dropLocked(k)
		}
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
		if st := in.all[k]; st != nil {
			out = append(out, st.report)
		}
	}
	clear(in.dirty)
	return out
}

// instanceView is a report and where its instance stands.
type instanceView struct {
	report        store.Instance
	gone, expired bool
}

// snapshot returns every report known in memory as it stands at now.
func (in *instances) snapshot(now time.Time) map[instanceKey]instanceView {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[instanceKey]instanceView, len(in.all))
	for k, st := range in.all {
		gone, expired := st.view(now)
		out[k] = instanceView{st.report, gone, expired}
	}
	return out
}

// behind lists the instances that can still answer (not gone) and have
// neither applied nor rejected version v or a newer one.
func (in *instances) behind(v int64, now time.Time) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for k, st := range in.all {
		i := st.report
		if gone, _ := st.view(now); gone || i.AppliedVersion >= v || i.RejectedVersion >= v {
			continue
		}
		out = append(out, k.resource+"/"+k.instance)
	}
	return out
}

// flushLoop writes dirty reports to the store until ctx ends, then once
// more; it also expires instances that stopped reporting.
func (in *instances) flushLoop(ctx context.Context, st store.Store, now func() time.Time) {
	log := in.log
	expire := time.NewTicker(instanceRecent)
	defer expire.Stop()
	flush := func(ctx context.Context) {
		// One write for all: a report per child and fsync, 100 children
		// answering a publish held the store for 30 ms and delayed the next.
		if is := in.take(); len(is) > 0 {
			if err := st.ReportInstances(ctx, is); err != nil {
				log.Warn("cannot record child reports", "reports", len(is), "err", err)
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
		case <-expire.C:
			in.mu.Lock()
			in.expireLocked(now())
			in.mu.Unlock()
		}
	}
}

// Status is the answer of GET /flash/status (SPEC §4.4).
type Status struct {
	Version   int64                     `json:"version"`
	Resources map[string]ResourceStatus `json:"resources"`
	Instances []InstanceStatus          `json:"instances"`
	// Motherships sharing the store, which one leads and since when; absent
	// when the store is the mothership's own.
	Motherships []MothershipStatus `json:"motherships,omitempty"`
}

// ResourceStatus is one resource in Status.
type ResourceStatus struct {
	Type         string   `json:"type"`
	Status       string   `json:"status"`
	EndpointURL  string   `json:"endpoint_url"`
	EndpointURLs []string `json:"endpoint_urls"`
	ConfigHash   string   `json:"config_hash"`
	Error        string   `json:"error"`
	// Replicas is how many replicas serve now (its endpoint URLs); Scaling
	// describes its autoscaling ("" for fixed replicas).
	Replicas int    `json:"replicas"`
	Scaling  string `json:"scaling,omitempty"`
	// Restarts counts the provider's restarts of the resource's processes
	// since this mothership started; LastEvent describes the latest one.
	Restarts  int    `json:"restarts"`
	LastEvent string `json:"last_event,omitempty"`
}

// EndpointEvent records something a provider did to a resource's endpoint on
// its own (a process exited, was restarted, was adopted), for the status.
func (m *Mothership) EndpointEvent(resource, kind, detail string, restarted bool) {
	m.events.note(resource, kind, detail, restarted, m.cfg.Now())
	m.trail.wake()
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
	// State is InstanceCurrent, InstanceBehind, InstanceRejected or InstanceGone.
	State           InstanceState `json:"state"`
	Resource        string        `json:"resource"`
	Instance        string        `json:"instance"`
	AppliedVersion  int64         `json:"applied_version"`
	RejectedVersion int64         `json:"rejected_version"`
	RejectReason    string        `json:"reject_reason"`
	LastSeen        time.Time     `json:"last_seen"`
}

// InstanceState says where a child instance stands against the published version.
type InstanceState string

// Instance states.
const (
	InstanceCurrent  InstanceState = "current"  // applied the published version
	InstanceBehind   InstanceState = "behind"   // live, on an older version
	InstanceRejected InstanceState = "rejected" // refused the published version (see RejectReason)
	InstanceGone     InstanceState = "gone"     // unheard for longer than its poll wait, or its endpoint was undeployed
)

// Status returns the published version, each resource's state and each known
// child instance. Instances come from memory, completed by the store's records
// (those of earlier motherships) when the store answers within ctx.
func (m *Mothership) Status(ctx context.Context) Status {
	mf, version := m.Current()
	st := Status{Version: version, Resources: map[string]ResourceStatus{}, Instances: []InstanceStatus{}}
	if mf != nil {
		for name, r := range mf.Resources {
			urls := slices.Clone(r.URLs()) // the served manifest is shared: redact a copy
			if urls == nil {
				urls = []string{}
			}
			ev := m.events.of(name)
			for i, u := range urls {
				urls[i] = RedactURLs(u)
			}
			st.Resources[name] = ResourceStatus{Type: r.Type, Status: string(r.Status), EndpointURL: firstOf(urls),
				EndpointURLs: urls, ConfigHash: r.ConfigHash, Error: RedactURLs(r.Error), Restarts: ev.restarts,
				LastEvent: RedactURLs(ev.last), Replicas: len(urls), Scaling: scalingOf(r, m.cfg.MaxReplicas)}
		}
	}
	now := m.cfg.Now()
	all := m.inst.snapshot(now)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	stored, err := m.store.Instances(sctx)
	st.Motherships = m.motherships(sctx, stored)
	if err != nil {
		m.log.Debug("status: child reports from the store unavailable", "err", err)
	} else {
		for _, i := range stored {
			k := instanceKey{i.Resource, i.Instance}
			if cur, ok := all[k]; !ok || cur.report.LastSeen.Before(i.LastSeen) {
				unheard := now.Sub(i.LastSeen)
				all[k] = instanceView{i, unheard > defaultPollWait+silentMargin, unheard > defaultPollWait+silentMargin+instanceRecent}
			}
		}
	}
	for _, v := range all {
		i := v.report
		if v.expired || mf == nil || mf.Resources[i.Resource] == nil {
			continue // long gone, or its resource was removed
		}
		state := InstanceBehind
		switch {
		case v.gone:
			state = InstanceGone
		case i.AppliedVersion >= version:
			state = InstanceCurrent
		case i.RejectedVersion >= version:
			state = InstanceRejected
		}
		st.Instances = append(st.Instances, InstanceStatus{State: state, Resource: i.Resource, Instance: i.Instance,
			AppliedVersion: i.AppliedVersion, RejectedVersion: i.RejectedVersion, RejectReason: RedactURLs(i.RejectReason),
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

// Bounds of waitApplied.
const (
	// applyWait bounds the wait for children to apply a version: a live child
	// applies within a long-poll round trip (milliseconds); the bound only
	// matters for instances that died without saying so.
	applyWait = 3 * time.Second
)

// waitApplied waits until every child instance that can still answer (heard
// within its poll wait, and not of an undeployed endpoint) has applied (or
// rejected) version v or a newer one, at most applyWait.
func (m *Mothership) waitApplied(ctx context.Context, v int64) {
	deadline := time.NewTimer(applyWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		behind := m.inst.behind(v, m.cfg.Now())
		if len(behind) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			m.log.Warn("reconcile: children did not report the new version in time; undeploying the old endpoint anyway",
				"version", v, "behind", strings.Join(behind, ", "))
			return
		case <-tick.C:
		}
	}
}

// scalingOf describes r's autoscaling for the status: "REQUEST_COUNT 2,
// 0-3 replicas, idle 5s"; "" when it keeps a fixed number of replicas.
func scalingOf(r *manifest.Resource, limit int) string {
	c, ok, err := scaler.FromEntry(r.Raw(), limit)
	if !ok || err != nil {
		return ""
	}
	return fmt.Sprintf("%s %v, %d-%d replicas, idle %s", c.Kind, c.Value, c.Min, c.Max, c.Idle)
}

func firstOf(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
