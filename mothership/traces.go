package mothership

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/flash-go/flash/internal/spanring"
	"github.com/flash-go/flash/internal/wire"
)

// Bounds of what the trace routes answer.
const (
	maxTraceList = 100 // GET /flash/traces?limit=
	uiTraces     = 20  // recent traces in the dashboard's state
	uiNotable    = 10  // errors and slow calls in the dashboard's state
)

// PathTraces is where the collector answers OTLP/HTTP exports (flash run
// --trace): the standard path under OTEL_EXPORTER_OTLP_ENDPOINT.
const PathTraces = "/v1/traces"

// registerTraces mounts the collector's routes when it collects.
func (m *Mothership) registerTraces(handle func(pattern string, h http.Handler)) {
	if m.cfg.Traces == nil {
		return
	}
	handle("POST "+PathTraces, spanring.NewReceiver(m.cfg.Traces))
	handle("GET /flash/traces", http.HandlerFunc(m.serveTraces))
	handle("GET /flash/traces/{id}", http.HandlerFunc(m.serveTrace))
}

// serveTraces answers GET /flash/traces[?limit=N]: the newest traces first.
func (m *Mothership) serveTraces(w http.ResponseWriter, r *http.Request) {
	limit := maxTraceList
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxTraceList {
			wire.WriteError(w, http.StatusBadRequest, "limit: want 1 to "+strconv.Itoa(maxTraceList))
			return
		}
		limit = n
	}
	wire.WriteJSON(w, http.StatusOK, map[string]any{"traces": m.cfg.Traces.Recent(limit)})
}

// serveTrace answers GET /flash/traces/{id}: a trace's spans by start.
func (m *Mothership) serveTrace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	spans := m.cfg.Traces.Trace(id)
	if spans == nil {
		wire.WriteError(w, http.StatusNotFound, "no such trace (it was never collected, or is no longer kept)", "trace_id", id)
		return
	}
	wire.WriteJSON(w, http.StatusOK, map[string]any{"trace_id": id, "spans": spans})
}

// uiTraceState is the traces part of the dashboard's state.
type uiTraceState struct {
	Recent  []spanring.Summary `json:"recent"`
	Notable spanring.Notable   `json:"notable"`
}

func (m *Mothership) uiTraces() *uiTraceState {
	if m.cfg.Traces == nil {
		return nil
	}
	return &uiTraceState{Recent: m.cfg.Traces.Recent(uiTraces), Notable: m.cfg.Traces.Notable(uiNotable)}
}

// Untraced reports whether r is polling or the dashboard's and the
// collector's own traffic, which get no span: a span of each trace export
// would be exported in turn, for ever, and parked long polls would crowd
// out the calls that were slow.
func Untraced(r *http.Request) bool {
	p := r.URL.Path
	switch {
	case p == PathTraces, p == wire.PathEdges, p == "/manifest", p == "/flash/status":
		return true
	case strings.HasPrefix(p, "/flash/ui"), strings.HasPrefix(p, "/flash/traces"):
		return true
	}
	return false
}
