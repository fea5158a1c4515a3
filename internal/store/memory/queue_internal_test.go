package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// A claim looks at the first job of a closed type (paused, at its
// concurrency, out of tokens) once, not at every job it has waiting ahead
// of the runnable ones.
func TestClaimSkipsClosedBacklogs(t *testing.T) {
	t.Parallel()
	const backlog = 5000
	for _, c := range []struct {
		name   string
		change domain.TypeChange
		claim  int // jobs of the type claimed before (to reach its limit)
	}{
		{"paused", domain.TypeChange{Paused: ptr(true)}, 0},
		{"atConcurrency", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 2}}, 2},
		{"outOfTokens", domain.TypeChange{Limits: &domain.TypeLimits{RatePerSecond: domain.MinRatePerSecond, RateBurst: 3}}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := New(nil)
			ctx := context.Background()
			njs := make([]domain.NewJob, backlog)
			for i := range njs {
				njs[i] = domain.NewJob{Type: "closed", Priority: 1}
			}
			if _, err := s.CreateMany(ctx, njs); err != nil {
				t.Fatal(err)
			}
			if _, err := s.SetTypeControl(ctx, "closed", c.change); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if c.claim > 0 {
				if jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: c.claim, Now: now, LeaseUntil: now.Add(time.Hour)}); err != nil || len(jobs) != c.claim {
					t.Fatalf("claimed %d jobs to close the type, %v", len(jobs), err)
				}
			}
			open, err := s.Create(ctx, domain.NewJob{Type: "open"})
			if err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			before := s.queue.visits
			s.mu.Unlock()
			for range 2 { // the second claim finds nothing, still in one look
				now = time.Now()
				jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 10, Now: now, LeaseUntil: now.Add(time.Hour)})
				if err != nil {
					t.Fatal(err)
				}
				if open != nil && (len(jobs) != 1 || jobs[0].ID != open.ID) {
					t.Fatalf("claimed %v, want only %s", jobs, open.ID)
				}
				if open == nil && len(jobs) != 0 {
					t.Fatalf("claimed %d jobs of a closed type", len(jobs))
				}
				open = nil
			}
			s.mu.Lock()
			visits := s.queue.visits - before
			s.mu.Unlock()
			// First claim: the closed head, the open job. Second: the closed head.
			if visits > 3 {
				t.Fatalf("two claims looked at %d queued jobs, with %d of a closed type waiting", visits, backlog)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// The run queue keeps no more than a bounded number of types that have no
// pending jobs left: types come from clients.
func TestRunQueueForgetsDrainedTypes(t *testing.T) {
	t.Parallel()
	s := New(nil)
	ctx := context.Background()
	for i := range 1000 {
		if _, err := s.Create(ctx, domain.NewJob{Type: fmt.Sprint("type-", i)}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)}); err != nil || len(jobs) != 1 {
			t.Fatalf("claimed %d jobs, %v", len(jobs), err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.queue.types); n > 64+1 {
		t.Fatalf("the run queue keeps %d types, none with pending jobs", n)
	}
}
