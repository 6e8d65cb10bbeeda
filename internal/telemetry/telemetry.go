// Package telemetry sets up OpenTelemetry tracing for one flash process and
// names the spans every layer makes: an incoming request, a job, an outgoing
// call, a reconcile step, a manifest apply.
//
// Tracing is on only when the standard OTEL_* variables ask for it (see
// Enabled); otherwise no exporter is created and every helper here works on
// a nil *Tracer, starting no-op spans, so that the cost is a nil check.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// scope is the instrumentation scope of every span flash makes.
const scope = "github.com/flash-go/flash"

// Attribute keys of flash's spans.
const (
	AttrResource = attribute.Key("flash.resource")         // the resource serving the span
	AttrTarget   = attribute.Key("flash.target")           // the resource an outgoing call goes to
	AttrFunction = attribute.Key("flash.function")         // the function called
	AttrAttempt  = attribute.Key("flash.attempt")          // 1, 2, … per send of one call
	AttrOutcome  = attribute.Key("flash.outcome")          // ok, error, status code class
	AttrJob      = attribute.Key("flash.job")              // a job's id
	AttrVersion  = attribute.Key("flash.manifest.version") // the manifest version applied
	AttrStep     = attribute.Key("flash.step")             // a reconcile step

	AttrHTTPMethod = attribute.Key("http.request.method") // OpenTelemetry's HTTP conventions
	AttrURLPath    = attribute.Key("url.path")
)

// Tracer makes the spans of one process. A nil *Tracer is tracing off.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

// Enabled reports whether the environment asks for traces:
// OTEL_TRACES_EXPORTER is "otlp", or it is unset and an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is
// set. OTEL_SDK_DISABLED=true turns it off whatever else is set.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "otlp":
		return true
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return false // "none", or an exporter flash does not have
	}
}

// ErrProtocol is returned by New for an OTLP protocol other than http/protobuf.
var ErrProtocol = errors.New("telemetry: only OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf is supported")

// New returns the Tracer of a process named service, exporting over
// OTLP/HTTP as the process's OTEL_EXPORTER_OTLP_* variables say (the
// exporter reads them itself), or nil when Enabled(os.Getenv) is false.
func New(ctx context.Context, service string) (*Tracer, error) {
	getenv := os.Getenv
	if !Enabled(getenv) {
		return nil, nil
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(k); p != "" {
			if p != "http/protobuf" {
				return nil, fmt.Errorf("%w (%s=%q)", ErrProtocol, k, p)
			}
			break
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracer{provider: tp, tracer: tp.Tracer(scope)}, nil
}

// Shutdown exports the spans still buffered and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Start starts an internal span (a reconcile step, a manifest apply) as a
// child of ctx's span.
func (t *Tracer) Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

var w3c = propagation.TraceContext{}

// StartServer starts the span of an incoming request whose W3C traceparent
// header is traceparent (the remote parent; none or invalid starts a new
// trace). ok is false when tracing is off: the caller keeps its own ids.
func (t *Tracer) StartServer(ctx context.Context, traceparent, name string, attrs ...attribute.KeyValue) (_ context.Context, _ trace.Span, ok bool) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx), false
	}
	if traceparent != "" {
		ctx = w3c.Extract(ctx, propagation.HeaderCarrier{"Traceparent": {traceparent}})
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return ctx, span, true
}

// TraceParent is the W3C traceparent of span, "" when it has no valid
// context. A span the sampler dropped has one: its trace goes on unsampled.
func TraceParent(span trace.Span) string {
	if !span.SpanContext().IsValid() {
		return ""
	}
	h := propagation.HeaderCarrier{}
	w3c.Inject(trace.ContextWithSpan(context.Background(), span), h)
	return h.Get("Traceparent")
}

// from is the tracer of ctx's span: a call made while serving a traced
// request is traced by the same provider, so that packages below need no
// Tracer of their own.
func from(ctx context.Context) trace.Tracer {
	span := trace.SpanFromContext(ctx)
	if !span.SpanContext().IsValid() {
		return noop.Tracer{}
	}
	return span.TracerProvider().Tracer(scope)
}

// StartJob starts the span of a job run by a worker, a child of the request
// that submitted it (carried by ctx).
func StartJob(ctx context.Context, fn, id string) (context.Context, trace.Span) {
	if span := trace.SpanFromContext(ctx); !span.SpanContext().IsValid() {
		return ctx, span // not traced: no span, no options built (every call pays them)
	}
	return from(ctx).Start(ctx, "job "+fn, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(AttrFunction.String(fn), AttrJob.String(id)))
}

// StartCall starts the span of one send of an outgoing call to function fn
// of resource target; End records its outcome.
func StartCall(ctx context.Context, target, fn string, attempt int) (context.Context, trace.Span) {
	if span := trace.SpanFromContext(ctx); !span.SpanContext().IsValid() {
		return ctx, span // not traced (see StartJob)
	}
	return from(ctx).Start(ctx, "call "+fn, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(AttrTarget.String(target), AttrFunction.String(fn), AttrAttempt.Int(attempt)))
}

// Inject sets h's traceparent to ctx's span when there is one, so that the
// span becomes the parent of the one the receiver starts.
func Inject(ctx context.Context, h http.Header) {
	if trace.SpanFromContext(ctx).SpanContext().IsValid() {
		w3c.Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// End ends span with an outcome: the HTTP status when there is one (0 when
// none came back) and err.
func End(span trace.Span, status int, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if status != 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
	switch {
	case err != nil:
		span.SetAttributes(AttrOutcome.String("failed"))
		span.SetStatus(codes.Error, err.Error())
	case status >= 500:
		span.SetAttributes(AttrOutcome.String("failed"))
		span.SetStatus(codes.Error, http.StatusText(status))
	case status >= 400:
		span.SetAttributes(AttrOutcome.String("rejected"))
	default:
		span.SetAttributes(AttrOutcome.String("ok"))
	}
	span.End()
}
