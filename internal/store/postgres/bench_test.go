package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/storetest"
)

// BenchmarkCreate creates jobs one call at a time from 8 goroutines per
// CPU (16 on two cores), each call its own transaction.
func BenchmarkCreate(b *testing.B) {
	s := openStore(b, newSchema(b), Options{})
	ctx := context.Background()
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Create(ctx, domain.NewJob{Type: "bench", Payload: []byte(`{"n":1}`)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// BenchmarkClaimComplete burns down b.N pending jobs the way a worker pool
// does: claimers take batches of 100 and complete each job from its own
// goroutine (no-op handlers), so completions coalesce.
func BenchmarkClaimComplete(b *testing.B) {
	const (
		batch    = 100
		claimers = 4
	)
	s := openStore(b, newSchema(b), Options{})
	insertJobs(b, s, b.N)
	if _, err := s.pool.Exec(context.Background(), `VACUUM ANALYZE jobs`); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				now := time.Now()
				jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "bench", Limit: batch, Now: now, LeaseUntil: now.Add(time.Minute)})
				if err != nil {
					b.Error(err)
					return
				}
				if len(jobs) == 0 {
					return
				}
				var done sync.WaitGroup
				for _, j := range jobs {
					done.Add(1)
					go func() {
						defer done.Done()
						if _, err := s.Complete(ctx, store.LeaseOf(j, "bench"), nil); err != nil {
							b.Error(err)
						}
					}()
				}
				done.Wait()
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
}

// BenchmarkFailRetryCycles: see storetest.BenchFailRetryCycles.
func BenchmarkFailRetryCycles(b *testing.B) {
	storetest.BenchFailRetryCycles(b, func(b *testing.B) store.Store {
		return openStore(b, newSchema(b), Options{})
	})
}

// BenchmarkCreateBatch: see storetest.BenchCreateBatch.
func BenchmarkCreateBatch(b *testing.B) {
	storetest.BenchCreateBatch(b, func(b *testing.B) store.Store {
		return openStore(b, newSchema(b), Options{})
	})
}
