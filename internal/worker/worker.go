// Package worker runs jobs: a dispatcher claims runnable jobs from the store
// in batches, as many as there are idle workers, and hands them to the
// workers through a channel; each worker runs the handler for its job's
// type and records the outcome in the store.
//
// The store, not the channel, is the queue of record: a job waits in the
// store as pending until the dispatcher claims it, and the dispatcher claims
// no more jobs than workers are free to start them. A job can therefore
// never be lost because the channel was full. The dispatcher sleeps until
// told that a job became runnable (Publish) or the earliest scheduled job
// is due; an optional slow poll covers stores whose wake-ups can be missed
// (another process's jobs, a dropped LISTEN).
//
// A worker is free again as soon as its handler returns: the job's outcome
// is written in the background, so that a slow write (a database commit)
// keeps no worker idle and concurrent writes can be coalesced by the store.
// Until it is written the job stays leased to the pool (the heartbeat
// renews it); the pool holds at most outcomeBacklog × Workers of them
// before it stops claiming, so that a slow store slows claiming down
// instead of piling up finished jobs.
//
// A claimed job is leased to the pool's Owner: a heartbeat renews the
// leases while handlers run, and a rescuer gives back the jobs of owners
// that stopped renewing theirs (a crashed process). Processing is therefore
// at least once: a handler runs the same job again when the attempt before
// it lost its lease (its process died or lost touch with the store for
// longer than LeaseDuration) before its outcome was recorded, when the
// process stopped before recording it, or after a retry.
package worker

import (
	"context"
	crand "crypto/rand"
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
	Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error)
	NextRunAt(ctx context.Context, now time.Time) (time.Time, error)
	Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error)
	RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error)
	Finish(ctx context.Context, l store.Lease, status domain.Status, errMsg string) (*domain.Job, error)
	Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error)
	Progress(ctx context.Context, l store.Lease, percent int) (*domain.Job, error)
	Release(ctx context.Context, l store.Lease) (*domain.Job, error)
	Fail(ctx context.Context, l store.Lease, errMsg string, retryAt time.Time) (*domain.Job, error)
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
	// QueueCapacity bounds how many jobs one claim takes from the store.
	// Default 100. (The dispatcher never claims more jobs than workers are
	// idle, so the channel to the workers never holds more than Workers.)
	QueueCapacity int
	// Owner names this pool in the leases of the jobs it claims; it must
	// be unique among the processes sharing a store. Default: random.
	Owner string
	// LeaseDuration is how long a claim lasts without a heartbeat; the
	// heartbeat renews it every LeaseDuration/3. A job whose lease expired
	// is given back by a rescuer (this pool's or another's). Default 30s.
	LeaseDuration time.Duration
	// RescueInterval is how often the pool looks for expired leases.
	// Default LeaseDuration/2.
	RescueInterval time.Duration
	// ClaimCooldown is how long, while jobs keep coming, the dispatcher
	// waits after a claim that found jobs before it claims again for fewer
	// workers than a full batch (min(Workers, QueueCapacity)): the workers
	// freed meanwhile share one claim instead of taking one each. Worth a
	// millisecond or two on a store whose claim is a database statement
	// and a commit; zero (the default) claims as soon as a worker is free.
	ClaimCooldown time.Duration
	// PollInterval, when positive, makes an idle dispatcher look for
	// runnable jobs at least this often, even without a wake-up: for
	// stores shared by processes whose notifications can be missed.
	PollInterval time.Duration
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
	// StoreTimeout bounds each store call of the pool that has no bound of
	// its own (recording an outcome, a progress write, releasing a job,
	// rescuing, looking for the next run time), so that a connection that
	// hangs cannot hold a worker or Shutdown forever. Default 10 seconds.
	StoreTimeout time.Duration
}

// Defaults of Options.
const (
	DefaultJobTimeout    = 5 * time.Minute
	DefaultHandlerGrace  = 5 * time.Second
	DefaultLeaseDuration = 30 * time.Second
	DefaultStoreTimeout  = 10 * time.Second
	// DefaultProgressInterval is Options.ProgressInterval's default.
	DefaultProgressInterval = 100 * time.Millisecond
)

// Pool is a dispatcher and its workers. Create it with New, run it with
// Start, stop it with Shutdown. Its methods are safe for concurrent use.
type Pool struct {
	store Store
	opts  Options
	log   *slog.Logger
	queue chan *domain.Job // claimed jobs on their way to a worker
	wake  chan struct{}

	startOnce    sync.Once
	shutdownOnce sync.Once

	// running holds every job claimed and not yet recorded, by id: the
	// dispatcher adds it before handing it on, so a cancellation request
	// always finds it. claiming counts claims in flight; cancellation
	// requests for jobs not (yet) known arrive in lateCancels meanwhile and
	// are checked once the claim's jobs are registered.
	runningMu   sync.Mutex
	running     map[string]*runningJob
	busy        int // jobs claimed and not yet done with (a retried job can be claimed again before its last worker left)
	recording   int // of busy, those whose handler returned, their outcome being written
	claiming    int
	lateCancels []string

	stopClaiming  chan struct{}
	stopDispatch  context.CancelFunc // the dispatcher and the rescuer
	cancelJobs    context.CancelFunc
	stopHeartbeat context.CancelFunc
	dispatcherWG  sync.WaitGroup
	heartbeatWG   sync.WaitGroup
	workersWG     sync.WaitGroup
	recordersWG   sync.WaitGroup // goroutines writing outcomes
	handlersWG    sync.WaitGroup // handler goroutines, including abandoned ones
	released      atomic.Int64
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
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = DefaultStoreTimeout
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
	if opts.Owner == "" {
		opts.Owner = "worker-" + crand.Text()
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = DefaultLeaseDuration
	}
	if opts.RescueInterval <= 0 {
		opts.RescueInterval = opts.LeaseDuration / 2
	}
	p := &Pool{
		store:        st,
		opts:         opts,
		log:          opts.Logger,
		queue:        make(chan *domain.Job, opts.Workers),
		wake:         make(chan struct{}, 1),
		stopClaiming: make(chan struct{}),
		running:      make(map[string]*runningJob),
	}
	return p
}

// Owner returns the name this pool claims jobs under.
func (p *Pool) Owner() string { return p.opts.Owner }

// runningJob is a job this pool claimed: its handler runs, or is about to.
type runningJob struct {
	lease store.Lease

	mu              sync.Mutex
	cancel          context.CancelFunc // nil until the handler starts
	cancelRequested bool
}

// requestCancel records a user's cancellation and cancels the handler if
// it runs.
func (r *runningJob) requestCancel() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelRequested = true
	if r.cancel != nil {
		r.cancel()
	}
}

// started sets the handler's cancel function; it reports false when the
// job's cancellation was requested already (the handler must not run).
func (r *runningJob) started(cancel context.CancelFunc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel = cancel
	return !r.cancelRequested
}

func (r *runningJob) wasCancelled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cancelRequested
}

// Publish tells the pool about a job change; wire it to the store's
// publisher. A pending job wakes the dispatcher; a cancellation request for
// a job this pool runs cancels its handler's context. It never blocks.
func (p *Pool) Publish(job *domain.Job) {
	if job.Status == domain.StatusProcessing && job.CancelRequested {
		p.runningMu.Lock()
		r := p.running[job.ID]
		if r == nil && p.claiming > 0 {
			// Perhaps claimed by the claim in flight, not yet registered.
			p.lateCancels = append(p.lateCancels, job.ID)
		}
		p.runningMu.Unlock()
		if r != nil && r.lease.Attempt == job.Attempts {
			r.requestCancel()
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
		hctx, stopHeartbeat := context.WithCancel(base)
		p.stopHeartbeat = stopHeartbeat
		p.dispatcherWG.Add(2)
		go func() {
			defer p.dispatcherWG.Done()
			p.dispatch(dctx)
		}()
		go func() {
			defer p.dispatcherWG.Done()
			p.rescue(dctx)
		}()
		p.heartbeatWG.Add(1)
		go func() {
			defer p.heartbeatWG.Done()
			p.heartbeat(hctx)
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

// Shutdown stops claiming jobs at once, then lets the jobs already claimed
// (running, or handed to a worker) finish until ctx is done. Jobs still
// running then have their context cancelled and are put back to pending
// (they were not at fault), as are claimed jobs no worker started, and
// Shutdown waits for their handlers to return. It returns after every goroutine of the pool
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
		// Claimed jobs no worker started: back to pending.
		// Released concurrently, so that a store that hangs holds
		// Shutdown for one StoreTimeout per try, not one per job.
		for len(p.queue) > 0 {
			job := <-p.queue
			p.recordersWG.Add(1)
			go func() {
				defer p.recordersWG.Done()
				p.recordOutcome(job.ID, func(ctx context.Context) (*domain.Job, error) {
					return p.store.Release(ctx, store.LeaseOf(job, p.opts.Owner))
				})
				p.runningMu.Lock()
				r := p.running[job.ID]
				p.runningMu.Unlock()
				p.forget(job.ID, r, false)
			}()
		}
		// Outcomes still being written: their jobs are leased until then.
		p.recordersWG.Wait()
		p.stopHeartbeat()
		p.heartbeatWG.Wait()
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
	full := min(p.opts.Workers, p.opts.QueueCapacity)
	var handedOut time.Time // when the last claim that found jobs returned
	for ctx.Err() == nil {
		var next time.Time
		free := p.free()
		switch {
		case free <= 0:
		case free < full && time.Since(handedOut) < p.opts.ClaimCooldown:
			// Jobs keep coming: wait for the cooldown or a full batch,
			// so that the workers freed meanwhile share one claim.
			next = handedOut.Add(p.opts.ClaimCooldown)
		default:
			limit := min(free, p.opts.QueueCapacity)
			n, err := p.claim(ctx, limit)
			if n > 0 {
				handedOut = time.Now()
			}
			if err == nil && n == limit {
				continue // perhaps more
			}
			if err == nil {
				nctx, cancel := context.WithTimeout(ctx, p.opts.StoreTimeout)
				next, err = p.store.NextRunAt(nctx, time.Now())
				cancel()
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// The store failed. Pending jobs stay in it meanwhile; retry
				// after a backoff, or sooner when woken.
				p.log.Error("dispatcher: claim jobs", "err", err, "retry_in", retry)
				next = time.Now().Add(retry)
				retry = min(2*retry, maxDispatchRetry)
			} else {
				retry = minDispatchRetry
			}
		}
		// Sleep until a job becomes pending, a worker is free, the earliest
		// scheduled job is due, or the fallback poll: no busy waiting.
		if p.opts.PollInterval > 0 {
			if poll := time.Now().Add(p.opts.PollInterval); next.IsZero() || poll.Before(next) {
				next = poll
			}
		}
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

// free is how many workers could start a job now: those not running a
// handler, as long as the pool holds no more than outcomeBacklog × Workers
// jobs whose outcome is being written besides.
func (p *Pool) free() int {
	p.runningMu.Lock()
	defer p.runningMu.Unlock()
	return min(p.opts.Workers-(p.busy-p.recording), (1+outcomeBacklog)*p.opts.Workers-p.busy)
}

// outcomeBacklog bounds, per worker, the jobs whose outcome is being
// written: beyond that the dispatcher claims no more until some are. On
// PostgreSQL an outcome waits a few milliseconds to share its statement
// with others (see postgres.completeLinger), so at thousands of jobs per
// second hundreds are being written at any time: with 2 per worker that
// bound, not the workers, limited the claims (bench/burndown: 16 % fewer
// jobs/s). A crash re-runs the jobs whose outcome was not written yet, at
// most this many per worker besides the running ones.
const outcomeBacklog = 4

// claim claims up to limit jobs and hands them to the workers; it returns
// how many it claimed.
func (p *Pool) claim(ctx context.Context, limit int) (int, error) {
	p.runningMu.Lock()
	p.claiming++
	p.runningMu.Unlock()
	// Not cancelled by Shutdown: a claim that commits while its caller
	// gives up would strand its jobs as processing until their leases
	// expire. Shutdown waits for it and releases what it claimed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	now := time.Now()
	jobs, err := p.store.Claim(cctx, store.ClaimRequest{Owner: p.opts.Owner, Limit: limit, Now: now, LeaseUntil: now.Add(p.opts.LeaseDuration)})

	p.runningMu.Lock()
	for _, job := range jobs {
		p.running[job.ID] = &runningJob{lease: store.LeaseOf(job, p.opts.Owner)}
	}
	p.busy += len(jobs)
	p.claiming--
	late := p.lateCancels
	if p.claiming == 0 {
		p.lateCancels = nil
	}
	var cancelled []*runningJob
	for _, id := range late {
		if r := p.running[id]; r != nil {
			cancelled = append(cancelled, r)
		}
	}
	p.runningMu.Unlock()
	for _, r := range cancelled {
		r.requestCancel()
	}
	for _, job := range jobs {
		p.queue <- job // never blocks: at most Workers jobs are claimed and not started
	}
	if err != nil {
		return 0, fmt.Errorf("claim: %w", err)
	}
	return len(jobs), nil
}

// forget drops a job this pool is done with (unless r is no longer its
// entry: a later claim of the same job has an entry of its own): its
// outcome was recorded (recorded) or it was never started. It wakes the
// dispatcher when that frees a worker.
func (p *Pool) forget(id string, r *runningJob, recorded bool) {
	p.runningMu.Lock()
	if p.running[id] == r {
		delete(p.running, id)
	}
	p.busy--
	wake := !recorded || p.recording > outcomeBacklog*p.opts.Workers // see free
	if recorded {
		p.recording--
	}
	p.runningMu.Unlock()
	if wake {
		p.wakeDispatcher()
	}
}

// handlerDone marks a claimed job's handler as returned, which frees its
// worker, and writes the job's outcome in the background; the job is
// forgotten once that is done.
func (p *Pool) handlerDone(id string, r *runningJob, record func(context.Context) (*domain.Job, error)) {
	p.runningMu.Lock()
	p.recording++
	p.runningMu.Unlock()
	p.wakeDispatcher()
	p.recordersWG.Add(1) // before Shutdown waits: the worker has not left yet
	go func() {
		defer p.recordersWG.Done()
		p.recordOutcome(id, record)
		p.forget(id, r, true)
	}()
}

// heartbeat renews the leases of the jobs this pool holds until ctx ends
// (after the last worker left).
func (p *Pool) heartbeat(ctx context.Context) {
	every := p.opts.LeaseDuration / 3
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		// Only the jobs this pool still holds: a lease it forgot (an
		// outcome it could not record, a claim whose reply was lost) must
		// expire so that a rescuer gives the job back.
		p.runningMu.Lock()
		ids := make([]string, 0, len(p.running))
		for id := range p.running {
			ids = append(ids, id)
		}
		p.runningMu.Unlock()
		if len(ids) == 0 {
			continue
		}
		// Bounded, so that a hung connection cannot outlast the leases.
		hctx, cancel := context.WithTimeout(ctx, every)
		_, err := p.store.Heartbeat(hctx, p.opts.Owner, ids, time.Now().Add(p.opts.LeaseDuration))
		cancel()
		if err != nil && ctx.Err() == nil {
			p.log.Error("heartbeat: leases not renewed; running jobs may be rescued and run again elsewhere", "err", err)
		}
	}
}

// rescue gives back, every RescueInterval, the jobs whose owners stopped
// renewing their leases, until ctx ends.
func (p *Pool) rescue(ctx context.Context) {
	ticker := time.NewTicker(p.opts.RescueInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for {
			rctx, cancel := context.WithTimeout(ctx, p.opts.StoreTimeout)
			jobs, err := p.store.RescueExpired(rctx, time.Now(), rescueBatch)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					p.log.Error("rescue jobs with expired leases", "err", err)
				}
				break
			}
			for _, j := range jobs {
				p.log.Warn("rescued a job whose worker was lost", "id", j.ID, "type", j.Type, "attempt", j.Attempts, "status", j.Status)
			}
			if len(jobs) < rescueBatch {
				break
			}
		}
	}
}

// claimTimeout bounds one claim, which shutdown does not interrupt.
const claimTimeout = 30 * time.Second

// rescueBatch bounds one RescueExpired call.
const rescueBatch = 500

// Backoff of the dispatcher after a store error.
const (
	minDispatchRetry = 100 * time.Millisecond
	maxDispatchRetry = 5 * time.Second
)

func (p *Pool) work(ctx context.Context) {
	for {
		select {
		case job := <-p.queue:
			p.run(ctx, job)
		case <-p.stopClaiming:
			// The jobs claimed before the stop are processing already
			// (subscribers saw it): they run too, unless the grace period
			// is over. Shutdown releases those left in the channel.
			for ctx.Err() == nil {
				select {
				case job := <-p.queue:
					p.run(ctx, job)
				default:
					return
				}
			}
			return
		}
	}
}

func (p *Pool) run(ctx context.Context, job *domain.Job) {
	p.runningMu.Lock()
	r := p.running[job.ID]
	p.runningMu.Unlock()

	// Store writes must happen even while the pool is being cancelled.
	wctx := context.WithoutCancel(ctx)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lease := r.lease
	var herr error
	var result json.RawMessage
	if r.started(cancel) {
		a := &attempt{pool: p, lease: lease, written: -1, pending: -1}
		herr = p.invoke(withAttempt(hctx, a), job)
		result = a.finish(wctx)
	}
	var record func(ctx context.Context) (*domain.Job, error)
	switch {
	case r.wasCancelled():
		// Asked for by a user: cancelled, whatever the handler returned.
		record = func(ctx context.Context) (*domain.Job, error) {
			return p.store.Finish(ctx, lease, domain.StatusCancelled, "")
		}
	case herr != nil && ctx.Err() != nil:
		p.released.Add(1)
		record = func(ctx context.Context) (*domain.Job, error) { return p.store.Release(ctx, lease) }
	case herr != nil:
		var retryAt time.Time
		if !errors.Is(herr, errPermanent) {
			retryAt = time.Now().UTC().Add(p.backoff(job.Attempts))
		}
		record = func(ctx context.Context) (*domain.Job, error) { return p.store.Fail(ctx, lease, herr.Error(), retryAt) }
	default:
		record = func(ctx context.Context) (*domain.Job, error) { return p.store.Complete(ctx, lease, result) }
	}
	p.handlerDone(job.ID, r, record)
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

// recordOutcome writes a job's outcome, retrying a failing store a few
// times, each try bounded by StoreTimeout.
// A conflict means the job changed meanwhile (its lease was lost: another
// worker may run it) and is not retried. A job whose outcome cannot be
// written stays processing until its lease expires (this process stops
// renewing leases when it stops) and a rescuer gives it back.
func (p *Pool) recordOutcome(id string, record func(context.Context) (*domain.Job, error)) {
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.StoreTimeout)
		_, err := record(ctx)
		cancel()
		if errors.Is(err, domain.ErrLeaseLost) {
			p.log.Warn("record job outcome: the lease was lost meanwhile; the outcome is dropped", "id", id, "err", err)
			return
		}
		if err == nil || errors.Is(err, domain.ErrConflict) || errors.Is(err, domain.ErrNotFound) {
			return
		}
		if attempt == recordAttempts {
			p.log.Error("record job outcome: giving up; the job stays processing until its lease expires", "id", id, "attempts", attempt, "err", err)
			return
		}
		p.log.Warn("record job outcome: retrying", "id", id, "attempt", attempt, "err", err)
		time.Sleep(delay) // the worker has nothing else to do until this is recorded
		delay *= 2
	}
}

// recordAttempts bounds recordOutcome's tries (about 1.5 s of waiting
// between them, plus up to StoreTimeout per try).
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
