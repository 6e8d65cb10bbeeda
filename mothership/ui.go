package mothership

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// The dashboard (/flash/ui): a page and its script, embedded, with no build
// step. They hold no data: the script reads /flash/ui/events with the API
// key (taken from the link's #key= fragment, which browsers never send).
//
//go:embed ui
var uiFiles embed.FS

// Bounds of the dashboard's live stream.
const (
	maxUIStreams   = 16          // open /flash/ui/events streams; more get 429
	uiRefresh      = time.Second // status is re-sent this often (instances, restarts)
	maxDeployTrail = 200         // reconcile events kept for the timeline
)

// deployTrail keeps the latest reconcile events for the dashboard's
// timeline, and wakes the streams at each.
type deployTrail struct {
	mu      sync.Mutex
	events  []TrailEvent
	owner   any   // the reconciliation that emitted the last event
	seq     int64 // its number
	changed chan struct{}
	streams atomic.Int32
}

// TrailEvent is one reconcile event with the time it happened and the
// number of its reconciliation (1, 2, … since the mothership started).
type TrailEvent struct {
	Time   time.Time `json:"time"`
	Deploy int64     `json:"deploy"`
	Event
}

func newDeployTrail() *deployTrail { return &deployTrail{changed: make(chan struct{})} }

// add keeps e, emitted at by the reconciliation owner.
func (d *deployTrail) add(owner any, e Event, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if owner != d.owner {
		d.owner = owner
		d.seq++
	}
	if len(d.events) == maxDeployTrail {
		d.events = append(d.events[:0], d.events[1:]...)
	}
	d.events = append(d.events, TrailEvent{Time: at, Deploy: d.seq, Event: e})
	d.wakeLocked()
}

// wake has the streams send the state now (a process exited, restarted).
func (d *deployTrail) wake() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wakeLocked()
}

func (d *deployTrail) wakeLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *deployTrail) read() ([]TrailEvent, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]TrailEvent(nil), d.events...), d.changed
}

// PublicUI reports whether r asks for the dashboard's page or assets, which
// hold no data and are served without the API key (serve.Config.Public).
func PublicUI(r *http.Request) bool {
	return r.Method == http.MethodGet && (r.URL.Path == "/flash/ui" || strings.HasPrefix(r.URL.Path, "/flash/ui/assets/"))
}

// registerUI mounts the dashboard's routes.
func (m *Mothership) registerUI(handle func(pattern string, h http.Handler)) {
	static, _ := fs.Sub(uiFiles, "ui")
	files := http.StripPrefix("/flash/ui/", http.FileServerFS(static))
	handle("GET /flash/ui", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	}))
	handle("GET /flash/ui/assets/", files)
	handle("GET /flash/ui/events", http.HandlerFunc(m.serveUIEvents))
	handle("POST "+wire.PathEdges, http.HandlerFunc(m.serveEdges))
	m.registerTraces(handle)
}

// uiState is what one server-sent "state" event carries.
type uiState struct {
	Status  Status        `json:"status"`
	Deploys []TrailEvent  `json:"deploys"`
	Edges   []EdgeView    `json:"edges"`
	Traces  *uiTraceState `json:"traces"` // null: not collecting (flash run --trace)
}

// serveUIEvents streams the status and the deploy timeline as server-sent
// events: at once, at each publish or reconcile event, and every uiRefresh.
func (m *Mothership) serveUIEvents(w http.ResponseWriter, r *http.Request) {
	if m.trail.streams.Add(1) > maxUIStreams {
		m.trail.streams.Add(-1)
		w.Header().Set(wire.HeaderRetryAfter, "5")
		wire.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("too many dashboard streams (at most %d)", maxUIStreams))
		return
	}
	defer m.trail.streams.Add(-1)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(uiRefresh)
	defer tick.Stop()
	for {
		deploys, trailChanged := m.trail.read()
		data, err := json.Marshal(uiState{Status: m.Status(r.Context()), Deploys: deploys,
			Edges: m.edges.view(m.cfg.Now()), Traces: m.uiTraces()})
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", data); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-m.stop:
			return
		case <-m.snap.Load().changed:
		case <-trailChanged:
		case <-tick.C:
		}
	}
}
