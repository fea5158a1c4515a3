package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// BenchFailRetryCycles measures one fail/retry cycle of one job (claim,
// fail for good, manual retry: what a user retrying a job that always
// fails causes) on a fresh job and on one that has gone through 2,000
// cycles already. ns/op is the cost of one cycle; the two sub-benchmarks
// show whether it grows with the job's history (it must not: the history
// is bounded). Backends call it from a benchmark of their own with a
// function that opens a fresh, empty store (closed when b ends):
//
//	func BenchmarkFailRetryCycles(b *testing.B) { storetest.BenchFailRetryCycles(b, open) }
//
// Run it with a fixed count, e.g. -benchtime 500x, so that both
// sub-benchmarks measure the same number of cycles.
func BenchFailRetryCycles(b *testing.B, open func(b *testing.B) store.Store) {
	for _, before := range []int{0, 2000} {
		b.Run(fmt.Sprintf("after=%d", before), func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			j, err := s.Create(ctx, domain.NewJob{Type: "bench", MaxAttempts: 1})
			if err != nil {
				b.Fatal(err)
			}
			// About the size of a wrapped handler error.
			msg := "handler: call https://payments.internal/charge: " + strings.Repeat("x", 60)
			cycle := func() {
				now := time.Now()
				jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
				if err != nil || len(jobs) != 1 {
					b.Fatalf("claim: %d jobs, %v", len(jobs), err)
				}
				if _, err := s.Fail(ctx, lease(jobs[0]), msg, time.Time{}); err != nil {
					b.Fatalf("fail: %v", err)
				}
				if _, err := s.Retry(ctx, j.ID); err != nil {
					b.Fatalf("retry: %v", err)
				}
			}
			for range before {
				cycle()
			}
			for b.Loop() {
				cycle()
			}
			b.StopTimer()
			got, err := s.Get(ctx, j.ID)
			if err != nil {
				b.Fatal(err)
			}
			if want := before + b.N; got.Attempts != want {
				b.Fatalf("attempts = %d, want %d", got.Attempts, want)
			}
			b.ReportMetric(float64(len(got.Errors)), "errors")
		})
	}
}

// BenchCreateBatch compares the two ways a client creates 100 jobs: one
// CreateMany of 100 (createJobs) against 100 Create calls, one after the
// other as one client's requests (createJob ×100), and all at once as 100
// concurrent requests. jobs/s is the figure to compare; ns/op is the cost
// of 100 jobs. Backends call it as BenchFailRetryCycles.
func BenchCreateBatch(b *testing.B, open func(b *testing.B) store.Store) {
	const n = 100
	njs := make([]domain.NewJob, n)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "bench", Payload: []byte(`{"n":1}`)}
	}
	run := func(name string, create func(ctx context.Context, s store.Store) error) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if err := create(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
	run("createMany=100", func(ctx context.Context, s store.Store) error {
		jobs, err := s.CreateMany(ctx, njs)
		if err == nil && len(jobs) != n {
			err = fmt.Errorf("created %d jobs, want %d", len(jobs), n)
		}
		return err
	})
	run("create×100/sequential", func(ctx context.Context, s store.Store) error {
		for _, nj := range njs {
			if _, err := s.Create(ctx, nj); err != nil {
				return err
			}
		}
		return nil
	})
	run("create×100/concurrent", func(ctx context.Context, s store.Store) error {
		var g errgroup.Group
		for _, nj := range njs {
			g.Go(func() error {
				_, err := s.Create(ctx, nj)
				return err
			})
		}
		return g.Wait()
	})
}
