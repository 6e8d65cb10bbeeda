package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// response is the job's answer to /runsync and /status/{id}.
func (v jobView) response() wire.JobAnswer {
	r := wire.JobAnswer{ID: v.ID, Status: v.Status, DelayTime: v.Delay.Milliseconds(), ExecutionTime: v.Exec.Milliseconds()}
	switch {
	case v.Status == StatusCompleted:
		r.Output = wire.Completed(v.Result)
	case v.ErrType != "":
		r.Error = v.ErrType + ": " + v.ErrMsg
		r.Output = wire.Failed(v.ErrType, v.ErrMsg)
		r.Output.Code = v.ErrCode
	}
	return r
}

// submission is a bound job request: its function, the job to run, the
// envelope's deadline (zero if none) and the body, for idempotency keys.
type submission struct {
	f        *Func
	run      Job
	deadline time.Time
	body     []byte
	input    json.RawMessage // the function's input, kept for /retry
	timeout  time.Duration   // policy.executionTimeout
	webhook  string          // where the outcome of a /run job is posted
	ttl      time.Duration   // policy.ttl: a /run job is forgotten this long after submission
}

// bindJob reads and decodes an envelope and binds it to its function. All
// caller errors are reported here, before anything is queued. The deadline
// is the envelope's executionTimeout from now.
func (s *Server) bindJob(w http.ResponseWriter, r *http.Request) (submission, error) {
	var sub submission
	body, err := s.readBody(w, r)
	if err != nil {
		return sub, err
	}
	c, err := decodeEnvelope(body)
	if err != nil {
		return sub, err
	}
	f := s.qb[c.Function]
	if f == nil {
		return sub, &httpError{Status: http.StatusNotFound,
			Msg: fmt.Sprintf("function %q not found on this endpoint", c.Function),
			KV:  []any{"available", s.qbNames}}
	}
	run, err := s.bind(r.Context(), f, Input{JSON: c.Input})
	if err != nil {
		return sub, err
	}
	hook, ttl, err := extrasOf(body)
	if err != nil {
		return sub, err
	}
	sub = submission{f: f, run: run, body: body, input: c.Input, timeout: c.Timeout, webhook: hook, ttl: ttl}
	if c.Timeout > 0 {
		sub.deadline = time.Now().Add(c.Timeout)
	}
	return sub, nil
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

// resultsFull is the answer of a /run that could not be kept: 429, retry
// when the oldest result expires.
func resultsFull(retry time.Duration) error {
	secs := int64(max(retry, time.Second)+time.Second-1) / int64(time.Second)
	return &httpError{Status: http.StatusTooManyRequests, Msg: resultsFullMsg,
		Header: http.Header{wire.HeaderRetryAfter: {strconv.FormatInt(secs, 10)}}}
}

func submitError(err error) error {
	if err == ErrQueueFull {
		return &httpError{Status: http.StatusTooManyRequests, Msg: overloadedMsg,
			Header: http.Header{wire.HeaderRetryAfter: {"1"}}}
	}
	return &httpError{Status: http.StatusServiceUnavailable, Msg: "server shutting down",
		Header: http.Header{wire.HeaderRetryAfter: {"5"}}}
}

const (
	resultsFullMsg = "too many /run results kept (FLASH_MAX_RESULTS, FLASH_MAX_RESULT_BYTES), retry after the oldest expire, or use /runsync"
	overloadedMsg  = "job queue full, retry later"
	overloadedBody = `{"error":"` + overloadedMsg + `"}`
)

// refuseOverload answers 429 at once, before the body is read, when the
// pool cannot take a job: the overload answer is the cheap one. A pool that
// fills between this check and submit still gets 429 from submit.
func (s *Server) refuseOverload(w http.ResponseWriter) bool {
	if !s.jobs.full() {
		return false
	}
	h := w.Header()
	h[wire.HeaderRetryAfter] = []string{"1"}
	h["Content-Type"] = []string{wire.ContentTypeJSON}
	h["Content-Length"] = []string{strconv.Itoa(len(overloadedBody))}
	w.WriteHeader(http.StatusTooManyRequests)
	io.WriteString(w, overloadedBody)
	return true
}

// runsync runs a job within the pool's bound and answers its outcome: on
// this goroutine when a worker slot is free, else queued. The job lives in
// the request's context: the caller's deadline and disconnect reach it.
func (s *Server) runsync(w http.ResponseWriter, r *http.Request) error {
	if s.refuseOverload(w) {
		return nil
	}
	sub, err := s.bindJob(w, r)
	if err != nil {
		return err
	}
	if s.idem != nil {
		if k, ok := keyOf(r, "runsync", sub.f.Name, sub.body); ok {
			return s.runsyncOnce(w, r, k, sub)
		}
	}
	v, err := s.runsyncJob(r, sub)
	if err != nil {
		return err
	}
	a := v.response()
	wire.WriteJobAnswer(w, http.StatusOK, &a)
	return nil
}

// runsyncJob runs sub and returns its final state.
func (s *Server) runsyncJob(r *http.Request, sub submission) (jobView, error) {
	j := s.jobs.newJob(r.Context(), sub.f.Name, sub.run, sub.deadline)
	if err := s.jobs.submit(j, false, true); err != nil {
		return jobView{}, submitError(err)
	}
	<-j.done
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	return j.viewLocked(s.cfg.Now()), nil
}

// runsyncOnce is runsync for a keyed request: the first request of a key
// runs the job and keeps its answer; a repeat waits for the first and
// answers the same, or runs the job itself when the first kept nothing.
func (s *Server) runsyncOnce(w http.ResponseWriter, r *http.Request, k idemKey, sub submission) error {
	var e *idemEntry
	for {
		var wait <-chan struct{}
		if e, wait = s.idem.claim(k); wait == nil {
			break
		}
		s.idem.waiting.Add(1)
		select {
		case <-wait:
			s.idem.waiting.Add(-1)
			if e.answer != nil {
				w.Header()[wire.HeaderReplayed] = []string{"true"}
				wire.WriteRawJSON(w, http.StatusOK, e.answer)
				return nil
			}
		case <-r.Context().Done(): // this repeat's own deadline, or its caller left
			s.idem.waiting.Add(-1)
			status, errType, errMsg := ctxOutcome(r.Context())
			a := jobView{Status: status, ErrType: errType, ErrMsg: errMsg}.response()
			wire.WriteJobAnswer(w, http.StatusOK, &a)
			return nil
		}
	}
	kept := false
	defer func() {
		if !kept {
			s.idem.drop(e) // refused, or a panic: the next repeat runs anew
		}
	}()
	v, err := s.runsyncJob(r, sub)
	if err != nil {
		return err
	}
	a := v.response()
	body, err := a.JSON()
	if err != nil {
		return err
	}
	if v.Status == StatusCompleted || v.Status == StatusFailed {
		s.idem.keep(e, body, "")
		kept = true
	}
	wire.WriteRawJSON(w, http.StatusOK, body)
	return nil
}

// run queues a job and answers its id at once. The job keeps the request's
// values (callmeta) and deadline but not its cancellation. A keyed repeat
// answers the first request's job id and that job's current status.
func (s *Server) run(w http.ResponseWriter, r *http.Request) error {
	if s.refuseOverload(w) {
		return nil
	}
	if full, retry := s.jobs.keepFull(); full {
		return resultsFull(retry)
	}
	sub, err := s.bindJob(w, r)
	if err != nil {
		return err
	}
	var e *idemEntry
	if s.idem != nil {
		if k, ok := keyOf(r, "run", sub.f.Name, sub.body); ok {
			for e == nil {
				en, wait := s.idem.claim(k)
				if wait == nil {
					e = en
					break
				}
				select {
				case <-wait:
					if en.jobID != "" {
						status := StatusInQueue
						if v, ok := s.jobs.view(en.jobID); ok {
							status = v.Status
						}
						w.Header()[wire.HeaderReplayed] = []string{"true"}
						writeJobID(w, en.jobID, status)
						return nil
					}
				case <-r.Context().Done():
					return &httpError{Status: http.StatusServiceUnavailable, Msg: "request ended while an identical one was being queued",
						Header: http.Header{wire.HeaderRetryAfter: {"1"}}}
				}
			}
			defer func() {
				if e != nil {
					s.idem.drop(e)
				}
			}()
		}
	}
	deadline := sub.deadline
	// The caller's deadline (X-Flash-Timeout) still applies; the smaller wins.
	if dl, ok := r.Context().Deadline(); ok && (deadline.IsZero() || dl.Before(deadline)) {
		deadline = dl
	}
	j := s.jobs.newJob(context.WithoutCancel(r.Context()), sub.f.Name, sub.run, deadline)
	j.input, j.timeout, j.webhook, j.ttl = sub.input, sub.timeout, sub.webhook, sub.ttl
	if err := s.jobs.submit(j, true, false); err != nil {
		if err == ErrResultsFull {
			_, retry := s.jobs.keepFull()
			return resultsFull(retry)
		}
		return submitError(err)
	}
	if e != nil {
		s.idem.keep(e, nil, j.id)
		e = nil
	}
	writeJobID(w, j.id, StatusInQueue)
	return nil
}

func writeJobID(w http.ResponseWriter, id, status string) {
	wire.WriteJSON(w, http.StatusOK, wire.JobRef{ID: id, Status: status})
}

func notFoundJob(id string) error {
	return &httpError{Status: http.StatusNotFound, Msg: fmt.Sprintf("job %q not found (unknown, or its result expired)", id)}
}

// validJobPath rejects a job id that cannot be one of ours (too long, odd
// characters) with 404, without echoing it.
func validJobPath(id string) error {
	if !wire.ValidJobID(id) {
		return &httpError{Status: http.StatusNotFound, Msg: "job not found (not a job id)"}
	}
	return nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := validJobPath(id); err != nil {
		return err
	}
	v, ok := s.jobs.view(id)
	if !ok {
		return notFoundJob(id)
	}
	a := v.response()
	wire.WriteJobAnswer(w, http.StatusOK, &a)
	return nil
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := validJobPath(id); err != nil {
		return err
	}
	v, ok := s.jobs.cancelJob(id)
	if !ok {
		return notFoundJob(id)
	}
	wire.WriteJSON(w, http.StatusOK, wire.JobRef{ID: v.ID, Status: v.Status})
	return nil
}

// retry answers POST /retry/{id}: a FAILED or TIMED_OUT job runs again
// under its id, with its input; its old outcome is cleared.
func (s *Server) retry(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := validJobPath(id); err != nil {
		return err
	}
	bind := func(fn string, input json.RawMessage) (Job, error) {
		f := s.qb[fn]
		if f == nil {
			return nil, badRequest("function %q is no longer served here", fn)
		}
		return s.bind(r.Context(), f, Input{JSON: input})
	}
	ok, err := s.jobs.retry(id, bind, context.WithoutCancel(r.Context()))
	switch {
	case !ok:
		return notFoundJob(id)
	case errors.Is(err, errNotRetryable):
		return badRequest("%v", err)
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrShuttingDown):
		return submitError(err)
	case errors.Is(err, ErrResultsFull):
		_, retry := s.jobs.keepFull()
		return resultsFull(retry)
	case err != nil:
		return err
	}
	writeJobID(w, id, StatusInQueue)
	return nil
}

// purgeQueue answers POST /purge-queue: every queued job is cancelled,
// running ones go on.
func (s *Server) purgeQueue(w http.ResponseWriter, r *http.Request) error {
	wire.WriteJSON(w, http.StatusOK, struct {
		Removed int    `json:"removed"`
		Status  string `json:"status"`
	}{s.jobs.purgeQueue(), "completed"})
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	h := s.jobs.health()
	type jobs struct {
		Completed  int64 `json:"completed"`
		Failed     int64 `json:"failed"`
		InProgress int   `json:"inProgress"`
		InQueue    int   `json:"inQueue"`
		Retried    int64 `json:"retried"`
	}
	type workers struct {
		Idle    int `json:"idle"`
		Running int `json:"running"`
	}
	wire.WriteJSON(w, http.StatusOK, struct {
		Jobs    jobs    `json:"jobs"`
		Workers workers `json:"workers"`
	}{
		jobs{Completed: h.Completed, Failed: h.Failed, Retried: h.Retried, InProgress: h.InProgress, InQueue: h.InQueue},
		workers{Idle: h.Idle, Running: h.Running},
	})
	return nil
}

// jobFinal records a job's outcome in metrics and, for failures, the log.
func (s *Server) jobFinal(j *job, v jobView, err error) {
	s.metrics.observeJob(j.fn, v.Status, v.Exec)
	if j.webhook != "" {
		if body, err := json.Marshal(v.response()); err == nil {
			s.hooks.send(j.webhook, body)
		}
	}
	if v.Status != StatusFailed && v.Status != StatusTimedOut {
		return
	}
	attrs := append(metaAttrs(j.ctx), slog.String("job", v.ID), slog.String("function", j.fn),
		slog.String("status", v.Status), slog.String("error_type", v.ErrType), slog.String("err", v.ErrMsg))
	level := slog.LevelInfo
	var pe *PanicError
	if errors.As(err, &pe) {
		level = slog.LevelError
		attrs = append(attrs, slog.String("stack", string(pe.Stack)))
	}
	s.log.LogAttrs(j.ctx, level, "job failed", attrs...)
}
