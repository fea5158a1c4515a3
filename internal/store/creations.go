package store

import (
	"context"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// creationsKey is the context key of the function WithCreations installs.
type creationsKey struct{}

// WithCreations returns a context under which Create and CreateMany call
// f once for each job the call inserted, after it is stored, and never for
// a job returned for its idempotency key (stored before, or inserted by a
// racing call). Whether a call inserted a job is known exactly only to the
// store: the returned jobs look alike. Wrappers (metrics) use it to count
// the creations of their own calls; EnqueuePeriodic needs none, its job is
// nil when it inserted none.
func WithCreations(ctx context.Context, f func(*domain.Job)) context.Context {
	return context.WithValue(ctx, creationsKey{}, f)
}

// NoteCreated tells the function of ctx's WithCreations, if any, that the
// call of ctx inserted j. Stores call it from Create and CreateMany.
func NoteCreated(ctx context.Context, j *domain.Job) {
	if f, ok := ctx.Value(creationsKey{}).(func(*domain.Job)); ok {
		f(j)
	}
}
