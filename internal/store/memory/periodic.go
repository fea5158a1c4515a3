package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// PutPeriodic stores a periodic job definition (see store.Periodics).
func (s *Store) PutPeriodic(ctx context.Context, p domain.PeriodicJob) (*domain.PeriodicJob, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("put periodic job %s: %w", p.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	put, _, err := store.ReplacePeriodic(s.periodics[p.Name], p, s.now())
	if err != nil {
		return nil, fmt.Errorf("put periodic job %s: %w", p.Name, err)
	}
	s.periodics[p.Name] = put
	return put, nil
}

// DeletePeriodic deletes a periodic job definition of source.
func (s *Store) DeletePeriodic(ctx context.Context, name string, source domain.PeriodicSource) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete periodic job %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.periodics[name]
	switch {
	case !ok:
		return fmt.Errorf("delete periodic job %s: %w", name, domain.ErrNotFound)
	case old.Source != source:
		return fmt.Errorf("delete periodic job %s: defined by the %s: %w", name, old.Source, domain.ErrConflict)
	}
	delete(s.periodics, name)
	return nil
}

// ListPeriodic returns every periodic job definition, by name.
func (s *Store) ListPeriodic(ctx context.Context) ([]*domain.PeriodicJob, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list periodic jobs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*domain.PeriodicJob, 0, len(s.periodics))
	for _, p := range s.periodics {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *domain.PeriodicJob) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// EnqueuePeriodic creates the job of a tick under the lock that also
// advances the definition's last tick.
func (s *Store) EnqueuePeriodic(ctx context.Context, t store.PeriodicTick) (*domain.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("enqueue periodic job %s: %w", t.Name, err)
	}
	fresh, err := s.newJobs([]domain.NewJob{t.Job})
	if err != nil {
		return nil, fmt.Errorf("enqueue periodic job %s: %w", t.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.periodics[t.Name]
	if !ok || old.Revision != t.Revision || old.Paused || old.LastRunAt != nil && !old.LastRunAt.Before(t.At) {
		return nil, nil
	}
	j := s.insert(fresh)[0]
	p := *old
	at := t.At.UTC()
	p.LastRunAt, p.LastJobID = &at, j.ID
	s.periodics[t.Name] = &p
	return j, nil
}
