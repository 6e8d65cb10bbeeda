package flash

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
	"github.com/flash-go/flash/serve"
)

// Polling of GET /stream/{id} while no value is ready.
const (
	streamPollStart = 10 * time.Millisecond
	streamPollCap   = 250 * time.Millisecond
)

// remoteQB starts a streaming queue job with /run and reads its values with
// GET /stream/{id} until the job ends; when the caller stops or ctx ends,
// it cancels the job.
func (s *StreamFunc[In, Out]) remoteQB(ctx context.Context, info funcInfo, arg []byte, yield func(Out, error) bool) error {
	base := s.client.base + "/v2/" + url.PathEscape(info.resource.name)
	body := append(append(wire.JobRequestHead(info.name), arg...), wire.JobRequestTail...)
	var ref wire.JobRef
	if err := s.client.do(ctx, http.MethodPost, base+"/run", body, &ref); err != nil {
		return fmt.Errorf("stream %s on %s: %w", info.name, info.resource.name, err)
	}
	if !wire.ValidJobID(ref.ID) {
		return fmt.Errorf("stream %s: %w: /run answered no job id", info.name, flasherr.ErrSerialization)
	}
	done := false
	defer func() {
		if !done { // stopped early: the producer need not run on
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = s.client.do(cctx, http.MethodPost, base+"/cancel/"+ref.ID, []byte("{}"), nil)
		}
	}()
	delay := streamPollStart
	for {
		var a serve.StreamAnswer
		if err := s.client.do(ctx, http.MethodGet, base+"/stream/"+ref.ID, nil, &a); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("stream %s on %s: %w", info.name, info.resource.name, err)
		}
		for _, line := range a.Stream {
			var v Out
			if err := json.Unmarshal(line.Output, &v); err != nil {
				return fmt.Errorf("stream %s: %w: decoding a value: %w", info.name, flasherr.ErrSerialization, err)
			}
			if !yield(v, nil) {
				return nil
			}
		}
		switch a.Status {
		case wire.StatusCompleted:
			done = true
			return nil
		case wire.StatusFailed, wire.StatusCancelled:
			done = true
			e := &flasherr.RemoteError{Function: info.name, Resource: info.resource.name, Type: "Cancelled", Message: "the job was cancelled on the endpoint"}
			if o := a.Output; o != nil && a.Status == wire.StatusFailed {
				e.Type, e.Message = o.ErrorType, o.Error
				if c := flasherr.Code(o.Code); c.Valid() {
					e.Code = c
				}
			}
			return e
		case wire.StatusTimedOut:
			done = true
			return fmt.Errorf("stream %s: %w: the endpoint reported TIMED_OUT", info.name, flasherr.ErrTimeout)
		}
		if len(a.Stream) > 0 {
			delay = streamPollStart
			continue
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, streamPollCap)
	}
}

// do sends one request of a stream to the gateway and decodes a 2xx JSON
// answer into out (when not nil); other answers become typed errors.
func (c *Client) do(ctx context.Context, method, target string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", wire.ContentTypeJSON)
	if c.key != "" {
		req.Header.Set(wire.HeaderAuthorization, "Bearer "+c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", flasherr.ErrEndpointNotReady, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxStreamLine))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e wire.ErrorBody
		_ = json.Unmarshal(data, &e)
		var kind error
		switch resp.StatusCode {
		case http.StatusNotFound:
			kind = flasherr.ErrFunctionNotFound
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			kind = flasherr.ErrOverloaded
		}
		return &flasherr.StatusError{Code: resp.StatusCode, Message: e.Error, Kind: kind}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: %w", flasherr.ErrSerialization, err)
	}
	return nil
}
