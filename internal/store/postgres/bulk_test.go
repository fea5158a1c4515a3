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

// A bulk change made on one instance reaches the publishers of another
// sharing the schema, every job at the version it made, across several
// notifications (more jobs than one carries): a processing job's
// cancellation request reaches the worker's instance.
func TestBulkChangesAcrossInstances(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	recA, recB := newRecorder(), newRecorder()
	a := openStore(t, schema, Options{Publisher: recA})
	b := openStore(t, schema, Options{Publisher: recB})
	ctx := context.Background()
	njs := make([]domain.NewJob, 2*notifyChunk+10)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "cross-bulk"}
	}
	created, err := a.CreateMany(ctx, njs)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(created))
	for i, j := range created {
		ids[i] = j.ID
	}
	running := claimOne(t, b, "worker-b")
	cancelled, err := a.CancelJobs(ctx, ids, "")
	if err != nil || len(cancelled) != len(ids) {
		t.Fatalf("cancel jobs: %d, %v; want %d", len(cancelled), err, len(ids))
	}
	heard := func(rec *recorder, jobs []*domain.Job, what string) {
		t.Helper()
		for _, j := range jobs {
			rec.waitFor(t, what+" of "+j.ID, func(events []*domain.Job) bool {
				for _, e := range events {
					if e.ID == j.ID && e.Version == j.Version && e.Status == j.Status && e.CancelRequested == j.CancelRequested {
						return true
					}
				}
				return false
			})
		}
	}
	heard(recB, cancelled, "the cancellation on B")
	if got := mustEvent(t, recB, running.ID, running.Version+1); got.Status != domain.StatusProcessing || !got.CancelRequested {
		t.Fatalf("B heard the running job as %+v, want processing, cancellation requested", got)
	}
	retried, err := b.RetryJobs(ctx, ids, "")
	if err != nil || len(retried) != len(ids)-1 {
		t.Fatalf("retry jobs: %d, %v; want %d (all but the running one)", len(retried), err, len(ids)-1)
	}
	heard(recA, retried, "the retry on A")
}

// mustEvent returns the event of version v of job id that rec published.
func mustEvent(t *testing.T, rec *recorder, id string, v int64) *domain.Job {
	t.Helper()
	for _, e := range rec.of(id) {
		if e.Version == v {
			return e
		}
	}
	t.Fatalf("no event of job %s at version %d", id, v)
	return nil
}
