package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// A bulk change that finds a row held by another transaction gives up
// the wait at its lock timeout (so that it cannot deadlock with a batch
// completion) and runs again, instead of failing: once the row is free,
// every job is changed.
func TestBulkChangeRetriesAfterLockTimeout(t *testing.T) {
	t.Parallel()
	s := openStore(t, newSchema(t), Options{})
	ctx := context.Background()
	a, err := s.Create(ctx, domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(ctx, domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	holder, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback(ctx) }()
	if _, err := holder.Exec(ctx, `SELECT FROM jobs WHERE id = $1 FOR UPDATE`, b.ID); err != nil {
		t.Fatal(err)
	}
	type result struct {
		jobs []*domain.Job
		err  error
	}
	done := make(chan result, 1)
	go func() {
		jobs, err := s.CancelJobs(ctx, []string{a.ID, b.ID}, "")
		done <- result{jobs, err}
	}()
	// Each try is a transaction of its own: two of them seen waiting for
	// the row mean the first gave up and the change ran again.
	tries := map[time.Time]bool{}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(10 * time.Second)
	for len(tries) < 2 {
		select {
		case r := <-done:
			t.Fatalf("cancel jobs returned while the row was held: %d jobs, %v", len(r.jobs), r.err)
		case <-giveUp:
			t.Fatalf("%d tries seen waiting for the row in 10s, want the wait given up and the change run again", len(tries))
		case <-tick.C:
		}
		var start time.Time
		err := s.pool.QueryRow(ctx, `
			SELECT xact_start FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%WHERE id = ANY($2::uuid[]) AND ($4::text = %' AND datname = current_database()
			LIMIT 1`).Scan(&start)
		if err == nil {
			tries[start] = true
		} else if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.jobs) != 2 {
		t.Fatalf("cancel jobs once the row is free: %d jobs, %v; want both", len(r.jobs), r.err)
	}
	for _, j := range r.jobs {
		if j.Status != domain.StatusCancelled {
			t.Errorf("job %s is %s, want cancelled", j.ID, j.Status)
		}
	}
}
