// Package metricstest reads a registry's metrics in tests: one series by
// name and labels, as a scrape would show it.
package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Labels select a series: every label listed must match; labels not
// listed may have any value.
type Labels map[string]string

// find returns the series of family name matching labels; it fails the
// test when there is not exactly one.
func find(t testing.TB, g prometheus.Gatherer, name string, labels Labels) *dto.Metric {
	t.Helper()
	found := all(t, g, name, labels)
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series match, want 1", name, labels, len(found))
	}
	return found[0]
}

// Series returns how many series of family name match labels (children
// made only when used are absent until then).
func Series(t testing.TB, g prometheus.Gatherer, name string, labels Labels) int {
	t.Helper()
	return len(all(t, g, name, labels))
}

// all returns the series of family name matching labels.
func all(t testing.TB, g prometheus.Gatherer, name string, labels Labels) []*dto.Metric {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var found []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				found = append(found, m)
			}
		}
	}
	return found
}

func matches(m *dto.Metric, labels Labels) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// Value returns the value of the counter or gauge series name{labels}.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels Labels) float64 {
	t.Helper()
	m := find(t, g, name, labels)
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

// Histogram returns the count and sum of the histogram series
// name{labels}.
func Histogram(t testing.TB, g prometheus.Gatherer, name string, labels Labels) (uint64, float64) {
	t.Helper()
	m := find(t, g, name, labels)
	if m.Histogram == nil {
		t.Fatalf("%s%v is not a histogram", name, labels)
	}
	return m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()
}
