package child

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// Polling of GET /stream/{id} while no value is ready: from
// StreamPollStart, doubling up to StreamPollCap, back to the start after
// each value.
const (
	StreamPollStart = 10 * time.Millisecond
	StreamPollCap   = 250 * time.Millisecond
)

// Stream calls t's streaming function with in and hands each value, as
// JSON, to each: from an LB route's NDJSON answer, or from a queue job
// started with POST /run and read with GET /stream/{id}. It returns nil
// when the stream ends or each returns false; when each returns false or
// ctx ends early, the producer is told to stop (the connection closes, or
// the job is cancelled). Errors are Invoke's: a *flasherr.RemoteError for
// the producer's error (code included), ctx's end as t.ctxError gives it.
//
// Only the start of a stream is retried (see RetryPolicy). Unlike Invoke,
// a stream has no default deadline: it lasts as long as ctx allows (each
// request of a queue job's stream is bounded by the default call timeout).
func (iv *Invoker) Stream(ctx context.Context, t *Target, in any, each func(json.RawMessage) bool) error {
	return iv.stream(ctx, t, in, each, nil)
}

// stream is Stream that gives up waiting for a refusing endpoint when
// moved is closed (see send).
func (iv *Invoker) stream(ctx context.Context, t *Target, in any, each func(json.RawMessage) bool, moved <-chan struct{}) (err error) {
	if err := t.callable(); err != nil {
		return err
	}
	if iv.metrics != nil {
		start := time.Now()
		defer func() { iv.metrics.Call(t.Resource, t.Function, outcome(err), time.Since(start)) }()
	}
	c := newCall(ctx, t, moved)
	defer c.release()
	if t.LB {
		return iv.streamLB(ctx, &c, in, each)
	}
	return iv.streamQB(ctx, &c, in, each)
}

func (iv *Invoker) streamLB(ctx context.Context, c *call, in any, each func(json.RawMessage) bool) error {
	t := c.t
	path, payload, err := t.routeRequest(in)
	if err != nil {
		return err
	}
	c.stream = true
	a, err := iv.send(ctx, c, t.Method, path, payload)
	if err != nil {
		return err
	}
	if a.body == nil {
		return iv.statusError(t, c.base+path, a.status, a.data)
	}
	// Closing the body early closes the connection: the producer's yield
	// returns false.
	defer a.body.Close()
	return iv.readLines(ctx, t, a.body, each)
}

// readLines hands the values of an NDJSON stream to each, until the stream
// ends (nil), its error line (a *flasherr.RemoteError) or each returns false.
func (iv *Invoker) readLines(ctx context.Context, t *Target, body io.Reader, each func(json.RawMessage) bool) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), int(min(iv.maxResp, 1<<30)))
	for sc.Scan() {
		if ctx.Err() != nil {
			return t.ctxError(ctx) // a line cut short by the cancellation is no value
		}
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var line wire.StreamLine
		if err := json.Unmarshal(b, &line); err != nil {
			return t.errorf("%w: a streamed line is not JSON: %w", flasherr.ErrSerialization, err)
		}
		if line.Error != "" || line.Code != "" || line.ErrorType != "" {
			return iv.cleanRemote(&flasherr.RemoteError{Function: t.Function, Resource: t.Resource,
				Type: line.ErrorType, Message: line.Error, Code: knownCode(line.Code)})
		}
		if !each(line.Output) {
			return nil
		}
	}
	if ctx.Err() != nil {
		return t.ctxError(ctx)
	}
	if err := sc.Err(); err != nil {
		return t.errorf("reading the stream: %w", iv.scrub(err))
	}
	return nil
}

func (iv *Invoker) streamQB(ctx context.Context, c *call, in any, each func(json.RawMessage) bool) error {
	t := c.t
	// Each request of the job is bounded as a call is, the stream is not.
	bounded := func() (context.Context, context.CancelFunc) {
		if _, ok := ctx.Deadline(); ok {
			return ctx, func() {}
		}
		return context.WithTimeout(ctx, iv.timeout)
	}
	rctx, cancel := bounded()
	job, base, err := iv.submit(rctx, c, "/run", in)
	cancel()
	if err != nil {
		return err
	}
	if !wire.ValidJobID(job.ID) {
		return t.errorf("%w: /run answered no job id", flasherr.ErrSerialization)
	}
	done := false
	defer func() {
		if !done { // stopped early: the producer need not run on
			iv.cancelJob(ctx, c, base, job.ID)
		}
	}()
	streamURL := base + "/stream/" + url.PathEscape(job.ID)
	delay := StreamPollStart
	for {
		rctx, cancel := bounded()
		a, err := iv.do(rctx, c, http.MethodGet, streamURL, nil)
		cancel()
		if err != nil {
			return err
		}
		if a.status < 200 || a.status > 299 {
			return iv.statusError(t, streamURL, a.status, a.data)
		}
		var sa wire.StreamAnswer
		if err := json.Unmarshal(a.data, &sa); err != nil {
			return t.errorf("%w: decoding the /stream answer: %w", flasherr.ErrSerialization, err)
		}
		for _, line := range sa.Stream {
			if ctx.Err() != nil {
				return t.ctxError(ctx)
			}
			if !each(line.Output) {
				return nil
			}
		}
		if wire.FinalStatus(sa.Status) {
			done = true
			return iv.streamEnd(t, sa.JobAnswer)
		}
		if sa.Status != wire.StatusInQueue && sa.Status != wire.StatusInProgress {
			return t.errorf("%w: unknown job status %q", flasherr.ErrSerialization, truncate(sa.Status, 40))
		}
		if len(sa.Stream) > 0 {
			delay = StreamPollStart
			continue
		}
		if !sleep(ctx, delay) {
			return t.ctxError(ctx)
		}
		delay = min(delay*2, StreamPollCap)
	}
}

// streamEnd is the outcome of a streaming job in a final state.
func (iv *Invoker) streamEnd(t *Target, job wire.JobAnswer) error {
	switch job.Status {
	case wire.StatusCompleted:
		return nil
	case wire.StatusFailed:
		return iv.cleanRemote(t.remoteError(job))
	case wire.StatusTimedOut:
		return t.errorf("%w: the endpoint reported TIMED_OUT", flasherr.ErrTimeout)
	}
	return &flasherr.RemoteError{Function: t.Function, Resource: t.Resource, Type: "Cancelled",
		Message: "the job was cancelled on the endpoint"}
}
