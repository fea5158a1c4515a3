package metrics_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/metrics/metricstest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// Concurrent creations with one idempotency key create one job, so they
// count one: 10 keys each created by 20 racing calls count 10, through
// Create and CreateMany alike.
func TestConcurrentIdempotentCreatesCountedOnce(t *testing.T) {
	t.Parallel()
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := metrics.New(metrics.Options{Backend: name})
			st := m.Store(open(t))
			ctx := context.Background()
			for round := range 10 {
				key := fmt.Sprint("k", round)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range 20 {
					wg.Go(func() {
						<-start
						nj := domain.NewJob{Type: "a", IdempotencyKey: key}
						var err error
						if i%2 == 0 {
							_, err = st.Create(ctx, nj)
						} else {
							_, err = st.CreateMany(ctx, []domain.NewJob{nj, nj})
						}
						if err != nil {
							t.Error(err)
						}
					})
				}
				close(start)
				wg.Wait()
			}
			if got := metricstest.Value(t, m.Registry(), "jobqueue_jobs_created_total", labels{"type": "a"}); got != 10 {
				t.Errorf("jobs_created_total = %v after 10 keys created concurrently 20 times each, want 10", got)
			}
		})
	}
}

// A periodic tick's job is a created job, timed as enqueue_periodic; a
// tick already taken creates none and counts none.
func TestEnqueuePeriodicCounted(t *testing.T) {
	t.Parallel()
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := metrics.New(metrics.Options{Backend: name})
			st := m.Store(open(t))
			ctx := context.Background()
			p, err := st.PutPeriodic(ctx, domain.PeriodicJob{
				Name: "nightly", Schedule: "@every 1m", Timezone: "UTC", Source: domain.PeriodicFromAPI,
				Job: domain.JobTemplate{Type: "report", MaxAttempts: 1, Tags: []string{domain.PeriodicTag("nightly")}},
			})
			if err != nil {
				t.Fatal(err)
			}
			tick := store.PeriodicTick{Name: p.Name, Revision: p.Revision, At: time.Now().Truncate(time.Hour), Job: domain.NewJob{Type: "report"}}
			for range 2 {
				if _, err := st.EnqueuePeriodic(ctx, tick); err != nil {
					t.Fatal(err)
				}
			}
			if got := metricstest.Value(t, m.Registry(), "jobqueue_jobs_created_total", labels{"type": "report"}); got != 1 {
				t.Errorf("jobs_created_total{type=report} = %v after one tick enqueued twice, want 1", got)
			}
			if got, _ := metricstest.Histogram(t, m.Registry(), "jobqueue_store_call_duration_seconds", labels{"backend": name, "operation": "enqueue_periodic"}); got != 2 {
				t.Errorf("enqueue_periodic calls timed = %v, want 2", got)
			}
		})
	}
}

// A job type's series are made as they are used: a type with one job
// created and nothing else costs one series, not one per status, outcome
// and webhook class.
func TestTypeSeriesMadeWhenUsed(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{Backend: "memory"})
	st := m.Store(memory.New(nil))
	if _, err := st.Create(context.Background(), domain.NewJob{Type: "junk"}); err != nil {
		t.Fatal(err)
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series []string
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == "junk" {
					series = append(series, f.GetName())
				}
			}
		}
	}
	if len(series) != 1 || series[0] != "jobqueue_jobs_created_total" {
		t.Errorf("series of type junk = %v, want only jobqueue_jobs_created_total", series)
	}
}
