package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// Stream is a function result made of many values. An LB route sends it as
// NDJSON (wire.ContentTypeNDJSON): one {"output": value} line per value,
// flushed as it comes, and, when the producer fails, a last line {"error": …,
// "error_type": …, "code": …}. A caller that asks for server-sent events
// (Accept: text/event-stream) gets one "data: value" event per value, an
// "error" event for the failure and an "end" event {"values": N} after the
// last value. The producer stops when the caller goes away.
type Stream func(yield func(any, error) bool)

// DefaultSSEHeartbeat is how long a server-sent-event stream stays silent
// before it sends a comment line, so that proxies do not take it for dead.
const DefaultSSEHeartbeat = 15 * time.Second

// streamFormat renders the parts of a streamed answer, appending to buf.
type streamFormat struct {
	contentType string
	value       func(buf []byte, v json.RawMessage) []byte
	fail        func(buf []byte, line []byte) []byte
	end         func(buf []byte, n int) []byte
}

var (
	ndjson = streamFormat{
		contentType: wire.ContentTypeNDJSON,
		value: func(buf []byte, v json.RawMessage) []byte {
			return append(append(append(buf, `{"output":`...), v...), "}\n"...)
		},
		fail: func(buf []byte, line []byte) []byte { return append(append(buf, line...), '\n') },
		end:  func(buf []byte, _ int) []byte { return buf },
	}
	eventStream = streamFormat{
		contentType: wire.ContentTypeEventStream,
		value: func(buf []byte, v json.RawMessage) []byte {
			return append(append(append(buf, "data: "...), v...), "\n\n"...)
		},
		fail: func(buf []byte, line []byte) []byte {
			return append(append(append(buf, "event: error\ndata: "...), line...), "\n\n"...)
		},
		end: func(buf []byte, n int) []byte {
			return append(strconv.AppendInt(append(buf, "event: end\ndata: {\"values\":"...), int64(n), 10), "}\n\n"...)
		},
	}
)

// wantsEvents reports whether an Accept header asks for server-sent events
// rather than NDJSON: text/event-stream with a q above NDJSON's (absent
// counts as 0; a tie keeps NDJSON, the default).
func wantsEvents(accept string) bool {
	if !strings.Contains(strings.ToLower(accept), "event-stream") {
		return false
	}
	events, lines := 0.0, 0.0
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, _ := strings.Cut(part, ";")
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			if k, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || !(f >= 0 && f <= 1) {
					f = 0 // a range with a malformed weight is not wanted
				}
				q = f
			}
		}
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case wire.ContentTypeEventStream:
			events = max(events, q)
		case wire.ContentTypeNDJSON:
			lines = max(lines, q)
		}
	}
	return events > lines
}

// streamOut writes a stream's parts, each flushed at once; a heartbeat may
// write from another goroutine, hence the lock.
type streamOut struct {
	mu    sync.Mutex
	w     http.ResponseWriter
	rc    *http.ResponseController
	wrote bool // since the last heartbeat tick
}

func (o *streamOut) write(b []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.wrote = true
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	return o.rc.Flush()
}

// heartbeat writes a comment line every period in which nothing else was
// written, until the returned stop is called (which waits for it).
func (o *streamOut) heartbeat(period time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			o.mu.Lock()
			idle := !o.wrote
			o.wrote = false
			o.mu.Unlock()
			if idle && o.write([]byte(": keep-alive\n\n")) != nil {
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// writeStream sends st as NDJSON, or as server-sent events when r asks for
// them, until it ends, fails or ctx ends.
func (s *Server) writeStream(ctx context.Context, w http.ResponseWriter, r *http.Request, f *Func, st Stream, meta *answerMeta) {
	format := ndjson
	if wantsEvents(r.Header.Get("Accept")) {
		format = eventStream
	}
	h := w.Header()
	status := meta.apply(h, http.StatusOK)
	h.Set("Content-Type", format.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if format.contentType == wire.ContentTypeEventStream {
		h.Set("Cache-Control", "no-cache")
	}
	w.WriteHeader(status)
	out := &streamOut{w: w, rc: http.NewResponseController(w)}
	out.rc.Flush()
	if format.contentType == wire.ContentTypeEventStream {
		defer out.heartbeat(s.cfg.SSEHeartbeat)()
	}
	var buf []byte
	fail := func(err error) {
		code := flasherr.CodeOf(err)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = flasherr.CodeDeadlineExceeded
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "stream failed", append(metaAttrs(ctx), slog.String("function", f.Name),
			slog.String("code", string(code)), slog.String("err", err.Error()))...)
		line, _ := json.Marshal(wire.StreamLine{Error: publicMessage(err.Error()), ErrorType: ErrorType(err), Code: string(code)})
		out.write(format.fail(buf[:0], line))
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "stream panicked", slog.String("function", f.Name), slog.String("stack", string(debug.Stack())))
			fail(&PanicError{Value: p})
		}
	}()
	n := 0
	for v, err := range st {
		if ctx.Err() != nil {
			break // the caller went away or time ran out: stop the producer
		}
		if err != nil {
			fail(err)
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			fail(&typedError{typ: "SerializationError", err: fmt.Errorf("encoding a streamed value: %w", err)})
			return
		}
		buf = format.value(buf[:0], b)
		if out.write(buf) != nil {
			return
		}
		n++
	}
	switch err := ctx.Err(); {
	case err == nil:
		if end := format.end(buf[:0], n); len(end) > 0 {
			out.write(end)
		}
	case errors.Is(err, context.DeadlineExceeded):
		fail(err)
	}
}
