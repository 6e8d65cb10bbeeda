package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Series are the metrics one event updates: a count and, for a timed
// event, a time.
type Series struct {
	Count prometheus.Counter
	Time  prometheus.Observer // nil when the event has no time
}

// Observe counts one event and, when the series has a time, records its
// duration in seconds.
func (s Series) Observe(seconds float64) {
	s.Count.Inc()
	if s.Time != nil {
		s.Time.Observe(seconds)
	}
}

// SeriesCache maps label values to their series, each looked up in its
// vectors once: an event costs a read-locked map lookup instead of hashing
// its labels. Series are never deleted, so the cache holds what the vectors
// hold; its keys must come from a bounded set. The zero value is ready.
type SeriesCache[K comparable] struct {
	mu sync.RWMutex
	m  map[K]Series
}

// Get returns the series of k, made by newSeries on first use.
func (c *SeriesCache[K]) Get(k K, newSeries func() Series) Series {
	c.mu.RLock()
	s, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return s
	}
	s = newSeries()
	c.mu.Lock()
	if c.m == nil {
		c.m = map[K]Series{}
	}
	c.m[k] = s
	c.mu.Unlock()
	return s
}
