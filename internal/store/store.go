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
	"fmt"
	"slices"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// Store keeps jobs. Implementations are safe for concurrent use. Methods
// return pointers to immutable snapshots: a returned *domain.Job never
// changes afterwards and may be shared freely.
//
// Every failure a store records (Fail, Finish as failed, RescueExpired)
// joins the job's Errors, of which the store keeps the newest entries, as
// many as its error history (see ErrorHistory), in the same write: a job
// that fails and is retried without end stays the same size, and so does
// the cost of its next failure. A failure message longer than
// domain.MaxErrorMessageBytes is kept cut (domain.TruncateErrorMessage),
// in Error and in Errors.
//
// Workers hold the jobs they run through leases: Claim hands out a job
// together with a lease (an owner and an expiry), the owner renews it with
// Heartbeat while the handler runs, and every write a worker makes about
// the attempt (Progress, Complete, Fail, Finish, Release) names its Lease
// and applies only while that claim still stands. When an owner dies, its
// leases expire and RescueExpired gives the jobs back (or fails them when
// no attempt is left); a write from the lost worker then gets an error
// wrapping domain.ErrLeaseLost and changes nothing.
type Store interface {
	// Create stores a new job as pending with version 1 and returns it
	// (with nj's Tags, which the caller gives normalized). If
	// nj has an idempotency key that a stored job of the same owner has, it
	// returns that job unchanged instead (no new job, no event), also when
	// many creations with the key race: the first wins, whatever the
	// others' type and payload. Keys are scoped per owner: the same key
	// given by two owners makes two jobs. A job it inserts is reported to
	// ctx's WithCreations function (NoteCreated).
	Create(ctx context.Context, nj domain.NewJob) (*domain.Job, error)
	// CreateMany stores new jobs as Create does, in one transaction:
	// either all of them are stored or none is (the error). It returns one
	// job per element of njs, in the same order: the new job, or, when
	// the element's idempotency key is taken, the job that has it, a
	// stored one or one created for an earlier element of njs. The new
	// jobs are published after the commit, in order, and each reported to
	// ctx's WithCreations function. An error about one element is an
	// *ItemError naming its index.
	CreateMany(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error)
	// Get returns the job with the id, or an error wrapping
	// domain.ErrNotFound.
	Get(ctx context.Context, id string) (*domain.Job, error)
	// List returns jobs matching the filter, newest first.
	List(ctx context.Context, q ListQuery) (ListPage, error)
	// Claim atomically moves up to req.Limit runnable jobs (pending, RunAt
	// not after req.Now) to processing, in dispatch order: Priority (higher
	// first), then RunAt, then creation order. Each claimed job counts an
	// attempt, gets StartedAt, loses the previous attempt's progress and
	// result, and is leased to req.Owner until req.LeaseUntil. Of many
	// concurrent claims (in this process or another) each job goes to
	// exactly one. No runnable job is not an error: the slice is empty.
	//
	// The type controls (SetTypeControl) decide within the same atomic
	// step, for every process sharing the store: a paused type's jobs are
	// not runnable; a type with a concurrency limit never has more jobs
	// processing than it; a type with a rate has one token spent per job
	// claimed (its bucket as of req.Now) and no job claimed without one.
	// The bucket never goes back in time: a claim whose req.Now is before
	// the last spend's (a skewed clock, or a claim that waited for
	// another) spends as of the last spend's time.
	// Jobs of a type held back are passed over, not waited for: the jobs
	// of other types behind them are claimed.
	Claim(ctx context.Context, req ClaimRequest) ([]*domain.Job, error)
	// NextRunAt returns the earliest time after now at which a pending
	// job may become runnable: the earliest RunAt after now among pending
	// jobs, or, if sooner, when a rate-limited type whose bucket is empty
	// at now gets its next token (whether or not it has jobs waiting);
	// the zero time when there is none. The dispatcher sleeps until then.
	NextRunAt(ctx context.Context, now time.Time) (time.Time, error)
	// TypeControls returns the controls of every type that has any
	// (paused, or a limit), ordered by name.
	TypeControls(ctx context.Context) ([]domain.TypeControl, error)
	// SetTypeControl applies change to the controls of the type name
	// (which needs no jobs: a type may be limited ahead of its first job)
	// and returns them. The change takes effect at the next claim of
	// every process sharing the store, and is published, once committed,
	// to the TypePublisher of every such process (see TypePublisherOf).
	// A type left without controls is forgotten.
	SetTypeControl(ctx context.Context, name string, change domain.TypeChange) (domain.TypeControl, error)
	// TypeStats counts jobs per status for every type that has jobs (only
	// owner's jobs when owner is not empty), from the kept counts.
	TypeStats(ctx context.Context, owner string) (map[string]domain.Stats, error)
	// OldestRunnable returns the earliest RunAt not after now among
	// pending jobs of types not paused (how long the longest-waiting
	// runnable job has waited: the queue's lag), or the zero time when no
	// such job is due. Jobs held back by a type's concurrency or rate
	// limit count: they are runnable, only slowed. It reads an index,
	// never every pending job, on the SQL backends (past the due jobs of
	// paused types older than the answer).
	OldestRunnable(ctx context.Context, now time.Time) (time.Time, error)
	// Heartbeat extends to until the leases owner holds on the jobs with
	// the given ids (those still processing under owner's claim; others
	// are left alone, so a lease the owner forgot about, e.g. an outcome it
	// could not record, still expires), and returns how many it extended.
	// It is not a change of the jobs: no new version, no event. A store
	// may skip a lease whose job another write holds at that moment (the
	// next heartbeat renews it): callers renew well before expiry.
	Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error)
	// RescueExpired gives back up to limit processing jobs whose lease
	// expired before now (their owner died or lost touch): each spends the
	// attempt it was claimed for, records a "worker lost" failure (in Error
	// and Errors) and goes back to pending to run at once, or to failed
	// when no attempt is left, or to cancelled when cancellation was
	// requested. It returns the rescued jobs. Backends shared by many
	// processes let one rescuer at a time do the work; the others get none.
	RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error)
	// Finish moves a leased processing job to a final status (completed,
	// failed or cancelled), recording errMsg as the job's error when it is
	// not empty, and sets FinishedAt. A failure is appended to the job's
	// Errors.
	Finish(ctx context.Context, l Lease, status domain.Status, errMsg string) (*domain.Job, error)
	// Complete moves a leased processing job to completed with the
	// handler's result (nil for none).
	Complete(ctx context.Context, l Lease, result json.RawMessage) (*domain.Job, error)
	// Progress records a leased processing job's progress (0 to 100): one
	// new version, unless the value is the one already recorded.
	Progress(ctx context.Context, l Lease, percent int) (*domain.Job, error)
	// Release moves a leased processing job back to pending, keeping its
	// attempt count: the worker gave it up through no fault of the job
	// (shutdown). A job whose cancellation was requested becomes cancelled
	// instead.
	Release(ctx context.Context, l Lease) (*domain.Job, error)
	// Fail records a failed attempt of a leased processing job (appended
	// to Errors). With attempts left and a non-zero retryAt the job goes
	// back to pending with RunAt = retryAt; otherwise it is failed for good.
	Fail(ctx context.Context, l Lease, errMsg string, retryAt time.Time) (*domain.Job, error)
	// Cancel makes a pending job cancelled at once. For a processing job it
	// sets CancelRequested (one new version; asking again changes nothing):
	// the worker running it cancels the handler and finishes the job as
	// cancelled. A job in a final status gives domain.ErrConflict.
	Cancel(ctx context.Context, id string) (*domain.Job, error)
	// Retry puts a failed or cancelled job back to pending now, keeping its
	// attempts and error history; other statuses give domain.ErrConflict.
	Retry(ctx context.Context, id string) (*domain.Job, error)
	// CancelJobs cancels, of the jobs with the given ids, each one Cancel
	// would change, as Cancel changes it: a pending job becomes cancelled,
	// a processing one not asked yet gets CancelRequested. When owner is
	// not empty, only jobs of that Owner change (the caller's access). It
	// returns the jobs it changed, in no particular order, each published
	// as Cancel publishes it. The others are skipped, not errors: an
	// unknown id, another owner's job, a job in a final status, a
	// processing job asked already. The ids are changed BulkBatch at a
	// time, each batch in one write (one statement or transaction), so an
	// error may come after earlier batches changed their jobs.
	CancelJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error)
	// RetryJobs puts back to pending, of the jobs with the given ids, each
	// failed or cancelled one, as Retry does, only owner's when owner is
	// not empty. It returns them, skips the others and writes in batches
	// as CancelJobs does.
	RetryJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error)
	// DeleteFinished deletes up to limit jobs in a final status that
	// finished before the given time, with their idempotency keys, and
	// returns how many it deleted. Deleting publishes no event.
	DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error)
	// Delete deletes the job with the id, with its idempotency key, if it
	// is in a final status, and returns it as it was. Like DeleteFinished
	// it publishes no event. A job in another status is kept and gives an
	// error wrapping domain.ErrConflict; an unknown id, domain.ErrNotFound.
	Delete(ctx context.Context, id string) (*domain.Job, error)
	// Stats counts jobs per status, only those q selects, without loading
	// them or scanning the jobs (counts kept on every change).
	Stats(ctx context.Context, q StatsQuery) (domain.Stats, error)
	// Periodics: the definitions of periodic jobs and one job per tick.
	Periodics
}

// BulkBatch is the most jobs one write of CancelJobs or RetryJobs
// changes: large enough that a write's fixed cost (a round trip, a commit)
// is spread over many jobs, small enough that a write holds its locks (and
// SQLite's single writer) briefly.
const BulkBatch = 500

// Batches calls f with consecutive pieces of ids, each at most BulkBatch
// long, until f returns an error, which it returns.
func Batches(ids []string, f func(batch []string) error) error {
	for batch := range slices.Chunk(ids, BulkBatch) {
		if err := f(batch); err != nil {
			return err
		}
	}
	return nil
}

// ItemError is an error about one element of a call that takes many
// (CreateMany): Index is its position, counted from zero.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("item %d: %v", e.Index, e.Err) }

// Unwrap returns the element's error.
func (e *ItemError) Unwrap() error { return e.Err }

// ClaimRequest asks Claim for runnable jobs.
type ClaimRequest struct {
	// Owner names the claimer (one per process: its leases are renewed
	// and recognised by this name). It must not be empty.
	Owner string
	// Limit is the most jobs to claim; it must be positive.
	Limit int
	// Now decides which jobs are runnable (RunAt not after it).
	Now time.Time
	// LeaseUntil is when the leases expire unless renewed.
	LeaseUntil time.Time
}

// Lease names one claim of one job: the owner that claimed it and the
// attempt the claim started. A job's attempt count grows with every claim,
// so a lease outlives neither a rescue nor a later claim.
type Lease struct {
	JobID   string
	Owner   string
	Attempt int
}

// Check reports whether l still stands on j, whose lease is held by holder
// ("" when none): the job is processing, under a claim of l's owner, at
// l's attempt. Otherwise it returns an error wrapping domain.ErrLeaseLost
// that says why. Every store decides with it (or, in SQL, with the same
// condition in a statement's WHERE clause and this to explain a miss).
func (l Lease) Check(j *domain.Job, holder string) error {
	if j.Status == domain.StatusProcessing && holder == l.Owner && j.Attempts == l.Attempt {
		return nil
	}
	return fmt.Errorf("%s, attempt %d, claim of %s at attempt %d: %w", j.Status, j.Attempts, l.Owner, l.Attempt, domain.ErrLeaseLost)
}

// LeaseOf returns the lease of a job that owner just claimed.
func LeaseOf(job *domain.Job, owner string) Lease {
	return Lease{JobID: job.ID, Owner: owner, Attempt: job.Attempts}
}

// ErrorHistory resolves a backend's error history option, how many of a
// job's failures it keeps in Errors (the newest; Attempts still counts
// them all): zero means domain.DefaultErrorHistory; a value outside 1 to
// domain.MaxErrorHistory is an error wrapping domain.ErrInvalid. Every
// backend keeps its option through it, so all keep the same.
func ErrorHistory(n int) (int, error) {
	switch {
	case n == 0:
		return domain.DefaultErrorHistory, nil
	case n < 0 || n > domain.MaxErrorHistory:
		return 0, fmt.Errorf("error history %d: must be between 1 and %d: %w", n, domain.MaxErrorHistory, domain.ErrInvalid)
	}
	return n, nil
}

// Earliest returns the earlier of two times, a zero time standing for
// none: NextRunAt's answer from several sources.
func Earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// WorkerLost is the error recorded on a job rescued from an expired lease.
const WorkerLost = "worker lost: its lease expired while the job was processing (the process died or lost touch with the store)"

// ListQuery filters and pages List. Zero values mean "any".
type ListQuery struct {
	Status domain.Status // "" for any status
	Type   string        // "" for any type
	Owner  string        // "" for any owner (jobs without one included)
	// Tag, when not empty, selects the jobs carrying that tag. Stores keep
	// no counts per tag: the Total of a listing by tag is counted among
	// the tag's jobs (bounded by an index, not by all jobs).
	Tag string
	// CreatedBefore and CreatedAfter, when not zero, select the jobs
	// created strictly before or after those times. No counts are kept
	// per creation time either: with either bound, Total is counted among
	// the jobs the other filters select.
	CreatedBefore, CreatedAfter time.Time
	// BeforeSeq, when positive, returns only jobs older than that Seq (the
	// cursor of the previous page's last job).
	BeforeSeq int64
	// Limit is the page size; it must be positive.
	Limit int
	// SkipTotal tells the store that the caller does not need
	// ListPage.Total; stores where counting costs may leave it zero.
	SkipTotal bool
}

// ListPage is one page of List.
type ListPage struct {
	Jobs []*domain.Job
	// HasMore reports whether older matching jobs exist after this page.
	HasMore bool
	// Total counts the jobs matching Status, Type, Owner and Tag, across
	// all pages.
	Total int
}

// StatsQuery selects the jobs Stats counts. Zero values mean "any".
type StatsQuery struct {
	Type  string // "" for any type
	Owner string // "" for any owner (jobs without one included)
}

// Publisher receives every change of every job, in version order for each
// job. Stores call Publish synchronously, possibly while holding their own
// locks, so implementations must return at once and never block.
type Publisher interface {
	Publish(job *domain.Job)
}

// TypePublisher receives the controls of a job type each time they
// change (SetTypeControl, in this process or another sharing the store),
// and again after a process may have missed changes. Like Publish,
// PublishType must return at once and never block.
type TypePublisher interface {
	PublishType(c domain.TypeControl)
}

// TypePublisherOf returns pub's TypePublisher: pub itself when it is one,
// otherwise one that drops every change. Stores take their TypePublisher
// from their Publisher this way, so one value receives both kinds of
// change.
func TypePublisherOf(pub Publisher) TypePublisher {
	if tp, ok := pub.(TypePublisher); ok {
		return tp
	}
	return noTypes{}
}

type noTypes struct{}

func (noTypes) PublishType(domain.TypeControl) {}

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

// PublishType calls PublishType on each publisher that is a TypePublisher,
// in turn.
func (ps Publishers) PublishType(c domain.TypeControl) {
	for _, p := range ps {
		if tp, ok := p.(TypePublisher); ok {
			tp.PublishType(c)
		}
	}
}

// Tuning is how a backend wants the worker to use it: properties of the
// backend (what a claim costs, whether its wake-ups can be missed, how it
// batches writes), stated by the backend so that neither the worker nor
// the server needs to know which backend it runs on. The zero value suits
// an in-process store whose claims are cheap and whose every change is
// published.
type Tuning struct {
	// ClaimCooldown is how long, while jobs keep coming, the dispatcher
	// waits after a claim that found jobs before it claims again for fewer
	// workers than a full batch, so that workers freed meanwhile share one
	// claim. Worth a millisecond or two where a claim is a statement and a
	// commit whose cost hardly depends on how many jobs it takes.
	ClaimCooldown time.Duration
	// MissableWakeups reports that the store may not publish every job
	// that becomes runnable (jobs created by other processes sharing it, a
	// notification lost with a dropped connection): the dispatcher must
	// also poll (the server's POLL_INTERVAL).
	MissableWakeups bool
	// OutcomesPerWorker, when positive, is how many outcomes per worker
	// the worker keeps being written at once. A store that coalesces
	// concurrent writes into one statement, waiting a little to gather
	// them, wants several; each is also a job a crash runs again.
	OutcomesPerWorker int
}

// Tuner is implemented by stores that state a Tuning; a store that does
// not gets the zero Tuning. A wrapper that embeds the Store interface does
// not inherit its Tuning method: it must forward it (store.TuningOf(inner)).
type Tuner interface {
	Tuning() Tuning
}

// TuningOf returns st's Tuning, or the zero Tuning when st states none.
func TuningOf(st any) Tuning {
	if t, ok := st.(Tuner); ok {
		return t.Tuning()
	}
	return Tuning{}
}
