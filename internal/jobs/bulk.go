package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Bounds of a bulk operation's limit: DefaultBulkLimit when the request
// names none, at most MaxBulkLimit (so that a call stays well within a
// request's time).
const (
	DefaultBulkLimit = 1000
	MaxBulkLimit     = 10_000
)

// BulkRequest selects the jobs of CancelMany and RetryMany.
type BulkRequest struct {
	// Status, when not empty, narrows the statuses the operation acts on
	// (a status it cannot act on matches nothing).
	Status domain.Status
	// Type, when not empty, selects jobs of that type.
	Type string
	// Tag, when not empty, selects jobs carrying that tag.
	Tag string
	// CreatedBefore and CreatedAfter, when not zero, select jobs created
	// strictly before or after those times.
	CreatedBefore, CreatedAfter time.Time
	// Limit bounds the jobs changed; nil: DefaultBulkLimit. From 1 to
	// MaxBulkLimit.
	Limit *int
}

// BulkResult is what a bulk operation did.
type BulkResult struct {
	// Count is the number of jobs changed.
	Count int
	// More reports that matching jobs remain: call again.
	More bool
}

// CancelMany cancels at most req.Limit pending or processing jobs the
// caller sees that match req, newest first, each as Cancel would (and
// published as it changes), store.BulkBatch jobs per store write. Jobs
// that finish meanwhile are skipped.
func (s *Service) CancelMany(ctx context.Context, req BulkRequest) (BulkResult, error) {
	// A processing job asked to cancel already is not asked again (nor
	// counted): it becomes CANCELLED when its handler returns.
	asked := func(j *domain.Job) bool { return j.CancelRequested }
	return s.bulk(ctx, "cancel", req, []domain.Status{domain.StatusPending, domain.StatusProcessing}, asked, s.store.CancelJobs)
}

// RetryMany puts back to pending at most req.Limit failed or cancelled
// jobs the caller sees that match req, newest first, each as Retry would,
// store.BulkBatch jobs per store write.
func (s *Service) RetryMany(ctx context.Context, req BulkRequest) (BulkResult, error) {
	never := func(*domain.Job) bool { return false }
	return s.bulk(ctx, "retry", req, []domain.Status{domain.StatusFailed, domain.StatusCancelled}, never, s.store.RetryJobs)
}

// bulk applies change to the jobs matching req in the statuses it acts
// on (but not those skip names), a page of store.BulkBatch jobs listed and
// changed at a time, until limit jobs have changed or none is left.
// Only jobs in statuses change acts on are listed, so the walk is bounded
// by the limit and the jobs that changed status meanwhile. change is
// given the caller's scope as the owner, so that the store itself keeps
// a user to its own jobs.
func (s *Service) bulk(ctx context.Context, op string, req BulkRequest, acts []domain.Status, skip func(*domain.Job) bool, change func(ctx context.Context, ids []string, owner string) ([]*domain.Job, error)) (BulkResult, error) {
	a := accessOf(ctx)
	if err := a.allow(op, true); err != nil {
		return BulkResult{}, err
	}
	limit := DefaultBulkLimit
	if req.Limit != nil {
		limit = *req.Limit
	}
	if limit < 1 || limit > MaxBulkLimit {
		return BulkResult{}, &domain.ValidationError{Field: "limit", Message: fmt.Sprintf("must be from 1 to %d, got %d", MaxBulkLimit, limit)}
	}
	if req.Status != "" && !req.Status.Valid() {
		return BulkResult{}, &domain.ValidationError{Field: "filter.status", Message: fmt.Sprintf("unknown status %q", req.Status)}
	}
	var res BulkResult
	if domain.NoJobHasType(req.Type) || domain.NoJobHasTag(req.Tag) {
		return res, nil
	}
	enough := timeToAnswer(ctx)
	for _, status := range acts {
		if req.Status != "" && req.Status != status {
			continue
		}
		q := store.ListQuery{
			Status: status, Type: req.Type, Tag: req.Tag, Owner: a.scope,
			CreatedBefore: req.CreatedBefore, CreatedAfter: req.CreatedAfter,
			Limit: store.BulkBatch, SkipTotal: true,
		}
		for {
			page, err := s.store.List(ctx, q)
			if err != nil {
				return res, fmt.Errorf("%s jobs: %w", op, err)
			}
			ids := make([]string, 0, len(page.Jobs))
			for _, j := range page.Jobs {
				if !skip(j) {
					ids = append(ids, j.ID)
				}
			}
			// The jobs a write leaves alone (changed meanwhile) make
			// room for the next ones of the page.
			for len(ids) > 0 {
				if res.Count == limit || (res.Count > 0 && enough()) {
					res.More = true // ids[0] still matches
					return res, nil
				}
				n := min(len(ids), limit-res.Count)
				changed, err := change(ctx, ids[:n], a.scope)
				res.Count += len(changed)
				if err != nil {
					return res, fmt.Errorf("%s jobs: %w", op, err)
				}
				ids = ids[n:]
			}
			if !page.HasMore || len(page.Jobs) == 0 {
				break
			}
			q.BeforeSeq = page.Jobs[len(page.Jobs)-1].Seq
		}
	}
	return res, nil
}

// timeToAnswer returns a function that reports when a bulk operation
// should stop and answer with what it did (More set) rather than run out
// of its request's time half-way with an error that hides how many jobs
// changed: a quarter of the time the context had at the start, at most
// bulkAnswerMargin, is kept for the answer. Without a deadline it never
// says stop. The caller changes at least one job first, so a client that
// calls again while More is set always makes progress.
func timeToAnswer(ctx context.Context) func() bool {
	deadline, ok := ctx.Deadline()
	if !ok {
		return func() bool { return false }
	}
	margin := min(bulkAnswerMargin, time.Until(deadline)/4)
	return func() bool {
		d, _ := ctx.Deadline()
		return time.Until(d) < margin
	}
}

// bulkAnswerMargin is the most time a bulk operation keeps for its answer.
const bulkAnswerMargin = 2 * time.Second
