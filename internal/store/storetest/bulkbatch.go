package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// CancelJobs changes exactly the jobs Cancel would change, skips the
// others (final statuses, a cancellation asked already, unknown and
// malformed ids, a duplicate id), returns and publishes each change once,
// and keeps the counts exact.
func testCancelJobs(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	P, R, C, F, X := domain.StatusPending, domain.StatusProcessing, domain.StatusCompleted, domain.StatusFailed, domain.StatusCancelled
	pending, processing := put(t, s, P), put(t, s, R)
	asked, err := s.Cancel(ctx, put(t, s, R).ID)
	if err != nil || !asked.CancelRequested {
		t.Fatalf("request cancellation: %+v, %v", asked, err)
	}
	completed, failed, cancelled := put(t, s, C), put(t, s, F), put(t, s, X)
	before := len(rec.all())
	const unknown = "00000000-0000-4000-8000-000000000000"
	got, err := s.CancelJobs(ctx, []string{pending.ID, processing.ID, asked.ID, completed.ID, failed.ID, cancelled.ID, unknown, "not an id", pending.ID}, "")
	if err != nil {
		t.Fatalf("cancel jobs: %v", err)
	}
	byID := jobsByID(t, got)
	if len(byID) != 2 || byID[pending.ID] == nil || byID[processing.ID] == nil {
		t.Fatalf("cancel jobs changed %s, want the pending and the processing job", ids(got))
	}
	if j := byID[pending.ID]; j.Status != X || j.FinishedAt == nil || !j.FinishedAt.Equal(j.UpdatedAt) || j.Version != pending.Version+1 {
		t.Errorf("the pending job = %+v, want cancelled at once, one version on", j)
	}
	if j := byID[processing.ID]; j.Status != R || !j.CancelRequested || j.Version != processing.Version+1 {
		t.Errorf("the processing job = %+v, want still processing, cancellation requested, one version on", j)
	}
	wantPublished(t, rec.all()[before:], got)
	for _, j := range []*domain.Job{asked, completed, failed, cancelled} {
		if now := mustGet(t, s, j.ID); now.Version != j.Version {
			t.Errorf("job %s (%s) changed to version %d", j.ID, j.Status, now.Version)
		}
	}
	if st, err := s.Stats(ctx, store.StatsQuery{}); err != nil || st != (domain.Stats{Processing: 2, Completed: 1, Failed: 1, Cancelled: 2}) {
		t.Errorf("stats = %+v, %v; want 2 processing, 1 completed, 1 failed, 2 cancelled", st, err)
	}
	if got, err := s.CancelJobs(ctx, nil, ""); err != nil || len(got) != 0 {
		t.Errorf("cancel no jobs: %s, %v", ids(got), err)
	}
}

// RetryJobs puts back to pending exactly the failed and cancelled jobs,
// keeping their attempts and error history as Retry does, and skips the
// others.
func testRetryJobs(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	P, R, C, F, X := domain.StatusPending, domain.StatusProcessing, domain.StatusCompleted, domain.StatusFailed, domain.StatusCancelled
	pending, processing, completed := put(t, s, P), put(t, s, R), put(t, s, C)
	j, l := claimID(t, s, putJob(t, s, domain.NewJob{Type: "t", MaxAttempts: 1}, P).ID)
	failed, err := s.Fail(ctx, l, "boom", j.RunAt)
	if err != nil || failed.Status != F {
		t.Fatalf("fail for good: %+v, %v", failed, err)
	}
	cancelled := put(t, s, X)
	before := len(rec.all())
	got, err := s.RetryJobs(ctx, []string{pending.ID, processing.ID, completed.ID, failed.ID, cancelled.ID}, "")
	if err != nil {
		t.Fatalf("retry jobs: %v", err)
	}
	byID := jobsByID(t, got)
	if len(byID) != 2 || byID[failed.ID] == nil || byID[cancelled.ID] == nil {
		t.Fatalf("retry jobs changed %s, want the failed and the cancelled job", ids(got))
	}
	for _, old := range []*domain.Job{failed, cancelled} {
		j := byID[old.ID]
		if j.Status != P || j.Attempts != old.Attempts || len(j.Errors) != len(old.Errors) || j.Error != old.Error ||
			!j.RunAt.Equal(j.UpdatedAt) || j.StartedAt != nil || j.FinishedAt != nil || j.Version != old.Version+1 {
			t.Errorf("retried job = %+v, want pending now, attempts and errors kept, from %+v", j, old)
		}
	}
	wantPublished(t, rec.all()[before:], got)
	for _, j := range []*domain.Job{pending, processing, completed} {
		if now := mustGet(t, s, j.ID); now.Version != j.Version {
			t.Errorf("job %s (%s) changed to version %d", j.ID, j.Status, now.Version)
		}
	}
	if st, err := s.Stats(ctx, store.StatsQuery{}); err != nil || st != (domain.Stats{Pending: 3, Processing: 1, Completed: 1}) {
		t.Errorf("stats = %+v, %v; want 3 pending, 1 processing, 1 completed", st, err)
	}
}

// With an owner, the bulk changes touch only that owner's jobs.
func testBulkChangesOwner(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	var all []string
	mine := map[string]bool{}
	for _, o := range []string{alice, bob, "", alice, bob} {
		j := putJob(t, s, domain.NewJob{Type: "t", Owner: o}, domain.StatusPending)
		all = append(all, j.ID)
		mine[j.ID] = o == alice
	}
	for _, step := range []struct {
		name   string
		change func(ctx context.Context, ids []string, owner string) ([]*domain.Job, error)
	}{{"cancel", s.CancelJobs}, {"retry", s.RetryJobs}} {
		got, err := step.change(ctx, all, alice)
		if err != nil {
			t.Fatalf("%s alice's jobs: %v", step.name, err)
		}
		if len(got) != 2 || !mine[got[0].ID] || !mine[got[1].ID] {
			t.Fatalf("%s alice's jobs changed %s, want her 2 only", step.name, ids(got))
		}
	}
	if st, err := s.Stats(ctx, store.StatsQuery{}); err != nil || st != (domain.Stats{Pending: 5}) {
		t.Errorf("stats = %+v, %v; want 5 pending (alice's cancelled and retried)", st, err)
	}
	for id, hers := range mine {
		if j := mustGet(t, s, id); hers != (j.Version == 3) {
			t.Errorf("job %s of owner %q at version %d", id, j.Owner, j.Version)
		}
	}
}

// More ids than one batch holds are all changed and each published once.
func testBulkChangesBatches(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	njs := make([]domain.NewJob, store.BulkBatch+7)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "bulk", MaxAttempts: 1}
	}
	created, err := s.CreateMany(ctx, njs)
	if err != nil {
		t.Fatal(err)
	}
	all := make([]string, len(created))
	for i, j := range created {
		all[i] = j.ID
	}
	before := len(rec.all())
	got, err := s.CancelJobs(ctx, all, "")
	if err != nil {
		t.Fatalf("cancel jobs: %v", err)
	}
	if byID := jobsByID(t, got); len(byID) != len(all) {
		t.Fatalf("cancelled %d jobs, want %d", len(byID), len(all))
	}
	wantPublished(t, rec.all()[before:], got)
	if st, err := s.Stats(ctx, store.StatsQuery{Type: "bulk"}); err != nil || st != (domain.Stats{Cancelled: len(all)}) {
		t.Errorf("stats = %+v, %v; want %d cancelled", st, err, len(all))
	}
	before = len(rec.all())
	if got, err = s.RetryJobs(ctx, all, ""); err != nil || len(jobsByID(t, got)) != len(all) {
		t.Fatalf("retry jobs: %d, %v; want %d", len(got), err, len(all))
	}
	wantPublished(t, rec.all()[before:], got)
	if st, err := s.Stats(ctx, store.StatsQuery{Type: "bulk"}); err != nil || st != (domain.Stats{Pending: len(all)}) {
		t.Errorf("stats = %+v, %v; want %d pending", st, err, len(all))
	}
}

// jobsByID indexes jobs by id, failing on a job given twice.
func jobsByID(t *testing.T, jobs []*domain.Job) map[string]*domain.Job {
	t.Helper()
	m := make(map[string]*domain.Job, len(jobs))
	for _, j := range jobs {
		if m[j.ID] != nil {
			t.Fatalf("job %s returned twice", j.ID)
		}
		m[j.ID] = j
	}
	return m
}

// wantPublished fails unless events are the changes changed, each once
// (in any order across jobs).
func wantPublished(t *testing.T, events, changed []*domain.Job) {
	t.Helper()
	key := func(j *domain.Job) string { return fmt.Sprintf("%s v%d %s", j.ID, j.Version, j.Status) }
	var got, want []string
	for _, j := range events {
		got = append(got, key(j))
	}
	for _, j := range changed {
		want = append(want, key(j))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("published %d changes, want the %d returned, once each:\n got %v\nwant %v", len(got), len(want), got, want)
	}
}
