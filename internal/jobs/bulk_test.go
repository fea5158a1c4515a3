package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
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
	var ids []string
	for range 10 {
		ids = append(ids, b.create(t, "slow-bulk").ID)
	}
	// Deadline is read once to set the margin, then before each job
	// after the first: time runs short after the fourth job.
	ctx := &runningOut{Context: context.Background(), plenty: 4}
	res, err := b.svc.CancelMany(ctx, jobs.BulkRequest{Type: "slow-bulk"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 4 || !res.More {
		t.Fatalf("running out of time: %+v, want 4 jobs and more", res)
	}
	if got := statusCount(t, b, ids, domain.StatusCancelled); got != 4 {
		t.Fatalf("%d jobs cancelled, want the 4 counted", got)
	}
	// Even short of time from the first job on, a call changes one job:
	// calling again while more is set gets through.
	res, err = b.svc.CancelMany(&runningOut{Context: context.Background(), plenty: 1}, jobs.BulkRequest{Type: "slow-bulk"})
	if err != nil || res.Count != 1 || !res.More {
		t.Fatalf("no time to spare: %+v, %v; want one job and more", res, err)
	}
}
