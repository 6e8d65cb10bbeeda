package runpodemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/flash-go/flash/internal/atomicfile"
)

// Job statuses (RUNPOD.md §6.2).
const (
	statusInQueue    = "IN_QUEUE"
	statusInProgress = "IN_PROGRESS"
	statusCompleted  = "COMPLETED"
	statusFailed     = "FAILED"
	statusCancelled  = "CANCELLED"
	statusTimedOut   = "TIMED_OUT"
)

// Limits of the job API (RUNPOD.md §6.1–6.4).
const (
	maxRunBody       = 10 << 20 // /run
	maxRunSyncBody   = 20 << 20 // /runsync
	maxChunk         = 1 << 20  // one stream chunk
	maxStreamBuffer  = 16 << 20 // undelivered stream bytes per job
	defaultTTL       = 24 * time.Hour
	minTTL           = 10 * time.Second
	maxPolicy        = 7 * 24 * time.Hour
	minExecTimeout   = 5 * time.Second
	defaultSyncWait  = 90 * time.Second
	minSyncWait      = time.Second
	maxSyncWait      = 300 * time.Second
	maxPendingHooks  = 1000 // webhooks waiting to be sent; more are dropped with a warning
	webhookSenders   = 4
	webhookAttempts  = 3 // the first and two retries
	webhookTimeout   = 10 * time.Second
	maxWebhookURLLen = 2048
)

// job is one request on a queue endpoint.
type job struct {
	ID          string          `json:"id"`
	Input       json.RawMessage `json:"input"`
	Webhook     string          `json:"webhook,omitempty"`
	S3Config    json.RawMessage `json:"s3Config,omitempty"`
	Status      string          `json:"status"`
	Output      json.RawMessage `json:"output,omitempty"` // final output, or the latest progress while IN_PROGRESS
	Error       string          `json:"error,omitempty"`
	Retries     int             `json:"retries,omitempty"`
	Sync        bool            `json:"sync,omitempty"` // submitted by /runsync: kept for SyncRetention
	LowPriority bool            `json:"lowPriority,omitempty"`
	TTL         time.Duration   `json:"ttl"`
	ExecTimeout time.Duration   `json:"execTimeout"` // 0 = the endpoint's
	Created     time.Time       `json:"created"`
	Taken       time.Time       `json:"taken"`
	Done        time.Time       `json:"done"`
	Worker      string          `json:"worker,omitempty"`

	stream      []json.RawMessage // chunks not yet delivered by /stream
	streamBytes int
	done        chan struct{} // closed when the job is terminal; replaced by retry
}

func (j *job) terminal() bool {
	switch j.Status {
	case statusCompleted, statusFailed, statusCancelled, statusTimedOut:
		return true
	}
	return false
}

// view is the job object of the job API.
func (j *job) view() map[string]any {
	v := map[string]any{"id": j.ID, "status": j.Status}
	if !j.Taken.IsZero() {
		v["delayTime"] = j.Taken.Sub(j.Created).Milliseconds()
		if !j.Done.IsZero() {
			v["executionTime"] = j.Done.Sub(j.Taken).Milliseconds()
		}
	}
	if j.Output != nil {
		v["output"] = j.Output
	}
	if j.Error != "" {
		v["error"] = j.Error
	}
	if j.Retries > 0 {
		v["retries"] = j.Retries
	}
	if j.Worker != "" {
		v["workerId"] = j.Worker
	}
	return v
}

// endpointRun is the live side of an endpoint: its queue, jobs and workers.
// Everything in it is guarded by Emulator.mu.
type endpointRun struct {
	rec     *endpointRecord
	queue   []*job // IN_QUEUE jobs, oldest first
	ended   []*job // finished jobs, oldest first (may hold forgotten ones until the next sweep)
	jobs    map[string]*job
	workers map[string]*worker
	changed chan struct{} // closed and replaced when the queue or the workers change

	completed, failed, retried int // since the emulator started

	lbWaiting  int // load-balanced requests waiting for a worker
	lbInflight int

	crashes   int       // consecutive worker crashes
	nextStart time.Time // no new worker before this (crash back-off)
	startErr  string    // why the last worker could not start
	img       *imageState
	deleted   bool
}

func newEndpointRun(rec *endpointRecord) *endpointRun {
	return &endpointRun{rec: rec, jobs: map[string]*job{}, workers: map[string]*worker{}, changed: make(chan struct{})}
}

// wake releases everyone waiting for a change of this endpoint.
func (run *endpointRun) wake() {
	close(run.changed)
	run.changed = make(chan struct{})
}

func (run *endpointRun) removeQueued(j *job) {
	if i := slices.Index(run.queue, j); i >= 0 {
		run.queue = slices.Delete(run.queue, i, i+1)
	}
}

// evictLocked forgets the oldest finished jobs until at most n jobs are
// kept: past the bound, results go before their retention time is up.
func (run *endpointRun) evictLocked(n int) {
	for len(run.jobs) > n && len(run.ended) > 0 {
		j := run.ended[0]
		run.ended = run.ended[1:]
		if run.jobs[j.ID] == j && j.terminal() {
			delete(run.jobs, j.ID)
		}
	}
}

// requeueLocked puts a job back in the queue in creation order, as if it
// had never been taken.
func (run *endpointRun) requeueLocked(j *job) {
	j.Status, j.Taken, j.Worker, j.Output = statusInQueue, time.Time{}, "", nil
	i, _ := slices.BinarySearchFunc(run.queue, j, func(a, b *job) int { return a.Created.Compare(b.Created) })
	run.queue = slices.Insert(run.queue, i, j)
}

// runRequest is a decoded /run or /runsync body.
type runRequest struct {
	Input       json.RawMessage
	Webhook     string
	S3Config    json.RawMessage
	TTL         time.Duration
	ExecTimeout time.Duration
	LowPriority bool
}

// decodeRunRequest decodes {"input", "webhook"?, "policy"?, "s3Config"?}
// (RUNPOD.md §6.1). Unknown keys are ignored, as the job API is lenient.
func decodeRunRequest(body []byte) (runRequest, *apiError) {
	var raw struct {
		Input    json.RawMessage `json:"input"`
		Webhook  *string         `json:"webhook"`
		S3Config json.RawMessage `json:"s3Config"`
		Policy   *struct {
			ExecutionTimeout *int64 `json:"executionTimeout"`
			TTL              *int64 `json:"ttl"`
			LowPriority      bool   `json:"lowPriority"`
		} `json:"policy"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return runRequest{}, errorf(400, "invalid request body: "+err.Error())
	}
	in := bytes.TrimSpace(raw.Input)
	if len(in) == 0 || bytes.Equal(in, []byte("null")) {
		return runRequest{}, errorf(400, "input is required")
	}
	req := runRequest{Input: in, TTL: defaultTTL}
	if raw.Webhook != nil {
		if len(*raw.Webhook) > maxWebhookURLLen {
			return runRequest{}, errorf(400, "webhook URL too long")
		}
		req.Webhook = *raw.Webhook
	}
	if s3 := bytes.TrimSpace(raw.S3Config); len(s3) > 0 && !bytes.Equal(s3, []byte("null")) {
		if s3[0] != '{' {
			return runRequest{}, errorf(400, "s3Config must be an object")
		}
		req.S3Config = s3
	}
	if p := raw.Policy; p != nil {
		req.LowPriority = p.LowPriority
		if p.ExecutionTimeout != nil {
			d := time.Duration(*p.ExecutionTimeout) * time.Millisecond
			if *p.ExecutionTimeout < minExecTimeout.Milliseconds() || *p.ExecutionTimeout > maxPolicy.Milliseconds() {
				return runRequest{}, errorf(400, "policy.executionTimeout must be between 5000 and 604800000 ms")
			}
			req.ExecTimeout = d
		}
		if p.TTL != nil {
			if *p.TTL < minTTL.Milliseconds() || *p.TTL > maxPolicy.Milliseconds() {
				return runRequest{}, errorf(400, "policy.ttl must be between 10000 and 604800000 ms")
			}
			req.TTL = time.Duration(*p.TTL) * time.Millisecond
		}
	}
	return req, nil
}

// jobHandler is a route of the job API; errors are answered {"error": …}.
type jobHandler func(w http.ResponseWriter, r *http.Request) *apiError

func writeJobError(w http.ResponseWriter, p *apiError) {
	writeJSON(w, p.Status, map[string]string{"error": p.Detail})
}

func (e *Emulator) clientRoute(h jobHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !keyOK(bearerOrRaw(r), e.key) {
			writeJobError(w, errorf(401, "unauthorized: missing or invalid API key"))
			return
		}
		if perr := h(w, r); perr != nil {
			writeJobError(w, perr)
		}
	})
}

func (e *Emulator) jobRoutes() *http.ServeMux {
	m := http.NewServeMux()
	client := func(pattern string, h jobHandler) { m.Handle(pattern, e.clientRoute(h)) }
	client("POST /v2/{ep}/run", func(w http.ResponseWriter, r *http.Request) *apiError { return e.run(w, r, false) })
	client("POST /v2/{ep}/runsync", func(w http.ResponseWriter, r *http.Request) *apiError { return e.run(w, r, true) })
	for _, method := range []string{"GET", "POST"} {
		client(method+" /v2/{ep}/status/{id}", e.status)
		client(method+" /v2/{ep}/status-sync/{id}", e.status)
		client(method+" /v2/{ep}/stream/{id}", e.stream)
	}
	client("POST /v2/{ep}/cancel/{id}", e.cancelJob)
	client("POST /v2/{ep}/retry/{id}", e.retry)
	client("POST /v2/{ep}/purge-queue", e.purge)
	client("GET /v2/{ep}/health", e.health)
	wroute := func(pattern string, h workerHandler) { m.Handle(pattern, e.workerRoute(h)) }
	wroute("GET /v2/{ep}/job-take/{wid}", func(w http.ResponseWriter, r *http.Request, wk *worker) *apiError {
		return e.take(w, r, wk, false)
	})
	wroute("GET /v2/{ep}/job-take-batch/{wid}", func(w http.ResponseWriter, r *http.Request, wk *worker) *apiError {
		return e.take(w, r, wk, true)
	})
	wroute("POST /v2/{ep}/job-done/{wid}/{id}", e.jobDone)
	wroute("POST /v2/{ep}/job-stream/{wid}/{id}", e.jobStream)
	wroute("GET /v2/{ep}/job-stop/{wid}", e.jobStop)
	wroute("GET /v2/{ep}/ping/{wid}", e.ping)
	m.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { writeJobError(w, errorf(404, "not found")) })
	return m
}

// queueRunLocked finds the queue endpoint of a job API path.
func (e *Emulator) queueRunLocked(r *http.Request) (*endpointRun, *apiError) {
	run := e.runs[r.PathValue("ep")]
	if run == nil {
		return nil, errorf(404, "endpoint not found")
	}
	if run.rec.Type == typeLB {
		return nil, errorf(400, "endpoint is load-balanced: call it at its base URL")
	}
	return run, nil
}

// jobLocked finds a job of a job API path.
func (e *Emulator) jobLocked(r *http.Request) (*endpointRun, *job, *apiError) {
	run, perr := e.queueRunLocked(r)
	if perr != nil {
		return nil, nil, perr
	}
	j := run.jobs[r.PathValue("id")]
	if j == nil {
		return nil, nil, errorf(404, "job not found")
	}
	return run, j, nil
}

// waitParam reads ?wait=<ms>, clamped to [lo, hi].
func waitParam(r *http.Request, def, lo, hi time.Duration) time.Duration {
	ms, err := strconv.ParseInt(r.URL.Query().Get("wait"), 10, 64)
	if err != nil {
		return def
	}
	return min(max(time.Duration(ms)*time.Millisecond, lo), hi)
}

func (e *Emulator) run(w http.ResponseWriter, r *http.Request, sync bool) *apiError {
	limit := int64(maxRunBody)
	if sync {
		limit = maxRunSyncBody
	}
	body, perr := readBody(r, limit)
	if perr != nil {
		return perr
	}
	req, perr := decodeRunRequest(body)
	if perr != nil {
		return perr
	}
	run, j, done, perr := e.enqueue(r, req, sync)
	if perr != nil {
		return perr
	}
	if !sync {
		writeJSON(w, 200, map[string]string{"id": j.ID, "status": statusInQueue})
		return nil
	}
	return e.answerAfter(w, r, run, j, done, waitParam(r, defaultSyncWait, minSyncWait, maxSyncWait))
}

// enqueue adds a job to the endpoint's queue and starts a worker at once
// when the scaler wants one (a cold start begins now, not at the next tick).
func (e *Emulator) enqueue(r *http.Request, req runRequest, sync bool) (*endpointRun, *job, chan struct{}, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	run, perr := e.queueRunLocked(r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	run.evictLocked(e.cfg.MaxJobs - 1)
	if len(run.queue) >= e.cfg.MaxQueue || len(run.jobs) >= e.cfg.MaxJobs {
		return nil, nil, nil, errorf(429, "queue is full")
	}
	id := newUUID() + "-u1"
	if sync {
		id = "sync-" + id
	}
	j := &job{ID: id, Input: req.Input, Webhook: req.Webhook, S3Config: req.S3Config, Status: statusInQueue,
		Sync: sync, LowPriority: req.LowPriority, TTL: req.TTL, ExecTimeout: req.ExecTimeout,
		Created: time.Now(), done: make(chan struct{})}
	run.jobs[id] = j
	run.queue = append(run.queue, j)
	run.wake()
	e.scaleLocked(run, j.Created)
	return run, j, j.done, nil
}

// answerAfter waits up to wait for the job to end, then answers the final
// job object, or {id, status} when it is still queued or running.
func (e *Emulator) answerAfter(w http.ResponseWriter, r *http.Request, run *endpointRun, j *job, done chan struct{}, wait time.Duration) *apiError {
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		case <-r.Context().Done():
			return nil
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if run.jobs[j.ID] != j {
		return errorf(404, "job not found")
	}
	if j.terminal() || wait == 0 {
		writeJSON(w, 200, j.view())
	} else {
		writeJSON(w, 200, map[string]string{"id": j.ID, "status": j.Status})
	}
	return nil
}

// status answers /status/{id} at once and /status-sync/{id} after waiting
// up to ?wait (the Go SDK's undocumented route).
func (e *Emulator) status(w http.ResponseWriter, r *http.Request) *apiError {
	run, j, done, perr := e.lookupJob(r)
	if perr != nil {
		return perr
	}
	wait := time.Duration(0)
	if r.URL.Query().Has("wait") {
		wait = waitParam(r, defaultSyncWait, 0, maxSyncWait)
	}
	return e.answerAfter(w, r, run, j, done, wait)
}

func (e *Emulator) lookupJob(r *http.Request) (*endpointRun, *job, chan struct{}, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	run, j, perr := e.jobLocked(r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	return run, j, j.done, nil
}

// stream hands out the chunks not yet delivered (RUNPOD.md §6.4). With
// ?wait=<ms> it holds an empty answer until a chunk arrives or the job ends.
func (e *Emulator) stream(w http.ResponseWriter, r *http.Request) *apiError {
	deadline := time.Now().Add(waitParam(r, 0, 0, maxSyncWait))
	for {
		answer, changed, perr := e.drainStream(r, time.Now().After(deadline))
		if perr != nil || answer != nil {
			if answer != nil {
				writeJSON(w, 200, answer)
			}
			return perr
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return nil
		}
		t.Stop()
	}
}

// drainStream returns the stream answer and empties the buffer, unless
// there is nothing to deliver yet and the caller may still wait.
func (e *Emulator) drainStream(r *http.Request, last bool) (map[string]any, chan struct{}, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	run, j, perr := e.jobLocked(r)
	if perr != nil {
		return nil, nil, perr
	}
	if len(j.stream) == 0 && !j.terminal() && !last {
		return nil, run.changed, nil
	}
	chunks := make([]map[string]json.RawMessage, 0, len(j.stream))
	for _, c := range j.stream {
		chunks = append(chunks, map[string]json.RawMessage{"output": c})
	}
	j.stream, j.streamBytes = nil, 0
	return map[string]any{"id": j.ID, "status": j.Status, "stream": chunks}, nil, nil
}

// cancelJob cancels a queued job at once; a running one is cancelled and
// its worker told through the stop channel. A finished job is left as is.
func (e *Emulator) cancelJob(w http.ResponseWriter, r *http.Request) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	run, j, perr := e.jobLocked(r)
	if perr != nil {
		return perr
	}
	if !j.terminal() {
		e.finishLocked(run, j, statusCancelled, nil, "")
	}
	writeJSON(w, 200, map[string]string{"id": j.ID, "status": j.Status})
	return nil
}

// retry requeues a FAILED or TIMED_OUT job under the same id with the same
// input, its old output cleared.
func (e *Emulator) retry(w http.ResponseWriter, r *http.Request) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	run, j, perr := e.jobLocked(r)
	if perr != nil {
		return perr
	}
	if j.Status != statusFailed && j.Status != statusTimedOut {
		return errorf(400, fmt.Sprintf("job %s is %s: only FAILED or TIMED_OUT jobs can be retried", j.ID, j.Status))
	}
	if len(run.queue) >= e.cfg.MaxQueue {
		return errorf(429, "queue is full")
	}
	j.Error, j.Done, j.Retries, j.done = "", time.Time{}, j.Retries+1, make(chan struct{})
	j.stream, j.streamBytes = nil, 0
	j.Created = time.Now() // its TTL and queue position start again
	run.requeueLocked(j)
	run.retried++
	run.wake()
	writeJSON(w, 200, map[string]string{"id": j.ID, "status": j.Status})
	return nil
}

// purge removes every queued job; running ones are untouched.
func (e *Emulator) purge(w http.ResponseWriter, r *http.Request) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	run, perr := e.queueRunLocked(r)
	if perr != nil {
		return perr
	}
	n := len(run.queue)
	for _, j := range run.queue {
		delete(run.jobs, j.ID)
		close(j.done)
	}
	run.queue = nil
	run.wake()
	writeJSON(w, 200, map[string]any{"removed": n, "status": "completed"})
	return nil
}

// health answers the job and worker counters. The workers keys follow the
// console's states [U]: initializing = started, not yet polling; idle and
// ready = polling without a job; running = holding a job; unhealthy =
// crashing or reported unhealthy.
func (e *Emulator) health(w http.ResponseWriter, r *http.Request) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	run, perr := e.queueRunLocked(r)
	if perr != nil {
		return perr
	}
	inProgress := 0
	for _, j := range run.jobs {
		if j.Status == statusInProgress {
			inProgress++
		}
	}
	workers := map[string]int{"idle": 0, "initializing": 0, "ready": 0, "running": 0, "throttled": 0, "unhealthy": 0}
	for _, wk := range run.workers {
		switch wk.statusLocked() {
		case workerInitializing:
			workers["initializing"]++
		case workerIdle:
			workers["idle"]++
			workers["ready"]++
		case workerRunning:
			workers["running"]++
		case workerUnhealthy:
			workers["unhealthy"]++
		}
	}
	writeJSON(w, 200, map[string]any{
		"jobs": map[string]int{"completed": run.completed, "failed": run.failed, "inProgress": inProgress,
			"inQueue": len(run.queue), "retried": run.retried},
		"workers": workers})
	return nil
}

// finishLocked ends a job. A job that a worker still runs (cancelled or
// timed out) is put on that worker's stop list.
func (e *Emulator) finishLocked(run *endpointRun, j *job, status string, output json.RawMessage, errText string) {
	if j.Status == statusInQueue {
		run.removeQueued(j)
	}
	if j.Status == statusInProgress {
		if w := run.workers[j.Worker]; w != nil {
			delete(w.jobs, j.ID)
			w.lastBusy = time.Now()
			if status == statusCancelled || status == statusTimedOut {
				w.toStop = append(w.toStop, j.ID)
				w.wakeStop()
			}
		}
	}
	j.Status, j.Done = status, time.Now()
	if output != nil || status != statusInProgress {
		j.Output = output
	}
	j.Error = errText
	switch status {
	case statusCompleted:
		run.completed++
		run.crashes = 0
	case statusFailed, statusTimedOut:
		run.failed++
	}
	close(j.done)
	run.ended = append(run.ended, j)
	run.wake()
	if j.Webhook != "" {
		e.queueWebhook(j)
	}
}

// deleteJobLocked forgets a job; a later status answers 404.
func (e *Emulator) deleteJobLocked(run *endpointRun, j *job) {
	if !j.terminal() {
		e.finishLocked(run, j, statusCancelled, nil, "")
	}
	delete(run.jobs, j.ID)
}

// sweepLocked applies execution timeouts, TTLs and retention.
func (e *Emulator) sweepLocked(run *endpointRun, now time.Time) {
	defer func() {
		run.ended = slices.DeleteFunc(run.ended, func(j *job) bool { return run.jobs[j.ID] != j || !j.terminal() })
	}()
	for _, j := range run.jobs {
		switch {
		case now.Sub(j.Created) > j.TTL:
			// The TTL covers a job's whole life; past it the job is gone.
			e.deleteJobLocked(run, j)
		case j.Status == statusInProgress:
			limit := j.ExecTimeout
			if limit == 0 {
				limit = time.Duration(run.rec.Timeout) * time.Millisecond
			}
			if now.Sub(j.Taken) > limit {
				// RUNPOD.md §6.2 [U]: FAILED per the v1 spec text, TIMED_OUT per
				// the job-states page; the SDK clients treat both as final.
				e.finishLocked(run, j, statusTimedOut, nil, "execution timeout exceeded")
			}
		case j.terminal():
			keep := e.cfg.RunRetention
			if j.Sync {
				keep = e.cfg.SyncRetention
			}
			if now.Sub(j.Done) > keep {
				delete(run.jobs, j.ID)
			}
		}
	}
}

// webhook is a pending POST of a finished job's object.
type webhook struct {
	url  string
	body []byte
}

func (e *Emulator) queueWebhook(j *job) {
	body, _ := json.Marshal(j.view())
	select {
	case e.hooks <- webhook{url: j.Webhook, body: body}:
	default:
		e.log.Warn("runpodemu: webhook dropped: too many pending", "job", j.ID)
	}
}

// sendWebhooks delivers webhooks: success needs a 200; otherwise two more
// attempts follow WebhookRetry apart (RUNPOD.md §6.3).
func (e *Emulator) sendWebhooks() {
	defer e.loops.Done()
	client := &http.Client{Timeout: webhookTimeout}
	for {
		select {
		case <-e.ctx.Done():
			return
		case h := <-e.hooks:
			for attempt := 1; attempt <= webhookAttempts; attempt++ {
				req, err := http.NewRequestWithContext(e.ctx, "POST", h.url, bytes.NewReader(h.body))
				if err != nil {
					break
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				if attempt == webhookAttempts {
					e.log.Warn("runpodemu: webhook failed", "url", h.url, "err", err)
					break
				}
				select {
				case <-e.ctx.Done():
					return
				case <-time.After(e.cfg.WebhookRetry):
				}
			}
		}
	}
}

// Jobs are kept across a restart in jobs.json, written when the emulator
// closes (a crash of the emulator loses the jobs since the last close). Jobs
// that were running go back to the queue: their workers ended
// with the emulator, as a crashed worker's jobs are requeued.
func (e *Emulator) jobsPath() string { return filepath.Join(e.cfg.Dir, "jobs.json") }

func (e *Emulator) saveJobs() error {
	e.mu.Lock()
	all := map[string][]*job{}
	for id, run := range e.runs {
		for _, j := range run.jobs {
			all[id] = append(all[id], j)
		}
	}
	b, err := json.Marshal(all)
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("runpodemu: save jobs: %w", err)
	}
	return atomicfile.Write(e.jobsPath(), b, 0o600)
}

func (e *Emulator) loadJobs() error {
	b, err := os.ReadFile(e.jobsPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runpodemu: read jobs: %w", err)
	}
	var all map[string][]*job
	if err := json.Unmarshal(b, &all); err != nil {
		e.log.Warn("runpodemu: jobs file unreadable; starting with empty queues", "err", err)
		return nil
	}
	for id, jobs := range all {
		run := e.runs[id]
		if run == nil {
			continue
		}
		slices.SortFunc(jobs, func(a, b *job) int { return a.Created.Compare(b.Created) })
		for _, j := range jobs {
			j.done = make(chan struct{})
			switch {
			case j.terminal():
				close(j.done)
				run.ended = append(run.ended, j)
			default:
				j.Status, j.Taken, j.Worker = statusInQueue, time.Time{}, ""
				run.queue = append(run.queue, j)
			}
			run.jobs[j.ID] = j
		}
	}
	return nil
}
