package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flash-go/flash/internal/wire"
)

// WorkerConfig is how a queue-based endpoint takes its jobs from Runpod's
// queue instead of /run and /runsync (SPEC §5.7, RUNPOD.md §4). Build it with
// WorkerConfigFromEnv; the URL templates are substituted already.
type WorkerConfig struct {
	// JobTake is RUNPOD_WEBHOOK_GET_JOB with the worker id in place of $ID.
	JobTake string
	// JobDone is RUNPOD_WEBHOOK_POST_OUTPUT with the worker id in place of
	// $RUNPOD_POD_ID; $ID is replaced by each job's id.
	JobDone string
	// Ping is RUNPOD_WEBHOOK_PING with the worker id; empty: no heartbeat.
	Ping string
	// PingInterval is RUNPOD_PING_INTERVAL (milliseconds in the env); default 10 s.
	PingInterval time.Duration
	// WorkerID is RUNPOD_POD_ID, else a random id.
	WorkerID string
	// Key is RUNPOD_AI_API_KEY, sent raw (no "Bearer") on every call.
	Key string
	// Grace is how long, after Work's context ends, a pending job-take and
	// running jobs may still take; default 30 s.
	Grace time.Duration
	// Client makes the calls; default a client of its own.
	Client *http.Client
}

// Waits of the worker loop, as runpod-python's (rp_scale.py, rp_http.py).
const (
	takeTimeout      = 90 * time.Second // the SDK's bound on one long poll
	tooManyWait      = 5 * time.Second  // after a 429 from job-take or job-stop
	stopEmptyWait    = time.Second      // after an empty job-stop answer
	defaultPingEvery = 10 * time.Second
	postTimeout      = 30 * time.Second
)

// workerVersion is what the heartbeat reports as runpod_version.
const workerVersion = "flash-go"

// WorkerConfigFromEnv reads Runpod's worker variables through getenv. ok is
// false when RUNPOD_WEBHOOK_GET_JOB is unset (not a Runpod queue worker).
func WorkerConfigFromEnv(getenv func(string) string) (cfg WorkerConfig, ok bool, err error) {
	take := getenv("RUNPOD_WEBHOOK_GET_JOB")
	if take == "" {
		return cfg, false, nil
	}
	cfg.WorkerID = getenv("RUNPOD_POD_ID")
	heartbeat := cfg.WorkerID != ""
	if cfg.WorkerID == "" {
		var b [16]byte
		rand.Read(b[:])
		cfg.WorkerID = hex.EncodeToString(b[:])
	}
	cfg.Key = getenv("RUNPOD_AI_API_KEY")
	// runpod-python replaces only $ID in the take URL; replacing
	// $RUNPOD_POD_ID too is harmless and fits both forms (RUNPOD.md §4.2).
	cfg.JobTake = strings.NewReplacer("$RUNPOD_POD_ID", cfg.WorkerID, "$ID", cfg.WorkerID).Replace(take)
	cfg.JobDone = strings.ReplaceAll(getenv("RUNPOD_WEBHOOK_POST_OUTPUT"), "$RUNPOD_POD_ID", cfg.WorkerID)
	if cfg.JobDone == "" {
		return cfg, true, errors.New("RUNPOD_WEBHOOK_GET_JOB is set but RUNPOD_WEBHOOK_POST_OUTPUT is not: results could not be returned")
	}
	// Like the SDK, no heartbeat without a pod id and a key.
	if heartbeat && cfg.Key != "" {
		cfg.Ping = strings.ReplaceAll(getenv("RUNPOD_WEBHOOK_PING"), "$RUNPOD_POD_ID", cfg.WorkerID)
	}
	cfg.PingInterval = defaultPingEvery
	if v := getenv("RUNPOD_PING_INTERVAL"); v != "" {
		ms, perr := strconv.Atoi(v)
		if perr != nil || ms <= 0 {
			return cfg, true, fmt.Errorf("RUNPOD_PING_INTERVAL=%q: want a positive number of milliseconds", v)
		}
		// The SDK integer-divides by 1000 (below 1000 it busy-loops); one
		// second is the floor here.
		cfg.PingInterval = max(time.Duration(ms/1000)*time.Second, time.Second)
	}
	return cfg, true, nil
}

// withQuery appends query parameters. The SDK appends "&k=v" to the injected
// URL as it is, which assumes a "?" (Runpod's URLs carry ?gpu=…); starting
// the query when there is none keeps the result a valid URL either way.
func withQuery(u, query string) string {
	if strings.Contains(u, "?") {
		return u + "&" + query
	}
	return u + "?" + query
}

// worker is the pulling loop of one Server (see Server.Work).
type worker struct {
	s      *Server
	cfg    WorkerConfig
	log    *slog.Logger
	client *http.Client
	batch  string // job-take-batch URL; "" when JobTake has no /job-take/
	stop   string // job-stop URL; "" likewise (the stop channel is off)

	// Waits, shortened by tests.
	takeTimeout, tooMany, stopEmpty, errMin, errMax, readyPoll time.Duration
	postWaits                                                  []time.Duration // before the 2nd, 3rd … job-done attempt

	mu    sync.Mutex
	held  map[string]*job // taken and not yet answered, by job id (nil *job: not yet submitted)
	freed chan struct{}   // a slot was freed (capacity 1)
	wg    sync.WaitGroup  // job goroutines
}

// Work takes jobs from Runpod's queue as runpod-python's worker does
// (RUNPOD.md §4.4–4.11) and runs them like /runsync: same envelope
// (the job's "input" is the envelope's), same outcomes, so a caller cannot
// tell a pulled job from a pushed one. Up to Config.Workers jobs are held at
// once. A job stopped through the stop channel has its context cancelled
// and, like the SDK, nothing posted.
//
// When ctx ends, Work stops taking (a pending long poll may still deliver
// jobs, which run), waits for held jobs to be answered, and returns; after
// cfg.Grace it cancels what is left. Streaming functions do not exist in
// flash yet, so job-stream is never called.
func (s *Server) Work(ctx context.Context, cfg WorkerConfig) error {
	if len(s.qb) == 0 {
		return errors.New("serve: worker mode needs queue-based functions; this endpoint has none")
	}
	w := s.newWorker(cfg)
	return w.work(ctx)
}

func (s *Server) newWorker(cfg WorkerConfig) *worker {
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = defaultPingEvery
	}
	w := &worker{
		s: s, cfg: cfg, client: cfg.Client,
		log:         s.log.With("worker", cfg.WorkerID),
		takeTimeout: takeTimeout, tooMany: tooManyWait, stopEmpty: stopEmptyWait, errMin: time.Second, errMax: 10 * time.Second,
		readyPoll: 100 * time.Millisecond,
		// The SDK's FibonacciRetry(attempts=3) as aiohttp_retry runs it.
		postWaits: []time.Duration{2 * time.Second, 3 * time.Second},
		held:      make(map[string]*job),
		freed:     make(chan struct{}, 1),
	}
	if w.client == nil {
		w.client = &http.Client{Transport: wire.NewTransport()}
	}
	// As rp_job.py: batch and stop URLs come from the take URL by replacing
	// /job-take/, query string kept; without it both are unavailable.
	if strings.Contains(cfg.JobTake, "/job-take/") {
		w.batch = strings.Replace(cfg.JobTake, "/job-take/", "/job-take-batch/", 1)
		w.stop = strings.Replace(cfg.JobTake, "/job-take/", "/job-stop/", 1)
	}
	return w
}

func (w *worker) work(ctx context.Context) error {
	// hard ends cfg.Grace after ctx: pending calls are cut, and jobs, whose
	// contexts derive from it, are cancelled.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	var watch sync.WaitGroup
	defer watch.Wait()
	defer cancelHard()
	watch.Go(func() {
		select {
		case <-ctx.Done():
		case <-hard.Done():
			return
		}
		t := time.NewTimer(w.cfg.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			w.log.Warn("worker: grace period over, cancelling the jobs left")
			cancelHard()
		case <-hard.Done():
		}
	})

	// The heartbeat and stop channel run until every held job is answered.
	aux, stopAux := context.WithCancel(hard)
	defer stopAux()
	var auxWG sync.WaitGroup
	if w.cfg.Ping != "" {
		auxWG.Go(func() { w.heartbeat(aux) })
	}
	if w.stop != "" {
		auxWG.Go(func() { w.stopChannel(aux) })
	} else {
		w.log.Warn("job-take URL has no /job-take/: the stop channel is off (cancellations reach this worker only through its deadline)")
	}
	w.log.Info("worker mode: taking jobs from the queue", "url", redactURL(w.cfg.JobTake), "concurrency", w.s.cfg.Workers)

	w.takeLoop(ctx, hard)
	w.wg.Wait()
	stopAux()
	auxWG.Wait()
	w.client.CloseIdleConnections()
	return nil
}

// takeLoop takes jobs while ctx lasts and slots are free.
func (w *worker) takeLoop(ctx, hard context.Context) {
	errWait := time.Duration(0)
	for ctx.Err() == nil {
		if ready := w.s.cfg.Ready; ready != nil && !ready() {
			// Not ready (a child without its manifest yet, whose /ping says
			// 204): a job taken now could not be routed.
			sleep(ctx, w.readyPoll)
			continue
		}
		w.mu.Lock()
		need, busy := w.s.cfg.Workers-len(w.held), len(w.held) > 0
		w.mu.Unlock()
		if need <= 0 {
			select {
			case <-w.freed:
			case <-ctx.Done():
			}
			continue
		}
		jobs, wait, err := w.take(hard, need, busy)
		if err != nil {
			// runpod-python re-polls at once after an error (RUNPOD.md §4.4:
			// ~70 000 takes in 30 s against a closed port); this backs off.
			errWait = min(max(2*errWait, w.errMin), w.errMax)
			wait = errWait
			w.log.Warn("job-take failed", "err", err, "retry_in", wait)
		} else {
			errWait = 0
		}
		for _, raw := range jobs {
			w.start(hard, raw)
		}
		if wait > 0 {
			sleep(ctx, wait)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// take asks for up to need jobs: the single path for one, the batch path
// for more (when there is one). It returns the jobs, how long to wait before
// the next take, and an error for answers that call for a back-off.
func (w *worker) take(ctx context.Context, need int, busy bool) ([]json.RawMessage, time.Duration, error) {
	u := w.cfg.JobTake
	if need > 1 && w.batch != "" {
		u = withQuery(w.batch, "batch_size="+strconv.Itoa(need))
	} else {
		need = 1
	}
	inProgress := "0"
	if busy {
		inProgress = "1"
	}
	u = withQuery(u, "job_in_progress="+inProgress)
	ctx, cancel := context.WithTimeout(ctx, w.takeTimeout)
	defer cancel()
	resp, err := w.call(ctx, http.MethodGet, u, nil, "")
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, nil // the long poll ran out (poll again), or the grace did
		}
		return nil, 0, err
	}
	defer drainClose(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNoContent:
		return nil, 0, nil
	case http.StatusBadRequest:
		// "expected when FlashBoot is enabled" (rp_job.py): no job. The SDK
		// re-polls at once; a short pause keeps a server that answers 400 at
		// once from being hammered.
		return nil, 100 * time.Millisecond, nil
	case http.StatusTooManyRequests:
		return nil, w.tooMany, nil
	default:
		return nil, 0, fmt.Errorf("job-take answered %s", resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != wire.ContentTypeJSON {
		return nil, 0, nil // the SDK's "unexpected content type": no job
	}
	// A job is at most MaxBody (what /runsync accepts), plus its envelope.
	limit := int64(need)*(w.s.cfg.MaxBody+64<<10) + 1
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, 0, fmt.Errorf("reading job-take answer: %w", err)
	}
	if int64(len(body)) == limit {
		return nil, 0, fmt.Errorf("job-take answer larger than %d bytes", limit-1)
	}
	return decodeTake(body)
}

// decodeTake splits a job-take answer into jobs: an object is one job, an
// array a batch; an empty body is no job.
func decodeTake(body []byte) ([]json.RawMessage, time.Duration, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, 0, nil
	}
	switch body[0] {
	case '{':
		var probe struct {
			ID    json.RawMessage `json:"id"`
			Input json.RawMessage `json:"input"`
		}
		if err := json.Unmarshal(body, &probe); err != nil {
			return nil, 0, fmt.Errorf("job-take answer: %w", err)
		}
		if probe.ID == nil || probe.Input == nil {
			return nil, 0, errors.New("job-take answer: job has missing field(s): id or input")
		}
		return []json.RawMessage{body}, 0, nil
	case '[':
		var jobs []json.RawMessage
		if err := json.Unmarshal(body, &jobs); err != nil {
			return nil, 0, fmt.Errorf("job-take answer: %w", err)
		}
		return jobs, 0, nil
	}
	return nil, 0, fmt.Errorf("job-take answer is neither a job nor a list of jobs")
}

// takenJob is a decoded job-take entry.
type takenJob struct {
	ID  string
	Inv wire.Invocation
	Err error // the envelope is invalid: the job fails with this (an *httpError)
}

// maxJobID bounds the job ids accepted from job-take (Runpod's are UUIDs
// with a suffix); an id is only echoed in job-done's URL, path-escaped.
const maxJobID = 1024

// decodeJob decodes one job of a job-take answer: {"id", "input", …} where
// "input" (and "policy", if the queue passes it) are those of a /run body.
// An error means the entry has no usable id, so nothing can be answered.
func decodeJob(raw []byte) (takenJob, error) {
	var head struct {
		ID any `json:"id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return takenJob{}, fmt.Errorf("job is not a JSON object: %w", err)
	}
	id, ok := head.ID.(string)
	if !ok || id == "" || len(id) > maxJobID {
		return takenJob{}, fmt.Errorf("job has no usable id (%.64v)", head.ID)
	}
	inv, err := decodeEnvelope(raw)
	return takenJob{ID: id, Inv: inv, Err: err}, nil
}

// start holds a slot for raw and runs it on its own goroutine.
func (w *worker) start(hard context.Context, raw json.RawMessage) {
	tj, err := decodeJob(raw)
	if err != nil {
		w.log.Error("job-take gave an unusable job; it cannot be answered", "err", err)
		return
	}
	w.mu.Lock()
	if _, dup := w.held[tj.ID]; dup {
		w.mu.Unlock()
		w.log.Warn("job-take gave a job this worker already holds; ignored", "job", tj.ID)
		return
	}
	w.held[tj.ID] = nil
	w.mu.Unlock()
	w.wg.Go(func() {
		defer w.release(tj.ID)
		if body, ok := w.runJob(hard, tj); ok {
			w.post(hard, tj.ID, body)
		}
	})
}

func (w *worker) release(id string) {
	w.mu.Lock()
	delete(w.held, id)
	w.mu.Unlock()
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// errStopped is the cancellation cause of a job named on the stop channel.
var errStopped = errors.New("job stopped by the queue")

// runJob runs tj as /runsync would and returns the job-done body; ok is
// false when nothing is to be posted (the job was stopped or cancelled).
func (w *worker) runJob(hard context.Context, tj takenJob) (body []byte, ok bool) {
	if tj.Err != nil {
		return refusalBody(tj.Err), true
	}
	f := w.s.qb[tj.Inv.Function]
	if f == nil {
		return refusalBody(fmt.Errorf("function %q not found on this endpoint (available: %s)",
			tj.Inv.Function, strings.Join(w.s.qbNames, ", "))), true
	}
	meta := wire.Meta{RequestID: tj.ID, TraceParent: wire.NewTraceParent()}
	if !validRequestID(tj.ID) {
		meta.RequestID = wire.NewRequestID()
	}
	ctx := wire.WithMeta(hard, meta)
	run, err := w.s.bind(ctx, f, Input{JSON: tj.Inv.Input})
	if err != nil {
		return refusalBody(err), true
	}
	var deadline time.Time
	if tj.Inv.Timeout > 0 {
		deadline = time.Now().Add(tj.Inv.Timeout)
	}
	j := w.s.jobs.newJob(ctx, f.Name, run, deadline)
	j.id = tj.ID
	w.mu.Lock()
	_, live := w.held[tj.ID]
	if live {
		w.held[tj.ID] = j
	}
	w.mu.Unlock()
	if !live || hard.Err() != nil {
		j.cancel(errStopped)
		return nil, false
	}
	if err := w.s.jobs.submit(j, false, false); err != nil {
		return refusalBody(submitError(err)), true
	}
	<-j.done
	w.s.jobs.mu.Lock()
	v := j.viewLocked(time.Now())
	w.s.jobs.mu.Unlock()
	if v.Status == StatusCancelled {
		return nil, false // stopped, or the grace ran out: the queue decides (the SDK posts nothing)
	}
	r := v.response()
	body, err = json.Marshal(struct {
		Output *wire.JobOutput `json:"output,omitempty"`
		Error  string          `json:"error,omitempty"`
	}{r.Output, r.Error})
	if err != nil {
		return refusalBody(err), true
	}
	return body, true
}

// refusalBody is the job-done body of a job refused before it ran (what
// /runsync answers with a 4xx/5xx): {"error": msg}, so the job is FAILED.
func refusalBody(err error) []byte {
	msg := err.Error()
	var he *httpError
	if errors.As(err, &he) {
		msg = he.Msg
	}
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}

// post sends a job's result to job-done: like rp_http.py, up to three
// attempts, retried only when the answer is 5xx; the answer's body is
// ignored.
func (w *worker) post(ctx context.Context, id string, body []byte) {
	u := withQuery(strings.ReplaceAll(w.cfg.JobDone, "$ID", url.PathEscape(id)), "isStream=false")
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, postTimeout)
		resp, err := w.call(pctx, http.MethodPost, u, body, id)
		status := 0
		if err == nil {
			status = resp.StatusCode
			drainClose(resp.Body)
		}
		cancel()
		switch {
		case err == nil && status < 300:
			return
		case err == nil && status >= 500 && attempt < len(w.postWaits):
			sleep(ctx, w.postWaits[attempt])
			if ctx.Err() == nil {
				continue
			}
		}
		if err == nil {
			err = fmt.Errorf("job-done answered %d", status)
		}
		w.log.Error("failed to return job results", "job", id, "err", err)
		return
	}
}

// call sends one request with the worker's headers. jobID, when set, is
// sent as X-Request-ID (as the SDK does on job-done posts).
func (w *worker) call(ctx context.Context, method, u string, body []byte, jobID string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", w.cfg.Key)
	req.Header.Set("User-Agent", "flash-go-worker")
	if body != nil {
		// Sic: runpod-python posts JSON text under this type (rp_http.py),
		// and Runpod parses the body as JSON whatever the type says.
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("charset", "utf-8")
	} else {
		req.Header.Set("Content-Type", wire.ContentTypeJSON)
	}
	if jobID != "" {
		req.Header.Set("X-Request-ID", jobID)
	}
	return w.client.Do(req)
}

func drainClose(rc io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	rc.Close()
}

// heartbeat pings every PingInterval with the held jobs' ids (rp_ping.py).
// The answer is ignored; a failed ping is logged and the next one follows.
func (w *worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(w.cfg.PingInterval)
	defer t.Stop()
	for {
		q := url.Values{"runpod_version": {workerVersion}}
		if ids := w.heldIDs(); len(ids) > 0 {
			q.Set("job_id", strings.Join(ids, ","))
		}
		pctx, cancel := context.WithTimeout(ctx, 2*w.cfg.PingInterval)
		resp, err := w.call(pctx, http.MethodGet, withQuery(w.cfg.Ping, q.Encode()), nil, "")
		if err == nil {
			drainClose(resp.Body)
		} else if ctx.Err() == nil {
			w.log.Warn("heartbeat failed", "err", err)
		}
		cancel()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (w *worker) heldIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, len(w.held))
	for id := range w.held {
		ids = append(ids, id)
	}
	return ids
}

// stopChannel long-polls job-stop and cancels the jobs it names
// (rp_scale.py monitor_stop_signals): 1 s pause after an empty answer, 5 s
// after a 429, 1 s after an error.
func (w *worker) stopChannel(ctx context.Context) {
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, w.takeTimeout)
		ids, wait := w.pollStop(pctx)
		cancel()
		for _, id := range ids {
			w.stopJob(id)
		}
		if wait > 0 {
			sleep(ctx, wait)
		}
	}
}

func (w *worker) pollStop(ctx context.Context) (ids []string, wait time.Duration) {
	resp, err := w.call(ctx, http.MethodGet, w.stop, nil, "")
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0
		}
		w.log.Warn("job-stop failed", "err", err)
		return nil, w.errMin
	}
	defer drainClose(resp.Body)
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil, w.stopEmpty
	case resp.StatusCode == http.StatusTooManyRequests:
		return nil, w.tooMany
	case resp.StatusCode >= 300:
		w.log.Warn("job-stop failed", "status", resp.StatusCode)
		return nil, w.errMin
	}
	ids, err = decodeStop(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		w.log.Warn("job-stop answer ignored", "err", err)
	}
	if len(ids) == 0 {
		return nil, w.stopEmpty
	}
	return ids, 0
}

// decodeStop reads {"jobsToStop": [ids]}; non-string ids are dropped, as
// the SDK does.
func decodeStop(r io.Reader) ([]string, error) {
	var payload struct {
		JobsToStop []any `json:"jobsToStop"`
	}
	if err := json.NewDecoder(r).Decode(&payload); err != nil {
		return nil, err
	}
	var ids []string
	for _, v := range payload.JobsToStop {
		if s, ok := v.(string); ok {
			ids = append(ids, s)
		}
	}
	return ids, nil
}

// stopJob cancels a held job; an unknown id is ignored.
func (w *worker) stopJob(id string) {
	w.mu.Lock()
	j, ok := w.held[id]
	if ok && j == nil {
		delete(w.held, id) // taken, not yet submitted: runJob sees it gone
	}
	w.mu.Unlock()
	if j != nil {
		w.log.Info("job stopped by the queue", "job", id)
		j.cancel(errStopped)
	}
}

// redactURL drops the query of u for logs (it may carry tokens).
func redactURL(u string) string {
	base, _, _ := strings.Cut(u, "?")
	return base
}
