package serve

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// lbHandler serves a load-balanced function on its own route: JSON body in,
// JSON result out. It runs in the request's goroutine, with the request's
// deadline and cancellation, once admitted: at most Limits.LBConcurrency
// calls run at once and Limits.LBQueue wait; a call beyond gets 429 before
// its body is read.
func (s *Server) lbHandler(f *Func) http.Handler {
	params := wire.PathParams(f.Path)
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if err := s.lb.acquire(r.Context()); err != nil {
			return admitError(err)
		}
		defer s.lb.release()
		in := Input{Query: r.URL.Query(), Header: r.Header}
		if len(params) > 0 {
			in.Params = make(map[string]string, len(params))
			for _, p := range params {
				in.Params[p] = r.PathValue(p)
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			body, err := s.readBody(w, r)
			if err != nil {
				return err
			}
			if len(body) > 0 {
				if !json.Valid(body) {
					return badRequest("malformed JSON body")
				}
				in.JSON = body
			}
		}
		run, err := s.bind(r.Context(), f, in)
		if err != nil {
			return err
		}
		meta := &answerMeta{}
		ctx := context.WithValue(r.Context(), answerMetaKey{}, meta)
		out, err := call(ctx, run)
		if st, ok := out.(Stream); ok && err == nil && ctx.Err() == nil {
			s.writeStream(ctx, w, r, f, st, meta)
			return nil
		}
		if err == nil && ctx.Err() == nil {
			result, merr := json.Marshal(out)
			if merr == nil {
				status := meta.apply(w.Header(), http.StatusOK)
				if status == http.StatusNoContent || status == http.StatusNotModified {
					w.WriteHeader(status)
					return nil
				}
				wire.WriteRawJSON(w, status, append(result, '\n'))
				return nil
			}
			err = &typedError{typ: "SerializationError", err: merr}
		}
		herr := s.lbError(ctx, f, err)
		meta.apply(w.Header(), 0)
		return herr
	})
}

// lbError renders a function's failure: 504 when the call's deadline passed,
// 500 otherwise, with the error's message and type.
func (s *Server) lbError(ctx context.Context, f *Func, err error) error {
	status := http.StatusInternalServerError
	typ, msg := "", ""
	code := flasherr.CodeUnknown
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		status, typ, msg, code = http.StatusGatewayTimeout, "TimeoutError", "execution timed out", flasherr.CodeDeadlineExceeded
	case ctx.Err() != nil:
		// The caller went away; nobody reads this answer.
		status, typ, msg, code = 499, "Cancelled", "request cancelled", flasherr.CodeCanceled
	default:
		typ, msg = ErrorType(err), publicMessage(err.Error())
		code = flasherr.CodeOf(err)
		status = code.HTTPStatus()
	}
	logged := msg // the log keeps the whole text; err is nil when only the deadline passed
	if err != nil {
		logged = err.Error()
	}
	attrs := append(metaAttrs(ctx), slog.String("function", f.Name), slog.String("error_type", typ), slog.String("code", string(code)), slog.String("err", logged))
	level := slog.LevelInfo
	var pe *PanicError
	if errors.As(err, &pe) {
		level = slog.LevelError
		attrs = append(attrs, slog.String("stack", string(pe.Stack)))
	}
	s.log.LogAttrs(ctx, level, "function failed", attrs...)
	return &httpError{Status: status, Msg: msg, KV: []any{"error_type", typ, "code", string(code)}}
}

// admitError is the answer of a call that got no slot: 429 when the queue
// was full, else its context ended while it waited.
func admitError(err error) error {
	switch {
	case errors.Is(err, errBusy):
		return &httpError{Status: http.StatusTooManyRequests, Msg: "too many calls in progress, retry later",
			Header: http.Header{wire.HeaderRetryAfter: {"1"}}}
	case errors.Is(err, context.DeadlineExceeded):
		return &httpError{Status: http.StatusGatewayTimeout, Msg: "timed out waiting for a free slot", KV: []any{"error_type", "TimeoutError"}}
	}
	return &httpError{Status: 499, Msg: "request cancelled", KV: []any{"error_type", "Cancelled"}}
}

// typedError gives an error an ErrorType.
type typedError struct {
	typ string
	err error
}

func (e *typedError) Error() string     { return e.err.Error() }
func (e *typedError) Unwrap() error     { return e.err }
func (e *typedError) ErrorType() string { return e.typ }
