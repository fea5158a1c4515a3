// Package store defines the contract of the job store, the single source of
// truth for jobs. Implementations live in sub-packages, one per backend
// (memory today); storetest holds the conformance suite every backend runs.
//
// Every change of a job goes through a Store, and every change is reported to
// the store's Publisher in version order, so no status change can bypass the
// events subscribers see.
package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// Store keeps jobs. Implementations are safe for concurrent use. Methods
// return pointers to immutable snapshots: a returned *domain.Job never
// changes afterwards and may be shared freely.
type Store interface {
	// Create stores a new job as pending with version 1 and returns it. If
	// nj has an idempotency key that a stored job has, it returns that job
	// unchanged instead (no new job, no event), also when many creations
	// with the key race: the first wins, whatever the others' type and
	// payload.
	Create(ctx context.Context, nj domain.NewJob) (*domain.Job, error)
	// Get returns the job with the id, or an error wrapping
	// domain.ErrNotFound.
	Get(ctx context.Context, id string) (*domain.Job, error)
	// List returns jobs matching the filter, newest first.
	List(ctx context.Context, q ListQuery) (ListPage, error)
	// Claim atomically moves a pending job to processing, counts the
	// attempt and sets StartedAt. Of many concurrent claims of one job
	// exactly one succeeds; the others, and claims of jobs that are not
	// pending, get an error wrapping domain.ErrConflict.
	Claim(ctx context.Context, id string) (*domain.Job, error)
	// Finish moves a processing job to a final status (completed, failed or
	// cancelled), recording errMsg as the job's error when it is not empty,
	// and sets FinishedAt. A failure is appended to the job's Errors.
	Finish(ctx context.Context, id string, status domain.Status, errMsg string) (*domain.Job, error)
	// Complete moves a processing job to completed with the handler's
	// result (nil for none).
	Complete(ctx context.Context, id string, result json.RawMessage) (*domain.Job, error)
	// Progress records a processing job's progress (0 to 100): one new
	// version, unless the value is the one already recorded. Other statuses
	// give domain.ErrConflict.
	Progress(ctx context.Context, id string, percent int) (*domain.Job, error)
	// Release moves a processing job back to pending, keeping its attempt
	// count: the worker gave it up through no fault of the job (shutdown).
	// A job whose cancellation was requested becomes cancelled instead.
	Release(ctx context.Context, id string) (*domain.Job, error)
	// Cancel makes a pending job cancelled at once. For a processing job it
	// sets CancelRequested (one new version; asking again changes nothing):
	// the worker running it cancels the handler and finishes the job as
	// cancelled. A job in a final status gives domain.ErrConflict.
	Cancel(ctx context.Context, id string) (*domain.Job, error)
	// Retry puts a failed or cancelled job back to pending now, keeping its
	// attempts and error history; other statuses give domain.ErrConflict.
	Retry(ctx context.Context, id string) (*domain.Job, error)
	// DeleteFinished deletes up to limit jobs in a final status that
	// finished before the given time, with their idempotency keys, and
	// returns how many it deleted. Deleting publishes no event.
	DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error)
	// Stats counts jobs per status, only those of typ when it is not empty,
	// without loading them.
	Stats(ctx context.Context, typ string) (domain.Stats, error)
	// Runnable returns up to limit pending jobs whose RunAt is not after
	// now, leaving out the ids in exclude (those already handed to workers),
	// ordered by Priority (higher first), RunAt, then Seq. next is the
	// earliest RunAt after now among pending jobs (zero if none): the
	// dispatcher sleeps until then.
	Runnable(ctx context.Context, now time.Time, limit int, exclude []string) (refs []Ref, next time.Time, err error)
	// Fail records a failed attempt of a processing job (appended to
	// Errors). With attempts left and a non-zero retryAt the job goes back
	// to pending with RunAt = retryAt; otherwise it is failed for good.
	Fail(ctx context.Context, id, errMsg string, retryAt time.Time) (*domain.Job, error)
}

// Ref identifies a runnable job for the dispatcher.
type Ref struct {
	ID  string
	Seq int64
}

// ListQuery filters and pages List. Zero values mean "any".
type ListQuery struct {
	Status domain.Status // "" for any status
	Type   string        // "" for any type
	// BeforeSeq, when positive, returns only jobs older than that Seq (the
	// cursor of the previous page's last job).
	BeforeSeq int64
	// Limit is the page size; it must be positive.
	Limit int
}

// ListPage is one page of List.
type ListPage struct {
	Jobs []*domain.Job
	// HasMore reports whether older matching jobs exist after this page.
	HasMore bool
	// Total counts the jobs matching Status and Type, across all pages.
	Total int
}

// Publisher receives every change of every job, in version order for each
// job. Stores call Publish synchronously, possibly while holding their own
// locks, so implementations must return at once and never block.
type Publisher interface {
	Publish(job *domain.Job)
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(job *domain.Job)

// Publish calls f(job).
func (f PublisherFunc) Publish(job *domain.Job) { f(job) }

// Publishers fans one change out to several publishers, in order.
type Publishers []Publisher

// Publish calls Publish on each publisher in turn.
func (ps Publishers) Publish(job *domain.Job) {
	for _, p := range ps {
		p.Publish(job)
	}
}
