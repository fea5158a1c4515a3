package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Job types and owners come from clients: once their jobs are gone, the
// store keeps nothing of them.
func TestCountsForgetTypesAndOwnersWithoutJobs(t *testing.T) {
	t.Parallel()
	s := New(nil)
	ctx := context.Background()
	for i := range 100 {
		if _, err := s.Create(ctx, domain.NewJob{Type: fmt.Sprintf("type-%d", i), Owner: fmt.Sprintf("owner-%d", i%7), IdempotencyKey: fmt.Sprint("k", i)}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
		if err != nil || len(jobs) != 1 {
			t.Fatal(jobs, err)
		}
		if _, err := s.Finish(ctx, store.LeaseOf(jobs[0], "o"), domain.StatusCompleted, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeleteFinished(ctx, time.Now().Add(time.Hour), 1000); err != nil || n != 100 {
		t.Fatalf("deleted %d, %v", n, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.counts) != 0 || len(s.leases) != 0 || len(s.byKey) != 0 {
		t.Fatalf("%d count entries, %d leases and %d keys left for no jobs", len(s.counts), len(s.leases), len(s.byKey))
	}
}

// Jobs cancelled long before their runAt do not stay in the run queue.
func TestRunQueueForgetsCancelledFutureJobs(t *testing.T) {
	t.Parallel()
	s := New(nil)
	ctx := context.Background()
	if _, err := s.Create(ctx, domain.NewJob{Type: "t", RunAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for range 10000 {
		j, _ := s.Create(ctx, domain.NewJob{Type: "t", RunAt: time.Now().Add(365 * 24 * time.Hour)})
		if _, err := s.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.queue.entries(); n > len(s.pending)+64+1 {
		t.Fatalf("%d queue entries for %d pending jobs", n, len(s.pending))
	}
}
