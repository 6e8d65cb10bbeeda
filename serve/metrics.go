package serve

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flash-go/flash/internal/telemetry"
)

// metrics are per Server, in the Server's own registry: two servers in one
// process (tests, the mothership beside a child) never collide.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	jobCount *prometheus.CounterVec
	jobTime  *prometheus.HistogramVec

	// Routes are the mux's patterns, codes HTTP's, functions the
	// registered ones and statuses the job states: both sets are bounded.
	reqs telemetry.SeriesCache[requestKey]
	jobs telemetry.SeriesCache[jobKey]
}

type requestKey struct {
	route string
	code  int
}

type jobKey struct{ fn, status string }

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
	m.reqs.Get(requestKey{route, code}, func() telemetry.Series {
		c := strconv.Itoa(code)
		return telemetry.Series{Count: m.requests.WithLabelValues(route, c), Time: m.duration.WithLabelValues(route, c)}
	}).Observe(d.Seconds())
}

func (m *metrics) observeJob(fn, status string, exec time.Duration) {
	m.jobs.Get(jobKey{fn, status}, func() telemetry.Series {
		s := telemetry.Series{Count: m.jobCount.WithLabelValues(fn, status)}
		if status == StatusCompleted || status == StatusFailed {
			s.Time = m.jobTime.WithLabelValues(fn)
		}
		return s
	}).Observe(exec.Seconds())
}
