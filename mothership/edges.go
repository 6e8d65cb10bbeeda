package mothership

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// Call rates on the dashboard's edges come from the children: each posts
// its outgoing call counters per target to /flash/edges every few seconds
// (child.Sync.ReportEdges). Counters, not events: a lost report loses
// nothing, and a rate is the difference of two reports.
const (
	maxEdgeSources = 1024             // child instances reporting at once; more get 429
	maxEdgeTargets = 64               // targets in one report
	maxEdgeBody    = 64 << 10         // one report's body
	edgeSamples    = 16               // reports kept per instance and target
	edgeWindow     = 10 * time.Second // rates are over this much of the recent past
	edgeForget     = 90 * time.Second // an instance unheard for longer is dropped (it reports every 30s at least)
)

var errEdgesFull = errors.New("too many child instances report calls")

type edgeSample struct {
	at      time.Time
	calls   uint64
	errors  uint64
	seconds float64
}

// edgeSeries is what one instance reported about calls to one target:
// recent reports, oldest first, and what earlier lives of the process
// counted (a counter that went down is a restart).
type edgeSeries struct {
	samples []edgeSample
	carried edgeSample
}

type edgeSource struct {
	seen    time.Time
	targets map[string]*edgeSeries
}

// edgeStats holds the latest reports of every child instance.
type edgeStats struct {
	mu      sync.Mutex
	sources map[instanceKey]*edgeSource
}

func newEdgeStats() *edgeStats { return &edgeStats{sources: make(map[instanceKey]*edgeSource)} }

// checkReport refuses a report that names too much or names it badly.
func checkReport(rep wire.EdgeReport) error {
	if rep.Resource == "" || len(rep.Resource) > maxLabelLen || len(rep.Instance) > maxLabelLen {
		return fmt.Errorf("resource and instance: want 1 to %d characters", maxLabelLen)
	}
	if len(rep.Edges) > maxEdgeTargets {
		return fmt.Errorf("%d targets, at most %d", len(rep.Edges), maxEdgeTargets)
	}
	seen := make(map[string]bool, len(rep.Edges))
	for _, e := range rep.Edges {
		if e.Target == "" || len(e.Target) > maxLabelLen || seen[e.Target] {
			return fmt.Errorf("target %.40q: want a distinct name of 1 to %d characters", e.Target, maxLabelLen)
		}
		if e.Errors > e.Calls || e.Seconds < 0 || e.Seconds != e.Seconds {
			return fmt.Errorf("target %q: errors above calls, or a negative latency", e.Target)
		}
		seen[e.Target] = true
	}
	return nil
}

// record keeps a checked report received at now.
func (es *edgeStats) record(rep wire.EdgeReport, now time.Time) error {
	k := instanceKey{rep.Resource, rep.Instance}
	es.mu.Lock()
	defer es.mu.Unlock()
	src := es.sources[k]
	if src == nil {
		if len(es.sources) >= maxEdgeSources {
			es.forgetLocked(now)
		}
		if len(es.sources) >= maxEdgeSources {
			return errEdgesFull
		}
		src = &edgeSource{targets: make(map[string]*edgeSeries)}
		es.sources[k] = src
	}
	src.seen = now
	for _, e := range rep.Edges {
		s := src.targets[e.Target]
		if s == nil {
			s = &edgeSeries{}
			src.targets[e.Target] = s
		}
		s.add(edgeSample{at: now, calls: e.Calls, errors: e.Errors, seconds: e.Seconds})
	}
	return nil
}

func (s *edgeSeries) add(x edgeSample) {
	if n := len(s.samples); n > 0 {
		last := s.samples[n-1]
		if x.calls < last.calls || x.errors < last.errors {
			// The process restarted under the same name: keep its past.
			s.carried.calls += last.calls
			s.carried.errors += last.errors
			s.carried.seconds += last.seconds
			s.samples = s.samples[:0]
		}
	}
	if len(s.samples) == edgeSamples {
		s.samples = append(s.samples[:0], s.samples[1:]...)
	}
	s.samples = append(s.samples, x)
}

// since is what the series counted between the start of the window ending
// at now and its last report (counters hold their value between reports),
// and how long that span is.
func (s *edgeSeries) since(now time.Time) (d edgeSample, span time.Duration) {
	last := s.samples[len(s.samples)-1]
	from := now.Add(-edgeWindow)
	base := s.samples[0]
	for _, x := range s.samples {
		if x.at.After(from) {
			break
		}
		base = x
	}
	span = edgeWindow
	if base.at.After(from) { // the series is younger than the window
		span = now.Sub(base.at)
	}
	return edgeSample{calls: last.calls - base.calls, errors: last.errors - base.errors, seconds: last.seconds - base.seconds}, span
}

func (es *edgeStats) forgetLocked(now time.Time) {
	for k, src := range es.sources {
		if now.Sub(src.seen) > edgeForget {
			delete(es.sources, k)
		}
	}
}

// EdgeView is the calls from one resource to another, summed over the
// caller's instances.
type EdgeView struct {
	From      string  `json:"from"`
	To        string  `json:"to"`
	Calls     uint64  `json:"calls"`      // since the instances started
	Errors    uint64  `json:"errors"`     // calls whose outcome was not ok
	Rate      float64 `json:"rate"`       // calls per second over the last edgeWindow
	ErrorRate float64 `json:"error_rate"` // failed calls per second, same window
	LatencyMS float64 `json:"latency_ms"` // mean latency of those calls (0: none)
	Instances int     `json:"instances"`  // caller instances reporting
}

// view sums the edges at now, ordered by caller and callee.
func (es *edgeStats) view(now time.Time) []EdgeView {
	type acc struct {
		EdgeView
		windowSeconds float64
		windowCalls   uint64
	}
	byEdge := map[[2]string]*acc{}
	es.mu.Lock()
	es.forgetLocked(now)
	for k, src := range es.sources {
		for target, s := range src.targets {
			a := byEdge[[2]string{k.resource, target}]
			if a == nil {
				a = &acc{EdgeView: EdgeView{From: k.resource, To: target}}
				byEdge[[2]string{k.resource, target}] = a
			}
			last := s.samples[len(s.samples)-1]
			a.Calls += s.carried.calls + last.calls
			a.Errors += s.carried.errors + last.errors
			a.Instances++
			d, span := s.since(now)
			if span > 0 {
				a.Rate += float64(d.calls) / span.Seconds()
				a.ErrorRate += float64(d.errors) / span.Seconds()
			}
			a.windowCalls += d.calls
			a.windowSeconds += d.seconds
		}
	}
	es.mu.Unlock()
	out := make([]EdgeView, 0, len(byEdge))
	for _, a := range byEdge {
		if a.windowCalls > 0 {
			a.LatencyMS = a.windowSeconds / float64(a.windowCalls) * 1000
		}
		out = append(out, a.EdgeView)
	}
	slices.SortFunc(out, func(a, b EdgeView) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) })
	return out
}

// serveEdges answers POST /flash/edges: a child's call counters.
func (m *Mothership) serveEdges(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEdgeBody))
	if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
		wire.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("an edge report is at most %d bytes", maxEdgeBody))
		return
	} else if err != nil {
		wire.WriteError(w, http.StatusBadRequest, "cannot read the edge report", "detail", err.Error())
		return
	}
	var rep wire.EdgeReport
	if err := json.Unmarshal(body, &rep); err != nil {
		wire.WriteError(w, http.StatusBadRequest, "invalid edge report", "detail", err.Error())
		return
	}
	if err := checkReport(rep); err != nil {
		wire.WriteError(w, http.StatusBadRequest, "invalid edge report", "detail", err.Error())
		return
	}
	if rep.Instance == "" {
		rep.Instance = rep.Resource
	}
	if err := m.edges.record(rep, m.cfg.Now()); err != nil {
		w.Header().Set(wire.HeaderRetryAfter, "30")
		wire.WriteError(w, http.StatusTooManyRequests, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
