package jobs_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store"
)

func statusCount(t *testing.T, b *bundle, ids []string, status domain.Status) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		j, err := b.store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == status {
			n++
		}
	}
	return n
}

// CancelMany and RetryMany act on at most limit matching jobs, say
// whether more remain, and leave other types alone.
func TestBulkCancelAndRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	ctx := context.Background()
	var a, other []string
	for range 7 {
		a = append(a, b.create(t, "a").ID)
	}
	for range 2 {
		other = append(other, b.create(t, "b").ID)
	}
	res, err := b.svc.CancelMany(ctx, jobs.BulkRequest{Type: "a", Limit: ptr(5)})
	if err != nil || res != (jobs.BulkResult{Count: 5, More: true}) {
		t.Fatalf("first call: %+v, %v; want 5 and more", res, err)
	}
	res, err = b.svc.CancelMany(ctx, jobs.BulkRequest{Type: "a", Limit: ptr(5)})
	if err != nil || res != (jobs.BulkResult{Count: 2, More: false}) {
		t.Fatalf("second call: %+v, %v; want 2 and no more", res, err)
	}
	if n := statusCount(t, b, a, domain.StatusCancelled); n != 7 {
		t.Fatalf("%d of 7 cancelled", n)
	}
	if n := statusCount(t, b, other, domain.StatusPending); n != 2 {
		t.Fatalf("other type: %d of 2 still pending", n)
	}
	// A status the operation does not act on matches nothing.
	res, err = b.svc.CancelMany(ctx, jobs.BulkRequest{Status: domain.StatusCompleted})
	if err != nil || res != (jobs.BulkResult{}) {
		t.Fatalf("cancel COMPLETED: %+v, %v", res, err)
	}
	res, err = b.svc.RetryMany(ctx, jobs.BulkRequest{Status: domain.StatusCancelled})
	if err != nil || res != (jobs.BulkResult{Count: 7}) {
		t.Fatalf("retry: %+v, %v; want 7", res, err)
	}
	if n := statusCount(t, b, a, domain.StatusPending); n != 7 {
		t.Fatalf("%d of 7 pending again", n)
	}
	// The default limit.
	res, err = b.svc.CancelMany(ctx, jobs.BulkRequest{})
	if err != nil || res != (jobs.BulkResult{Count: 9}) {
		t.Fatalf("cancel all: %+v, %v; want 9", res, err)
	}
}

func TestBulkRefusesBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	for _, limit := range []int{0, -1, jobs.MaxBulkLimit + 1} {
		_, err := b.svc.CancelMany(context.Background(), jobs.BulkRequest{Limit: ptr(limit)})
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || ve.Field != "limit" {
			t.Errorf("limit %d: %v, want a validation error on limit", limit, err)
		}
	}
	_, err := b.svc.RetryMany(context.Background(), jobs.BulkRequest{Status: "LOST"})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "filter.status" {
		t.Errorf("unknown status: %v", err)
	}
}

// A bulk operation changes its jobs store.BulkBatch at a time, one store
// write each, a user's with its name as the owner the store keeps it to.
func TestBulkWritesInBatches(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	const n = 2*store.BulkBatch + 3
	njs := make([]domain.NewJob, n)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "batched", Owner: "ann"}
	}
	if _, err := b.store.CreateMany(context.Background(), njs); err != nil {
		t.Fatal(err)
	}
	ann := as(context.Background(), &auth.Identity{Name: "ann", Role: auth.RoleUser})
	res, err := b.svc.CancelMany(ann, jobs.BulkRequest{Type: "batched", Limit: ptr(n - 1)})
	if err != nil || res != (jobs.BulkResult{Count: n - 1, More: true}) {
		t.Fatalf("cancel: %+v, %v; want %d and more", res, err, n-1)
	}
	want := []bulkCall{
		{"cancel", store.BulkBatch, "ann", store.BulkBatch},
		{"cancel", store.BulkBatch, "ann", store.BulkBatch},
		{"cancel", 2, "ann", 2},
	}
	if got := b.store.bulkCalls(); !slices.Equal(got, want) {
		t.Fatalf("store writes %+v, want %+v", got, want)
	}
	res, err = b.svc.RetryMany(context.Background(), jobs.BulkRequest{Type: "batched"})
	if err != nil || res != (jobs.BulkResult{Count: jobs.DefaultBulkLimit, More: true}) {
		t.Fatalf("retry: %+v, %v; want %d and more", res, err, jobs.DefaultBulkLimit)
	}
	want = append(want, bulkCall{"retry", store.BulkBatch, "", store.BulkBatch}, bulkCall{"retry", store.BulkBatch, "", store.BulkBatch})
	if got := b.store.bulkCalls(); !slices.Equal(got, want) {
		t.Fatalf("store writes %+v, want %+v", got, want)
	}
}

// Every job a bulk operation changes reaches the subscribers, once.
func TestBulkPublishesEveryChange(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	ctx := t.Context()
	sub, err := b.svc.Watch(ctx, jobs.WatchRequest{Type: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	created := map[string]bool{}
	for range 5 {
		created[b.create(t, "watched").ID] = true
	}
	for range created {
		if j := next(t, sub); !created[j.ID] || j.Status != domain.StatusPending {
			t.Fatalf("creation event %+v", j)
		}
	}
	if res, err := b.svc.CancelMany(ctx, jobs.BulkRequest{Type: "watched"}); err != nil || res.Count != 5 {
		t.Fatalf("cancel: %+v, %v", res, err)
	}
	seen := map[string]bool{}
	for range created {
		j := next(t, sub)
		if !created[j.ID] || seen[j.ID] || j.Status != domain.StatusCancelled {
			t.Fatalf("cancel event %+v (seen before: %v)", j, seen[j.ID])
		}
		seen[j.ID] = true
	}
}

// A user's bulk operation reaches only its own jobs; a viewer's is
// forbidden.
func TestBulkFollowsAccess(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	ann := as(context.Background(), &auth.Identity{Name: "ann", Role: auth.RoleUser})
	bob := as(context.Background(), &auth.Identity{Name: "bob", Role: auth.RoleUser})
	var annJobs []string
	for range 3 {
		j, err := b.svc.Create(ann, jobs.CreateRequest{Type: ptr("t")})
		if err != nil {
			t.Fatal(err)
		}
		annJobs = append(annJobs, j.ID)
		if _, err := b.svc.Create(bob, jobs.CreateRequest{Type: ptr("t")}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := b.svc.CancelMany(bob, jobs.BulkRequest{})
	if err != nil || res != (jobs.BulkResult{Count: 3}) {
		t.Fatalf("bob's cancel: %+v, %v; want his 3", res, err)
	}
	if n := statusCount(t, b, annJobs, domain.StatusPending); n != 3 {
		t.Fatalf("bob's bulk cancel reached %d of ann's jobs", 3-n)
	}
	viewer := as(context.Background(), &auth.Identity{Name: "eve", Role: auth.RoleViewer})
	if _, err := b.svc.RetryMany(viewer, jobs.BulkRequest{}); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("viewer: %v, want forbidden", err)
	}
}

// The filter's tag narrows a bulk operation to the jobs carrying it.
func TestBulkByTag(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	ctx := context.Background()
	tagged, err := b.svc.Create(ctx, jobs.CreateRequest{Type: ptr("t"), Tags: []string{"cleanup"}})
	if err != nil {
		t.Fatal(err)
	}
	plain := b.create(t, "t")
	res, err := b.svc.CancelMany(ctx, jobs.BulkRequest{Tag: "cleanup"})
	if err != nil || res != (jobs.BulkResult{Count: 1}) {
		t.Fatalf("%+v, %v; want 1", res, err)
	}
	if statusCount(t, b, []string{tagged.ID}, domain.StatusCancelled) != 1 || statusCount(t, b, []string{plain.ID}, domain.StatusPending) != 1 {
		t.Fatal("the tag did not select exactly the tagged job")
	}
}

// runningOut is a context whose deadline is an hour away for its first
// calls to Deadline and a second away after: a request running out of
// time, without waiting for it.
type runningOut struct {
	context.Context
	calls, plenty int
}

func (c *runningOut) Deadline() (time.Time, bool) {
	c.calls++
	if c.calls > c.plenty {
		return time.Now().Add(time.Second), true
	}
	return time.Now().Add(time.Hour), true
}

// A bulk operation whose request runs short of time stops and answers
// with the jobs it changed and more: true, instead of failing half-way.
func TestBulkAnswersBeforeItsDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	const batch = store.BulkBatch
	njs := make([]domain.NewJob, 3*batch+1)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "slow-bulk"}
	}
	created, err := b.store.CreateMany(context.Background(), njs)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range created {
		ids = append(ids, j.ID)
	}
	// Deadline is read once to set the margin, then before each write
	// (of store.BulkBatch jobs) after the first: time runs short after
	// the second.
	ctx := &runningOut{Context: context.Background(), plenty: 2}
	res, err := b.svc.CancelMany(ctx, jobs.BulkRequest{Type: "slow-bulk", Limit: ptr(jobs.MaxBulkLimit)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 2*batch || !res.More {
		t.Fatalf("running out of time: %+v, want %d jobs and more", res, 2*batch)
	}
	if got := statusCount(t, b, ids, domain.StatusCancelled); got != 2*batch {
		t.Fatalf("%d jobs cancelled, want the %d counted", got, 2*batch)
	}
	// Even short of time from the start, a call changes one batch:
	// calling again while more is set gets through.
	res, err = b.svc.CancelMany(&runningOut{Context: context.Background(), plenty: 1}, jobs.BulkRequest{Type: "slow-bulk"})
	if err != nil || res.Count != batch || !res.More {
		t.Fatalf("no time to spare: %+v, %v; want %d jobs and more", res, err, batch)
	}
}
