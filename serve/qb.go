package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/flash-go/flash/internal/httpx"
)

// jobResponse is the answer of /runsync and /status/{id}.
type jobResponse struct {
	ID            string     `json:"id"`
	Status        string     `json:"status"`
	Output        *jobOutput `json:"output,omitempty"`
	Error         string     `json:"error,omitempty"`
	DelayTime     int64      `json:"delayTime"`
	ExecutionTime int64      `json:"executionTime"`
}

type jobOutput struct {
	Success    bool            `json:"success"`
	JSONResult json.RawMessage `json:"json_result,omitempty"`
	Error      string          `json:"error,omitempty"`
	ErrorType  string          `json:"error_type,omitempty"`
}

func (v jobView) response() jobResponse {
	r := jobResponse{ID: v.ID, Status: v.Status, DelayTime: v.Delay.Milliseconds(), ExecutionTime: v.Exec.Milliseconds()}
	switch {
	case v.Status == StatusCompleted:
		r.Output = &jobOutput{Success: true, JSONResult: v.Result}
	case v.ErrType != "":
		r.Error = v.ErrType + ": " + v.ErrMsg
		r.Output = &jobOutput{Error: v.ErrMsg, ErrorType: v.ErrType}
	}
	return r
}

// bindJob reads and decodes an envelope and binds it to its function. All
// caller errors are reported here, before anything is queued. deadline is
// the envelope's executionTimeout from now (zero if none).
func (s *Server) bindJob(w http.ResponseWriter, r *http.Request) (f *Func, run Job, deadline time.Time, err error) {
	body, err := s.readBody(w, r)
	if err != nil {
		return nil, nil, deadline, err
	}
	c, err := decodeEnvelope(body)
	if err != nil {
		return nil, nil, deadline, err
	}
	f = s.qb[c.Function]
	if f == nil {
		return nil, nil, deadline, &httpError{Status: http.StatusNotFound,
			Msg: fmt.Sprintf("function %q not found on this endpoint", c.Function),
			KV:  []any{"available", s.qbNames}}
	}
	if run, err = s.bind(r.Context(), f, Input{JSON: c.Input}); err != nil {
		return nil, nil, deadline, err
	}
	if c.Timeout > 0 {
		deadline = time.Now().Add(c.Timeout)
	}
	return f, run, deadline, nil
}

// bind calls f.Bind, turning its error into a 400 and a panic into a 500.
func (s *Server) bind(ctx context.Context, f *Func, in Input) (run Job, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "bind panic", slog.String("function", f.Name), slog.Any("panic", p))
			err = &httpError{Status: http.StatusInternalServerError, Msg: fmt.Sprintf("decoding input of %s: internal error", f.Name)}
		}
	}()
	run, err = f.Bind(in)
	if err != nil {
		return nil, badRequest("invalid input for %s: %v", f.Name, err)
	}
	if run == nil {
		return nil, &httpError{Status: http.StatusInternalServerError, Msg: fmt.Sprintf("%s: Bind returned no job", f.Name)}
	}
	return run, nil
}

func submitError(err error) error {
	if err == ErrQueueFull {
		return &httpError{Status: http.StatusTooManyRequests, Msg: "job queue full, retry later",
			Header: http.Header{httpx.HeaderRetryAfter: {"1"}}}
	}
	return &httpError{Status: http.StatusServiceUnavailable, Msg: "server shutting down",
		Header: http.Header{httpx.HeaderRetryAfter: {"5"}}}
}

// runsync runs a job within the pool's bound and answers its outcome: on
// this goroutine when a worker slot is free, else queued. The job lives in
// the request's context: the caller's deadline and disconnect reach it.
func (s *Server) runsync(w http.ResponseWriter, r *http.Request) error {
	f, run, deadline, err := s.bindJob(w, r)
	if err != nil {
		return err
	}
	j := s.jobs.newJob(r.Context(), f.Name, run, deadline)
	if err := s.jobs.submit(j, false, true); err != nil {
		return submitError(err)
	}
	<-j.done
	s.jobs.mu.Lock()
	v := j.viewLocked(s.cfg.Now())
	s.jobs.mu.Unlock()
	httpx.WriteJSON(w, http.StatusOK, v.response())
	return nil
}

// run queues a job and answers its id at once. The job keeps the request's
// values (callmeta) and deadline but not its cancellation.
func (s *Server) run(w http.ResponseWriter, r *http.Request) error {
	f, run, deadline, err := s.bindJob(w, r)
	if err != nil {
		return err
	}
	// The caller's deadline (X-Flash-Timeout) still applies; the smaller wins.
	if dl, ok := r.Context().Deadline(); ok && (deadline.IsZero() || dl.Before(deadline)) {
		deadline = dl
	}
	j := s.jobs.newJob(context.WithoutCancel(r.Context()), f.Name, run, deadline)
	if err := s.jobs.submit(j, true, false); err != nil {
		return submitError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}{j.id, StatusInQueue})
	return nil
}

func notFoundJob(id string) error {
	return &httpError{Status: http.StatusNotFound, Msg: fmt.Sprintf("job %q not found (unknown, or its result expired)", id)}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	v, ok := s.jobs.view(id)
	if !ok {
		return notFoundJob(id)
	}
	httpx.WriteJSON(w, http.StatusOK, v.response())
	return nil
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	v, ok := s.jobs.cancelJob(id)
	if !ok {
		return notFoundJob(id)
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}{v.ID, v.Status})
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	h := s.jobs.health()
	type jobs struct {
		Completed  int64 `json:"completed"`
		Failed     int64 `json:"failed"`
		InProgress int   `json:"inProgress"`
		InQueue    int   `json:"inQueue"`
		Retried    int   `json:"retried"`
	}
	type workers struct {
		Idle    int `json:"idle"`
		Running int `json:"running"`
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		Jobs    jobs    `json:"jobs"`
		Workers workers `json:"workers"`
	}{
		jobs{Completed: h.Completed, Failed: h.Failed, InProgress: h.InProgress, InQueue: h.InQueue},
		workers{Idle: h.Idle, Running: h.Running},
	})
	return nil
}

// jobFinal records a job's outcome in metrics and, for failures, the log.
func (s *Server) jobFinal(j *job, v jobView, err error) {
	s.metrics.observeJob(j.fn, v.Status, v.Exec)
	if v.Status != StatusFailed && v.Status != StatusTimedOut {
		return
	}
	attrs := append(metaAttrs(j.ctx), slog.String("job", v.ID), slog.String("function", j.fn),
		slog.String("status", v.Status), slog.String("error_type", v.ErrType), slog.String("error", v.ErrMsg))
	level := slog.LevelInfo
	var pe *PanicError
	if errors.As(err, &pe) {
		level = slog.LevelError
		attrs = append(attrs, slog.String("stack", string(pe.Stack)))
	}
	s.log.LogAttrs(j.ctx, level, "job failed", attrs...)
}
