package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// BenchmarkJobCycle is one job's life on the memory store (create, claim,
// complete, the attempt recorded) with metrics off and on: the difference
// per op is what metrics cost a job, without the noise of a pool.
func BenchmarkJobCycle(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics=off"
		if on {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			var m *metrics.Metrics
			if on {
				m = metrics.New(metrics.Options{Backend: "memory"})
			}
			st := m.Store(memory.New(nil))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.Create(ctx, domain.NewJob{Type: "bench"}); err != nil {
					b.Fatal(err)
				}
				now := time.Now()
				jobs, err := st.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
				if err != nil || len(jobs) != 1 {
					b.Fatal(len(jobs), err)
				}
				if _, err := st.Complete(ctx, store.LeaseOf(jobs[0], "o"), nil); err != nil {
					b.Fatal(err)
				}
				m.AttemptEnded("bench", metrics.OutcomeCompleted, time.Millisecond)
			}
		})
	}
}
