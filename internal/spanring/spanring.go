// Package spanring keeps the recent traces of a topology in memory for
// `flash run --trace`: it decodes OTLP/HTTP trace exports (protobuf) and
// holds their spans in a ring bounded in spans and bytes, dropping the
// oldest traces first, so that the dashboard shows traces with no collector
// to install.
package spanring

import (
	"cmp"
	"encoding/hex"
	"slices"
	"strconv"
	"sync"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one collected span.
type Span struct {
	TraceID  string            `json:"trace_id"`
	SpanID   string            `json:"span_id"`
	ParentID string            `json:"parent_id,omitempty"`
	Service  string            `json:"service"`
	Name     string            `json:"name"`
	Kind     string            `json:"kind"` // server, client, internal, producer, consumer
	Start    time.Time         `json:"start"`
	End      time.Time         `json:"end"`
	Attrs    map[string]string `json:"attrs,omitempty"`
	Error    bool              `json:"error,omitempty"`
	Message  string            `json:"message,omitempty"` // the status message of a failed span
}

// Duration is how long the span lasted (0 for a malformed end).
func (s Span) Duration() time.Duration { return max(s.End.Sub(s.Start), 0) }

// size is what the span costs the ring: its strings and a fixed overhead.
func (s Span) size() int {
	n := 200 + len(s.TraceID) + len(s.SpanID) + len(s.ParentID) + len(s.Service) + len(s.Name) + len(s.Message)
	for k, v := range s.Attrs {
		n += 32 + len(k) + len(v)
	}
	return n
}

// Bounds on one span's strings: longer ones are cut, so that one exporter
// cannot fill the ring with a few huge spans.
const (
	maxAttrs   = 32
	maxValue   = 256
	maxMessage = 512
)

// Decode reads an OTLP/HTTP ExportTraceServiceRequest (protobuf). Spans with
// malformed ids are skipped; strings are cut to bounds.
func Decode(body []byte) ([]Span, error) {
	var req collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		service := attrString(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				if len(s.GetTraceId()) != 16 || len(s.GetSpanId()) != 8 {
					continue
				}
				sp := Span{
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					Service: cut(service, maxValue), Name: cut(s.GetName(), maxValue), Kind: kindName(s.GetKind()),
					Start: time.Unix(0, int64(s.GetStartTimeUnixNano())).UTC(), End: time.Unix(0, int64(s.GetEndTimeUnixNano())).UTC(),
					Error: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR, Message: cut(s.GetStatus().GetMessage(), maxMessage),
				}
				if len(s.GetParentSpanId()) == 8 {
					sp.ParentID = hex.EncodeToString(s.GetParentSpanId())
				}
				for _, kv := range s.GetAttributes() {
					if len(sp.Attrs) == maxAttrs {
						break
					}
					if sp.Attrs == nil {
						sp.Attrs = make(map[string]string, len(s.GetAttributes()))
					}
					sp.Attrs[cut(kv.GetKey(), maxValue)] = cut(anyString(kv.GetValue()), maxValue)
				}
				out = append(out, sp)
			}
		}
	}
	return out, nil
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func kindName(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	}
	return "internal"
}

func attrString(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return anyString(kv.GetValue())
		}
	}
	return ""
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	return ""
}

// Summary describes one kept trace.
type Summary struct {
	TraceID  string    `json:"trace_id"`
	Root     string    `json:"root"`    // the name of its earliest span
	Service  string    `json:"service"` // and that span's service
	Start    time.Time `json:"start"`
	Duration float64   `json:"duration_ms"`
	Spans    int       `json:"spans"`
	Errors   int       `json:"errors"`
	Services []string  `json:"services"`
}

// Notable lists recent failed spans and the slowest calls among the kept
// traces, each naming its trace.
type Notable struct {
	Errors []Span `json:"errors"` // newest first
	Slow   []Span `json:"slow"`   // slowest first: server and client spans
}

type kept struct {
	id    string
	spans []Span
	bytes int
}

// Ring holds the most recent traces within its bounds. It is safe for
// concurrent use.
type Ring struct {
	maxSpans, maxBytes int

	mu      sync.Mutex
	traces  map[string]*kept
	order   []*kept // oldest first
	spans   int
	bytes   int
	dropped int64 // spans dropped to keep the bounds
	gen     uint64
	notable Notable // computed for notableGen
	nGen    uint64
}

// New returns a Ring holding at most maxSpans spans and about maxBytes bytes.
func New(maxSpans, maxBytes int) *Ring {
	return &Ring{maxSpans: max(maxSpans, 1), maxBytes: max(maxBytes, 1), traces: make(map[string]*kept)}
}

// Add keeps spans, dropping the oldest traces as needed. A span that alone
// exceeds a bound is dropped.
func (r *Ring) Add(spans []Span) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range spans {
		size := s.size()
		if size > r.maxBytes {
			r.dropped++
			continue
		}
		t := r.traces[s.TraceID]
		if t == nil {
			t = &kept{id: s.TraceID}
			r.traces[s.TraceID] = t
			r.order = append(r.order, t)
		}
		t.spans = append(t.spans, s)
		t.bytes += size
		r.spans++
		r.bytes += size
		r.gen++
		for r.spans > r.maxSpans || r.bytes > r.maxBytes {
			r.evictOldest()
		}
	}
}

// evictOldest drops the oldest trace, or the oldest span of the only one.
func (r *Ring) evictOldest() {
	old := r.order[0]
	if len(r.order) == 1 {
		sz := old.spans[0].size()
		old.spans = slices.Delete(old.spans, 0, 1)
		old.bytes -= sz
		r.spans--
		r.bytes -= sz
		r.dropped++
		if len(old.spans) > 0 {
			return
		}
	} else {
		r.spans -= len(old.spans)
		r.bytes -= old.bytes
		r.dropped += int64(len(old.spans))
	}
	delete(r.traces, old.id)
	r.order[0] = nil
	r.order = r.order[1:]
}

// Stats reports what the ring holds and what it dropped.
func (r *Ring) Stats() (traces, spans, bytes int, dropped int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order), r.spans, r.bytes, r.dropped
}

// Trace returns the spans of trace id ordered by start, nil when not kept.
func (r *Ring) Trace(id string) []Span {
	r.mu.Lock()
	t := r.traces[id]
	var out []Span
	if t != nil {
		out = slices.Clone(t.spans)
	}
	r.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Span) int { return a.Start.Compare(b.Start) })
	return out
}

// Recent summarises the newest traces, at most limit, newest first.
func (r *Ring) Recent(limit int) []Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Summary, 0, min(limit, len(r.order)))
	for i := len(r.order) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, summarize(r.order[i]))
	}
	return out
}

func summarize(t *kept) Summary {
	s := Summary{TraceID: t.id, Spans: len(t.spans)}
	var end time.Time
	seen := map[string]bool{}
	for i, sp := range t.spans {
		if i == 0 || sp.Start.Before(s.Start) {
			s.Start, s.Root, s.Service = sp.Start, sp.Name, sp.Service
		}
		if sp.End.After(end) {
			end = sp.End
		}
		if sp.Error {
			s.Errors++
		}
		if !seen[sp.Service] {
			seen[sp.Service] = true
			s.Services = append(s.Services, sp.Service)
		}
	}
	slices.Sort(s.Services)
	s.Duration = float64(max(end.Sub(s.Start), 0)) / float64(time.Millisecond)
	return s
}

// Notable returns up to n failed spans, newest first, and the n slowest
// server and client spans among the kept traces. It is recomputed only
// after spans were added.
func (r *Ring) Notable(n int) Notable {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nGen == r.gen && r.gen != 0 {
		return r.notable
	}
	var errs, slow []Span
	for _, t := range r.order {
		for _, s := range t.spans {
			if s.Error {
				errs = append(errs, s)
			}
			if s.Kind == "server" || s.Kind == "client" {
				slow = append(slow, s)
			}
		}
	}
	slices.SortStableFunc(errs, func(a, b Span) int { return b.End.Compare(a.End) })
	slices.SortStableFunc(slow, func(a, b Span) int { return cmp.Compare(b.Duration(), a.Duration()) })
	r.notable = Notable{Errors: slices.Clip(errs[:min(n, len(errs))]), Slow: slices.Clip(slow[:min(n, len(slow))])}
	if r.notable.Errors == nil {
		r.notable.Errors = []Span{}
	}
	if r.notable.Slow == nil {
		r.notable.Slow = []Span{}
	}
	r.nGen = r.gen
	return r.notable
}
