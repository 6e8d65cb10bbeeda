package flash

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/serve"
)

// maxStreamLine bounds one line of a streamed answer a caller reads.
const maxStreamLine = child.MaxResponseSize

// StreamFunc is a handle on a load-balanced route whose function produces
// a sequence of values: the route answers NDJSON, one line per value,
// flushed as it comes.
type StreamFunc[In, Out any] struct {
	f      *Func[In, serve.Stream]
	fn     func(context.Context, In) iter.Seq2[Out, error]
	client *Client // set by BindStream
}

// RouteStream adds a load-balanced route whose function yields values one
// by one (see Route). When the producer yields an error the stream ends
// with it; when the caller goes away, yield returns false and the producer
// must return.
func RouteStream[In, Out any](r *Resource, route, name string, fn func(context.Context, In) iter.Seq2[Out, error]) *StreamFunc[In, Out] {
	return &StreamFunc[In, Out]{f: Route(r, route, name, streamJob(fn)), fn: fn}
}

// RegisterStream adds a queue function that yields values one by one:
// started with /run, its values are read with GET /stream/{id} (Runpod's
// shape), each once; its result is {"values": N}.
func RegisterStream[In, Out any](r *Resource, name string, fn func(context.Context, In) iter.Seq2[Out, error]) *StreamFunc[In, Out] {
	return &StreamFunc[In, Out]{f: Register(r, name, streamJob(fn)), fn: fn}
}

// streamJob adapts a producer to the function serve runs.
func streamJob[In, Out any](fn func(context.Context, In) iter.Seq2[Out, error]) func(context.Context, In) (serve.Stream, error) {
	adapted := func(ctx context.Context, in In) (serve.Stream, error) {
		seq := fn(ctx, in)
		return func(yield func(any, error) bool) {
			for v, err := range seq {
				if !yield(v, err) {
					return
				}
			}
		}, nil
	}
	if fn == nil {
		adapted = nil
	}
	return adapted
}

// Name returns the function's name.
func (s *StreamFunc[In, Out]) Name() string { return s.f.name }

// BindStream returns a handle on s whose Stream goes through c to the
// app's deployment (see Bind).
func BindStream[In, Out any](c *Client, s *StreamFunc[In, Out]) *StreamFunc[In, Out] {
	return &StreamFunc[In, Out]{f: s.f, fn: s.fn, client: c}
}

// Stream runs the function with in and returns its values. A handle from
// BindStream reads them from the app's deployment as they come; others run
// the function in this process, and fail when the app's manifest places it
// on another endpoint (not supported yet: bind a Client). ctx's deadline and cancellation end the
// stream (with ctx's error as the last value); stopping the iteration early
// stops the producer.
func (s *StreamFunc[In, Out]) Stream(ctx context.Context, in In) iter.Seq2[Out, error] {
	if s.client == nil {
		return func(yield func(Out, error) bool) {
			if rt := s.f.app.caller.Load(); rt != nil {
				var zero Out
				if target, err := s.f.lookup(ctx, rt); err != nil || target != nil {
					if err == nil {
						err = fmt.Errorf("stream %s: it runs on %s; streaming between endpoints needs a Client (flash.BindStream)", s.f.name, target.Resource)
					}
					yield(zero, err)
					return
				}
			}
			for v, err := range s.fn(ctx, in) {
				if cerr := ctx.Err(); cerr != nil && err == nil {
					var zero Out
					yield(zero, cerr)
					return
				}
				if !yield(v, err) || err != nil {
					return
				}
			}
		}
	}
	return func(yield func(Out, error) bool) {
		var zero Out
		if err := s.remote(ctx, in, yield); err != nil {
			yield(zero, err)
		}
	}
}

// remote streams in's values from the deployment's route; an error it
// returns has not been yielded yet.
func (s *StreamFunc[In, Out]) remote(ctx context.Context, in In, yield func(Out, error) bool) error {
	i := slices.IndexFunc(s.f.app.funcs, func(fi funcInfo) bool { return fi.name == s.f.name })
	if i < 0 {
		return fmt.Errorf("%w: %s is not registered on app %s", flasherr.ErrFunctionNotFound, s.f.name, s.f.app.name)
	}
	info := s.f.app.funcs[i]
	arg, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%w: encoding the argument: %w", flasherr.ErrSerialization, err)
	}
	if !info.resource.loadBalanced {
		return s.remoteQB(ctx, info, arg, yield)
	}
	path, err := wire.FillPathJSON(info.path, arg)
	if err != nil {
		return fmt.Errorf("%w: %w", flasherr.ErrSerialization, err)
	}
	var body io.Reader
	if info.method != http.MethodGet && info.method != http.MethodHead {
		body = bytes.NewReader(arg)
	}
	req, err := http.NewRequestWithContext(ctx, info.method, s.client.base+"/"+url.PathEscape(info.resource.name)+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", wire.ContentTypeJSON)
	req.Header.Set("Accept", serve.ContentTypeNDJSON)
	if s.client.key != "" {
		req.Header.Set(wire.HeaderAuthorization, "Bearer "+s.client.key)
	}
	if d, ok := ctx.Deadline(); ok {
		req.Header.Set(wire.HeaderTimeout, wire.FormatTimeout(time.Until(d)))
	}
	resp, err := s.client.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("stream %s on %s: %w: %w", info.name, info.resource.name, flasherr.ErrEndpointNotReady, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return s.statusError(info, resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), int(maxStreamLine))
	for sc.Scan() {
		if ctx.Err() != nil {
			return ctx.Err() // a line cut short by the cancellation is no value
		}
		var line serve.StreamLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("stream %s: %w: a line is not JSON: %w", info.name, flasherr.ErrSerialization, err)
		}
		if line.Error != "" || line.Code != "" {
			c := flasherr.Code(line.Code)
			if !c.Valid() {
				c = ""
			}
			return &flasherr.RemoteError{Function: info.name, Resource: info.resource.name, Type: line.ErrorType, Message: line.Error, Code: c}
		}
		var v Out
		if err := json.Unmarshal(line.Output, &v); err != nil {
			return fmt.Errorf("stream %s: %w: decoding a value: %w", info.name, flasherr.ErrSerialization, err)
		}
		if !yield(v, nil) {
			return nil // closing the body tells the producer to stop
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("stream %s: reading: %w", info.name, err)
	}
	return nil
}

// statusError is the error of a stream the route refused or failed before
// its first value.
func (s *StreamFunc[In, Out]) statusError(info funcInfo, resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e wire.ErrorBody
	_ = json.Unmarshal(data, &e)
	if e.ErrorType != "" && e.Code != "" {
		c := flasherr.Code(e.Code)
		if !c.Valid() {
			c = ""
		}
		return &flasherr.RemoteError{Function: info.name, Resource: info.resource.name, Type: e.ErrorType, Message: e.Error, Code: c}
	}
	var kind error
	switch resp.StatusCode {
	case http.StatusNotFound:
		kind = flasherr.ErrFunctionNotFound
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		kind = flasherr.ErrOverloaded
	}
	return fmt.Errorf("stream %s on %s: %w", info.name, info.resource.name,
		&flasherr.StatusError{Code: resp.StatusCode, Message: e.Error, Kind: kind})
}
