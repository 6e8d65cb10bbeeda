package e2e

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receivedSpan is one span as an OTLP/HTTP receiver decoded it.
type receivedSpan struct {
	service       string
	name          string
	kind          tracepb.Span_SpanKind
	trace, id     string
	parent        string
	attrs         map[string]string
	statusIsError bool
}

// otlpReceiver is a real OTLP/HTTP trace receiver: it decodes every
// ExportTraceServiceRequest posted to /v1/traces.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []receivedSpan
	bad   []string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = io.LimitReader(req.Body, 16<<20)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	var msg collectorpb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(data, &msg)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
		r.bad = append(r.bad, fmt.Sprintf("%s %s %s: %v", req.Method, req.URL.Path, req.Header.Get("Content-Type"), err))
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	for _, rs := range msg.ResourceSpans {
		service := attrValue(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				attrs := map[string]string{}
				for _, kv := range s.Attributes {
					attrs[kv.Key] = anyString(kv.Value)
				}
				r.spans = append(r.spans, receivedSpan{
					service: service, name: s.Name, kind: s.Kind,
					trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId),
					parent: hex.EncodeToString(s.ParentSpanId), attrs: attrs,
					statusIsError: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				})
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Write(out)
}

func attrValue(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return anyString(kv.Value)
		}
	}
	return ""
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	}
	return v.String()
}

// trace returns the spans received for trace id.
func (r *otlpReceiver) trace(id string) []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedSpan
	for _, s := range r.spans {
		if s.trace == id {
			out = append(out, s)
		}
	}
	return out
}

func (r *otlpReceiver) all() ([]receivedSpan, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans), slices.Clone(r.bad)
}

// TestTraceAcrossEndpoints: with OTLP export configured the standard way,
// one POST /process on the demo topology makes exactly one trace whose
// spans come from the api, embedder and summarizer processes, each linked
// to its real parent: the caller's traceparent → api's server span → a
// client span per outgoing call → the callee's server span → its job.
func TestTraceAcrossEndpoints(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	w := newWorld(t, bins.pipeline, "pipeline")
	ms := w.startMothership("OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.srv.URL, "OTEL_BSP_SCHEDULE_DELAY=50")
	st := ms.waitDeployed(t, 30*time.Second, pipelineResources...)
	apiURL := st.Resources["api"].EndpointURL

	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if _, err := processWith(apiURL, "Traceparent: 00-"+traceID+"-"+callerSpan+"-01"); err != nil {
		t.Fatal(err)
	}

	var spans []receivedSpan
	eventually(t, 20*time.Second, "the trace's spans from api, embedder and summarizer", func() error {
		spans = rcv.trace(traceID)
		services := map[string]bool{}
		for _, s := range spans {
			services[s.service] = true
		}
		for _, want := range []string{"api", "embedder", "summarizer"} {
			if !services[want] {
				return fmt.Errorf("no span from %s yet (%d spans)", want, len(spans))
			}
		}
		// Every span but the root has its parent in the trace.
		if n := len(unlinked(spans, callerSpan)); n > 0 {
			return fmt.Errorf("%d spans wait for their parent", n)
		}
		return nil
	})
	byID := map[string]receivedSpan{}
	for _, s := range spans {
		byID[s.id] = s
	}
	if bad := unlinked(spans, callerSpan); len(bad) > 0 {
		t.Fatalf("spans without their parent in the trace: %v", bad)
	}

	// The root is api's server span, child of the caller's traceparent.
	var roots []receivedSpan
	for _, s := range spans {
		if s.parent == callerSpan {
			roots = append(roots, s)
		}
	}
	if len(roots) != 1 || roots[0].service != "api" || roots[0].kind != tracepb.Span_SPAN_KIND_SERVER ||
		!strings.Contains(roots[0].name, "/process") || roots[0].attrs["http.response.status_code"] != "200" {
		t.Fatalf("root spans %+v, want api's POST /process server span (200)", roots)
	}

	// Each outgoing call is a client span with its target and function,
	// and the callee's server span is its child, in the callee's process.
	calls := map[string]string{} // function → target
	for _, s := range spans {
		if s.kind != tracepb.Span_SPAN_KIND_CLIENT {
			continue
		}
		if s.attrs["flash.attempt"] == "" || s.attrs["flash.outcome"] != "ok" {
			t.Errorf("client span %q: attrs %v, want flash.attempt and flash.outcome=ok", s.name, s.attrs)
		}
		calls[s.attrs["flash.function"]] = s.attrs["flash.target"]
		var served bool
		for _, c := range spans {
			if c.parent == s.id && c.kind == tracepb.Span_SPAN_KIND_SERVER && c.service == s.attrs["flash.target"] {
				served = true
			}
		}
		if !served {
			t.Errorf("client span %q (%s → %s) has no server span of %s as child", s.name, s.service, s.attrs["flash.target"], s.attrs["flash.target"])
		}
	}
	for fn, target := range map[string]string{"embed": "embedder", "summarize": "summarizer"} {
		if calls[fn] != target {
			t.Errorf("calls seen %v: want %s → %s", calls, fn, target)
		}
	}
	// Jobs run under the server span of the request that submitted them.
	jobs := 0
	for _, s := range spans {
		if s.kind != tracepb.Span_SPAN_KIND_CONSUMER {
			continue
		}
		jobs++
		if p := byID[s.parent]; p.service != s.service || p.kind != tracepb.Span_SPAN_KIND_SERVER || s.attrs["flash.function"] == "" {
			t.Errorf("job span %q (%s) has parent %q (%s), want its server span", s.name, s.service, p.name, p.service)
		}
	}
	if jobs < 2 {
		t.Errorf("%d job spans, want one per queue-based call at least (embed, summarize)", jobs)
	}

	// Exactly one trace holds the request: no span of /process elsewhere.
	all, bad := rcv.all()
	if len(bad) > 0 {
		t.Errorf("malformed exports: %v", bad)
	}
	traces := map[string]bool{}
	for _, s := range all {
		if strings.Contains(s.name, "/process") || s.attrs["flash.function"] == "embed" {
			traces[s.trace] = true
		}
	}
	if len(traces) != 1 {
		t.Errorf("the request's spans are in %d traces, want 1", len(traces))
	}
	if t.Failed() || testing.Verbose() {
		dumpSpans(t, spans)
	}

	// Through the mothership's gateway, the gateway's span is api's parent.
	const viaGateway = "5bf92f3577b34da6a3ce929d0e0e4737"
	if _, err := processWith(ms.url+"/api", "Traceparent: 00-"+viaGateway+"-"+callerSpan+"-01"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "api's span under the gateway's", func() error {
		spans := rcv.trace(viaGateway)
		ids := map[string]receivedSpan{}
		for _, s := range spans {
			ids[s.id] = s
		}
		for _, s := range spans {
			if s.service == "api" && s.kind == tracepb.Span_SPAN_KIND_SERVER {
				if p := ids[s.parent]; p.service != "mothership" || p.kind != tracepb.Span_SPAN_KIND_SERVER {
					return fmt.Errorf("api's server span has parent %+v, want the mothership's server span", p)
				}
				return nil
			}
		}
		return fmt.Errorf("no api server span yet (%d spans)", len(spans))
	})
}

// unlinked lists the spans whose parent is neither root nor in spans.
func unlinked(spans []receivedSpan, root string) []string {
	ids := map[string]bool{root: true}
	for _, s := range spans {
		ids[s.id] = true
	}
	var out []string
	for _, s := range spans {
		if !ids[s.parent] {
			out = append(out, s.service+": "+s.name)
		}
	}
	return out
}

func dumpSpans(t *testing.T, spans []receivedSpan) {
	sort.Slice(spans, func(i, j int) bool { return spans[i].service < spans[j].service })
	for _, s := range spans {
		t.Logf("%-10s %-8s %-28s id=%s parent=%s %v", s.service, s.kind, s.name, s.id, s.parent, s.attrs)
	}
}
