package metrics_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/metrics/metricstest"
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
