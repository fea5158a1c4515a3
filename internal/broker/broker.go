// Package broker fans job changes out to subscribers in process.
//
// Publish never blocks: it appends the change to the broker's queue and
// returns. One fan-out goroutine owned by the broker hands each change to the
// matching subscriptions with non-blocking sends, so a slow subscriber never
// delays the others or the publisher.
//
// Slow subscribers: each subscription has a channel of Options.Buffer
// changes. When it is full, changes wait in the subscription's backlog and a
// short-lived pump goroutine feeds them in order as the reader catches up.
// Once the backlog holds Options.CoalesceAfter changes, a new change of a job
// that already has a change waiting replaces it, so a lagging subscriber gets
// the latest state of each job: intermediate states may be skipped, final
// states never are (a waiting final state is not replaced, even by the
// pending state of a manual retry). If the backlog still reaches Options.MaxBacklog, the
// subscription ends with ErrSlowSubscriber, which its owner can show to the
// client. Changes of one job always reach a subscription in version order.
//
// Readers need not block on a subscription's channel: OnReady registers a
// callback that the broker calls whenever it puts a change into the channel
// or closes it, so a server can drain many subscriptions from one goroutine
// that runs only when there is something to take.
package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// ErrSlowSubscriber ends a subscription whose reader fell too far behind.
var ErrSlowSubscriber = errors.New("subscriber too slow: more undelivered job changes than the server keeps per subscription; resubscribe to continue")

// ErrClosed is returned by Subscribe once the broker has stopped (Run).
var ErrClosed = errors.New("broker closed")

// Options tune a Broker. Zero values get the defaults.
type Options struct {
	// Buffer is the capacity of each subscription's channel. Default 32.
	Buffer int
	// CoalesceAfter is the backlog length from which changes of one job
	// replace each other. Default 1024.
	CoalesceAfter int
	// MaxBacklog is the backlog length that ends a subscription with
	// ErrSlowSubscriber. Default 16384.
	MaxBacklog int
}

func (o Options) withDefaults() Options {
	if o.Buffer <= 0 {
		o.Buffer = 32
	}
	if o.CoalesceAfter <= 0 {
		o.CoalesceAfter = 1024
	}
	if o.MaxBacklog <= 0 {
		o.MaxBacklog = 16384
	}
	if o.CoalesceAfter > o.MaxBacklog {
		o.CoalesceAfter = o.MaxBacklog
	}
	return o
}

// coalesceWindow bounds how far back from the newest backlog entry a change
// looks for an older change of the same job to replace. Changes of one job
// cluster in time, so the window finds them without a per-subscription index.
const coalesceWindow = 64

// Broker is an in-process pub/sub of job changes. It is safe for concurrent
// use. Create it with New; it delivers while Run runs.
type Broker struct {
	opts Options

	mu     sync.Mutex
	queue  []*domain.Job
	spare  []*domain.Job
	busy   bool // the fan-out goroutine is delivering a batch
	closed bool
	ran    atomic.Bool
	wake   chan struct{}

	subsMu sync.RWMutex
	all    []*Subscription // subscriptions without an id filter
	byJob  map[string][]*Subscription
	// draining holds subscriptions that ended by themselves (a final state,
	// or too slow) while changes may still wait in their channels: Flush
	// waits for those too.
	draining []*Subscription
	// subsChanged is closed (and cleared) when a subscription is
	// registered or unregistered; nil while nobody waits (WaitSubscribers).
	subsChanged chan struct{}

	wg sync.WaitGroup // pumps

	// progress is closed (and cleared) when something Flush waits for may
	// have happened; nil while nobody waits.
	progress atomic.Pointer[chan struct{}]

	types     typeFeed     // changes of job types' controls (types.go)
	coalesced atomic.Int64 // changes replaced by a newer one in a backlog
	slow      atomic.Int64 // subscriptions ended with ErrSlowSubscriber
}

// Coalesced returns how many changes a lagging subscription skipped
// because a newer change of the same job replaced them. Safe for
// concurrent use.
func (b *Broker) Coalesced() int64 { return b.coalesced.Load() }

// SlowSubscribers returns how many subscriptions ended with
// ErrSlowSubscriber. Safe for concurrent use.
func (b *Broker) SlowSubscribers() int64 { return b.slow.Load() }

// signal wakes Flush callers, if any, to look again.
func (b *Broker) signal() {
	if p := b.progress.Load(); p != nil && b.progress.CompareAndSwap(p, nil) {
		close(*p)
	}
}

// New returns a broker. It takes subscriptions and publishes at once, and
// delivers the changes published once Run runs.
func New(opts Options) *Broker {
	return &Broker{
		opts:  opts.withDefaults(),
		wake:  make(chan struct{}, 1),
		byJob: make(map[string][]*Subscription),
	}
}

// Publish queues a job change for delivery and returns at once. Callers
// publish each job's changes in version order (stores do so under their
// lock); the broker keeps that order. Publishing once Run has returned is a
// no-op.
func (b *Broker) Publish(job *domain.Job) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.queue = append(b.queue, job)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Run is the fan-out: it hands each published change to the matching
// subscriptions until ctx is done. Then it delivers what was already
// published, ends every subscription (closing its channel), and returns
// once the pumps it started have exited; later publishes are dropped and
// Subscribe returns ErrClosed. Run may be called once; it returns nil.
func (b *Broker) Run(ctx context.Context) error {
	if !b.ran.CompareAndSwap(false, true) {
		return errors.New("broker: Run called twice")
	}
	for {
		select {
		case <-b.wake:
			b.deliverQueued()
		case <-ctx.Done():
			b.close()
			return nil
		}
	}
}

func (b *Broker) deliverQueued() {
	b.mu.Lock()
	batch := b.queue
	b.queue = b.spare[:0]
	b.busy = len(batch) > 0
	b.mu.Unlock()
	if len(batch) == 0 {
		b.spare = batch
		return
	}
	defer func() {
		b.mu.Lock()
		b.busy = false
		b.mu.Unlock()
		b.signal()
	}()

	var ended []*Subscription
	b.subsMu.RLock()
	for _, j := range batch {
		for _, s := range b.all {
			if s.filter.matches(j) && s.deliver(j) {
				ended = append(ended, s)
			}
		}
		for _, s := range b.byJob[j.ID] {
			if s.filter.matches(j) && s.deliver(j) {
				ended = append(ended, s)
			}
		}
	}
	b.subsMu.RUnlock()
	for _, s := range ended {
		b.retire(s)
	}
	clear(batch)
	b.spare = batch
}

// Filter selects the changes a subscription receives. Zero fields match
// everything.
type Filter struct {
	// ID, when set, limits the subscription to one job. Such a subscription
	// starts only once Prime gives it the job's current state, and it ends
	// by itself after delivering the job's final state.
	ID string
	// Type, when set, limits the subscription to jobs of that type.
	Type string
	// Owner, when set, limits the subscription to jobs of that owner
	// (domain.Job.Owner): what a caller who may see only its own jobs
	// subscribes with.
	Owner string
	// Tag, when set, limits the subscription to jobs carrying that tag.
	Tag string
}

// matches reports whether j passes the filter's Type, Owner and Tag (the ID
// selects the subscriptions a change is offered to).
func (f *Filter) matches(j *domain.Job) bool {
	return (f.Type == "" || f.Type == j.Type) && (f.Owner == "" || f.Owner == j.Owner) && (f.Tag == "" || j.HasTag(f.Tag))
}

// Subscribe registers a subscription. It ends when ctx is done, when the
// broker closes, when (for an ID filter) the job reaches a final state, or
// with ErrSlowSubscriber (see Err). A ctx that is never done (see
// context.WithoutCancel) is not watched, which spares the subscription a
// registration with ctx: its owner ends it with Close.
func (b *Broker) Subscribe(ctx context.Context, f Filter) (*Subscription, error) {
	s := &Subscription{
		b:      b,
		filter: f,
		ch:     make(chan *domain.Job, b.opts.Buffer),
		done:   make(chan struct{}),
		primed: f.ID == "",
	}
	b.subsMu.Lock()
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		b.subsMu.Unlock()
		return nil, ErrClosed
	}
	if f.ID == "" {
		b.all = append(b.all, s)
	} else {
		b.byJob[f.ID] = append(b.byJob[f.ID], s)
	}
	b.subscribersChangedLocked()
	b.subsMu.Unlock()
	if ctx.Done() == nil {
		return s, nil
	}
	stop := context.AfterFunc(ctx, func() { b.unsubscribe(s) })
	s.mu.Lock()
	s.stopWatch = stop
	if s.readerGone {
		stop()
	}
	s.mu.Unlock()
	return s, nil
}

func (b *Broker) unsubscribe(s *Subscription) {
	b.remove(s)
	s.mu.Lock()
	s.readerGone = true
	s.endLocked(nil)
	s.mu.Unlock()
	b.signal()
}

func (b *Broker) remove(s *Subscription) {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	defer b.subscribersChangedLocked()
	if s.filter.ID == "" {
		b.all = removeSub(b.all, s)
		return
	}
	subs := removeSub(b.byJob[s.filter.ID], s)
	if len(subs) == 0 {
		delete(b.byJob, s.filter.ID)
	} else {
		b.byJob[s.filter.ID] = subs
	}
}

// retire unregisters a subscription that ended by itself, keeping it for
// Flush until its reader has taken what its channel still holds.
func (b *Broker) retire(s *Subscription) {
	b.remove(s)
	b.subsMu.Lock()
	// Pruned here too, so the list only ever holds subscriptions whose
	// readers have something left to take.
	b.draining = append(slices.DeleteFunc(b.draining, func(d *Subscription) bool { return !d.undelivered() }), s)
	b.subsMu.Unlock()
}

func removeSub(subs []*Subscription, s *Subscription) []*Subscription {
	for i, x := range subs {
		if x == s {
			last := len(subs) - 1
			subs[i] = subs[last]
			subs[last] = nil
			return subs[:last]
		}
	}
	return subs
}

// Subscribers reports how many subscriptions are registered.
func (b *Broker) Subscribers() int {
	b.subsMu.RLock()
	defer b.subsMu.RUnlock()
	return b.subscribersLocked()
}

func (b *Broker) subscribersLocked() int {
	n := len(b.all)
	for _, subs := range b.byJob {
		n += len(subs)
	}
	return n
}

// WaitSubscribers waits until exactly n subscriptions are registered, or
// until ctx is done. It wakes on every registration and removal rather
// than polling, so a caller (a test that must know its subscription is
// live before it publishes) learns of the change as soon as it happens.
func (b *Broker) WaitSubscribers(ctx context.Context, n int) error {
	for {
		b.subsMu.Lock()
		have := b.subscribersLocked()
		if have == n {
			b.subsMu.Unlock()
			return nil
		}
		if b.subsChanged == nil {
			b.subsChanged = make(chan struct{})
		}
		changed := b.subsChanged
		b.subsMu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d subscribers (%d registered): %w", n, have, ctx.Err())
		}
	}
}

// subscribersChangedLocked wakes WaitSubscribers callers. subsMu is held.
func (b *Broker) subscribersChangedLocked() {
	if b.subsChanged != nil {
		close(b.subsChanged)
		b.subsChanged = nil
	}
}

// Flush waits until everything published so far has been taken from the
// subscriptions' channels and acknowledged (Subscription.Ack) by their
// readers, except readers that left, or until ctx is done. Shutdown uses it
// so that subscribers receive the final states of the last jobs before
// their connections close. It waits on a signal that acknowledgements, the
// end of a fan-out batch and leaving readers give, not on a timer.
func (b *Broker) Flush(ctx context.Context) error {
	for {
		// Armed before looking, so that progress made meanwhile wakes us.
		p := b.progress.Load()
		if p == nil {
			ch := make(chan struct{})
			if !b.progress.CompareAndSwap(nil, &ch) {
				continue
			}
			p = &ch
		}
		if b.flushed() {
			return nil
		}
		select {
		case <-*p:
		case <-ctx.Done():
			return fmt.Errorf("flush job events: %w", ctx.Err())
		}
	}
}

// flushed reports whether no published change waits in the broker or in a
// subscription's channel.
func (b *Broker) flushed() bool {
	b.mu.Lock()
	queued := len(b.queue) > 0 || b.busy
	b.mu.Unlock()
	if queued {
		return false
	}
	waiting := (*Subscription).undelivered
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	b.draining = slices.DeleteFunc(b.draining, func(s *Subscription) bool { return !s.undelivered() })
	if len(b.draining) > 0 || slices.ContainsFunc(b.all, waiting) {
		return false
	}
	for _, subs := range b.byJob {
		if slices.ContainsFunc(subs, waiting) {
			return false
		}
	}
	return true
}

// close delivers what was already published, ends every subscription
// (closing its channel) and waits for the pumps to exit.
func (b *Broker) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.deliverQueued()

	b.subsMu.Lock()
	var subs []*Subscription
	subs = append(subs, b.all...)
	for _, ss := range b.byJob {
		subs = append(subs, ss...)
	}
	b.subsMu.Unlock()
	for _, s := range subs {
		b.unsubscribe(s)
	}
	b.closeTypes()
	b.wg.Wait()
}

// Subscription is one subscriber's stream of job changes. Read it from C.
type Subscription struct {
	b      *Broker
	filter Filter
	ch     chan *domain.Job

	stopWatch func() bool

	mu          sync.Mutex
	backlog     []*domain.Job // waiting for room in ch; backlog[0] may be in flight
	pumping     bool
	primed      bool
	ended       bool
	chClosed    bool
	lastVersion int64 // ID filters only: newest version handed on
	readerGone  bool  // unsubscribed: nobody will read what is left
	outstanding int   // changes put into ch that the reader has not Acked
	err         error
	done        chan struct{}
	notify      func() // from OnReady
}

// C returns the channel of changes. It is closed exactly once, when the
// subscription ends.
func (s *Subscription) C() <-chan *domain.Job { return s.ch }

// Close ends the subscription and unregisters it; its channel closes.
// It is idempotent.
func (s *Subscription) Close() { s.b.unsubscribe(s) }

// Err reports why the subscription ended: ErrSlowSubscriber, or nil.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Prime starts a subscription with an ID filter: current is the job's
// state read after Subscribe, and it is delivered first. Changes published
// meanwhile that are not newer than current are dropped. If current is
// final, the subscription delivers it and ends.
func (s *Subscription) Prime(current *domain.Job) {
	s.mu.Lock()
	if s.primed || s.ended {
		s.mu.Unlock()
		return
	}
	s.primed = true
	waiting := s.backlog
	s.backlog = nil
	s.offerLocked(current)
	for _, j := range waiting {
		s.offerLocked(j)
	}
	ended := s.ended
	s.mu.Unlock()
	if ended {
		s.b.retire(s)
	}
}

// undelivered reports whether changes wait for this subscription's reader.
func (s *Subscription) undelivered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.readerGone && (s.outstanding > 0 || s.pumping || (!s.ended && len(s.backlog) > 0))
}

// Ack tells the broker that the reader has taken one change from C and
// handed it on (for a server: to the transport that writes it). Flush
// counts a change as delivered only once it is acknowledged, so a reader
// that wants Flush to wait for its writes acknowledges after making them
// visible to its own accounting. Safe for concurrent use.
func (s *Subscription) Ack() {
	s.mu.Lock()
	if s.outstanding > 0 {
		s.outstanding--
	}
	idle := s.outstanding == 0
	s.mu.Unlock()
	if idle {
		s.b.signal()
	}
}

// OnReady registers f, which the broker calls whenever it puts a change
// into C or closes C, and calls it at once if C holds a change or is
// closed already. f is called with the subscription's lock held, from the
// fan-out goroutine, a pump, or whoever ends the subscription: it must not
// block nor call the subscription's methods. A later call replaces f.
func (s *Subscription) OnReady(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notify = f
	if len(s.ch) > 0 || s.chClosed {
		f()
	}
}

// readyLocked calls the OnReady callback, if any.
func (s *Subscription) readyLocked() {
	if s.notify != nil {
		s.notify()
	}
}

// deliver offers a change and reports whether the subscription ended.
func (s *Subscription) deliver(j *domain.Job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.primed {
		if !s.ended {
			s.backlog = append(s.backlog, j)
		}
		return false
	}
	s.offerLocked(j)
	return s.ended
}

// offerLocked hands j on in order: straight into the channel when nothing is
// waiting, otherwise through the backlog and the pump.
func (s *Subscription) offerLocked(j *domain.Job) {
	if s.ended {
		return
	}
	if s.filter.ID != "" {
		if j.Version <= s.lastVersion {
			return
		}
		s.lastVersion = j.Version
	}
	if len(s.backlog) == 0 && !s.pumping {
		select {
		case s.ch <- j:
			s.outstanding++
			s.readyLocked()
			if s.filter.ID != "" && j.Status.Final() {
				s.endLocked(nil)
			}
			return
		default:
		}
	}
	if n := len(s.backlog); n >= s.b.opts.CoalesceAfter {
		// Replace the newest waiting change of this job, never backlog[0]:
		// the pump may be sending it.
		for i := n - 1; i >= 1 && i >= n-coalesceWindow; i-- {
			if s.backlog[i].ID == j.ID {
				if s.backlog[i].Status.Final() {
					break // a final state is never skipped, even if a retry follows it
				}
				s.backlog[i] = j
				s.b.coalesced.Add(1)
				return
			}
		}
		if n >= s.b.opts.MaxBacklog {
			s.b.slow.Add(1)
			s.endLocked(ErrSlowSubscriber)
			return
		}
	}
	s.backlog = append(s.backlog, j)
	if !s.pumping {
		s.pumping = true
		s.b.wg.Add(1)
		go s.pump()
	}
}

// pump feeds the backlog into the channel in order. It exits when the
// backlog is empty or the subscription ends; the broker's WaitGroup waits
// for it. While it runs it is the channel's only sender.
func (s *Subscription) pump() {
	defer s.b.wg.Done()
	for {
		s.mu.Lock()
		if s.ended || len(s.backlog) == 0 {
			s.pumping = false
			s.closeChLocked()
			s.mu.Unlock()
			s.b.signal()
			return
		}
		j := s.backlog[0]
		s.outstanding++ // before the send: the reader may Ack at once
		s.mu.Unlock()

		sent := true
		select {
		case s.ch <- j:
		case <-s.done:
			sent = false
		}

		s.mu.Lock()
		if sent {
			s.readyLocked()
		} else {
			s.outstanding--
		}
		if !s.ended {
			s.backlog[0] = nil
			s.backlog = s.backlog[1:]
			if len(s.backlog) == 0 {
				s.backlog = nil // let the grown array go
			}
			if s.filter.ID != "" && j.Status.Final() {
				s.endLocked(nil)
				s.mu.Unlock()
				s.b.retire(s)
				continue // the next turn closes the channel and exits
			}
		}
		s.mu.Unlock()
	}
}

// endLocked ends the subscription once. The channel is closed by whoever is
// its sender: here when no pump runs, otherwise by the pump as it exits.
func (s *Subscription) endLocked(err error) {
	if s.ended {
		return
	}
	s.ended = true
	s.err = err
	s.backlog = nil
	close(s.done)
	if s.readerGone && s.stopWatch != nil {
		// Only once the reader left: a subscription that ended by itself
		// keeps watching its context, which tells the broker (Flush) when
		// the reader is gone with changes still in the channel.
		s.stopWatch()
	}
	if !s.pumping {
		s.closeChLocked()
	}
}

func (s *Subscription) closeChLocked() {
	if s.ended && !s.chClosed {
		s.chClosed = true
		close(s.ch)
		s.readyLocked()
	}
}
