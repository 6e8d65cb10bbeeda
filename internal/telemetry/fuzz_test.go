package telemetry

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/flash-go/flash/internal/wire"
)

// FuzzStartServer: any traceparent header starts a span with a valid
// context (recorded or not, as the parent's sampled flag says); a valid
// version-00 one is its parent's trace.
func FuzzStartServer(f *testing.F) {
	for _, s := range []string{"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "ff-x", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"} {
		f.Add(s)
	}
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	tr := &Tracer{provider: tp, tracer: tp.Tracer(scope)}
	f.Fuzz(func(t *testing.T, header string) {
		_, span, ok := tr.StartServer(context.Background(), header, "GET /")
		defer span.End()
		own := TraceParent(span)
		if !ok || own == "" {
			t.Fatalf("no span context for %q", header)
		}
		if _, valid := wire.ParseTraceParent(own); !valid {
			t.Fatalf("span's traceparent %q is invalid", own)
		}
		// OpenTelemetry, stricter than wire, takes version 00 with only the
		// flags it knows (sampled, random); others start a new trace.
		if trace, valid := wire.ParseTraceParent(header); valid && len(header) == 55 && header[:2] == "00" && header[53] == '0' && header[54] <= '3' {
			if got := span.SpanContext().TraceID().String(); got != trace {
				t.Fatalf("trace %s, want the parent's %s", got, trace)
			}
		}
	})
}
