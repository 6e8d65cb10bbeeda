// Package scaler decides how many workers an endpoint wants, by Runpod's two
// autoscaling rules (RUNPOD.md §7, RUNPOD_REST_V2.md §3.2). It is a pure
// function of a load snapshot, so the Runpod emulator and the local provider
// scale the same way and tests need no clock.
//
// Scaling down follows the idle timeout: on Runpod a worker above the
// minimum stops after idleTimeout without work (Surplus). Where requests are
// pushed round robin to every replica instead of pulled by idle workers, as
// with the local provider, no replica is ever idle under a light steady load;
// there Demand, the workers the load needs, held below the workers alive for
// the idle timeout, says how many to stop.
package scaler

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Kind is an autoscaling rule.
type Kind string

// The two rules Runpod offers.
const (
	// QueueDelay adds a worker whenever the oldest queued request has waited
	// longer than Value seconds (and keeps at least one while anything waits).
	QueueDelay Kind = "QUEUE_DELAY"
	// RequestCount wants one worker per Value requests queued or running.
	RequestCount Kind = "REQUEST_COUNT"
)

// Policy is an endpoint's scaling configuration.
type Policy struct {
	Kind  Kind
	Value float64 // seconds of queue delay (QueueDelay, ≥ 0.5) or requests per worker (RequestCount, ≥ 1)
	Min   int     // workers kept at all times
	Max   int     // cap on workers; 0 drains the endpoint
}

// Validate reports a policy Runpod would refuse.
func (p Policy) Validate() error {
	switch {
	case p.Kind == QueueDelay && p.Value < 0.5:
		return fmt.Errorf("scaler: queue delay %v below 0.5 s", p.Value)
	case p.Kind == RequestCount && p.Value < 1:
		return fmt.Errorf("scaler: request count %v below 1", p.Value)
	case p.Kind != QueueDelay && p.Kind != RequestCount:
		return fmt.Errorf("scaler: unknown kind %q", p.Kind)
	case p.Min < 0 || p.Max < 0:
		return fmt.Errorf("scaler: negative worker bound (min %d, max %d)", p.Min, p.Max)
	case p.Min > p.Max:
		return fmt.Errorf("scaler: min %d above max %d", p.Min, p.Max)
	}
	return nil
}

// Load is what the scaler sees of an endpoint at one moment. Low-priority
// requests are left out by the caller: on Runpod they never trigger a scale-up.
type Load struct {
	Queued     int           // requests waiting for a worker
	InProgress int           // requests a worker is running
	OldestWait time.Duration // how long the oldest queued request has waited
	Workers    int           // workers alive now (starting, idle or busy)
}

// Desired returns how many workers the endpoint should have: never fewer than
// Min, never more than Max, and never fewer than the workers alive (removing
// them is the idle timeout's job).
func (p Policy) Desired(l Load) int {
	want := l.Workers
	switch p.Kind {
	case RequestCount:
		per := math.Max(p.Value, 1)
		want = max(want, int(math.Ceil(float64(l.Queued+l.InProgress)/per)))
	default: // QueueDelay
		if l.Queued > 0 {
			want = max(want, 1)
			if l.OldestWait.Seconds() > p.Value {
				want = l.Workers + 1
			}
		}
	}
	return min(max(want, p.Min), p.Max)
}

// Worker is what scaling down needs to know of one live worker.
type Worker struct {
	Busy    bool          // it holds work (queued for it, running, or in flight)
	IdleFor time.Duration // since it last held work
}

// Surplus returns the indexes (into ws, ascending) of the workers to stop:
// idle ones above Min once they have been idle longer than idle, and idle
// ones above Max at once (workersMax lowered). A busy worker is never
// chosen: it is stopped, if still in surplus, once its work is done.
func (p Policy) Surplus(ws []Worker, idle time.Duration) []int {
	excess := len(ws) - p.Min
	over := len(ws) - p.Max
	var out []int
	for i, w := range ws {
		if excess <= 0 {
			break
		}
		if w.Busy || (over <= 0 && w.IdleFor <= idle) {
			continue
		}
		out = append(out, i)
		excess--
		over--
	}
	return out
}

// Demand is how many workers the load needs, at least Min: one per Value
// requests queued or running (RequestCount), or one per request
// (QueueDelay, whose workers take one request at a time on Runpod).
func (p Policy) Demand(l Load) int {
	n := l.Queued + l.InProgress
	if p.Kind == RequestCount {
		n = int(math.Ceil(float64(n) / math.Max(p.Value, 1)))
	}
	return max(n, p.Min)
}

// Peak is the highest demand of a sliding window: the samples that no later
// one exceeded (a monotonic queue, short whatever the window). The zero
// value is empty.
type Peak struct {
	first   time.Time
	samples []peakSample
}

type peakSample struct {
	at time.Time
	n  int
}

// Add records demand n at now and returns the highest demand of the last
// window, and whether the samples span a whole window since the first.
func (p *Peak) Add(now time.Time, window time.Duration, n int) (int, bool) {
	if p.first.IsZero() {
		p.first = now
	}
	for len(p.samples) > 0 && p.samples[len(p.samples)-1].n <= n {
		p.samples = p.samples[:len(p.samples)-1]
	}
	p.samples = append(p.samples, peakSample{at: now, n: n})
	for now.Sub(p.samples[0].at) > window {
		p.samples = p.samples[1:]
	}
	return p.samples[0].n, now.Sub(p.first) >= window
}

// Idlest returns the indexes (ascending) of the k workers of ws idle the longest.
func Idlest(ws []Worker, k int) []int {
	idx := make([]int, len(ws))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(ws[b].IdleFor, ws[a].IdleFor) })
	idx = idx[:min(k, len(idx))]
	slices.Sort(idx)
	return idx
}
