package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
)

// WatchRequest selects the changes Watch streams. Zero fields match every
// job.
type WatchRequest struct {
	// ID, when not empty, watches one job: its current state first, then
	// its changes until it reaches a final state.
	ID string
	// Type, when not empty, watches only jobs of that type.
	Type string
	// Tag, when not empty, watches only jobs carrying that tag.
	Tag string
}

// Watch subscribes to the changes req selects among the jobs the caller
// sees (a caller that sees only its own jobs gets only their changes). For
// an ID it reads the job's current state after subscribing, so that no
// change made in between is missed, and primes the subscription with it
// (the broker drops what that state already covers); a job that does not
// exist, that the caller may not see, whose type is not req.Type or that
// does not carry req.Tag, gives an error wrapping domain.ErrNotFound and
// no subscription.
//
// The caller owns the returned subscription: it ends when ctx is done (or
// see broker.Broker.Subscribe for the other ends); Close ends it sooner.
func (s *Service) Watch(ctx context.Context, req WatchRequest) (*broker.Subscription, error) {
	a := accessOf(ctx)
	if err := a.allow("watch", false); err != nil {
		return nil, err
	}
	sub, err := s.events.Subscribe(ctx, broker.Filter{ID: req.ID, Type: req.Type, Tag: req.Tag, Owner: a.scope})
	if err != nil {
		return nil, fmt.Errorf("subscribe to job changes: %w", err)
	}
	if req.ID == "" {
		return sub, nil
	}
	current, err := s.store.Get(ctx, req.ID)
	if err == nil && !a.sees(current) {
		err = domain.ErrNotFound
	}
	if err == nil && req.Type != "" && current.Type != req.Type {
		err = fmt.Errorf("job has type %q: %w", current.Type, domain.ErrNotFound)
	}
	if err == nil && req.Tag != "" && !current.HasTag(req.Tag) {
		err = fmt.Errorf("job does not carry tag %q: %w", req.Tag, domain.ErrNotFound)
	}
	if err != nil {
		sub.Close()
		if errors.Is(err, domain.ErrNotFound) {
			return nil, fmt.Errorf("watch job %s: %w", req.ID, err)
		}
		return nil, fmt.Errorf("watch job %s: read its current state: %w", req.ID, err)
	}
	sub.Prime(current)
	return sub, nil
}
