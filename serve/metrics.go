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
	jobs     *prometheus.CounterVec
	jobTime  *prometheus.HistogramVec

	// The request series by route and status, looked up once each: a
	// request costs a read-locked map lookup instead of two label hashes.
	// Routes are the mux's patterns and codes are HTTP's, so it is bounded.
	mu   sync.RWMutex
	reqs map[requestKey]requestSeries
}

type requestKey struct {
	route string
	code  int
}

type requestSeries struct {
	count prometheus.Counter
	dur   prometheus.Observer
}

func newMetrics(identity string, s *Server) *metrics {
	labels := prometheus.Labels{"resource": identity}
	m := &metrics{
		reg:  prometheus.NewRegistry(),
		reqs: make(map[requestKey]requestSeries),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_http_requests_total", Help: "HTTP requests by route pattern and status code.",
			ConstLabels: labels,
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flash_http_request_duration_seconds", Help: "HTTP request latency by route pattern and status code.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route", "code"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_jobs_total", Help: "Jobs that reached a final state, by function and state.",
			ConstLabels: labels,
		}, []string{"function", "status"}),
		jobTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flash_job_execution_seconds", Help: "Job execution time by function.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"function"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.jobs, m.jobTime,
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
	k := requestKey{route, code}
	m.mu.RLock()
	s, ok := m.reqs[k]
	m.mu.RUnlock()
	if !ok {
		c := strconv.Itoa(code)
		s = requestSeries{m.requests.WithLabelValues(route, c), m.duration.WithLabelValues(route, c)}
		m.mu.Lock()
		m.reqs[k] = s
		m.mu.Unlock()
	}
	s.count.Inc()
	s.dur.Observe(d.Seconds())
}

func (m *metrics) observeJob(fn, status string, exec time.Duration) {
	m.jobs.WithLabelValues(fn, status).Inc()
	if status == StatusCompleted || status == StatusFailed {
		m.jobTime.WithLabelValues(fn).Observe(exec.Seconds())
	}
}
