package flash

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"

	"github.com/flash-go/flash/child"
	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/serve"
)

// StreamFunc is a handle on a function that produces a sequence of values:
// a load-balanced route answering NDJSON (or server-sent events), or a
// queue function read through /stream/{id}.
type StreamFunc[In, Out any] struct {
	f      *Func[In, serve.Stream]
	fn     func(context.Context, In) iter.Seq2[Out, error]
	remote *remoteTarget // set by BindStream: every stream goes through a Client
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
	return &StreamFunc[In, Out]{f: s.f, fn: s.fn, remote: c.target(s.f.app, s.f.name)}
}

// Stream runs the function with in and returns its values: in this
// process, or, like Func.Call, on the endpoint the app's manifest places it
// on (a handle from BindStream: through the Client's gateway), read as they
// come. ctx's deadline and cancellation end the stream (with ctx's error as
// the last value); stopping the iteration early stops the producer.
func (s *StreamFunc[In, Out]) Stream(ctx context.Context, in In) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		var zero Out
		var err error
		switch rt := s.f.app.caller.Load(); {
		case s.remote != nil:
			if err = s.remote.err; err == nil {
				err = s.decode(yield, func(each func(json.RawMessage) bool) error {
					return s.remote.iv.Stream(ctx, s.remote.target, in, each)
				})
			}
		case rt != nil:
			var target *child.Target
			switch target, err = s.f.lookup(ctx, rt); {
			case err == nil && target == nil:
				s.local(ctx, in, yield)
			case err == nil:
				err = s.decode(yield, func(each func(json.RawMessage) bool) error {
					return rt.Stream(ctx, target, in, each)
				})
			}
		default:
			s.local(ctx, in, yield)
		}
		if err != nil {
			yield(zero, err)
		}
	}
}

// local runs the producer in this process.
func (s *StreamFunc[In, Out]) local(ctx context.Context, in In, yield func(Out, error) bool) {
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

// decode yields the values read by run as Out; an error it returns has not
// been yielded yet.
func (s *StreamFunc[In, Out]) decode(yield func(Out, error) bool, run func(each func(json.RawMessage) bool) error) error {
	var bad error
	err := run(func(raw json.RawMessage) bool {
		var v Out
		if err := json.Unmarshal(raw, &v); err != nil {
			bad = fmt.Errorf("stream %s: %w: decoding a value: %w", s.f.name, flasherr.ErrSerialization, err)
			return false
		}
		return yield(v, nil)
	})
	if bad != nil {
		return bad
	}
	return err
}
