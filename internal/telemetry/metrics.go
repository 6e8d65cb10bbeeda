package telemetry

import (
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flash-go/flash/internal/wire"
)

// Metrics are the client-side and control-plane metrics of one process
// (docs/metrics.md): outgoing calls, retries, breakers, manifest sync,
// parked long polls, reconcile steps, deploys. It is a
// prometheus.Collector, registered in the process's serve registry once
// that exists. A nil *Metrics records nothing.
type Metrics struct {
	calls      *prometheus.CounterVec
	callTime   *prometheus.HistogramVec
	retries    *prometheus.CounterVec
	breakers   *prometheus.CounterVec
	version    prometheus.Gauge
	appliedAt  atomic.Int64 // unix nanoseconds of the last apply, 0 before
	age        prometheus.GaugeFunc
	syncErrors prometheus.Counter
	parked     prometheus.Gauge
	stepTime   *prometheus.HistogramVec
	deploys    *prometheus.CounterVec
	replicas   *prometheus.GaugeVec
	scales     *prometheus.CounterVec
	collectors []prometheus.Collector
	now        func() time.Time

	series SeriesCache[callKey] // Call's series
}

// callKey names the series of one target, function and outcome.
type callKey struct{ target, fn, outcome string }

// NewMetrics returns the metrics of the process serving resource identity
// (the "resource" label of each), ages measured by now.
func NewMetrics(identity string, now func() time.Time) *Metrics {
	labels := prometheus.Labels{"resource": identity}
	buckets := prometheus.ExponentialBuckets(0.0005, 4, 10)
	m := &Metrics{
		now: now,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_outgoing_calls_total", Help: "Calls this process made to other endpoints, by target resource, function and outcome.",
			ConstLabels: labels,
		}, []string{"target", "function", "outcome"}),
		callTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flash_outgoing_call_duration_seconds", Help: "Latency of outgoing calls (all attempts), by target resource and function.",
			ConstLabels: labels, Buckets: buckets,
		}, []string{"target", "function"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_outgoing_call_retries_total", Help: "Repeated sends of outgoing calls, by target resource and function.",
			ConstLabels: labels,
		}, []string{"target", "function"}),
		breakers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_breaker_transitions_total", Help: "Circuit breaker state changes, by the state entered (open, half_open, closed).",
			ConstLabels: labels,
		}, []string{"state"}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flash_manifest_applied_version", Help: "Version of the manifest this process routes by (0: none yet).",
			ConstLabels: labels,
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flash_manifest_sync_errors_total", Help: "Failed manifest fetches from the mothership.",
			ConstLabels: labels,
		}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flash_manifest_polls_parked", Help: "Manifest long polls waiting for a new version on the mothership.",
			ConstLabels: labels,
		}),
		stepTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flash_reconcile_step_duration_seconds", Help: "Duration of reconcile steps, by step (discover, deploy, remove, undeploy, publish).",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"step"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_deploys_total", Help: "Reconciliations run by the mothership, by outcome (ok, failed).",
			ConstLabels: labels,
		}, []string{"outcome"}),
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flash_replicas", Help: "Replicas of each autoscaled resource, as last published.",
			ConstLabels: labels,
		}, []string{"target"}),
		scales: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flash_scale_events_total", Help: "Autoscaler changes of a resource's replicas, by direction (up, down) and outcome (ok, failed).",
			ConstLabels: labels,
		}, []string{"target", "direction", "outcome"}),
	}
	m.age = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flash_manifest_applied_age_seconds", Help: "Time since this process applied its manifest (0: none yet).",
		ConstLabels: labels,
	}, func() float64 {
		at := m.appliedAt.Load()
		if at == 0 {
			return 0
		}
		return m.now().Sub(time.Unix(0, at)).Seconds()
	})
	m.collectors = []prometheus.Collector{m.calls, m.callTime, m.retries, m.breakers, m.version, m.age,
		m.syncErrors, m.parked, m.stepTime, m.deploys, m.replicas, m.scales}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors {
		c.Collect(ch)
	}
}

// Call records one outgoing call and its total latency.
func (m *Metrics) Call(target, fn, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.series.Get(callKey{target, fn, outcome}, func() Series {
		return Series{m.calls.WithLabelValues(target, fn, outcome), m.callTime.WithLabelValues(target, fn)}
	}).Observe(d.Seconds())
}

// Retry records one repeated send of a call.
func (m *Metrics) Retry(target, fn string) {
	if m != nil {
		m.retries.WithLabelValues(target, fn).Inc()
	}
}

// Breaker records a breaker entering state.
func (m *Metrics) Breaker(state string) {
	if m != nil {
		m.breakers.WithLabelValues(state).Inc()
	}
}

// Applied records the manifest version applied now.
func (m *Metrics) Applied(version int64) {
	if m != nil {
		m.version.Set(float64(version))
		m.appliedAt.Store(m.now().UnixNano())
	}
}

// SyncError records a failed manifest fetch.
func (m *Metrics) SyncError() {
	if m != nil {
		m.syncErrors.Inc()
	}
}

// Parked moves the gauge of parked long polls by delta (+1 when one parks,
// -1 when it is answered).
func (m *Metrics) Parked(delta float64) {
	if m != nil {
		m.parked.Add(delta)
	}
}

// Step records how long a reconcile step took.
func (m *Metrics) Step(step string, d time.Duration) {
	if m != nil {
		m.stepTime.WithLabelValues(step).Observe(d.Seconds())
	}
}

// Deploy records a reconciliation's outcome.
func (m *Metrics) Deploy(failed bool) {
	if m == nil {
		return
	}
	outcome := "ok"
	if failed {
		outcome = "failed"
	}
	m.deploys.WithLabelValues(outcome).Inc()
}

// Scaled records an autoscaler change of target's replicas to n (up or
// down; failed: n is what it still has).
func (m *Metrics) Scaled(target string, up, failed bool, n int) {
	if m == nil {
		return
	}
	dir, outcome := "down", "ok"
	if up {
		dir = "up"
	}
	if failed {
		outcome = "failed"
	}
	m.scales.WithLabelValues(target, dir, outcome).Inc()
	m.replicas.WithLabelValues(target).Set(float64(n))
}

// Edges sums the outgoing calls recorded so far per target resource, for
// the child's reports to the mothership. It reads the counters the calls
// update anyway: the call path pays nothing for it.
func (m *Metrics) Edges() []wire.EdgeCount {
	if m == nil {
		return nil
	}
	byTarget := map[string]*wire.EdgeCount{}
	get := func(labels []*dto.LabelPair) (*wire.EdgeCount, string) {
		var target, outcome string
		for _, l := range labels {
			switch l.GetName() {
			case "target":
				target = l.GetValue()
			case "outcome":
				outcome = l.GetValue()
			}
		}
		e := byTarget[target]
		if e == nil {
			e = &wire.EdgeCount{Target: target}
			byTarget[target] = e
		}
		return e, outcome
	}
	for _, c := range []prometheus.Collector{m.calls, m.callTime} {
		for metric := range collect(c) {
			var d dto.Metric
			if metric.Write(&d) != nil {
				continue
			}
			e, outcome := get(d.GetLabel())
			switch {
			case d.Counter != nil:
				n := uint64(d.Counter.GetValue())
				e.Calls += n
				if outcome != "ok" {
					e.Errors += n
				}
			case d.Histogram != nil:
				e.Seconds += d.Histogram.GetSampleSum()
			}
		}
	}
	out := make([]wire.EdgeCount, 0, len(byTarget))
	for _, e := range byTarget {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b wire.EdgeCount) int { return strings.Compare(a.Target, b.Target) })
	return out
}

// collect yields the metrics of c.
func collect(c prometheus.Collector) iter.Seq[prometheus.Metric] {
	return func(yield func(prometheus.Metric) bool) {
		ch := make(chan prometheus.Metric, 16)
		go func() {
			defer close(ch)
			c.Collect(ch)
		}()
		for m := range ch {
			if !yield(m) {
				for range ch { // let Collect finish
				}
				return
			}
		}
	}
}
