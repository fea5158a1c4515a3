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
	onEveryBackend(t, func(t *testing.T, name string, m *metrics.Metrics, st store.Store) {
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

// A periodic tick's job is a created job, timed as enqueue_periodic; a
// tick already taken creates none and counts none.
func TestEnqueuePeriodicCounted(t *testing.T) {
	t.Parallel()
	onEveryBackend(t, func(t *testing.T, name string, m *metrics.Metrics, st store.Store) {
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

// The jobs CancelJobs cancels at once count as finished, as Cancel's do;
// a processing job asked to cancel does not (its worker finishes it).
// Both bulk changes are timed under their own operation.
func TestBulkChangesCounted(t *testing.T) {
	t.Parallel()
	onEveryBackend(t, func(t *testing.T, name string, m *metrics.Metrics, st store.Store) {
		ctx := context.Background()
		jobs, err := st.CreateMany(ctx, []domain.NewJob{{Type: "bulk"}, {Type: "bulk"}, {Type: "bulk"}})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		claimed, err := st.Claim(ctx, store.ClaimRequest{Owner: "w", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %d jobs, %v", len(claimed), err)
		}
		ids := []string{jobs[0].ID, jobs[1].ID, jobs[2].ID}
		if got, err := st.CancelJobs(ctx, ids, ""); err != nil || len(got) != 3 {
			t.Fatalf("cancel jobs: %d, %v", len(got), err)
		}
		if got, err := st.RetryJobs(ctx, ids, ""); err != nil || len(got) != 2 {
			t.Fatalf("retry jobs: %d, %v", len(got), err)
		}
		reg := m.Registry()
		if got := metricstest.Value(t, reg, "jobqueue_jobs_finished_total", labels{"type": "bulk", "status": "cancelled"}); got != 2 {
			t.Errorf("jobs_finished_total{cancelled} = %v, want the 2 pending jobs", got)
		}
		for _, op := range []string{"cancel_jobs", "retry_jobs"} {
			if got, _ := metricstest.Histogram(t, reg, "jobqueue_store_call_duration_seconds", labels{"backend": name, "operation": op}); got != 1 {
				t.Errorf("%s calls timed = %v, want 1", op, got)
			}
		}
	})
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
