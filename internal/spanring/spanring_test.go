package spanring

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func span(traceID, id string, start time.Time, d time.Duration) Span {
	return Span{TraceID: traceID, SpanID: id, Service: "api", Name: "call " + id, Kind: "client", Start: start, End: start.Add(d)}
}

// TestRingBounds: the ring never holds more spans or bytes than its bounds;
// the oldest traces go first, whole.
func TestRingBounds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := New(5, 1<<20)
	for i := range 4 {
		id := fmt.Sprintf("t%d", i)
		r.Add([]Span{span(id, "a", t0, time.Millisecond), span(id, "b", t0, time.Millisecond)})
	}
	traces, spans, _, dropped := r.Stats()
	if traces != 2 || spans != 4 || dropped != 4 {
		t.Fatalf("traces %d spans %d dropped %d; want 2, 4, 4", traces, spans, dropped)
	}
	if r.Trace("t0") != nil || r.Trace("t1") != nil || len(r.Trace("t3")) != 2 {
		t.Fatalf("kept the wrong traces: %v", r.Recent(10))
	}
	if rec := r.Recent(10); len(rec) != 2 || rec[0].TraceID != "t3" || rec[1].TraceID != "t2" {
		t.Fatalf("recent %+v, want t3 then t2", rec)
	}

	// Bytes: each span costs about its size; the bound holds.
	big := span("big", "x", t0, 0)
	big.Attrs = map[string]string{"k": strings.Repeat("v", 250)}
	one := big.size()
	r = New(1000, 3*one)
	for i := range 10 {
		s := big
		s.TraceID = fmt.Sprint("b", i)
		r.Add([]Span{s})
		if _, _, bytes, _ := r.Stats(); bytes > 3*one {
			t.Fatalf("%d bytes held, bound %d", bytes, 3*one)
		}
	}
	if traces, _, _, _ := r.Stats(); traces != 3 || r.Trace("b9") == nil || r.Trace("b6") != nil {
		t.Fatalf("%d traces; want the 3 newest", traces)
	}

	// One trace larger than the ring: its oldest spans go.
	r = New(3, 1<<20)
	for i := range 5 {
		r.Add([]Span{span("one", fmt.Sprint(i), t0.Add(time.Duration(i)), 0)})
	}
	if got := r.Trace("one"); len(got) != 3 || got[0].SpanID != "2" {
		t.Fatalf("spans of the one trace: %+v", got)
	}
	// A span larger than the byte bound is dropped alone.
	r = New(10, 100)
	r.Add([]Span{big})
	if _, spans, _, dropped := r.Stats(); spans != 0 || dropped != 1 {
		t.Fatalf("oversized span: %d kept, %d dropped", spans, dropped)
	}
}

// TestNotable: failed spans newest first, slow calls slowest first.
func TestNotable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := New(100, 1<<20)
	fast, slow := span("t1", "fast", t0, time.Millisecond), span("t1", "slow", t0, time.Second)
	bad1, bad2 := span("t2", "bad1", t0, 2*time.Millisecond), span("t3", "bad2", t0.Add(time.Second), 3*time.Millisecond)
	bad1.Error, bad2.Error = true, true
	inner := span("t1", "inner", t0, time.Hour)
	inner.Kind = "internal"
	r.Add([]Span{fast, slow, bad1, bad2, inner})
	n := r.Notable(2)
	if len(n.Errors) != 2 || n.Errors[0].SpanID != "bad2" || n.Errors[1].SpanID != "bad1" {
		t.Fatalf("errors %+v", n.Errors)
	}
	if len(n.Slow) != 2 || n.Slow[0].SpanID != "slow" || n.Slow[1].SpanID != "bad2" {
		t.Fatalf("slow %+v", n.Slow)
	}
	r.Add([]Span{span("t4", "slowest", t0, time.Minute)})
	if n := r.Notable(2); n.Slow[0].SpanID != "slowest" {
		t.Fatalf("notable not recomputed after Add: %+v", n.Slow)
	}
}

// TestReceiverFromExporter: the OpenTelemetry SDK's own OTLP/HTTP exporter
// posts to the receiver, plain and gzip; the spans come out with their
// service, kind, parent, attributes and status.
func TestReceiverFromExporter(t *testing.T) {
	for _, gz := range []bool{false, true} {
		ring := New(100, 1<<20)
		srv := httptest.NewServer(NewReceiver(ring))
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(srv.URL + "/v1/traces")}
		if gz {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		}
		exp, err := otlptracehttp.New(t.Context(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "embedder"))))
		ctx, parent := tp.Tracer("t").Start(context.Background(), "POST /embed", trace.WithSpanKind(trace.SpanKindServer))
		_, child := tp.Tracer("t").Start(ctx, "call summarize", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("flash.target", "summarizer"), attribute.Int("flash.attempt", 2)))
		child.SetStatus(codes.Error, "boom")
		child.End()
		parent.End()
		if err := tp.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		id := parent.SpanContext().TraceID().String()
		spans := ring.Trace(id)
		if len(spans) != 2 {
			t.Fatalf("gzip %v: %d spans of %s", gz, len(spans), id)
		}
		byName := map[string]Span{}
		for _, s := range spans {
			byName[s.Name] = s
		}
		p, c := byName["POST /embed"], byName["call summarize"]
		if p.Service != "embedder" || p.Kind != "server" || p.ParentID != "" || p.Error {
			t.Errorf("parent %+v", p)
		}
		if c.ParentID != p.SpanID || c.Kind != "client" || !c.Error || c.Message != "boom" ||
			c.Attrs["flash.target"] != "summarizer" || c.Attrs["flash.attempt"] != "2" {
			t.Errorf("child %+v", c)
		}
	}
}

// TestReceiverRefuses: another encoding, too big, gzip bombs and garbage
// are refused with OTLP's statuses and change nothing.
func TestReceiverRefuses(t *testing.T) {
	ring := New(100, 1<<20)
	srv := httptest.NewServer(NewReceiver(ring))
	defer srv.Close()
	post := func(ct, enc string, body []byte) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if enc != "" {
			req.Header.Set("Content-Encoding", enc)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(make([]byte, MaxExportUnpacked+1))
	zw.Close()
	for _, tc := range []struct {
		name, ct, enc string
		body          []byte
		want          int
	}{
		{"json", "application/json", "", []byte(`{}`), http.StatusUnsupportedMediaType},
		{"too big", "application/x-protobuf", "", make([]byte, MaxExportBody+1), http.StatusRequestEntityTooLarge},
		{"gzip bomb", "application/x-protobuf", "gzip", bomb.Bytes(), http.StatusRequestEntityTooLarge},
		{"not gzip", "application/x-protobuf", "gzip", []byte("plain"), http.StatusBadRequest},
		{"other encoding", "application/x-protobuf", "br", []byte("x"), http.StatusBadRequest},
		{"garbage", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff}, http.StatusBadRequest},
	} {
		if got := post(tc.ct, tc.enc, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if _, spans, _, _ := ring.Stats(); spans != 0 {
		t.Fatalf("%d spans kept from refused exports", spans)
	}
}

// FuzzDecode: any body decodes to spans with well-formed ids and bounded
// strings, or to an error; nothing panics.
func FuzzDecode(f *testing.F) {
	good, _ := proto.Marshal(&collectorpb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8), ParentSpanId: []byte{3}, Name: "x",
		}}}},
	}}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		spans, err := Decode(body)
		if err != nil {
			return
		}
		r := New(1000, 1<<20)
		r.Add(spans)
		for _, s := range spans {
			if len(s.TraceID) != 32 || len(s.SpanID) != 16 || (s.ParentID != "" && len(s.ParentID) != 16) ||
				len(s.Name) > maxValue || len(s.Attrs) > maxAttrs || len(s.Message) > maxMessage {
				t.Fatalf("malformed span %+v", s)
			}
		}
		r.Notable(10)
		r.Recent(10)
	})
}
