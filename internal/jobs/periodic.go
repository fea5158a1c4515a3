package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/periodic"
)

// DefaultTimezone is the time zone of a periodic job defined without one.
const DefaultTimezone = "UTC"

// DefaultMaxPeriodicJobs is how many periodic jobs may be defined when
// Options.MaxPeriodicJobs is zero. Each scheduler pass reads them all, and
// the APIs list them whole.
const DefaultMaxPeriodicJobs = 1000

// maxPeriodicJobs is the bound on the number of periodic jobs.
func (s *Service) maxPeriodicJobs() int {
	if s.opts.MaxPeriodicJobs > 0 {
		return s.opts.MaxPeriodicJobs
	}
	return DefaultMaxPeriodicJobs
}

// PeriodicRequest is a periodic job definition as the APIs (and
// PERIODIC_FILE) give it. Field names in errors are GraphQL's
// (PeriodicJobInput).
type PeriodicRequest struct {
	Name     string
	Schedule string
	// Timezone is an IANA name; nil means DefaultTimezone.
	Timezone *string
	// Paused, nil means false.
	Paused *bool
	// Job is the template, checked as createJob's input is (its errors
	// name job.<field>), without idempotencyKey and runAt: each tick makes
	// a new job, to run at once.
	Job CreateRequest
}

// Periodic is a periodic job as the APIs show it: its definition and
// when it ticks next.
type Periodic struct {
	*domain.PeriodicJob
	// NextRunAt is the next tick; nil while paused. A tick in the past
	// is due: no scheduler ran since.
	NextRunAt *time.Time
}

// PeriodicConflictError refuses an API change of a periodic job defined
// by the server's PERIODIC_FILE. It wraps domain.ErrConflict.
type PeriodicConflictError struct {
	Name string
	File string
}

func (e *PeriodicConflictError) Error() string {
	file := "the server's PERIODIC_FILE"
	if e.File != "" {
		file = fmt.Sprintf("PERIODIC_FILE %s", e.File)
	}
	return fmt.Sprintf("periodic job %q is defined by %s; change it there", e.Name, file)
}

// Unwrap makes errors.Is(err, domain.ErrConflict) true.
func (e *PeriodicConflictError) Unwrap() error { return domain.ErrConflict }

// PutPeriodic creates or replaces the periodic job req names, from the
// API. Only operators may (see accessOf). A broken rule is a
// *domain.ValidationError; a definition of the file a
// *PeriodicConflictError. A change reaches the scheduler at once.
func (s *Service) PutPeriodic(ctx context.Context, req PeriodicRequest) (*Periodic, error) {
	if err := accessOf(ctx).allowPeriodic("define", true); err != nil {
		return nil, err
	}
	def, err := s.periodicJob(req, domain.PeriodicFromAPI)
	if err != nil {
		return nil, err
	}
	if err := s.roomForPeriodic(ctx, def.Name); err != nil {
		return nil, err
	}
	p, err := s.store.PutPeriodic(ctx, def)
	if errors.Is(err, domain.ErrConflict) {
		return nil, &PeriodicConflictError{Name: def.Name, File: s.opts.PeriodicFile}
	}
	if err != nil {
		return nil, fmt.Errorf("put periodic job %s: %w", def.Name, err)
	}
	s.periodicChanged()
	return periodicView(p), nil
}

// DeletePeriodic deletes the periodic job name, defined through the API;
// the jobs it created are kept. Only operators may. An unknown name wraps
// domain.ErrNotFound; one of the file is a *PeriodicConflictError.
func (s *Service) DeletePeriodic(ctx context.Context, name string) error {
	if err := accessOf(ctx).allowPeriodic("delete", true); err != nil {
		return err
	}
	err := s.store.DeletePeriodic(ctx, name, domain.PeriodicFromAPI)
	if errors.Is(err, domain.ErrConflict) {
		return &PeriodicConflictError{Name: name, File: s.opts.PeriodicFile}
	}
	if err != nil {
		return fmt.Errorf("delete periodic job %s: %w", name, err)
	}
	s.periodicChanged()
	return nil
}

// ListPeriodic returns every periodic job, by name, to callers who see
// every job (not a user: see allowPeriodic).
func (s *Service) ListPeriodic(ctx context.Context) ([]*Periodic, error) {
	if err := accessOf(ctx).allowPeriodic("list", false); err != nil {
		return nil, err
	}
	defs, err := s.store.ListPeriodic(ctx)
	if err != nil {
		return nil, fmt.Errorf("list periodic jobs: %w", err)
	}
	out := make([]*Periodic, len(defs))
	for i, p := range defs {
		out[i] = periodicView(p)
	}
	return out, nil
}

// ApplyPeriodicFile makes the definitions from the file the server's
// PERIODIC_FILE: each is checked as PutPeriodic checks one (an error names
// it by its place, periodic[i].field), then all are stored, replacing any
// of the same name, and the definitions of an earlier version of the file
// that it no longer holds are deleted. Nothing is stored when one breaks a
// rule. It is the server's configuration: no access rule applies.
func (s *Service) ApplyPeriodicFile(ctx context.Context, reqs []PeriodicRequest) error {
	if limit := s.maxPeriodicJobs(); len(reqs) > limit {
		return &domain.ValidationError{Field: "periodic", Message: fmt.Sprintf("holds %d definitions; at most %d periodic jobs may be defined (MAX_PERIODIC_JOBS)", len(reqs), limit)}
	}
	defs := make([]domain.PeriodicJob, len(reqs))
	names := make(map[string]bool, len(reqs))
	for i, req := range reqs {
		def, err := s.periodicJob(req, domain.PeriodicFromFile)
		if err != nil {
			return prefixField(fmt.Sprintf("periodic[%d].", i), err)
		}
		if names[def.Name] {
			return &domain.ValidationError{Field: fmt.Sprintf("periodic[%d].name", i), Message: fmt.Sprintf("%q is defined twice", def.Name)}
		}
		names[def.Name] = true
		defs[i] = def
	}
	for _, def := range defs {
		if _, err := s.store.PutPeriodic(ctx, def); err != nil {
			return fmt.Errorf("put periodic job %s: %w", def.Name, err)
		}
	}
	stored, err := s.store.ListPeriodic(ctx)
	if err != nil {
		return fmt.Errorf("list periodic jobs: %w", err)
	}
	for _, p := range stored {
		if p.Source == domain.PeriodicFromFile && !names[p.Name] {
			if err := s.store.DeletePeriodic(ctx, p.Name, domain.PeriodicFromFile); err != nil && !errors.Is(err, domain.ErrNotFound) {
				return fmt.Errorf("delete periodic job %s, gone from the file: %w", p.Name, err)
			}
		}
	}
	s.periodicChanged()
	return nil
}

// roomForPeriodic refuses a new periodic job named name when as many as
// the bound are defined (replacing one is always allowed). The count is
// read before the write: two operators defining new ones at the same
// instant may pass the bound by one each, which is harmless for a bound
// on the scheduler's work, and only operators may define them.
func (s *Service) roomForPeriodic(ctx context.Context, name string) error {
	defs, err := s.store.ListPeriodic(ctx)
	if err != nil {
		return fmt.Errorf("list periodic jobs: %w", err)
	}
	limit := s.maxPeriodicJobs()
	if len(defs) < limit {
		return nil
	}
	for _, p := range defs {
		if p.Name == name {
			return nil
		}
	}
	return &domain.ValidationError{Field: "name", Message: fmt.Sprintf("%d periodic jobs are defined, the most the server allows (MAX_PERIODIC_JOBS); delete one first", len(defs))}
}

// periodicJob checks req and returns the definition to store.
func (s *Service) periodicJob(req PeriodicRequest, source domain.PeriodicSource) (domain.PeriodicJob, error) {
	def := domain.PeriodicJob{Name: req.Name, Schedule: req.Schedule, Timezone: DefaultTimezone, Source: source}
	if req.Timezone != nil {
		def.Timezone = *req.Timezone
	}
	if req.Paused != nil {
		def.Paused = *req.Paused
	}
	if err := domain.ValidatePeriodicName(def.Name); err != nil {
		return def, err
	}
	if _, err := periodic.Parse(def.Schedule, def.Timezone); err != nil {
		return def, err
	}
	switch {
	case req.Job.IdempotencyKey != nil:
		return def, &domain.ValidationError{Field: "job.idempotencyKey", Message: "is not allowed in a periodic job: each tick makes a new job"}
	case req.Job.RunAt != nil:
		return def, &domain.ValidationError{Field: "job.runAt", Message: "is not allowed in a periodic job: each tick's job runs at once"}
	}
	// The periodic job's tag joins the template's, last, so that an
	// error about one of those names it by its place in the input.
	tmpl := req.Job
	tmpl.Tags = append(append([]string(nil), req.Job.Tags...), domain.PeriodicTag(def.Name))
	nj, err := s.newJob(tmpl)
	if err != nil {
		return def, prefixField("job.", err)
	}
	def.Job = domain.JobTemplate{Type: nj.Type, Payload: nj.Payload, Timeout: nj.Timeout, MaxAttempts: max(nj.MaxAttempts, 1), Priority: nj.Priority, Tags: nj.Tags}
	return def, nil
}

// prefixField puts prefix before the field a validation error names.
func prefixField(prefix string, err error) error {
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		return &domain.ValidationError{Field: prefix + ve.Field, Message: ve.Message}
	}
	return err
}

func (s *Service) periodicChanged() {
	if s.opts.PeriodicChanged != nil {
		s.opts.PeriodicChanged()
	}
}

// periodicView adds the next tick to a definition.
func periodicView(p *domain.PeriodicJob) *Periodic {
	v := &Periodic{PeriodicJob: p}
	if p.Paused {
		return v
	}
	sched, err := periodic.Parse(p.Schedule, p.Timezone)
	if err != nil {
		return v
	}
	if next := sched.Next(periodic.Since(p)); !next.IsZero() {
		v.NextRunAt = &next
	}
	return v
}
