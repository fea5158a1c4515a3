package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// Periodics keeps periodic job definitions and creates their jobs, one
// per tick. It is part of Store.
//
// Uniqueness of ticks is the store's: each definition keeps the tick of
// its last job (LastRunAt), and EnqueuePeriodic advances it with a
// compare-and-set in the transaction that inserts the job. However many
// schedulers (in one process or many sharing the store) race for a tick,
// and whatever they did before a restart or a failover, one job at most
// is created per definition and tick, and never for a tick at or before
// the last one.
type Periodics interface {
	// PutPeriodic stores p by its name (Name, Schedule, Timezone, Paused,
	// Source and Job; the store sets the rest) and returns the definition
	// as stored. A new definition gets Revision 1. Replacing one that
	// differs in any of those fields makes a new revision with UpdatedAt
	// now; an identical one is left as it is (same revision and
	// UpdatedAt), so that applying the same file at every start changes
	// nothing. LastRunAt and LastJobID are kept. A definition from the
	// API (p.Source PeriodicFromAPI) never replaces one from the file:
	// that gives an error wrapping domain.ErrConflict; one from the file
	// replaces any.
	PutPeriodic(ctx context.Context, p domain.PeriodicJob) (*domain.PeriodicJob, error)
	// DeletePeriodic deletes the definition with the name if it comes
	// from source; one from another source is kept and gives an error
	// wrapping domain.ErrConflict, an unknown name domain.ErrNotFound.
	// The jobs it created are kept.
	DeletePeriodic(ctx context.Context, name string, source domain.PeriodicSource) error
	// ListPeriodic returns every definition, by name.
	ListPeriodic(ctx context.Context) ([]*domain.PeriodicJob, error)
	// EnqueuePeriodic creates the job of one tick, t.Job, pending and
	// published as Create does, if the definition t.Name is still at
	// t.Revision, is not paused, and its LastRunAt is before t.At; in
	// the same transaction LastRunAt becomes t.At and LastJobID the new
	// job's id. Otherwise it creates nothing and returns a nil job: the
	// tick was taken (by another scheduler, or a later tick was), or the
	// definition changed, was paused or deleted since it was read.
	EnqueuePeriodic(ctx context.Context, t PeriodicTick) (*domain.Job, error)
}

// PeriodicTick is one tick of a periodic job, as a scheduler computed it
// from a definition.
type PeriodicTick struct {
	Name     string
	Revision int64
	// At is the tick's scheduled time.
	At  time.Time
	Job domain.NewJob
}

// ReplacePeriodic is the rule of PutPeriodic that every store applies:
// what it stores when p is put at now over old (nil for none). It returns
// the definition as stored and whether it must be written (false: old is
// identical and stays as it is), or an error wrapping domain.ErrConflict
// when p comes from the API and old from the file.
func ReplacePeriodic(old *domain.PeriodicJob, p domain.PeriodicJob, now time.Time) (*domain.PeriodicJob, bool, error) {
	switch {
	case old == nil:
		p.Revision, p.UpdatedAt, p.LastRunAt, p.LastJobID = 1, now, nil, ""
		return &p, true, nil
	case old.Source == domain.PeriodicFromFile && p.Source != domain.PeriodicFromFile:
		return nil, false, fmt.Errorf("defined by the file: %w", domain.ErrConflict)
	case SamePeriodic(old, &p):
		return old, false, nil
	}
	p.Revision, p.UpdatedAt, p.LastRunAt, p.LastJobID = old.Revision+1, now, old.LastRunAt, old.LastJobID
	return &p, true, nil
}

// SamePeriodic reports whether a and b define the same periodic job
// (everything PutPeriodic takes), so that a store can leave an identical
// definition alone.
func SamePeriodic(a, b *domain.PeriodicJob) bool {
	ta, tb := a.Job, b.Job
	return a.Name == b.Name && a.Schedule == b.Schedule && a.Timezone == b.Timezone && a.Paused == b.Paused && a.Source == b.Source &&
		ta.Type == tb.Type && string(ta.Payload) == string(tb.Payload) && ta.Timeout == tb.Timeout &&
		ta.MaxAttempts == tb.MaxAttempts && ta.Priority == tb.Priority && slices.Equal(ta.Tags, tb.Tags)
}
