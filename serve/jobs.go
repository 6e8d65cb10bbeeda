package serve

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/flash-go/flash/flasherr"
	"github.com/flash-go/flash/internal/telemetry"
	"github.com/flash-go/flash/internal/wire"
)

// Job states, as the Runpod serverless API names them.
const (
	StatusInQueue    = wire.StatusInQueue
	StatusInProgress = wire.StatusInProgress
	StatusCompleted  = wire.StatusCompleted
	StatusFailed     = wire.StatusFailed
	StatusCancelled  = wire.StatusCancelled
	StatusTimedOut   = wire.StatusTimedOut
)

// Errors of job submission, rendered as 429 and 503.
var (
	ErrQueueFull    = errors.New("job queue full")
	ErrResultsFull  = errors.New("no room to keep another /run result")
	ErrShuttingDown = errors.New("server shutting down")
)

// resultOverhead is what a kept result costs beyond its bytes (the job, its
// contexts and the table entries), counted against Config.MaxResultBytes.
const resultOverhead = 2 << 10

// errCancelled is the cancellation cause of a job cancelled through /cancel.
var errCancelled = errors.New("job cancelled")

// job is one function execution, sync or async. The fields from status on
// are guarded by the owning jobTable's mutex.
type job struct {
	id      string
	fn      string
	run     Job
	ctx     context.Context
	cancel  func(cause error)
	unwatch func() bool     // stops the context watcher; nil for inline jobs
	done    chan struct{}   // closed when the state becomes final
	kept    bool            // filed under its id for /status (a /run job)
	input   json.RawMessage // a kept job's input, for /retry; kept while it is FAILED or TIMED_OUT
	timeout time.Duration   // its policy.executionTimeout, for /retry
	webhook string          // where its outcome is posted
	ttl     time.Duration   // policy.ttl: forgotten this long after submission, whatever its state
	dropper *time.Timer     // runs dropTTL; guarded by the table's mutex

	status   string
	result   json.RawMessage // json_result when COMPLETED
	errType  string
	errMsg   string
	errCode  string
	stream   *streamBuf // a streaming job's unread values; nil for others
	queued   time.Time
	started  time.Time
	finished time.Time
}

func final(status string) bool {
	return status != StatusInQueue && status != StatusInProgress
}

// jobView is a consistent copy of a job's state, taken under the lock.
type jobView struct {
	ID, Status, ErrType, ErrMsg string
	ErrCode                     string // the failed function error's flasherr.Code
	Result                      json.RawMessage
	Delay, Exec                 time.Duration
}

// jobTable is the bounded worker pool plus the table of async jobs kept for
// /status. One mutex guards everything: critical sections are a few field
// updates, far cheaper than the HTTP around them.
type jobTable struct {
	now      func() time.Time
	workers  int
	queueCap int
	ttl      time.Duration
	maxKept  int                                // results kept at most (count)
	maxBytes int64                              // and their bytes, with resultOverhead each
	onFinal  func(j *job, v jobView, err error) // metrics and logs; called without the lock

	mu        sync.Mutex
	queue     []*job
	busy      int // occupied worker slots: a worker goroutine or an inline runsync, each running one job
	active    map[*job]struct{}
	byID      map[string]*job
	finished  []*job // kept jobs in the order they became final, which is their expiry order
	keptBytes int64
	closed    bool
	completed int64
	failed    int64
	retried   int64
	wg        sync.WaitGroup
}

func newJobTable(workers, queueCap int, ttl time.Duration, maxKept int, maxBytes int64, now func() time.Time) *jobTable {
	return &jobTable{
		now: now, workers: workers, queueCap: queueCap, ttl: ttl, maxKept: maxKept, maxBytes: maxBytes,
		active: make(map[*job]struct{}),
		byID:   make(map[string]*job),
	}
}

// newJobID returns 128 random bits, URL-safe. Crypto-random because knowing
// an id is enough to read or cancel the job.
func newJobID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newJob prepares a job whose context is parent, limited by deadline when
// that is not zero. Nothing runs until submit.
func (t *jobTable) newJob(parent context.Context, fn string, run Job, deadline time.Time) *job {
	ctx, cancelCause := context.WithCancelCause(parent)
	cancel := (func(error))(cancelCause) // a conversion, not a closure: no allocation
	if !deadline.IsZero() {
		var cancelD context.CancelFunc
		ctx, cancelD = context.WithDeadline(ctx, deadline)
		cancel = func(cause error) { cancelCause(cause); cancelD() }
	}
	return &job{id: newJobID(), fn: fn, run: run, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// submit hands j to a worker, starting one if fewer than t.workers run, or
// queues it. Workers exist only while there is work, so an idle server has
// no goroutines and a forgotten Shutdown leaks nothing. keep files j under
// its id for /status. With inline, a job that gets a free slot runs on the
// caller's goroutine before submit returns (runsync: no hand-off, no new
// stack); a queued one is run by a worker as usual.
func (t *jobTable) submit(j *job, keep, inline bool) error {
	t.mu.Lock()
	now := t.now()
	var err error
	switch {
	case t.closed:
		err = ErrShuttingDown
	case t.busy >= t.workers && len(t.queue) >= t.queueCap:
		err = ErrQueueFull
	case keep && t.keepFullLocked(now):
		err = ErrResultsFull
	}
	if err != nil {
		t.mu.Unlock()
		j.cancel(err)
		return err
	}
	j.status, j.queued = StatusInQueue, now
	t.active[j] = struct{}{}
	if keep {
		j.kept = true
		t.byID[j.id] = j
		t.keptBytes += resultOverhead
		if j.ttl > 0 {
			j.dropper = time.AfterFunc(j.ttl, func() { t.dropTTL(j) })
		}
	}
	free := t.busy < t.workers
	if free {
		t.busy++
		t.wg.Add(1)
		j.status, j.started = StatusInProgress, now
	} else {
		t.queue = append(t.queue, j)
	}
	if !free || !inline {
		// A job whose context ends (deadline, client gone, shutdown) becomes
		// final at once, even if queued or if its function ignores the
		// context. Registered under the lock so that no worker can finish j
		// first; if the context has already ended, expire waits for the lock.
		j.unwatch = context.AfterFunc(j.ctx, func() { t.expire(j) })
	}
	t.mu.Unlock()
	switch {
	case free && inline:
		t.runInline(j)
	case free:
		go t.work(j)
	}
	return nil
}

// runInline runs j on the caller's goroutine in the slot submit reserved,
// then hands the slot to a new worker if jobs are queued.
func (t *jobTable) runInline(j *job) {
	defer t.wg.Done()
	t.execute(j)
	t.mu.Lock()
	if next := t.popLocked(); next != nil {
		t.wg.Add(1)
		go t.work(next)
	} else {
		t.busy--
	}
	t.mu.Unlock()
}

// popLocked takes the next queued job and marks it running. A job whose
// policy.ttl has just passed is skipped, never started: its dropTTL, due at
// the same moment, finalises it.
func (t *jobTable) popLocked() *job {
	now := t.now()
	for len(t.queue) > 0 {
		j := t.queue[0]
		t.queue[0] = nil
		t.queue = t.queue[1:]
		if j.dropper != nil && !now.Before(j.queued.Add(j.ttl)) {
			j.run = nil
			continue
		}
		j.status, j.started = StatusInProgress, now
		return j
	}
	return nil
}

// work runs j, then queued jobs, until the queue is empty.
func (t *jobTable) work(j *job) {
	defer t.wg.Done()
	for j != nil {
		t.execute(j)
		t.mu.Lock()
		if j = t.popLocked(); j == nil {
			t.busy--
		}
		t.mu.Unlock()
	}
}

// execute runs j and records its outcome. A job whose context ended while
// it waited is not started at all.
func (t *jobTable) execute(j *job) {
	run := j.run
	j.run = nil // the worker owns j.run now; drop the input once used
	var (
		out any
		err error
	)
	if j.ctx.Err() == nil {
		ctx, span := telemetry.StartJob(j.ctx, j.fn, j.id)
		out, err = call(ctx, run)
		telemetry.End(span, 0, err)
	}
	if st, ok := out.(Stream); ok && err == nil {
		out, err = t.runStream(j, st)
	}
	var (
		status          = StatusCompleted
		result          json.RawMessage
		errType, errMsg string
	)
	switch {
	case j.ctx.Err() != nil:
		status, errType, errMsg = ctxOutcome(j.ctx)
	case err != nil && (errors.Is(err, flasherr.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)):
		// A downstream call ran out of the same deadline a moment earlier:
		// still a timeout, so the caller gets ErrTimeout, not a plain failure.
		status, errType, errMsg = StatusTimedOut, "TimeoutError", err.Error()
	case err != nil:
		status, errType, errMsg = StatusFailed, ErrorType(err), publicMessage(err.Error())
	default:
		if result, err = json.Marshal(out); err != nil {
			status, errType, errMsg = StatusFailed, "SerializationError", fmt.Sprintf("encoding result: %v", err)
		}
	}
	t.finish(j, status, result, errType, errMsg, err)
	// The watcher is no longer needed; stopping it first spares a goroutine.
	if j.unwatch != nil {
		j.unwatch()
	}
	j.cancel(context.Canceled)
}

// expire finalises j when its context ends before it does.
func (t *jobTable) expire(j *job) {
	t.mu.Lock()
	if j.status == StatusInQueue {
		t.dequeueLocked(j)
	}
	t.mu.Unlock()
	status, errType, errMsg := ctxOutcome(j.ctx)
	t.finish(j, status, nil, errType, errMsg, nil)
}

// dequeueLocked removes a queued job that will never run.
func (t *jobTable) dequeueLocked(j *job) {
	if i := slices.Index(t.queue, j); i >= 0 {
		t.queue = slices.Delete(t.queue, i, i+1)
		j.run = nil
	}
}

// ctxOutcome classifies a job whose context ended.
func ctxOutcome(ctx context.Context) (status, errType, errMsg string) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return StatusTimedOut, "TimeoutError", "execution timed out"
	}
	return StatusCancelled, "", ""
}

// finish moves j to a final state unless it already has one; the first
// outcome wins. err is the function's own error, if any, for logging.
func (t *jobTable) finish(j *job, status string, result json.RawMessage, errType, errMsg string, err error) {
	t.mu.Lock()
	if final(j.status) {
		t.mu.Unlock()
		return
	}
	now := t.now()
	if j.started.IsZero() {
		j.started = now
	}
	if status != StatusFailed && status != StatusTimedOut {
		j.input = nil // only a failure can be retried
	}
	if j.kept {
		size := int64(len(result) + len(errMsg) + len(j.input))
		if t.keptBytes+size > t.maxBytes {
			status, result, errType = StatusFailed, nil, "ResultTooLarge"
			errMsg = fmt.Sprintf("the result (%d bytes) cannot be kept for /status: kept results already use %d of %d bytes; "+
				"use /runsync for large results, or raise FLASH_MAX_RESULT_BYTES", size, t.keptBytes, t.maxBytes)
			size = int64(len(errMsg))
		}
		t.keptBytes += size
		t.finished = append(t.finished, j)
	}
	j.status, j.result, j.errType, j.errMsg, j.finished = status, result, errType, errMsg, now
	if status == StatusFailed {
		j.errCode = string(flasherr.CodeOf(err))
	}
	switch status {
	case StatusCompleted:
		t.completed++
	case StatusFailed, StatusTimedOut:
		t.failed++
	}
	delete(t.active, j)
	v := j.viewLocked(now)
	t.mu.Unlock()
	// Metrics and logs first, so that whoever waits on done sees them.
	if t.onFinal != nil {
		t.onFinal(j, v, err)
	}
	close(j.done)
}

// cancelJob cancels the async job id. ok is false for an unknown id. A job
// already final keeps (and reports) its final state.
func (t *jobTable) cancelJob(id string) (v jobView, ok bool) {
	j := t.lookup(id)
	if j == nil {
		return jobView{}, false
	}
	t.mu.Lock()
	if !final(j.status) {
		if j.status == StatusInQueue {
			t.dequeueLocked(j)
		}
		t.mu.Unlock()
		t.finish(j, StatusCancelled, nil, "", "", nil)
		j.cancel(errCancelled)
		t.mu.Lock()
	}
	v = j.viewLocked(t.now())
	t.mu.Unlock()
	return v, true
}

// purgeQueue cancels every queued job and returns how many; running jobs
// are untouched (Runpod's /purge-queue).
func (t *jobTable) purgeQueue() int {
	t.mu.Lock()
	queued := t.queue
	t.queue = nil
	for _, j := range queued {
		j.run = nil
	}
	t.mu.Unlock()
	for _, j := range queued {
		t.finish(j, StatusCancelled, nil, "", "", nil)
		j.cancel(errCancelled)
	}
	return len(queued)
}

// lookup returns the async job id, or nil when unknown or expired.
func (t *jobTable) lookup(id string) *job {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(t.now())
	return t.byID[id]
}

// view returns a snapshot of the async job id.
func (t *jobTable) view(id string) (jobView, bool) {
	j := t.lookup(id)
	if j == nil {
		return jobView{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return j.viewLocked(t.now()), true
}

func (t *jobTable) expiredLocked(j *job, now time.Time) bool {
	return final(j.status) && now.Sub(j.finished) >= t.ttl
}

// sweepLocked drops expired results: the oldest first, so the cost is the
// number dropped.
func (t *jobTable) sweepLocked(now time.Time) {
	for len(t.finished) > 0 && t.expiredLocked(t.finished[0], now) {
		j := t.finished[0]
		t.finished[0] = nil
		t.finished = t.finished[1:]
		delete(t.byID, j.id)
		t.keptBytes -= resultOverhead + int64(len(j.result)+len(j.errMsg)+len(j.input))
		if j.dropper != nil {
			j.dropper.Stop()
		}
	}
}

// errExpired is the cancellation cause of a job whose policy.ttl passed.
var errExpired = errors.New("job expired (policy.ttl)")

// dropTTL forgets j once its policy.ttl has passed, as Runpod does: a
// queued one never runs, a running one is cancelled, and its status answers
// 404 from now on.
func (t *jobTable) dropTTL(j *job) {
	t.mu.Lock()
	if t.byID[j.id] != j {
		t.mu.Unlock() // swept or retried already
		return
	}
	delete(t.byID, j.id)
	if final(j.status) {
		if i := slices.Index(t.finished, j); i >= 0 {
			t.finished = slices.Delete(t.finished, i, i+1)
		}
		t.keptBytes -= resultOverhead + int64(len(j.result)+len(j.errMsg)+len(j.input))
		t.mu.Unlock()
		return
	}
	j.kept = false // its outcome is not kept
	t.keptBytes -= resultOverhead
	if j.status == StatusInQueue {
		t.dequeueLocked(j)
	}
	t.mu.Unlock()
	t.finish(j, StatusCancelled, nil, "", "", nil)
	j.cancel(errExpired)
}

// errNotRetryable is the answer of a /retry of a job that did not fail.
var errNotRetryable = errors.New("only a FAILED or TIMED_OUT job can be retried")

// retry queues the kept job id again, under the same id, with the same
// input (bound to a job by bind) and a cleared outcome. The old job's record
// is replaced. ok is false for an unknown id.
func (t *jobTable) retry(id string, bind func(fn string, input json.RawMessage) (Job, error), parent context.Context) (ok bool, err error) {
	old := t.lookup(id)
	if old == nil {
		return false, nil
	}
	t.mu.Lock()
	status, input, fn, timeout := old.status, old.input, old.fn, old.timeout
	t.mu.Unlock()
	if status != StatusFailed && status != StatusTimedOut {
		return true, fmt.Errorf("%w: job %s is %s", errNotRetryable, id, status)
	}
	run, err := bind(fn, input)
	if err != nil {
		return true, err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = t.now().Add(timeout)
	}
	j := t.newJob(parent, fn, run, deadline)
	j.id, j.input, j.timeout, j.webhook, j.ttl = id, input, timeout, old.webhook, old.ttl
	t.mu.Lock()
	if t.byID[id] != old || old.status != status {
		t.mu.Unlock()
		j.cancel(context.Canceled)
		return true, fmt.Errorf("%w: job %s changed meanwhile (retried already?)", errNotRetryable, id)
	}
	if refuse := t.closed || t.busy >= t.workers && len(t.queue) >= t.queueCap; refuse {
		t.mu.Unlock()
		j.cancel(context.Canceled)
		if t.closed {
			return true, ErrShuttingDown
		}
		return true, ErrQueueFull // the failed job stays as it was
	}
	// Forget the old outcome; submit files j under the same id.
	if i := slices.Index(t.finished, old); i >= 0 {
		t.finished = slices.Delete(t.finished, i, i+1)
	}
	delete(t.byID, id)
	t.keptBytes -= resultOverhead + int64(len(old.result)+len(old.errMsg)+len(old.input))
	if old.dropper != nil {
		old.dropper.Stop()
	}
	t.retried++
	t.mu.Unlock()
	if err := t.submit(j, true, false); err != nil {
		return true, err
	}
	return true, nil
}

// keepFullLocked reports whether another result would pass a bound, after
// dropping the expired ones.
func (t *jobTable) keepFullLocked(now time.Time) bool {
	t.sweepLocked(now)
	return len(t.byID) >= t.maxKept || t.keptBytes+resultOverhead > t.maxBytes
}

// keepFull reports whether a /run now would get ErrResultsFull and, if so,
// when the oldest kept result expires (at least a second from now).
func (t *jobTable) keepFull() (full bool, retry time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if !t.keepFullLocked(now) {
		return false, 0
	}
	retry = time.Second
	if len(t.finished) > 0 {
		retry = max(retry, t.finished[0].finished.Add(t.ttl).Sub(now))
	}
	return true, retry
}

func (j *job) viewLocked(now time.Time) jobView {
	v := jobView{ID: j.id, Status: j.status, ErrType: j.errType, ErrMsg: j.errMsg, ErrCode: j.errCode, Result: j.result}
	switch {
	case j.started.IsZero():
		v.Delay = now.Sub(j.queued)
	case j.finished.IsZero():
		v.Delay, v.Exec = j.started.Sub(j.queued), now.Sub(j.started)
	default:
		v.Delay, v.Exec = j.started.Sub(j.queued), j.finished.Sub(j.started)
	}
	return v
}

// health is the /health snapshot.
type health struct {
	Completed, Failed   int64
	Retried             int64
	InProgress, InQueue int
	Idle, Running       int
}

func (t *jobTable) health() health {
	t.mu.Lock()
	defer t.mu.Unlock()
	return health{
		Completed: t.completed, Failed: t.failed, Retried: t.retried,
		InProgress: t.busy, InQueue: len(t.queue),
		Idle: t.workers - t.busy, Running: t.busy,
	}
}

// full reports whether a job submitted now would be refused with
// ErrQueueFull: every worker busy and the queue at capacity.
func (t *jobTable) full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.busy >= t.workers && len(t.queue) >= t.queueCap
}

// counts reports the number of queued and running jobs (for the gauges).
func (t *jobTable) counts() (queued, running int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue), t.busy
}

// shutdown stops taking jobs and waits for queued and running ones; when ctx
// ends first, it cancels every job left and returns ctx's error.
func (t *jobTable) shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	idle := make(chan struct{})
	go func() { t.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	left := make([]*job, 0, len(t.active))
	for j := range t.active {
		left = append(left, j)
	}
	t.mu.Unlock()
	cause := fmt.Errorf("%w: grace period over", ErrShuttingDown)
	for _, j := range left {
		j.cancel(cause)
	}
	return fmt.Errorf("shutdown: %d jobs cancelled: %w", len(left), ctx.Err())
}

// call runs a job, turning a panic into an error of type "Panic".
func call(ctx context.Context, run Job) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return run(ctx)
}

// PanicError is a recovered panic of a function; its ErrorType is "Panic".
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack, for the log
}

// Error reports the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// ErrorType reports "Panic".
func (e *PanicError) ErrorType() string { return "Panic" }

// ErrorType names the type of a function error as reported to callers: the
// ErrorType() of the first error in err's chain that has one, else "Error".
func ErrorType(err error) string {
	var typed interface{ ErrorType() string }
	if errors.As(err, &typed) {
		if s := typed.ErrorType(); s != "" {
			return s
		}
	}
	return "Error"
}
