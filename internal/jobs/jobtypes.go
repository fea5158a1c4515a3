package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// JobType is a job type as the queue sees it: its controls and the
// counts of its jobs that the caller sees.
type JobType struct {
	domain.TypeControl
	Stats domain.Stats
}

// ConcurrencyOrNil returns the concurrency limit, nil for none.
func (t *JobType) ConcurrencyOrNil() *int {
	if t.Concurrency <= 0 {
		return nil
	}
	return &t.Concurrency
}

// RatePerSecondOrNil returns the rate limit, nil for none.
func (t *JobType) RatePerSecondOrNil() *float64 {
	if t.RatePerSecond <= 0 {
		return nil
	}
	return &t.RatePerSecond
}

// RateBurstOrNil returns the rate's burst, nil without a rate.
func (t *JobType) RateBurstOrNil() *int {
	if t.RatePerSecond <= 0 {
		return nil
	}
	return &t.RateBurst
}

// LimitsRequest is what SetTypeLimits sets: a nil field clears that
// limit. A burst without a rate is refused; a rate without a burst gets
// the rate rounded up.
type LimitsRequest struct {
	Concurrency   *int
	RatePerSecond *float64
	RateBurst     *int
}

// JobTypes returns the types that have controls or jobs the caller sees,
// by name. A caller that sees only its own jobs (a user) gets the types
// of its jobs only, with their controls and its own counts, so that no
// other owner's type names leak (the rule of JobType and WatchTypes too).
func (s *Service) JobTypes(ctx context.Context) ([]JobType, error) {
	a := accessOf(ctx)
	if err := a.allow("list", false); err != nil {
		return nil, err
	}
	controls, err := s.store.TypeControls(ctx)
	if err != nil {
		return nil, fmt.Errorf("list job types: %w", err)
	}
	stats, err := s.store.TypeStats(ctx, a.scope)
	if err != nil {
		return nil, fmt.Errorf("list job types: %w", err)
	}
	byName := make(map[string]JobType, len(stats)+len(controls))
	for name, st := range stats {
		byName[name] = JobType{TypeControl: domain.TypeControl{Name: name}, Stats: st}
	}
	for _, c := range controls {
		t, ok := byName[c.Name]
		if !ok && a.scope != "" {
			continue
		}
		t.TypeControl = c
		byName[c.Name] = t
	}
	out := make([]JobType, 0, len(byName))
	for _, t := range byName {
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y JobType) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// JobType returns the type with the name, or nil when it has neither
// controls nor jobs the caller sees; for a caller that sees only its own
// jobs (a user), nil unless it has jobs of the type, as in JobTypes. A
// name no type can have is a *domain.ValidationError naming the field
// "name".
func (s *Service) JobType(ctx context.Context, name string) (*JobType, error) {
	a := accessOf(ctx)
	if err := a.allow("read", false); err != nil {
		return nil, err
	}
	if err := checkTypeName(name); err != nil {
		return nil, err
	}
	t, err := s.jobType(ctx, a, name)
	if err != nil {
		return nil, err
	}
	if !a.seesType(t) {
		return nil, nil
	}
	return &t, nil
}

// jobType reads a type's controls and the counts of its jobs a caller
// with access a sees.
func (s *Service) jobType(ctx context.Context, a access, name string) (JobType, error) {
	controls, err := s.store.TypeControls(ctx)
	if err != nil {
		return JobType{}, fmt.Errorf("read job type %s: %w", name, err)
	}
	t := JobType{TypeControl: domain.TypeControl{Name: name}}
	if i := slices.IndexFunc(controls, func(c domain.TypeControl) bool { return c.Name == name }); i >= 0 {
		t.TypeControl = controls[i]
	}
	if t.Stats, err = s.store.Stats(ctx, store.StatsQuery{Type: name, Owner: a.scope}); err != nil {
		return JobType{}, fmt.Errorf("read job type %s: %w", name, err)
	}
	return t, nil
}

// seesType reports whether a caller with access a sees the type t, read
// with a's counts: a caller that sees only its own jobs sees the types it
// has jobs of; the others see every type with controls or jobs.
func (a access) seesType(t JobType) bool {
	if t.Stats != (domain.Stats{}) {
		return true
	}
	return a.scope == "" && !t.Empty()
}

// PauseType pauses (paused true) or resumes a job type, on every
// process sharing the store: a paused type's pending jobs stay pending,
// new ones are still accepted, running ones finish. Only a caller that
// may operate (admin) may; a name no type can have is a
// *domain.ValidationError.
func (s *Service) PauseType(ctx context.Context, name string, paused bool) (JobType, error) {
	op := "pause"
	if !paused {
		op = "resume"
	}
	return s.changeType(ctx, op, name, domain.TypeChange{Paused: &paused})
}

// SetTypeLimits sets (or, for nil fields, clears) a type's limits. Any
// valid type name may be limited, also one without jobs yet, unless
// handlers are configured (Options.Types): then only their types. A limit out
// of range is a *domain.ValidationError naming its field.
func (s *Service) SetTypeLimits(ctx context.Context, name string, req LimitsRequest) (JobType, error) {
	var l domain.TypeLimits
	if req.Concurrency != nil {
		if *req.Concurrency < 1 {
			return JobType{}, &domain.ValidationError{Field: "concurrency", Message: fmt.Sprintf("must be from 1 to %d (null for no limit), got %d", domain.MaxTypeConcurrency, *req.Concurrency)}
		}
		l.Concurrency = *req.Concurrency
	}
	if r := req.RatePerSecond; r != nil {
		if !domain.ValidRate(*r) {
			return JobType{}, domain.RateOutOfRange(*r)
		}
		l.RatePerSecond = *r
	}
	if req.RateBurst != nil {
		if *req.RateBurst < 1 {
			return JobType{}, &domain.ValidationError{Field: "rateBurst", Message: fmt.Sprintf("must be from 1 to %d, got %d", domain.MaxRateBurst, *req.RateBurst)}
		}
		l.RateBurst = *req.RateBurst
	}
	if err := l.Check(); err != nil {
		return JobType{}, err
	}
	return s.changeType(ctx, "limit", name, domain.TypeChange{Limits: &l})
}

// changeType checks that the caller may operate and the name, then
// applies the change.
func (s *Service) changeType(ctx context.Context, op, name string, ch domain.TypeChange) (JobType, error) {
	a := accessOf(ctx)
	if err := a.allowOperate(op); err != nil {
		return JobType{}, err
	}
	if err := checkTypeName(name); err != nil {
		return JobType{}, err
	}
	// With handlers configured, no job of another type can exist: a
	// control on it is a mistake (a misspelt type), said as such.
	var ve *domain.ValidationError
	if err := s.opts.Types.Check(name); errors.As(err, &ve) {
		return JobType{}, &domain.ValidationError{Field: "name", Message: ve.Message}
	}
	c, err := s.store.SetTypeControl(ctx, name, ch)
	if err != nil {
		return JobType{}, fmt.Errorf("%s job type %s: %w", op, name, err)
	}
	t := JobType{TypeControl: c}
	if t.Stats, err = s.store.Stats(ctx, store.StatsQuery{Type: name, Owner: a.scope}); err != nil {
		return JobType{}, fmt.Errorf("%s job type %s: count its jobs: %w", op, name, err)
	}
	return t, nil
}

// checkTypeName checks a type's name by the rule of a job's type; the
// error names the field "name".
func checkTypeName(name string) error { return domain.ValidateTag(name, "name") }

// TypeWatch is a stream of changes of job types' controls, each with
// the counts of the type's jobs the watcher sees.
type TypeWatch struct {
	s   *Service
	a   access
	sub *broker.TypeSubscription
}

// WatchTypes subscribes to the changes of job types' controls (pause,
// resume, limits), made by any process sharing the store. A caller that
// sees only its own jobs (a user) gets the changes of the types it has
// jobs of, with its own counts, as in JobTypes; the others get every
// change. The watch ends when ctx is done or on Close.
func (s *Service) WatchTypes(ctx context.Context) (*TypeWatch, error) {
	a := accessOf(ctx)
	if err := a.allow("watch", false); err != nil {
		return nil, err
	}
	sub, err := s.events.SubscribeTypes(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe to job type changes: %w", err)
	}
	return &TypeWatch{s: s, a: a, sub: sub}, nil
}

// Next waits for the next change the watcher sees and returns the type
// as it changed, with its counts read now. It returns an error when the
// watch ended (broker.ErrClosed when the server stops) or ctx is done.
func (w *TypeWatch) Next(ctx context.Context) (JobType, error) {
	for {
		c, err := w.sub.Next(ctx)
		if err != nil {
			return JobType{}, err
		}
		t := JobType{TypeControl: c}
		if t.Stats, err = w.s.store.Stats(ctx, store.StatsQuery{Type: c.Name, Owner: w.a.scope}); err != nil {
			return JobType{}, fmt.Errorf("count the jobs of type %s: %w", c.Name, err)
		}
		// A cleared type (resumed, limits removed) is still a change
		// the unscoped watchers see.
		if w.a.scope == "" || t.Stats != (domain.Stats{}) {
			return t, nil
		}
	}
}

// Close ends the watch.
func (w *TypeWatch) Close() { w.sub.Close() }
