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

// BenchmarkClaim times claims of 10 jobs from one goroutine (the jobs are
// not completed): without type controls; with the type limited to a
// concurrency it never reaches; and with another type paused, without
// jobs and with 100,000 pending jobs ahead in dispatch order (the claim
// takes the first jobs of each open type instead of walking them).
func BenchmarkClaim(b *testing.B) {
	const batch = 10
	for _, bc := range []struct {
		name    string
		limit   bool
		backlog int // pending jobs of a paused type, ahead; -1: nothing paused
	}{
		{"controls=none", false, -1},
		{"limit-not-reached", true, -1},
		{"paused-backlog=0", false, 0},
		{"paused-backlog=100000", false, 100_000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openStore(b, newSchema(b), Options{})
			ctx := context.Background()
			if bc.limit {
				if _, err := s.SetTypeControl(ctx, "bench", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: domain.MaxTypeConcurrency}}); err != nil {
					b.Fatal(err)
				}
			}
			if bc.backlog >= 0 {
				paused := true
				if _, err := s.SetTypeControl(ctx, "held", domain.TypeChange{Paused: &paused}); err != nil {
					b.Fatal(err)
				}
				if bc.backlog > 0 {
					insertBacklog(b, s, "held", bc.backlog, 5)
				}
			}
			insertBacklog(b, s, "bench", b.N*batch, 0)
			if _, err := s.pool.Exec(ctx, `VACUUM ANALYZE jobs`); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				now := time.Now()
				jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "bench", Limit: batch, Now: now, LeaseUntil: now.Add(time.Hour)})
				if err != nil {
					b.Fatal(err)
				}
				if len(jobs) != batch {
					b.Fatalf("claimed %d jobs, want %d", len(jobs), batch)
				}
			}
		})
	}
}
