package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/v1/traces"}, true},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"exporter none wins", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, false},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Enabled(env(tc.env)); got != tc.want {
				t.Errorf("Enabled = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestOffCreatesNothing: without the variables no exporter exists (nil
// Tracer), and every helper still works, starting no recorded span.
func TestOffCreatesNothing(t *testing.T) {
	ctx := context.Background()
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	tr, err := New(ctx, "svc")
	if err != nil || tr != nil {
		t.Fatalf("New = %v, %v; want nil, nil", tr, err)
	}
	ctx2, span, ok := tr.StartServer(ctx, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "GET /")
	if ok || span.IsRecording() {
		t.Fatalf("StartServer with tracing off: ok=%v recording=%v", ok, span.IsRecording())
	}
	_, call := StartCall(ctx2, "r", "f", 1)
	_, job := StartJob(ctx2, "f", "id")
	_, step := tr.Start(ctx2, "step")
	for _, s := range []interface{ IsRecording() bool }{call, job, step} {
		if s.IsRecording() {
			t.Fatal("a span is recorded with tracing off")
		}
	}
	h := http.Header{}
	Inject(ctx2, h)
	if len(h) != 0 {
		t.Fatalf("Inject with tracing off set %v", h)
	}
	if TraceParent(span) != "" {
		t.Fatal("TraceParent of an unrecorded span is not empty")
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestProtocolRejected(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	_, err := New(context.Background(), "svc")
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v, want ErrProtocol", err)
	}
}

// TestExportLinksParents: spans go to an OTLP/HTTP receiver; a call made
// under a server span is its child, and the traceparent it sends names the
// call's span, so that the receiver's span becomes its child.
func TestExportLinksParents(t *testing.T) {
	var got atomic.Pointer[collectorpb.ExportTraceServiceRequest]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var req collectorpb.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got.Store(&req)
	}))
	defer srv.Close()

	ctx := context.Background()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	tr, err := New(ctx, "api")
	if err != nil || tr == nil {
		t.Fatalf("New = %v, %v", tr, err)
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sctx, server, ok := tr.StartServer(ctx, parent, "POST /process")
	if !ok {
		t.Fatal("StartServer: not traced")
	}
	cctx, call := StartCall(sctx, "embedder", "embed", 2)
	h := http.Header{}
	Inject(cctx, h)
	if want := TraceParent(call); h.Get("Traceparent") != want || want == "" {
		t.Fatalf("injected %q, want the call span's %q", h.Get("Traceparent"), want)
	}
	End(call, 503, nil)
	End(server, 200, nil)
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	req := got.Load()
	if req == nil {
		t.Fatal("nothing exported")
	}
	spans := map[string]string{} // name → parent span id
	ids := map[string]string{}
	var outcome string
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				spans[s.Name] = string(s.ParentSpanId)
				ids[s.Name] = string(s.SpanId)
				for _, kv := range s.Attributes {
					if kv.Key == string(AttrOutcome) && s.Name == "call embed" {
						outcome = kv.Value.GetStringValue()
					}
				}
			}
		}
	}
	if spans["call embed"] != ids["POST /process"] {
		t.Errorf("call's parent is not the server span: %v", spans)
	}
	if outcome != "failed" {
		t.Errorf("call outcome = %q, want failed for a 503", outcome)
	}
}
