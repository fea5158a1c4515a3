package metrics_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/metrics/metricstest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// byType returns the series of family name by their type label.
func byType(t *testing.T, g prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "type" {
					out[l.GetValue()] = s.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

func control(t *testing.T, st store.Store, name string, ch domain.TypeChange) {
	t.Helper()
	if _, err := st.SetTypeControl(context.Background(), name, ch); err != nil {
		t.Fatal(err)
	}
}

func expectSeries(t *testing.T, g prometheus.Gatherer, name string, want map[string]float64) {
	t.Helper()
	if got := byType(t, g, name); !maps.Equal(got, want) {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

// The types' controls are read at scrape on each backend: paused types,
// concurrency and rate limits, and the pending jobs of the types that no
// claim can take from, for the types with controls only.
func TestTypeControlMetricsOnEveryBackend(t *testing.T) {
	t.Parallel()
	onEveryBackend(t, func(t *testing.T, name string, m *metrics.Metrics, st store.Store) {
		m.WatchTypes(st, 5*time.Second)
		ctx := context.Background()
		reg := m.Registry()
		expectSeries(t, reg, "jobqueue_job_type_paused", map[string]float64{})

		paused := true
		control(t, st, "paused", domain.TypeChange{Paused: &paused})
		control(t, st, "conc", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 1}})
		control(t, st, "roomy", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 5}})
		control(t, st, "rated", domain.TypeChange{Limits: &domain.TypeLimits{RatePerSecond: 0.01, RateBurst: 1}})
		for _, typ := range []string{"paused", "paused", "conc", "conc", "roomy", "rated", "rated", "free"} {
			if _, err := st.Create(ctx, domain.NewJob{Type: typ, MaxAttempts: 1}); err != nil {
				t.Fatal(err)
			}
		}
		// Nothing claimed yet: only the paused type holds jobs back.
		expectSeries(t, reg, "jobqueue_job_type_jobs_held_back", map[string]float64{"paused": 2, "conc": 0, "roomy": 0, "rated": 0})

		now := time.Now()
		claimed, err := st.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 100, Now: now, LeaseUntil: now.Add(time.Minute)})
		if err != nil || len(claimed) != 4 {
			t.Fatalf("claim = %d jobs, %v; want 4 (conc, roomy, rated, free)", len(claimed), err)
		}
		expectSeries(t, reg, "jobqueue_job_type_paused", map[string]float64{"paused": 1, "conc": 0, "roomy": 0, "rated": 0})
		expectSeries(t, reg, "jobqueue_job_type_concurrency_limit", map[string]float64{"conc": 1, "roomy": 5})
		expectSeries(t, reg, "jobqueue_job_type_rate_limit_per_second", map[string]float64{"rated": 0.01})
		expectSeries(t, reg, "jobqueue_job_type_rate_limit_burst", map[string]float64{"rated": 1})
		// conc is at its limit, rated out of tokens, roomy has room.
		expectSeries(t, reg, "jobqueue_job_type_jobs_held_back", map[string]float64{"paused": 2, "conc": 1, "roomy": 0, "rated": 1})

		// Resumed without other controls, the type is forgotten.
		resumed := false
		control(t, st, "paused", domain.TypeChange{Paused: &resumed})
		expectSeries(t, reg, "jobqueue_job_type_paused", map[string]float64{"conc": 0, "roomy": 0, "rated": 0})
	})
}

// Past MaxTypes, the types' controls are summed under _other.
func TestTypeControlLabelsAreCapped(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{MaxTypes: 1, Backend: "memory"})
	st := m.Store(memory.New(nil))
	m.WatchTypes(st, 5*time.Second)
	paused := true
	control(t, st, "a", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 2}})
	control(t, st, "b", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 3}})
	control(t, st, "c", domain.TypeChange{Paused: &paused})
	control(t, st, "d", domain.TypeChange{Paused: &paused})
	expectSeries(t, m.Registry(), "jobqueue_job_type_concurrency_limit", map[string]float64{"a": 2, metrics.OtherType: 3})
	expectSeries(t, m.Registry(), "jobqueue_job_type_paused", map[string]float64{"a": 0, metrics.OtherType: 2})
}

// Periodic jobs created are counted by name, capped like types; missed
// ticks are summed.
func TestPeriodicJobsCreated(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{MaxTypes: 2})
	var none *metrics.Metrics
	none.PeriodicJobCreated("x", 3) // nil records nothing
	for _, name := range []string{"a", "b", "a", "c", "d"} {
		m.PeriodicJobCreated(name, 0)
	}
	m.PeriodicJobCreated("b", 4)
	for name, want := range map[string]float64{"a": 2, "b": 2, metrics.OtherType: 2} {
		if got := metricstest.Value(t, m.Registry(), "jobqueue_periodic_jobs_created_total", labels{"periodic": name}); got != want {
			t.Errorf("periodic_jobs_created_total{periodic=%q} = %v, want %v", name, got, want)
		}
	}
	if got := metricstest.Value(t, m.Registry(), "jobqueue_periodic_ticks_missed_total", nil); got != 4 {
		t.Errorf("periodic_ticks_missed_total = %v, want 4", got)
	}
}
