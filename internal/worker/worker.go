// Package worker runs jobs: a dispatcher walks the store's runnable jobs and
// feeds their ids into a bounded channel; a pool of workers takes ids from
// it, claims each job atomically in the store, runs the handler for its type
// and records the outcome in the store.
//
// The store, not the channel, is the queue of record: a job waits in the
// store as pending until a worker claims it, and the dispatcher blocks while
// the channel is full instead of dropping ids. A job can therefore never be
// lost because the channel was full; it is merely fed in later. The
// dispatcher sleeps until told that a job became runnable (Publish), so an
// idle pool does no polling.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Store is the part of store.Store the pool needs.
type Store interface {
	Claim(ctx context.Context, id string) (*domain.Job, error)
	Finish(ctx context.Context, id string, status domain.Status, errMsg string) (*domain.Job, error)
	Complete(ctx context.Context, id string, result json.RawMessage) (*domain.Job, error)
	Progress(ctx context.Context, id string, percent int) (*domain.Job, error)
	Release(ctx context.Context, id string) (*domain.Job, error)
	Fail(ctx context.Context, id, errMsg string, retryAt time.Time) (*domain.Job, error)
	Runnable(ctx context.Context, now time.Time, limit int, exclude []string) ([]store.Ref, time.Time, error)
}

// Handler runs one job. It should return promptly once ctx is done; an
// error (or a panic) fails the job.
type Handler interface {
	Handle(ctx context.Context, job *domain.Job) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job *domain.Job) error

// Handle calls f(ctx, job).
func (f HandlerFunc) Handle(ctx context.Context, job *domain.Job) error { return f(ctx, job) }

// Options configure a Pool. Zero values get the defaults.
type Options struct {
	// Workers is how many jobs run at once. Default 1.
	Workers int
	// QueueCapacity is the capacity of the channel between the dispatcher
	// and the workers. Default 100.
	QueueCapacity int
	// Handlers maps job types to handlers; Default serves every other type.
	Handlers map[string]Handler
	Default  Handler
	Logger   *slog.Logger
	// JobTimeout bounds each attempt of a job that has no timeout of its
	// own. Default 5 minutes.
	JobTimeout time.Duration
	// RetryBackoff is the delay before the second attempt of a failed job;
	// each further attempt doubles it, up to RetryBackoffMax, with jitter
	// (a random half of the delay is taken off). Defaults 1s and 1h.
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	// ProgressInterval is the least time between two progress writes of
	// one job (see ReportProgress). Default 100 ms.
	ProgressInterval time.Duration
	// HandlerGrace is how long a handler may take to return once its
	// context is done (timeout, cancellation, shutdown) before the worker
	// stops waiting for it. Default 5 seconds.
	HandlerGrace time.Duration
}

// Defaults of Options.
const (
	DefaultJobTimeout   = 5 * time.Minute
	DefaultHandlerGrace = 5 * time.Second
	// DefaultProgressInterval is Options.ProgressInterval's default.
	DefaultProgressInterval = 100 * time.Millisecond
)

// Pool is a dispatcher and its workers. Create it with New, run it with
// Start, stop it with Shutdown. Its methods are safe for concurrent use.
type Pool struct {
	store Store
	opts  Options
	log   *slog.Logger
	queue chan store.Ref
	wake  chan struct{}

	// inQueue holds the ids handed to the channel and not yet claimed (or
	// given up) by a worker: the dispatcher keeps them out of its next
	// Runnable call, and keeps at most target of them, so that a job of
	// higher priority arriving later waits behind few others.
	inMu    sync.Mutex
	inQueue map[string]struct{}
	target  int

	startOnce    sync.Once
	shutdownOnce sync.Once
	runningMu    sync.Mutex
	running      map[string]*runningJob
	stopClaiming chan struct{}
	stopDispatch context.CancelFunc
	cancelJobs   context.CancelFunc
	dispatcherWG sync.WaitGroup
	workersWG    sync.WaitGroup
	handlersWG   sync.WaitGroup // handler goroutines, including abandoned ones
	released     atomic.Int64
}

var _ store.Publisher = (*Pool)(nil)

// New returns a pool over st. Nothing runs until Start.
func New(st Store, opts Options) *Pool {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.QueueCapacity <= 0 {
		opts.QueueCapacity = 100
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.JobTimeout <= 0 {
		opts.JobTimeout = DefaultJobTimeout
	}
	if opts.HandlerGrace <= 0 {
		opts.HandlerGrace = DefaultHandlerGrace
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = DefaultProgressInterval
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = time.Second
	}
	if opts.RetryBackoffMax < opts.RetryBackoff {
		opts.RetryBackoffMax = max(time.Hour, opts.RetryBackoff)
	}
	p := &Pool{
		store:        st,
		opts:         opts,
		log:          opts.Logger,
		queue:        make(chan store.Ref, opts.QueueCapacity),
		wake:         make(chan struct{}, 1),
		stopClaiming: make(chan struct{}),
		running:      make(map[string]*runningJob),
		inQueue:      make(map[string]struct{}),
		target:       min(opts.QueueCapacity, 2*opts.Workers),
	}
	return p
}

// runningJob is a job whose handler this pool runs (or is about to).
type runningJob struct {
	cancel          context.CancelFunc
	cancelRequested atomic.Bool
}

// Publish tells the pool about a job change; wire it to the store's
// publisher. A pending job wakes the dispatcher; a cancellation request for
// a job this pool runs cancels its handler's context. It never blocks.
func (p *Pool) Publish(job *domain.Job) {
	if job.Status == domain.StatusProcessing && job.CancelRequested {
		p.runningMu.Lock()
		r := p.running[job.ID]
		p.runningMu.Unlock()
		if r != nil {
			r.cancelRequested.Store(true)
			r.cancel()
		}
		return
	}
	if job.Status == domain.StatusPending {
		p.wakeDispatcher()
	}
}

func (p *Pool) wakeDispatcher() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Start launches the dispatcher and the workers. They run until Shutdown;
// ctx only carries values (its cancellation does not stop the pool, so
// that shutdown stays graceful). Start may be called once.
func (p *Pool) Start(ctx context.Context) {
	p.startOnce.Do(func() {
		base := context.WithoutCancel(ctx)
		dctx, stopDispatch := context.WithCancel(base)
		jctx, cancelJobs := context.WithCancel(base)
		p.stopDispatch, p.cancelJobs = stopDispatch, cancelJobs
		p.dispatcherWG.Add(1)
		go func() {
			defer p.dispatcherWG.Done()
			p.dispatch(dctx)
		}()
		for i := 0; i < p.opts.Workers; i++ {
			p.workersWG.Add(1)
			go func() {
				defer p.workersWG.Done()
				p.work(jctx)
			}()
		}
	})
}

// Stopping returns a channel that is closed as soon as Shutdown begins: from
// then on no job is claimed. Long handlers may watch it to wrap up early.
func (p *Pool) Stopping() <-chan struct{} { return p.stopClaiming }

// Shutdown stops claiming jobs at once, then lets running jobs finish until
// ctx is done. Jobs still running then have their context cancelled and
// are put back to pending (they were not at fault), and Shutdown waits for
// their handlers to return. It returns after every goroutine of the pool
// has exited; the error says how many jobs were interrupted, if any.
// Handlers that ignore their context delay it accordingly.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.startOnce.Do(func() {}) // a never-started pool has nothing to stop
	var err error
	p.shutdownOnce.Do(func() {
		close(p.stopClaiming)
		if p.stopDispatch == nil {
			return
		}
		p.stopDispatch()
		p.dispatcherWG.Wait()
		done := make(chan struct{})
		go func() {
			p.workersWG.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			p.cancelJobs()
			<-done
		}
		p.cancelJobs()
		// Handlers abandoned for ignoring their context: wait for them
		// only within the handler grace period.
		handlersDone := make(chan struct{})
		go func() {
			p.handlersWG.Wait()
			close(handlersDone)
		}()
		grace := time.NewTimer(p.opts.HandlerGrace)
		defer grace.Stop()
		select {
		case <-handlersDone:
		case <-grace.C:
			p.log.Error("worker shutdown: handlers that ignored their context are still running; they outlive the pool")
		}
		if n := p.released.Load(); n > 0 {
			err = fmt.Errorf("worker shutdown: %d running job(s) interrupted and returned to pending: %w", n, ctx.Err())
		}
	})
	return err
}

func (p *Pool) dispatch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	retry := minDispatchRetry
	for {
		p.inMu.Lock()
		free := p.target - len(p.inQueue)
		exclude := make([]string, 0, len(p.inQueue))
		for id := range p.inQueue {
			exclude = append(exclude, id)
		}
		p.inMu.Unlock()
		// Jobs a worker still holds (e.g. retried before their worker
		// left) would only bounce off it.
		p.runningMu.Lock()
		for id := range p.running {
			exclude = append(exclude, id)
		}
		p.runningMu.Unlock()

		var next time.Time
		if free > 0 {
			refs, nextRunAt, err := p.store.Runnable(ctx, time.Now(), free, exclude)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// The store failed. Pending jobs stay in it meanwhile; retry
				// after a backoff, or sooner when woken.
				p.log.Error("dispatcher: list runnable jobs", "err", err, "retry_in", retry)
				timer.Reset(retry)
				select {
				case <-timer.C:
				case <-p.wake:
					timer.Stop()
				case <-ctx.Done():
					return
				}
				retry = min(2*retry, maxDispatchRetry)
				continue
			}
			retry = minDispatchRetry
			next = nextRunAt
			for _, ref := range refs {
				p.inMu.Lock()
				p.inQueue[ref.ID] = struct{}{}
				p.inMu.Unlock()
				p.queue <- ref // never blocks: at most target ≤ capacity ids are in it
			}
			if len(refs) == free {
				continue // perhaps more
			}
		}
		// Sleep until a job becomes pending, a worker takes an id, or the
		// earliest scheduled job is due: no polling.
		var due <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			due = timer.C
		}
		select {
		case <-p.wake:
		case <-due:
		case <-ctx.Done():
			return
		}
		if due != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// taken tells the dispatcher that a worker is done with an id it handed
// out (claimed it, or gave it up): there is room for another.
func (p *Pool) taken(id string) {
	p.inMu.Lock()
	delete(p.inQueue, id)
	p.inMu.Unlock()
	p.wakeDispatcher()
}

// Backoff of the dispatcher after a store error.
const (
	minDispatchRetry = 100 * time.Millisecond
	maxDispatchRetry = 5 * time.Second
)

func (p *Pool) work(ctx context.Context) {
	for {
		select {
		case <-p.stopClaiming:
			return
		case ref := <-p.queue:
			select {
			case <-p.stopClaiming:
				p.taken(ref.ID)
				return // stopping wins over a ready job; it stays pending
			default:
			}
			p.run(ctx, ref)
		}
	}
}

func (p *Pool) run(ctx context.Context, ref store.Ref) {
	// Store writes must happen even while the pool is being cancelled.
	wctx := context.WithoutCancel(ctx)
	// Registered before the claim, so that a cancellation requested right
	// after it finds the handler to cancel.
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &runningJob{cancel: cancel}
	p.runningMu.Lock()
	if p.running[ref.ID] != nil {
		defer p.taken(ref.ID)
		// Another worker holds this id: it is running the job, or it is
		// done and about to leave while the job is pending again (a
		// retry). The owner wakes the dispatcher when it leaves, so
		// nothing is dropped.
		p.runningMu.Unlock()
		return
	}
	p.running[ref.ID] = r
	p.runningMu.Unlock()
	defer func() {
		p.runningMu.Lock()
		delete(p.running, ref.ID)
		p.runningMu.Unlock()
		// The dispatcher leaves out ids a worker holds: the job may be
		// pending again (a retry, a claim error), so let it look again.
		p.wakeDispatcher()
	}()

	job, err := p.store.Claim(wctx, ref.ID)
	p.taken(ref.ID)
	switch {
	case errors.Is(err, domain.ErrConflict), errors.Is(err, domain.ErrNotFound):
		return // another worker has it, or it is gone
	case err != nil:
		// The job is still pending in the store: hand it back to the
		// dispatcher (woken as this worker leaves) rather than forgetting it.
		p.log.Error("claim job", "id", ref.ID, "err", err)
		return
	}

	a := &attempt{pool: p, id: job.ID, written: -1, pending: -1}
	herr := p.invoke(withAttempt(hctx, a), job)
	result := a.finish(wctx)
	var record func() (*domain.Job, error)
	switch {
	case r.cancelRequested.Load():
		// Asked for by a user: cancelled, whatever the handler returned.
		record = func() (*domain.Job, error) { return p.store.Finish(wctx, job.ID, domain.StatusCancelled, "") }
	case herr != nil && ctx.Err() != nil:
		p.released.Add(1)
		record = func() (*domain.Job, error) { return p.store.Release(wctx, job.ID) }
	case herr != nil:
		var retryAt time.Time
		if !errors.Is(herr, errPermanent) {
			retryAt = time.Now().UTC().Add(p.backoff(job.Attempts))
		}
		record = func() (*domain.Job, error) { return p.store.Fail(wctx, job.ID, herr.Error(), retryAt) }
	default:
		record = func() (*domain.Job, error) { return p.store.Complete(wctx, job.ID, result) }
	}
	p.recordOutcome(job.ID, record)
}

// backoff is the delay before the attempt after attempt n (1-based):
// RetryBackoff doubled per attempt, capped, minus a random part of up to
// half (so that jobs failing together do not retry together).
func (p *Pool) backoff(n int) time.Duration {
	d := p.opts.RetryBackoffMax
	if n-1 < 32 {
		d = min(p.opts.RetryBackoff<<(n-1), p.opts.RetryBackoffMax)
	}
	if d <= 0 { // overflow
		d = p.opts.RetryBackoffMax
	}
	return d - rand.N(d/2+1)
}

// errPermanent marks handler errors that must not be retried.
var errPermanent = errors.New("permanent failure")

// Permanent wraps a handler error so that the job fails for good, without
// its remaining attempts (e.g. a request the receiver will always refuse).
// The job's error message is err's.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() error        { return e.err }
func (e permanentError) Is(target error) bool { return target == errPermanent }

// recordOutcome writes a job's outcome, retrying a failing store a few times
// (a job left processing would otherwise never finish). A conflict means
// the job changed meanwhile and is not retried.
func (p *Pool) recordOutcome(id string, record func() (*domain.Job, error)) {
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := record()
		if err == nil || errors.Is(err, domain.ErrConflict) || errors.Is(err, domain.ErrNotFound) {
			return
		}
		if attempt == recordAttempts {
			p.log.Error("record job outcome: giving up; the job stays processing", "id", id, "attempts", attempt, "err", err)
			return
		}
		p.log.Warn("record job outcome: retrying", "id", id, "attempt", attempt, "err", err)
		time.Sleep(delay) // the worker has nothing else to do until this is recorded
		delay *= 2
	}
}

// recordAttempts bounds recordOutcome's retries (about 1.5 s in all).
const recordAttempts = 6

// invoke runs the handler for one attempt under the job's timeout and
// returns its error. The handler runs on a goroutine of its own so that one
// that ignores its context cannot hold the job: once the context is done
// (timeout, cancellation, shutdown), the handler has HandlerGrace to
// return; after that the worker stops waiting and the attempt ends with an
// error saying so. The abandoned goroutine runs on until the handler
// returns; Shutdown waits for it only as long as its context allows.
func (p *Pool) invoke(ctx context.Context, job *domain.Job) error {
	timeout := job.Timeout
	if timeout <= 0 {
		timeout = p.opts.JobTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	p.handlersWG.Add(1)
	go func() {
		defer p.handlersWG.Done()
		done <- p.call(hctx, job)
	}()

	timedOut := func(err error) error {
		if ctx.Err() == nil && errors.Is(hctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("attempt timed out after %s", timeout)
		}
		return err
	}
	select {
	case err := <-done:
		return timedOut(err)
	case <-hctx.Done():
	}
	grace := time.NewTimer(p.opts.HandlerGrace)
	defer grace.Stop()
	select {
	case err := <-done:
		return timedOut(err)
	case <-grace.C:
		p.log.Error("handler ignored its context; abandoned", "id", job.ID, "type", job.Type, "grace", p.opts.HandlerGrace)
		return timedOut(fmt.Errorf("handler did not return within %s of its context ending; abandoned", p.opts.HandlerGrace))
	}
}

// call runs the handler for job.Type, turning a panic into an error.
func (p *Pool) call(ctx context.Context, job *domain.Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("handler panicked", "id", job.ID, "type", job.Type, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	h := p.opts.Handlers[job.Type]
	if h == nil {
		h = p.opts.Default
	}
	if h == nil {
		return fmt.Errorf("no handler for job type %q", job.Type)
	}
	return h.Handle(ctx, job)
}
