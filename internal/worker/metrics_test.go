package worker_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/metrics/metricstest"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/worker"
)

// The pool records each attempt's outcome and duration by type, and its
// workers; once Run has returned every outcome is written and counted.
func TestMetricsCountAttemptsByOutcome(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		m := metrics.New(metrics.Options{Backend: "memory"})
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			switch j.Type {
			case "bad":
				return errors.New("no")
			case "slow":
				<-ctx.Done()
				return ctx.Err()
			}
			time.Sleep(3 * time.Millisecond) // the fake clock of synctest: a known duration
			return nil
		})
		b := setup(t, worker.Options{Workers: 3, Default: h, Metrics: m, RetryBackoff: time.Millisecond}, nil)
		stop := b.run(t)
		var ids []string
		for range 3 {
			ids = append(ids, b.createJob(t, domain.NewJob{Type: "ok", MaxAttempts: 1}))
		}
		ids = append(ids,
			b.createJob(t, domain.NewJob{Type: "bad", MaxAttempts: 2}),
			b.createJob(t, domain.NewJob{Type: "slow", MaxAttempts: 1, Timeout: 10 * time.Millisecond}))
		b.jobs.WaitFinal(t, ids...)
		stopped(t, stop)

		want := map[[2]string]float64{
			{"ok", "completed"}:   3,
			{"bad", "retried"}:    1,
			{"bad", "failed"}:     1,
			{"slow", "timed_out"}: 1,
		}
		if n := metricstest.Series(t, m.Registry(), "jobqueue_job_attempts_total", metricstest.Labels{"type": "ok", "outcome": "failed"}); n != 0 {
			t.Errorf("job_attempts_total{type=ok,outcome=failed}: %d series, want none (made when used)", n)
		}
		for k, n := range want {
			if got := metricstest.Value(t, m.Registry(), "jobqueue_job_attempts_total", metricstest.Labels{"type": k[0], "outcome": k[1]}); got != n {
				t.Errorf("jobqueue_job_attempts_total{type=%q,outcome=%q} = %v, want %v", k[0], k[1], got, n)
			}
		}
		for name, want := range map[string]float64{"jobqueue_workers": 3, "jobqueue_workers_busy": 0, "jobqueue_outcome_writes_waiting": 0} {
			if got := metricstest.Value(t, m.Registry(), name, nil); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if n, sum := metricstest.Histogram(t, m.Registry(), "jobqueue_job_attempt_duration_seconds", metricstest.Labels{"type": "ok"}); n != 3 || math.Abs(sum-0.009) > 1e-9 {
			t.Errorf("attempt durations of ok: %d observations, sum %v; want 3 summing to 0.009", n, sum)
		}
	})
}

// An attempt whose outcome could not be written is counted write_failed,
// not completed: the job is rescued and its next attempt completes.
func TestMetricsCountUnwrittenOutcome(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		m := metrics.New(metrics.Options{Backend: "memory"})
		b := setup(t, worker.Options{Workers: 1, LeaseDuration: 300 * time.Millisecond, Default: noop, Metrics: m},
			func(mem *memory.Store) worker.Store { return &failingCompleteStore{Store: mem} })
		rescue(t, b.mem, 20*time.Millisecond)
		id := b.createJob(t, domain.NewJob{Type: "t", MaxAttempts: 3})
		stop := b.run(t)
		if got := b.jobs.WaitStatus(t, id, domain.StatusCompleted); got.Attempts != 2 {
			t.Fatalf("job completed on attempt %d, want 2", got.Attempts)
		}
		stopped(t, stop)
		for outcome, want := range map[string]float64{"write_failed": 1, "completed": 1} {
			if got := metricstest.Value(t, m.Registry(), "jobqueue_job_attempts_total", metricstest.Labels{"type": "t", "outcome": outcome}); got != want {
				t.Errorf("jobqueue_job_attempts_total{type=t,outcome=%q} = %v, want %v", outcome, got, want)
			}
		}
	})
}
