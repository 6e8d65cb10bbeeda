package serve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/wire"
)

// begin, finish and checkHeaders are the layers Server.ServeHTTP runs
// around the mux. A parked long poll keeps its goroutine's stack as deep as
// it ever grew, so they are calls that return, not nested handlers, and
// the X-Request-Id answer header is set only when the answer starts.

// begin takes or makes the request's ids and trace context.
func (s *Server) begin(w http.ResponseWriter, r *http.Request) (*statusWriter, *http.Request) {
	sw := &statusWriter{ResponseWriter: w, start: time.Now()}
	rid := wire.HeaderGet(r.Header, wire.HeaderRequestID)
	tp := wire.HeaderGet(r.Header, wire.HeaderTraceParent)
	traceID, tpOK := wire.ParseTraceParent(tp)
	switch ridOK := validRequestID(rid); {
	case !ridOK && !tpOK:
		rid, tp = wire.NewRequestIDAndTraceParent()
	case !ridOK:
		rid = wire.NewRequestID()
	case !tpOK:
		tp = wire.NewTraceParent()
	}
	if !tpOK {
		traceID = wire.TraceID(tp)
	}
	tracer := s.cfg.Tracer // health checks and what Untraced names get no span
	if tracer != nil && (r.URL.Path == "/ping" || s.cfg.Untraced != nil && s.cfg.Untraced(r)) {
		tracer = nil
	}
	ctx := r.Context()
	if tracer != nil {
		var span trace.Span
		var traced bool
		ctx, span, traced = tracer.StartServer(ctx, wire.HeaderGet(r.Header, wire.HeaderTraceParent), r.Method,
			telemetry.AttrResource.String(s.cfg.Identity), telemetry.AttrHTTPMethod.String(r.Method), telemetry.AttrURLPath.String(r.URL.Path))
		if traced { // the span is the parent of the calls made while serving
			tp, traceID = telemetry.TraceParent(span), span.SpanContext().TraceID().String()
			sw.span = span
		}
	}
	// X-Flash-Hops and X-Flash-Timeout are parsed here, so that the request
	// is copied once with its whole context, and answered when bad by
	// checkHeaders, after auth.
	hops, hopsErr := wire.ParseHops(wire.HeaderGet(r.Header, wire.HeaderHops))
	timeout, hasTimeout, timeoutErr := wire.ParseTimeout(wire.HeaderGet(r.Header, wire.HeaderTimeout))
	sw.rid[0], sw.traceID, sw.hops, sw.headerErr = rid, traceID, hops, cmp.Or(hopsErr, timeoutErr)
	// Not inside sw: a job keeps its request's context, which must not keep
	// the answer's state alive.
	ctx = wire.WithMeta(ctx, wire.Meta{RequestID: rid, TraceParent: tp, Hops: hops})
	if hasTimeout && sw.headerErr == nil {
		ctx, sw.cancel = context.WithTimeout(ctx, timeout)
	}
	return sw, r.WithContext(ctx)
}

// finish recovers a handler's panic, then records the request: span, metrics
// and log line. ServeHTTP defers it (recover needs that).
func (s *Server) finish(sw *statusWriter, r *http.Request) {
	if sw.cancel != nil {
		defer sw.cancel()
	}
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			panic(p)
		}
		s.log.LogAttrs(r.Context(), slog.LevelError, "handler panic",
			slog.String("request_id", sw.rid[0]), slog.String("trace_id", sw.traceID),
			slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		if sw.status == 0 {
			wire.WriteError(sw, http.StatusInternalServerError, "internal error")
		}
	}
	status := sw.status
	if status == 0 {
		status = http.StatusOK // handler wrote nothing: net/http answers 200
		sw.setRequestID()
	}
	route := sw.route
	if route == "" {
		route = "unmatched"
	}
	d := time.Since(sw.start)
	if sw.span != nil {
		name := route
		if !strings.Contains(name, " ") { // LB routes are named "METHOD /path" already
			name = r.Method + " " + name
		}
		sw.span.SetName(name)
		telemetry.End(sw.span, status, nil)
	}
	s.metrics.observeRequest(route, status, d)
	if level := requestLogLevel(r.URL.Path, status, d, s.cfg.SlowRequest); s.log.Enabled(r.Context(), level) {
		s.log.LogAttrs(r.Context(), level, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Duration("duration", d),
			slog.String("request_id", sw.rid[0]), slog.String("trace_id", sw.traceID))
	}
}

// requestLogLevel keeps the log bounded: request lines are Debug, except
// server errors (Warn), client errors and requests slower than slow (Info).
// 429s stay at Debug: under overload they are the bulk of the traffic, and
// flash_http_requests_total counts them. Manifest long polls are slow by
// design.
func requestLogLevel(path string, status int, d, slow time.Duration) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelWarn
	case status == http.StatusTooManyRequests:
		return slog.LevelDebug
	case status >= 400:
		return slog.LevelInfo
	case d >= slow && path != "/manifest":
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// validRequestID accepts a caller's X-Request-Id when it is short visible
// ASCII; anything else is replaced, so logs stay clean.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '"' || s[i] == '\\' {
			return false
		}
	}
	return true
}

// checkHeaders answers a bad X-Flash-Hops or X-Flash-Timeout (after auth,
// so strangers learn nothing), and a call that has gone through too many
// endpoints (508). ok is false when it answered.
func (s *Server) checkHeaders(w *statusWriter) (ok bool) {
	switch {
	case w.headerErr != nil:
		wire.WriteError(w, http.StatusBadRequest, w.headerErr.Error())
	case w.hops > wire.MaxHops:
		wire.WriteError(w, http.StatusLoopDetected,
			fmt.Sprintf("loop detected: %s is %d, above the limit of %d", wire.HeaderHops, w.hops, wire.MaxHops))
	default:
		return true
	}
	return false
}

// route dispatches through the mux. ServeMux answers unknown paths and
// wrong methods in plain text; those answers are rewritten as JSON. A path
// with empty or dot segments ("//run", "/a/../ping") is served as its clean
// form rather than redirected there: ServeMux's redirect of a POST has no
// body, and clients concatenating URLs often produce "//".
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if clean := cleanPath(r.URL.Path); clean != r.URL.Path && r.URL.RawPath == "" {
		u := *r.URL
		u.Path = clean
		r2 := *r
		r2.URL = &u
		r = &r2
	}
	sw, _ := w.(*statusWriter)
	if sw != nil {
		sw.jsonErrors = true
		// ServeMux sets r.Pattern on this very request; read it even if the
		// handler panics.
		defer func() { sw.route = r.Pattern }()
	}
	s.mux.ServeHTTP(w, r)
}

// cleanPath is ServeMux's canonical form of p: rooted, no empty or dot
// segments, the trailing slash kept.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}

// statusWriter records the status and route for logs and metrics. It also
// turns ServeMux's own text answers (404, 405, and the HTML of its
// path-cleaning redirects) into JSON, so that every body is JSON.
type statusWriter struct {
	http.ResponseWriter
	status     int
	route      string
	jsonErrors bool // rewrite ServeMux's text answers
	swallow    bool // drop the body of a rewritten answer

	// What finish records when the request ends.
	start   time.Time
	rid     [1]string  // X-Request-Id, set on the answer when it starts (the header's value slice)
	traceID string     // for logs
	span    trace.Span // nil: not traced

	hops      int                // X-Flash-Hops
	headerErr error              // a malformed X-Flash-Hops or X-Flash-Timeout
	cancel    context.CancelFunc // releases the X-Flash-Timeout deadline; nil without one
}

// setRequestID puts X-Request-Id on the answer (canonical key, no map
// lookup of its spelling, no allocation).
func (w *statusWriter) setRequestID() {
	if w.rid[0] != "" {
		w.Header()[wire.HeaderRequestID] = w.rid[:]
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer (100 Continue relayed by a proxy, 103
		// Early Hints) precedes the real one: pass it on, record nothing.
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.status != 0 {
		return
	}
	w.status = code
	w.setRequestID()
	if w.jsonErrors {
		if msg, ok := w.rewrite(code); ok {
			w.swallow = true
			w.Header().Del("X-Content-Type-Options")
			kv := []any{}
			if loc := w.Header().Get("Location"); loc != "" {
				kv = append(kv, "location", loc)
			}
			wire.WriteError(w.ResponseWriter, code, msg, kv...)
			return
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// rewrite says whether an answer with this status and the current
// Content-Type is one of ServeMux's text answers, and its JSON message.
func (w *statusWriter) rewrite(code int) (string, bool) {
	ct := w.Header().Get("Content-Type")
	switch {
	case code == http.StatusNotFound && strings.HasPrefix(ct, "text/plain"):
		return "no such route", true
	case code == http.StatusMethodNotAllowed && strings.HasPrefix(ct, "text/plain"):
		return "method not allowed (allowed: " + w.Header().Get("Allow") + ")", true
	case code >= 300 && code < 400 && w.Header().Get("Location") != "" && (ct == "" || strings.HasPrefix(ct, "text/html")):
		// ServeMux's redirects: HTML for GET, no body at all for a POST.
		return "moved to the canonical path", true
	}
	return "", false
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes through, for streaming handlers added with Handle.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// handlerFunc is a handler that returns its error instead of writing it:
// an *httpError becomes its own answer, anything else a 500.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (h handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	err := h(w, r)
	if err == nil {
		return
	}
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{Status: http.StatusInternalServerError, Msg: "internal error"}
	}
	for k, v := range he.Header {
		w.Header()[k] = v
	}
	wire.WriteError(w, he.Status, he.Msg, he.KV...)
}

// bodyReadTimeout bounds how long a client may take to send its body; it
// replaces http.Server.ReadTimeout, which would also cut long handlers.
const bodyReadTimeout = time.Minute

// readBody reads the whole body, at most s.cfg.MaxBody bytes (413 beyond).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(bodyReadTimeout)) == nil {
		defer rc.SetReadDeadline(time.Time{})
	}
	limit := s.cfg.MaxBody
	tooBig := func() error {
		return &httpError{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body larger than %d bytes", limit)}
	}
	if r.ContentLength > limit {
		return nil, tooBig()
	}
	var (
		b   []byte
		err error
	)
	if n := r.ContentLength; n >= 0 {
		// Known length: one exact allocation, and no MaxBytesReader (net/http
		// never yields more than Content-Length).
		b = make([]byte, n)
		_, err = io.ReadFull(r.Body, b)
	} else {
		// The innermost writer, so that net/http learns of an oversized body
		// and closes the connection instead of draining it.
		for {
			u, ok := w.(interface{ Unwrap() http.ResponseWriter })
			if !ok {
				break
			}
			w = u.Unwrap()
		}
		b, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooBig()
		}
		return nil, badRequest("reading request body: %v", err)
	}
	return b, nil
}

// metaAttrs are the log attributes of the call in ctx: request and trace id.
func metaAttrs(ctx context.Context) []slog.Attr {
	m, ok := wire.MetaFrom(ctx)
	if !ok {
		return nil
	}
	attrs := []slog.Attr{slog.String("request_id", m.RequestID)}
	if trace, ok := wire.ParseTraceParent(m.TraceParent); ok {
		attrs = append(attrs, slog.String("trace_id", trace))
	}
	return attrs
}
