package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/flash-go/flash/flasherr"
)

// Stream is a function result made of many values. An LB route sends it as
// NDJSON (ContentTypeNDJSON): one {"output": value} line per value, flushed
// as it comes, and, when the producer fails, a last line {"error": …,
// "error_type": …, "code": …}. The producer stops when the caller goes away.
type Stream func(yield func(any, error) bool)

// ContentTypeNDJSON is the content type of a streamed answer.
const ContentTypeNDJSON = "application/x-ndjson"

// StreamLine is one line of a streamed answer.
type StreamLine struct {
	Output    json.RawMessage `json:"output,omitempty"`
	Error     string          `json:"error,omitempty"`
	ErrorType string          `json:"error_type,omitempty"`
	Code      string          `json:"code,omitempty"`
}

// writeStream sends st as NDJSON until it ends, fails or ctx ends.
func (s *Server) writeStream(ctx context.Context, w http.ResponseWriter, f *Func, st Stream, meta *answerMeta) {
	h := w.Header()
	status := meta.apply(h, http.StatusOK)
	h.Set("Content-Type", ContentTypeNDJSON)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	rc.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	fail := func(err error) {
		code := flasherr.CodeOf(err)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = flasherr.CodeDeadlineExceeded
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "stream failed", append(metaAttrs(ctx), slog.String("function", f.Name),
			slog.String("code", string(code)), slog.String("err", err.Error()))...)
		enc.Encode(StreamLine{Error: publicMessage(err.Error()), ErrorType: ErrorType(err), Code: string(code)})
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "stream panicked", slog.String("function", f.Name), slog.String("stack", string(debug.Stack())))
			fail(&PanicError{Value: p})
		}
	}()
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
		if enc.Encode(StreamLine{Output: b}) != nil || rc.Flush() != nil {
			return
		}
	}
	if err := ctx.Err(); err != nil && errors.Is(err, context.DeadlineExceeded) {
		fail(err)
	}
}
