package runpodemu

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The worker-facing API (RUNPOD.md §4): what Runpod's worker SDK calls at
// the URLs injected into its environment.

const (
	maxDoneBody  = maxRunSyncBody + 1<<20 // a result may be as large as a runsync answer
	maxBatchSize = 64
)

// workerHandler is a worker route; wk is the worker the key belongs to.
type workerHandler func(w http.ResponseWriter, r *http.Request, wk *worker) *apiError

// workerRoute authenticates a worker by its own key, sent raw as the SDK
// does (Bearer is accepted too). The key, not the path, names the worker:
// the SDK leaves a literal $RUNPOD_POD_ID in some URL forms (RUNPOD.md §4.2).
func (e *Emulator) workerRoute(h workerHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wk := e.workerByKey(bearerOrRaw(r), r.PathValue("ep"))
		if wk == nil {
			writeJobError(w, errorf(401, "unauthorized: unknown worker key"))
			return
		}
		if perr := h(w, r, wk); perr != nil {
			writeJobError(w, perr)
		}
	})
}

// workerByKey returns the live worker of endpoint ep with this key, noting
// that it was seen.
func (e *Emulator) workerByKey(key, ep string) *worker {
	e.mu.Lock()
	defer e.mu.Unlock()
	wk := e.byKey[key]
	if wk == nil || wk.run.rec.ID != ep {
		return nil
	}
	wk.lastSeen = time.Now()
	return wk
}

// take hands queued jobs to a worker, oldest first, holding the request up
// to TakeHold when the queue is empty (a long poll, then 204). A stopping
// worker gets 204 at once, so that it can drain and exit.
func (e *Emulator) take(w http.ResponseWriter, r *http.Request, wk *worker, batch bool) *apiError {
	n := 1
	if batch {
		if s, err := strconv.Atoi(r.URL.Query().Get("batch_size")); err == nil {
			n = min(max(s, 1), maxBatchSize)
		}
	}
	return e.longPoll(w, r, wk, func() (any, bool, chan struct{}) {
		objs, changed, stop := e.takeLocked(wk, n)
		switch {
		case stop:
			return nil, true, changed
		case len(objs) > 0 && batch:
			return objs, false, changed
		case len(objs) > 0:
			return objs[0], false, changed
		}
		return nil, false, changed
	})
}

// longPoll holds a worker's request up to TakeHold. Each try of poll
// answers 200 with a non-nil v, 204 when done, or else returns the channel
// that announces the next change; the hold ending, or the worker stopping
// between tries, answers 204 as well.
func (e *Emulator) longPoll(w http.ResponseWriter, r *http.Request, wk *worker, poll func() (v any, done bool, wake chan struct{})) *apiError {
	t := time.NewTimer(e.cfg.TakeHold)
	defer t.Stop()
	for {
		v, done, wake := poll()
		switch {
		case v != nil:
			writeJSON(w, 200, v)
			return nil
		case done:
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		select {
		case <-wake:
		case <-wk.stopCh:
		case <-t.C:
			w.WriteHeader(http.StatusNoContent)
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

// takeLocked hands up to n queued jobs to wk. With none, it returns the
// channel that announces the next change; stop says wk takes no more jobs.
func (e *Emulator) takeLocked(wk *worker, n int) (objs []map[string]json.RawMessage, changed chan struct{}, stop bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	run := wk.run
	// An outdated worker takes no more jobs: it is replaced (§6.4).
	if wk.stopping || run.deleted || wk.recycle || wk.version != run.rec.Version {
		return nil, nil, true
	}
	if wk.firstPoll.IsZero() {
		wk.firstPoll = time.Now()
	}
	if len(run.queue) == 0 {
		return nil, run.changed, false
	}
	k := min(n, len(run.queue))
	taken := run.queue[:k:k]
	run.queue = run.queue[k:]
	now := time.Now()
	for _, j := range taken {
		j.Status, j.Taken, j.Worker = statusInProgress, now, wk.id
		wk.jobs[j.ID] = j
		obj := map[string]json.RawMessage{"id": mustJSON(j.ID), "input": j.Input}
		if j.S3Config != nil {
			obj["s3Config"] = j.S3Config
		}
		objs = append(objs, obj)
	}
	if wk.firstTake.IsZero() {
		wk.firstTake = now
		e.log.Info("worker took its first job", "endpoint", run.rec.ID, "worker", wk.id,
			"cold_start_ms", now.Sub(wk.started).Milliseconds())
	}
	run.wake()
	return objs, nil, false
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// heldJobLocked returns the job a result is about, or nil when that worker
// no longer holds it (cancelled, timed out, requeued): such results are
// accepted with 200 and dropped.
func heldJobLocked(wk *worker, id string) *job {
	j := wk.jobs[id]
	if j == nil || j.Status != statusInProgress || j.Worker != wk.id {
		return nil
	}
	return j
}

// doneBody is a decoded job-done body (RUNPOD.md §4.5–4.7).
type doneBody struct {
	progress bool
	output   json.RawMessage
	errText  string
	stopPod  bool
}

// decodeDone parses a job-done body as JSON whatever its Content-Type (the
// SDK sends application/x-www-form-urlencoded). status IN_PROGRESS is a
// progress update; a non-empty error fails the job, a non-string error is
// kept as its JSON text.
func decodeDone(body []byte) (doneBody, *apiError) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return doneBody{}, errorf(400, "job result is not a JSON object")
	}
	var d doneBody
	if out, ok := raw["output"]; ok && !bytes.Equal(bytes.TrimSpace(out), []byte("null")) {
		d.output = bytes.TrimSpace(out)
	}
	var status string
	json.Unmarshal(raw["status"], &status)
	d.progress = status == statusInProgress
	if ev, ok := raw["error"]; ok {
		var s string
		if json.Unmarshal(ev, &s) == nil {
			d.errText = s
		} else if t := bytes.TrimSpace(ev); !bytes.Equal(t, []byte("null")) {
			d.errText = string(t)
		}
	}
	json.Unmarshal(raw["stopPod"], &d.stopPod)
	return d, nil
}

// readDone reads a bounded job-done or stream body and decodes it.
func readDone(r *http.Request, limit int64) (doneBody, *apiError) {
	body, perr := readBody(r, limit)
	if perr != nil {
		return doneBody{}, perr
	}
	return decodeDone(body)
}

func (e *Emulator) jobDone(w http.ResponseWriter, r *http.Request, wk *worker) *apiError {
	d, perr := readDone(r, maxDoneBody)
	if perr != nil {
		return perr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	run := wk.run
	if d.stopPod {
		wk.recycle = true
	}
	if j := heldJobLocked(wk, r.PathValue("id")); j != nil {
		switch {
		case d.progress:
			j.Output = d.output
			run.wake()
		case d.errText != "":
			e.finishLocked(run, j, statusFailed, d.output, d.errText)
		default:
			e.finishLocked(run, j, statusCompleted, d.output, "")
		}
	}
	if wk.recycle && len(wk.jobs) == 0 {
		e.stopWorkerLocked(wk, "stopPod")
	}
	writeJSON(w, 200, map[string]any{})
	return nil
}

// jobStream appends one chunk to the job's undelivered stream.
func (e *Emulator) jobStream(w http.ResponseWriter, r *http.Request, wk *worker) *apiError {
	d, perr := readDone(r, maxChunk+1024)
	if perr != nil {
		return perr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if j := heldJobLocked(wk, r.PathValue("id")); j != nil && d.output != nil {
		if j.streamBytes+len(d.output) > maxStreamBuffer {
			return errorf(429, "stream buffer full: the client is not reading /stream")
		}
		j.stream = append(j.stream, d.output)
		j.streamBytes += len(d.output)
		wk.run.wake()
	}
	writeJSON(w, 200, map[string]any{})
	return nil
}

// jobStop is the stop channel: it answers {"jobsToStop": [...]} as soon as
// one of the worker's jobs is cancelled or times out, else 204 after the hold.
func (e *Emulator) jobStop(w http.ResponseWriter, r *http.Request, wk *worker) *apiError {
	return e.longPoll(w, r, wk, func() (any, bool, chan struct{}) {
		ids, wake, stopping := e.stopListLocked(wk)
		if len(ids) > 0 {
			return map[string][]string{"jobsToStop": ids}, false, wake
		}
		return nil, stopping, wake
	})
}

// stopListLocked takes the jobs wk must stop, or returns what to wait on.
func (e *Emulator) stopListLocked(wk *worker) (ids []string, wake chan struct{}, stopping bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids, wk.toStop = wk.toStop, nil
	return ids, wk.stopWake, wk.stopping
}

// ping records the heartbeat; status=unhealthy (a failed fitness check)
// marks the worker, which then exits by itself.
func (e *Emulator) ping(w http.ResponseWriter, r *http.Request, wk *worker) *apiError {
	q := r.URL.Query()
	e.mu.Lock()
	defer e.mu.Unlock()
	wk.pinged = true
	if q.Get("status") == "unhealthy" {
		wk.unhealthy = strings.TrimSpace(q.Get("check") + ": " + q.Get("reason"))
		e.log.Warn("worker reported unhealthy", "endpoint", wk.run.rec.ID, "worker", wk.id, "reason", wk.unhealthy)
	}
	writeJSON(w, 200, map[string]any{})
	return nil
}
