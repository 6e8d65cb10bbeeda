package mothership

import (
	"sync"
	"time"
)

// Bounds of the gateway's job table.
const (
	maxJobs = 100_000          // jobs remembered at once; the oldest go first
	jobTTL  = 30 * time.Minute // as long as a child keeps a job's result (SPEC §9)
)

// jobReplicas remembers which replica holds each job submitted through the
// gateway, so that its status, cancel and stream reach that replica. It is
// bounded (maxJobs, jobTTL); a forgotten job is found by asking the replicas.
type jobReplicas struct {
	mu    sync.Mutex
	byJob map[jobKey]jobEntry
	order []jobKey // insertion order, for eviction
	now   func() time.Time
}

type jobKey struct{ resource, id string }

type jobEntry struct {
	replica string
	at      time.Time
}

func newJobReplicas(now func() time.Time) jobReplicas {
	return jobReplicas{byJob: make(map[jobKey]jobEntry), now: now}
}

func (j *jobReplicas) put(resource, id, replica string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.now()
	k := jobKey{resource, id}
	if _, ok := j.byJob[k]; !ok {
		j.order = append(j.order, k)
	}
	j.byJob[k] = jobEntry{replica, now}
	// Evict the expired, and the oldest beyond the bound.
	n := 0
	for n < len(j.order) {
		e, ok := j.byJob[j.order[n]]
		if ok && len(j.byJob) <= maxJobs && now.Sub(e.at) < jobTTL {
			break
		}
		delete(j.byJob, j.order[n])
		n++
	}
	if n > 0 {
		j.order = append(j.order[:0:0], j.order[n:]...)
	}
}

func (j *jobReplicas) get(resource, id string) (string, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.byJob[jobKey{resource, id}]
	if !ok || j.now().Sub(e.at) >= jobTTL {
		return "", false
	}
	return e.replica, true
}
