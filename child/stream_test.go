package child

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/wire"
)

// countIn is the argument of the test streams: 1..N, failing at Fail.
type countIn struct {
	N    int `json:"n"`
	Fail int `json:"fail,omitempty"`
}

// lbStreamer is an LB endpoint streaming POST /count as NDJSON; it keeps
// the headers of the last request and says when a producer stopped early.
type lbStreamer struct {
	*httptest.Server
	mu      sync.Mutex
	header  http.Header
	stopped chan struct{}
}

func newLBStreamer(t *testing.T) *lbStreamer {
	s := &lbStreamer{stopped: make(chan struct{}, 1)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.header = r.Header.Clone()
		s.mu.Unlock()
		var in countIn
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			wire.WriteError(w, http.StatusBadRequest, "bad body")
			return
		}
		w.Header().Set("Content-Type", wire.ContentTypeNDJSON)
		rc := http.NewResponseController(w)
		for i := 1; i <= in.N; i++ {
			if i == in.Fail {
				fmt.Fprintf(w, `{"error":"no %d","error_type":"Error","code":"out_of_range"}`+"\n", i)
				return
			}
			if _, err := fmt.Fprintf(w, `{"output":%d}`+"\n", i); err != nil || rc.Flush() != nil || r.Context().Err() != nil {
				s.stopped <- struct{}{}
				return
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func lbStreamTarget(urls ...string) *Target {
	return &Target{Function: "count", Resource: "api", LB: true, Method: "POST", Path: "/count", URLs: urls}
}

// collect streams t with in and returns the values and the error.
func collect(ctx context.Context, iv *Invoker, t *Target, in countIn, stopAt int) ([]int, error) {
	var got []int
	err := iv.Stream(ctx, t, in, func(raw json.RawMessage) bool {
		var v int
		if json.Unmarshal(raw, &v) != nil {
			return false
		}
		got = append(got, v)
		return len(got) != stopAt
	})
	return got, err
}

func inOrder(got []int, n int) bool {
	if len(got) != n {
		return false
	}
	for i, v := range got {
		if v != i+1 {
			return false
		}
	}
	return true
}

// TestStreamLB: 10,000 values of an NDJSON route in order, with the call
// headers an Invoke carries (key, one more hop, the deadline, the trace)
// and Accept: NDJSON; an error line ends the stream with its code;
// stopping early or cancelling stops the producer.
func TestStreamLB(t *testing.T) {
	srv := newLBStreamer(t)
	iv := NewInvoker(InvokerConfig{APIKey: "k", Logger: quietLogger()})
	tg := lbStreamTarget(srv.URL)
	ctx, cancel := context.WithTimeout(wire.WithMeta(context.Background(), wire.Meta{Hops: 2, RequestID: "req-1"}), time.Minute)
	defer cancel()

	got, err := collect(ctx, iv, tg, countIn{N: 10000}, 0)
	if err != nil || !inOrder(got, 10000) {
		t.Fatalf("%d values (%v), want 1..10000", len(got), err)
	}
	srv.mu.Lock()
	h := srv.header
	srv.mu.Unlock()
	if h.Get("Authorization") != "Bearer k" || h.Get(wire.HeaderHops) != "3" || h.Get(wire.HeaderRequestID) != "req-1" ||
		h.Get(wire.HeaderTimeout) == "" || h.Get(wire.HeaderTraceParent) == "" || h.Get("Accept") != wire.ContentTypeNDJSON {
		t.Errorf("request headers %v", h)
	}

	got, err = collect(ctx, iv, tg, countIn{N: 10, Fail: 4}, 0)
	var re *flasherr.RemoteError
	if !inOrder(got, 3) || !errors.As(err, &re) || re.Code != flasherr.CodeOutOfRange || re.Message != "no 4" {
		t.Fatalf("values %v, error %v: want 1..3 then out_of_range", got, err)
	}

	got, err = collect(ctx, iv, tg, countIn{N: 1 << 30}, 100)
	if err != nil || !inOrder(got, 100) {
		t.Fatalf("stopped at 100: %d values, %v", len(got), err)
	}
	<-srv.stopped

	cctx, ccancel := context.WithCancel(ctx)
	var n int
	err = iv.Stream(cctx, tg, countIn{N: 1 << 30}, func(json.RawMessage) bool {
		if n++; n == 5000 {
			ccancel()
		}
		return true
	})
	if !errors.Is(err, context.Canceled) || n < 5000 {
		t.Fatalf("cancelled at 5000: %d values, %v", n, err)
	}
	<-srv.stopped
}

// TestStreamLBStart: a stream's start is retried like a call (a 503 goes
// to the other replica); a refusal that is not is mapped as Invoke maps it.
func TestStreamLBStart(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, http.StatusServiceUnavailable, "busy")
	}))
	defer busy.Close()
	srv := newLBStreamer(t)
	iv := NewInvoker(InvokerConfig{Logger: quietLogger(), Retry: RetryPolicy{Base: time.Millisecond, Cap: time.Millisecond}})
	for range 5 {
		if got, err := collect(t.Context(), iv, lbStreamTarget(busy.URL, srv.URL), countIn{N: 3}, 0); err != nil || !inOrder(got, 3) {
			t.Fatalf("with a busy replica: %v %v", got, err)
		}
	}
	_, err := collect(t.Context(), iv, lbStreamTarget(busy.URL), countIn{N: 3}, 0)
	if !errors.Is(err, flasherr.ErrOverloaded) {
		t.Fatalf("only a busy replica: %v, want ErrOverloaded", err)
	}
	missing := &Target{Function: "count", Resource: "api", LB: true, Method: "POST", Path: "/nope/{missing}", URLs: []string{srv.URL}}
	if _, err := collect(t.Context(), iv, missing, countIn{N: 3}, 0); !errors.Is(err, flasherr.ErrSerialization) {
		t.Fatalf("path parameter missing from the input: %v", err)
	}
}

// qbStreamer is a QB endpoint whose job "j" streams 1..n through GET
// /stream/j, chunk values per answer with an empty answer between chunks,
// then COMPLETED (or FAILED at fail); it counts cancels.
type qbStreamer struct {
	*httptest.Server
	mu        sync.Mutex
	in        countIn
	next      int
	empty     bool
	cancelled int
}

func newQBStreamer(t *testing.T, chunk int) *qbStreamer {
	s := &qbStreamer{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		inv, err := wire.DecodeJobRequest(body)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.in = countIn{}
		if err != nil || inv.Function != "countq" || json.Unmarshal(inv.Input, &s.in) != nil || r.Header.Get(wire.HeaderIdempotencyKey) == "" {
			wire.WriteError(w, http.StatusBadRequest, "bad envelope")
			return
		}
		s.next = 1
		wire.WriteJSON(w, http.StatusOK, wire.JobAnswer{ID: "j", Status: wire.StatusInQueue})
	})
	mux.HandleFunc("GET /stream/j", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		a := wire.StreamAnswer{JobAnswer: wire.JobAnswer{ID: "j", Status: wire.StatusInProgress}, Stream: []wire.StreamLine{}}
		if s.empty = !s.empty; !s.empty {
			for ; len(a.Stream) < chunk && s.next <= s.in.N && s.next != s.in.Fail; s.next++ {
				a.Stream = append(a.Stream, wire.StreamLine{Output: json.RawMessage(fmt.Sprint(s.next))})
			}
			switch {
			case s.next == s.in.Fail:
				a.Status, a.Output = wire.StatusFailed, &wire.JobOutput{Error: "too far", ErrorType: "Error", Code: "out_of_range"}
			case s.next > s.in.N:
				a.Status = wire.StatusCompleted
			}
		}
		wire.WriteJSON(w, http.StatusOK, a)
	})
	mux.HandleFunc("POST /cancel/j", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.cancelled++
		s.mu.Unlock()
		wire.WriteJSON(w, http.StatusOK, wire.JobAnswer{ID: "j", Status: wire.StatusCancelled})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// TestStreamQB: a streaming job's values come through /run and
// /stream/{id} each once and in order; FAILED ends with the error's code;
// stopping early cancels the job; a finished job is not cancelled.
func TestStreamQB(t *testing.T) {
	srv := newQBStreamer(t, 300)
	iv := NewInvoker(InvokerConfig{Logger: quietLogger()})
	tg := &Target{Function: "countq", Resource: "workers", URLs: []string{srv.URL}}

	got, err := collect(t.Context(), iv, tg, countIn{N: 10000}, 0)
	if err != nil || !inOrder(got, 10000) {
		t.Fatalf("%d values (%v), want 1..10000", len(got), err)
	}
	got, err = collect(t.Context(), iv, tg, countIn{N: 10, Fail: 5}, 0)
	var re *flasherr.RemoteError
	if !inOrder(got, 4) || !errors.As(err, &re) || re.Code != flasherr.CodeOutOfRange {
		t.Fatalf("values %v, error %v: want 1..4 then out_of_range", got, err)
	}
	srv.mu.Lock()
	if srv.cancelled != 0 {
		t.Errorf("finished jobs cancelled %d times", srv.cancelled)
	}
	srv.mu.Unlock()
	got, err = collect(t.Context(), iv, tg, countIn{N: 10000}, 500)
	srv.mu.Lock()
	if err != nil || !inOrder(got, 500) || srv.cancelled != 1 {
		t.Fatalf("stopped at 500: %d values, %v, %d cancels", len(got), err, srv.cancelled)
	}
	srv.mu.Unlock()
	// Cancelled in the middle of an answer's values: none after it.
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	err = iv.Stream(ctx, tg, countIn{N: 10000}, func(json.RawMessage) bool {
		if n++; n == 150 {
			cancel()
		}
		return true
	})
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if !errors.Is(err, context.Canceled) || n != 150 || srv.cancelled != 2 {
		t.Fatalf("cancelled at 150: %d values, %v, %d cancels", n, err, srv.cancelled)
	}
}

// FuzzStreamLines feeds the NDJSON stream reader arbitrary answers: it
// never panics, hands over at most one value a line, and fails only with
// a function's error, a serialization error or a line too long.
func FuzzStreamLines(f *testing.F) {
	f.Add([]byte("{\"output\":1}\n{\"output\":[2]}\n"))
	f.Add([]byte("{\"output\":1}\n\n{\"error\":\"x\",\"code\":\"not_found\"}\n{\"output\":3}\n"))
	f.Add([]byte("{\"output\":1}\n{\"outp"))
	f.Add([]byte("\n\r\n   \n{}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		iv := NewInvoker(InvokerConfig{Logger: quietLogger(), MaxResponse: 256})
		tg := lbStreamTarget("http://x")
		n := 0
		err := iv.readLines(context.Background(), tg, bytes.NewReader(body), func(v json.RawMessage) bool {
			n++
			return true
		})
		if lines := bytes.Count(body, []byte("\n")) + 1; n > lines {
			t.Fatalf("%d values from %d lines", n, lines)
		}
		var re *flasherr.RemoteError
		if err != nil && !errors.As(err, &re) && !errors.Is(err, flasherr.ErrSerialization) && !errors.Is(err, bufio.ErrTooLong) {
			t.Fatalf("error %v", err)
		}
	})
}
