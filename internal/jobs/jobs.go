// Package jobs is the application service between the APIs and the store:
// the one place for "may this caller do this, and with what defaults".
// GraphQL resolvers and REST handlers translate their requests into its
// methods (Create, Get, List, Cancel, Retry, Stats, Watch) and its errors
// into their own answers; neither validates on its own. Defaults, every
// rule of a new job, the type filter, page sizes, the "no job can have
// this type" shortcut and authorization live here, so that both APIs (and
// subscriptions) get each rule from one place.
//
// Authorization: each method reads the caller's identity from its context
// (auth.IdentityFrom; none when authentication is off) and applies the
// rules of accessOf (access.go): what each role may do, which jobs it
// sees, and who owns the jobs it creates.
//
// Errors: an operation the caller's role does not allow is a
// *ForbiddenError (wrapping domain.ErrForbidden), checked before anything
// else; a rule the caller broke is a *domain.ValidationError naming the
// field as the APIs name it (its message is what both APIs show); a job
// that does not exist, or that the caller may not see, wraps
// domain.ErrNotFound, the two alike; an operation the job's status refuses
// is a *ConflictError (wrapping domain.ErrConflict); anything else is the
// store's error wrapped with what was being done.
package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/tracing"
)

// Options configure a Service. They are fixed once the service is built.
type Options struct {
	// MaxPayloadBytes bounds a job's payload once encoded compactly; zero
	// means no bound.
	MaxPayloadBytes int
	// DefaultMaxAttempts is the attempts of a job created without
	// maxAttempts. It is trusted (the configuration checks it); zero leaves
	// the store's default of one attempt.
	DefaultMaxAttempts int
	// Types, when not nil, are the only job types Create accepts.
	Types TypeFilter
	// RESTListMax is the size of a RESTPages listing when the request names
	// none, and the most it may ask for; zero means MaxPageSize.
	RESTListMax int
	// PeriodicFile names the server's PERIODIC_FILE in the refusal to
	// change one of its definitions ("" when none is set).
	PeriodicFile string
	// MaxPeriodicJobs bounds how many periodic jobs may be defined, API
	// and PERIODIC_FILE together; zero means DefaultMaxPeriodicJobs.
	MaxPeriodicJobs int
	// PeriodicChanged, when not nil, is called after a periodic job
	// definition changed (the scheduler's Wake). It must not block.
	PeriodicChanged func()
	// TraceParents keeps with each new job the W3C traceparent of the span
	// in the creating call's context (tracing is on), so that each attempt
	// of the job can link to its creation.
	TraceParents bool
}

// Subscriber is the part of the broker Watch uses.
type Subscriber interface {
	Subscribe(ctx context.Context, f broker.Filter) (*broker.Subscription, error)
	SubscribeTypes(ctx context.Context) (*broker.TypeSubscription, error)
}

// Service carries out the APIs' requests against the store and the broker.
// It holds no mutable state and is safe for concurrent use.
type Service struct {
	store  store.Store
	events Subscriber
	opts   Options
}

// New returns a service over st (every read and change of a job) and
// events (the subscriptions of Watch).
func New(st store.Store, events Subscriber, opts Options) *Service {
	if opts.RESTListMax <= 0 {
		opts.RESTListMax = MaxPageSize
	}
	return &Service{store: st, events: events, opts: opts}
}

// Create validates req (see CreateRequest), applies the defaults and stores
// the new job, owned by the caller (see accessOf), or returns the caller's
// job that already has req's idempotency key. A broken rule gives a
// *domain.ValidationError and stores nothing.
//
// Idempotency keys are scoped per owner (the stores keep them unique per
// owner, not across owners): a key never returns another owner's job, and
// telling a caller that a key is taken by someone else would leak that it
// exists. Callers without an owner (authentication off, or a role whose
// jobs have none) share one scope, as all callers did before owners.
func (s *Service) Create(ctx context.Context, req CreateRequest) (*domain.Job, error) {
	a := accessOf(ctx)
	if err := a.allow("create", true); err != nil {
		return nil, err
	}
	nj, err := s.newJob(req)
	if err != nil {
		return nil, err
	}
	nj.Owner, nj.TraceParent = a.owner, s.traceParent(ctx)
	j, err := s.store.Create(ctx, nj)
	if err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	return j, nil
}

// Get returns the job with the id, or an error wrapping domain.ErrNotFound
// when there is none that the caller may see.
func (s *Service) Get(ctx context.Context, id string) (*domain.Job, error) {
	a := accessOf(ctx)
	if err := a.allow("read", false); err != nil {
		return nil, err
	}
	return s.get(ctx, a, "get", id)
}

// get returns the job with the id for an operation op of a caller with
// access a: a job it may not see is not found, as a missing one is.
func (s *Service) get(ctx context.Context, a access, op, id string) (*domain.Job, error) {
	j, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("%s job %s: %w", op, id, err)
	}
	if !a.sees(j) {
		return nil, fmt.Errorf("%s job %s: %w", op, id, domain.ErrNotFound)
	}
	return j, nil
}

// mayChange returns nil when a caller with access a may cancel, retry or
// delete (op) the job with the id; a job it may not see is not found. A job's
// owner never changes, so the answer stays true while the store changes
// the job.
func (s *Service) mayChange(ctx context.Context, a access, op, id string) error {
	if err := a.allow(op, true); err != nil {
		return err
	}
	if a.scope == "" {
		return nil
	}
	_, err := s.get(ctx, a, op, id)
	return err
}

// Cancel cancels a pending job at once, or asks the worker running a
// processing job to cancel it (see store.Store.Cancel). A job in a final
// status gives a *ConflictError; an unknown id an error wrapping
// domain.ErrNotFound.
func (s *Service) Cancel(ctx context.Context, id string) (*domain.Job, error) {
	if err := s.mayChange(ctx, accessOf(ctx), "cancel", id); err != nil {
		return nil, err
	}
	j, err := s.store.Cancel(ctx, id)
	if err != nil {
		return nil, s.jobError(ctx, "cancel", id, err)
	}
	return j, nil
}

// Retry puts a failed or cancelled job back to pending now. Another status
// gives a *ConflictError; an unknown id an error wrapping
// domain.ErrNotFound.
func (s *Service) Retry(ctx context.Context, id string) (*domain.Job, error) {
	if err := s.mayChange(ctx, accessOf(ctx), "retry", id); err != nil {
		return nil, err
	}
	j, err := s.store.Retry(ctx, id)
	if err != nil {
		return nil, s.jobError(ctx, "retry", id, err)
	}
	return j, nil
}

// CreateMany creates the jobs of reqs in one call of the store, all or
// none: each request is checked as Create checks it first, and the first
// broken rule is the error, its field named after the request's index
// (inputs[3].type: the GraphQL argument's name). It returns one job per
// request, in order; an idempotency key already taken (also by an earlier
// request of reqs) gives the job that has it, as Create does. The caller
// bounds how many requests one call may hold.
func (s *Service) CreateMany(ctx context.Context, reqs []CreateRequest) ([]*domain.Job, error) {
	a := accessOf(ctx)
	if err := a.allow("create", true); err != nil {
		return nil, err
	}
	njs := make([]domain.NewJob, len(reqs))
	traceParent := s.traceParent(ctx)
	for i, req := range reqs {
		nj, err := s.newJob(req)
		if err != nil {
			return nil, itemError(i, err)
		}
		nj.Owner, nj.TraceParent = a.owner, traceParent
		njs[i] = nj
	}
	jobs, err := s.store.CreateMany(ctx, njs)
	if ie := (*store.ItemError)(nil); errors.As(err, &ie) {
		return nil, itemError(ie.Index, ie.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("create jobs: %w", err)
	}
	return jobs, nil
}

// traceParent is what a job created in ctx keeps as its TraceParent.
func (s *Service) traceParent(ctx context.Context) string {
	if !s.opts.TraceParents {
		return ""
	}
	return tracing.TraceParent(ctx)
}

// itemError names the field of a validation error about the i-th request
// of CreateMany after its index.
func itemError(i int, err error) error {
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		return &domain.ValidationError{Field: fmt.Sprintf("inputs[%d].%s", i, ve.Field), Message: ve.Message}
	}
	return fmt.Errorf("create jobs: inputs[%d]: %w", i, err)
}

// Delete deletes a job in a final status (completed, failed or
// cancelled), with its idempotency key. Like the retention sweeper's
// deletions, it publishes no event: watchers of the job saw its final
// status already. Another status gives a *ConflictError; an unknown id, or
// one of a job the caller may not see, an error wrapping
// domain.ErrNotFound.
func (s *Service) Delete(ctx context.Context, id string) error {
	if err := s.mayChange(ctx, accessOf(ctx), "delete", id); err != nil {
		return err
	}
	if _, err := s.store.Delete(ctx, id); err != nil {
		return s.jobError(ctx, "delete", id, err)
	}
	return nil
}

// Stats counts the jobs the caller sees per status, only those of typ
// when it is not empty. A type no job can have counts nothing without
// asking the store.
func (s *Service) Stats(ctx context.Context, typ string) (domain.Stats, error) {
	a := accessOf(ctx)
	if err := a.allow("count", false); err != nil {
		return domain.Stats{}, err
	}
	if domain.NoJobHasType(typ) {
		return domain.Stats{}, nil
	}
	st, err := s.store.Stats(ctx, store.StatsQuery{Type: typ, Owner: a.scope})
	if err != nil {
		return domain.Stats{}, fmt.Errorf("count jobs: %w", err)
	}
	return st, nil
}

// ConflictError reports that a job's status refuses an operation:
// cancelling a job in a final status, retrying one that is neither failed
// nor cancelled. It wraps domain.ErrConflict.
type ConflictError struct {
	// Op is the refused operation: "cancel", "retry" or "delete".
	Op string
	// ID is the job's id.
	ID string
	// Status is the job's status when the operation was refused; empty
	// when it could not be read (the job was deleted meanwhile, or the
	// store failed).
	Status domain.Status
}

func (e *ConflictError) Error() string {
	if e.Status == "" {
		return fmt.Sprintf("cannot %s job %q in its current status", e.Op, e.ID)
	}
	return fmt.Sprintf("cannot %s job %q: it is %s", e.Op, e.ID, e.Status)
}

// Unwrap makes errors.Is(err, domain.ErrConflict) true.
func (e *ConflictError) Unwrap() error { return domain.ErrConflict }

// jobError wraps the store's error about an operation on one job. A
// conflict becomes a *ConflictError with the job's current status, read
// after the refusal: the store's error does not carry it, and the status
// is what tells the client why.
func (s *Service) jobError(ctx context.Context, op, id string, err error) error {
	if !errors.Is(err, domain.ErrConflict) {
		return fmt.Errorf("%s job %s: %w", op, id, err)
	}
	ce := &ConflictError{Op: op, ID: id}
	if j, gerr := s.store.Get(ctx, id); gerr == nil {
		ce.Status = j.Status
	}
	return ce
}
