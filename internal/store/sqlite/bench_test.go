package sqlite_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/sqlite"
	"github.com/jobqueue/jobqueue/internal/store/storetest"
)

// BenchmarkCreate creates single jobs from parallel goroutines
// (GOMAXPROCS of them; -cpu sets it).
func BenchmarkCreate(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "jobs.db"), sqlite.Options{})
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Create(ctx, domain.NewJob{Type: "bench"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkClaimComplete burns down b.N pending jobs from 8 goroutines, each
// claiming batches of 100 and completing them one by one, as a worker pool
// does.
func BenchmarkClaimComplete(b *testing.B) {
	const (
		goroutines = 8
		batch      = 100
	)
	s := open(b, filepath.Join(b.TempDir(), "jobs.db"), sqlite.Options{})
	ctx := context.Background()
	fill(b, s, b.N)
	var completed atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := string(rune('a' + g))
			for {
				now := time.Now()
				jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: batch, Now: now, LeaseUntil: now.Add(time.Minute)})
				if err != nil {
					b.Error(err)
					return
				}
				if len(jobs) == 0 {
					return
				}
				for _, j := range jobs {
					if _, err := s.Complete(ctx, store.LeaseOf(j, owner), nil); err != nil {
						b.Error(err)
						return
					}
					completed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if n := completed.Load(); n != int64(b.N) {
		b.Fatalf("completed %d jobs, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// fill creates n pending jobs, from parallel goroutines so that they share
// transactions.
func fill(b *testing.B, s *sqlite.Store, n int) {
	b.Helper()
	const goroutines = 16
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += goroutines {
				if _, err := s.Create(context.Background(), domain.NewJob{Type: "bench"}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkFailRetryCycles: see storetest.BenchFailRetryCycles.
func BenchmarkFailRetryCycles(b *testing.B) {
	storetest.BenchFailRetryCycles(b, func(b *testing.B) store.Store {
		return open(b, filepath.Join(b.TempDir(), "jobs.db"), sqlite.Options{})
	})
}

// BenchmarkCreateBatch: see storetest.BenchCreateBatch.
func BenchmarkCreateBatch(b *testing.B) {
	storetest.BenchCreateBatch(b, func(b *testing.B) store.Store {
		return open(b, filepath.Join(b.TempDir(), "jobs.db"), sqlite.Options{})
	})
}

// BenchmarkClaimClosedBacklog: see storetest.BenchClaimClosedBacklog.
func BenchmarkClaimClosedBacklog(b *testing.B) {
	storetest.BenchClaimClosedBacklog(b, func(b *testing.B) store.Store {
		return open(b, filepath.Join(b.TempDir(), "jobs.db"), sqlite.Options{})
	})
}
