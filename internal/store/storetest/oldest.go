package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// testOldestRunnable: the earliest RunAt among the pending jobs that are
// due, whatever their priority; jobs scheduled for later, claimed or
// finished do not count, nor do a paused type's (a limited type's do).
func testOldestRunnable(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	oldest := func(want time.Time, when string) {
		t.Helper()
		got, err := s.OldestRunnable(ctx, now)
		if err != nil {
			t.Fatalf("%s: OldestRunnable: %v", when, err)
		}
		if !got.Equal(want) {
			t.Fatalf("%s: OldestRunnable = %v, want %v", when, got, want)
		}
	}
	oldest(time.Time{}, "empty store")
	create := func(runAt time.Time, priority int) *domain.Job {
		t.Helper()
		j, err := s.Create(ctx, domain.NewJob{Type: "oldest", MaxAttempts: 1, RunAt: runAt, Priority: priority})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		return j
	}
	create(now.Add(time.Hour), 0)
	oldest(time.Time{}, "only a job scheduled for later")
	low := create(now.Add(-10*time.Minute), 0)
	high := create(now.Add(-5*time.Minute), 5)
	oldest(low.RunAt, "two due jobs")
	claimID(t, s, high.ID)
	oldest(low.RunAt, "the newer one claimed")
	claimID(t, s, low.ID)
	oldest(time.Time{}, "both claimed")

	yes, no := true, false
	held, err := s.Create(ctx, domain.NewJob{Type: "oldest-paused", MaxAttempts: 1, RunAt: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTypeControl(ctx, "oldest-paused", domain.TypeChange{Paused: &yes}); err != nil {
		t.Fatal(err)
	}
	oldest(time.Time{}, "only a paused type's job due")
	limited, err := s.Create(ctx, domain.NewJob{Type: "oldest-limited", MaxAttempts: 1, RunAt: now.Add(-30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTypeControl(ctx, "oldest-limited", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 1}}); err != nil {
		t.Fatal(err)
	}
	oldest(limited.RunAt, "a paused type's older job and a limited type's job due")
	if _, err := s.SetTypeControl(ctx, "oldest-paused", domain.TypeChange{Paused: &no}); err != nil {
		t.Fatal(err)
	}
	oldest(held.RunAt, "the paused type resumed")
}
