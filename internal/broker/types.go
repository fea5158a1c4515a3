package broker

import (
	"context"
	"fmt"
	"sync"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// typeFeed fans changes of job types' controls out to TypeSubscriptions.
// Such changes are rare (an operator's), so each subscription keeps the
// latest controls of each type not yet read: a reader that falls behind
// gets every type's latest state, and the memory it costs is bounded by
// the number of types.
type typeFeed struct {
	mu     sync.Mutex
	subs   map[*TypeSubscription]struct{}
	closed bool
	// changed is closed (and cleared) when a subscription comes or goes;
	// nil while nobody waits (WaitTypeSubscribers).
	changed chan struct{}
}

// changedLocked wakes WaitTypeSubscribers callers; f.mu is held.
func (f *typeFeed) changedLocked() {
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

// WaitTypeSubscribers waits until exactly n type subscriptions are
// registered, or until ctx is done, waking on each registration and
// removal (for tests that must know a subscription is live).
func (b *Broker) WaitTypeSubscribers(ctx context.Context, n int) error {
	f := &b.types
	for {
		f.mu.Lock()
		have := len(f.subs)
		if have == n {
			f.mu.Unlock()
			return nil
		}
		if f.changed == nil {
			f.changed = make(chan struct{})
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d type subscribers (%d registered): %w", n, have, ctx.Err())
		}
	}
}

// PublishType hands a type's changed controls to every type subscription
// and returns at once. Safe for concurrent use.
func (b *Broker) PublishType(c domain.TypeControl) {
	f := &b.types
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.offer(c)
	}
}

// SubscribeTypes subscribes to the changes of job types' controls. The
// subscription ends when ctx is done, on Close, or when the broker stops
// (ErrClosed from Next); it starts no goroutine.
func (b *Broker) SubscribeTypes(ctx context.Context) (*TypeSubscription, error) {
	f := &b.types
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	if f.subs == nil {
		f.subs = make(map[*TypeSubscription]struct{})
	}
	s := &TypeSubscription{f: f, latest: make(map[string]domain.TypeControl), ready: make(chan struct{}, 1)}
	f.subs[s] = struct{}{}
	f.changedLocked()
	s.stop = context.AfterFunc(ctx, s.Close)
	return s, nil
}

// closeTypes ends every type subscription (the broker stops).
func (b *Broker) closeTypes() {
	f := &b.types
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.subs {
		s.end(ErrClosed)
	}
	clear(f.subs)
	f.changedLocked()
}

// TypeSubscription is one subscriber's stream of changes of job types'
// controls. Read it with Next. Safe for concurrent use.
type TypeSubscription struct {
	f     *typeFeed
	stop  func() bool
	ready chan struct{} // a value when something waits; capacity 1

	mu      sync.Mutex
	waiting []string // names of the types with a change not read, oldest first
	latest  map[string]domain.TypeControl
	err     error // set when the subscription ended
}

// offer keeps c as its type's latest change not read.
func (s *TypeSubscription) offer(c domain.TypeControl) {
	s.mu.Lock()
	if _, ok := s.latest[c.Name]; !ok {
		s.waiting = append(s.waiting, c.Name)
	}
	s.latest[c.Name] = c
	s.mu.Unlock()
	s.signal()
}

func (s *TypeSubscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

func (s *TypeSubscription) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.signal()
}

// Next returns the oldest change not read yet (the latest controls of its
// type), waiting for one. When the subscription has ended, it returns
// the changes still waiting, then the reason: ErrClosed when the broker
// stopped, context.Canceled after Close or the end of the subscription's
// context. It also returns when ctx is done, with ctx's error.
func (s *TypeSubscription) Next(ctx context.Context) (domain.TypeControl, error) {
	for {
		s.mu.Lock()
		if len(s.waiting) > 0 {
			name := s.waiting[0]
			s.waiting = s.waiting[1:]
			c := s.latest[name]
			delete(s.latest, name)
			s.mu.Unlock()
			return c, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return domain.TypeControl{}, err
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return domain.TypeControl{}, ctx.Err()
		}
	}
}

// Close ends the subscription and unregisters it. It is idempotent.
func (s *TypeSubscription) Close() {
	s.f.mu.Lock()
	delete(s.f.subs, s)
	s.f.changedLocked()
	s.f.mu.Unlock()
	if s.stop != nil {
		s.stop()
	}
	s.end(context.Canceled)
}
