package serve

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are per Server, in the Server's own registry: two servers in one
// process (tests, the mothership beside a child) never collide.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	jobCount *prometheus.CounterVec
	jobTime  *prometheus.HistogramVec

	// The series by label values, looked up once each: a request or a job
	// costs a read-locked map lookup instead of label hashes. Routes are
	// the mux's patterns, codes HTTP's, functions the registered ones and
	// statuses the job states, so both are bounded.
	reqs seriesCache[requestKey]
	jobs seriesCache[jobKey]
}

type requestKey struct {
	route string
	code  int
}

type jobKey struct{ fn, status string }

// series are the two metrics one event updates: a count, and a time.
type series struct {
	count prometheus.Counter
	dur   prometheus.Observer // nil when the event has no time
}

// seriesCache maps label values to their series, made on first use.
type seriesCache[K comparable] struct {
	mu sync.RWMutex
	m  map[K]series
}

func (c *seriesCache[K]) get(k K, newSeries func() series) series {
	c.mu.RLock()
	s, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return s
	}
	s = newSeries()
	c.mu.Lock()
	if c.m == nil {
		c.m = map[K]series{}
	}
	c.m[k] = s
	c.mu.Unlock()
	return s
}

func newMetrics(identity string, s *Server) *metrics {
	labels := prometheus.Labels{"resource": identity}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_http_requests_total", Help: "HTTP requests by route pattern and status code.",
			ConstLabels: labels,
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flash_http_request_duration_seconds", Help: "HTTP request latency by route pattern and status code.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route", "code"}),
		jobCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_jobs_total", Help: "Jobs that reached a final state, by function and state.",
			ConstLabels: labels,
		}, []string{"function", "status"}),
		jobTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flash_job_execution_seconds", Help: "Job execution time by function.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"function"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.jobCount, m.jobTime,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flash_jobs_queued", Help: "Jobs waiting for a worker.", ConstLabels: labels,
		}, func() float64 { q, _ := s.jobs.counts(); return float64(q) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flash_jobs_running", Help: "Jobs running on a worker.", ConstLabels: labels,
		}, func() float64 { _, r := s.jobs.counts(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flash_workers", Help: "Size of the job worker pool.", ConstLabels: labels,
		}, func() float64 { return float64(s.cfg.Workers) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observeRequest(route string, code int, d time.Duration) {
	s := m.reqs.get(requestKey{route, code}, func() series {
		c := strconv.Itoa(code)
		return series{m.requests.WithLabelValues(route, c), m.duration.WithLabelValues(route, c)}
	})
	s.count.Inc()
	s.dur.Observe(d.Seconds())
}

func (m *metrics) observeJob(fn, status string, exec time.Duration) {
	timed := status == StatusCompleted || status == StatusFailed
	s := m.jobs.get(jobKey{fn, status}, func() series {
		s := series{count: m.jobCount.WithLabelValues(fn, status)}
		if timed {
			s.dur = m.jobTime.WithLabelValues(fn)
		}
		return s
	})
	s.count.Inc()
	if s.dur != nil {
		s.dur.Observe(exec.Seconds())
	}
}
