// Package telemetrytest reads metric values back in tests.
package telemetrytest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Value is the value of metric name whose labels include labels (given as
// name, value pairs), summed over all matching series: a counter's or
// gauge's value, a histogram's sample count. 0 when none matches.
func Value(t testing.TB, c prometheus.Collector, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("telemetrytest: register: %v", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("telemetrytest: gather: %v", err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}
