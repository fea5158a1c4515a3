// Package worker runs jobs. A Pool is three parts, as River splits the
// work (its producer, job executor and job completer), each owning its
// state and each run by Pool.Run:
//
//   - the dispatcher (dispatcher.go) claims runnable jobs from the store in
//     batches, as many as slots are free, and hands them to the executors
//     through a channel; it sleeps until a job becomes pending (its Inbox), a
//     slot is freed, the earliest scheduled job is due, or a poll for
//     stores whose wake-ups can be missed; it holds the leases of the jobs
//     claimed and renews them (heartbeat) until their outcome is written;
//   - the executors (executor.go, report.go), Workers goroutines, each run
//     one attempt at a time under its timeout and cancellation and turn it
//     into an outcome value;
//   - the completer (completer.go) writes the outcomes, retrying a failing
//     store; its bounded input lets a slow store slow claiming down.
//
// The store, not a channel, is the queue of record: a job waits in the
// store as pending until the dispatcher claims it, and the dispatcher
// claims no more jobs than executors are free to start them, so a job can
// never be lost because a channel was full.
//
// An executor is free again as soon as its handler returns and the
// completer takes the outcome: the outcome is written in the background,
// so that a slow write (a database commit) keeps no worker idle and
// concurrent writes can be coalesced by the store. Until it is written the
// job stays leased to the pool.
//
// Each backend states how it wants to be used (claim cooldown, whether its
// wake-ups can be missed, how many outcomes to keep being written) through
// store.Tuning; the pool reads it from the store it is given.
//
// A claimed job is leased to the pool's Owner: the heartbeat renews the
// leases while the pool holds them, and a rescuer (package maintenance)
// gives back the jobs of owners that stopped renewing theirs (a crashed
// process). Processing is therefore at least once: a handler runs the same
// job again when the attempt before it lost its lease (its process died or
// lost touch with the store for longer than LeaseDuration) before its
// outcome was recorded, when the process stopped before recording it, or
// after a retry.
package worker

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
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
	// is given back by a rescuer (maintenance.Rescuer, in this process or
	// another). Default 30s.
	LeaseDuration time.Duration
	// ClaimCooldown overrides the store's store.Tuning.ClaimCooldown (how
	// long, while jobs keep coming, the dispatcher waits after a claim that
	// found jobs before it claims again for fewer workers than a full
	// batch, min(Workers, QueueCapacity)). Zero: the store's; negative:
	// none, a claim as soon as a worker is free.
	ClaimCooldown time.Duration
	// PollInterval, when positive, makes an idle dispatcher look for
	// runnable jobs at least this often, even without a wake-up, on a store
	// whose wake-ups can be missed (store.Tuning.MissableWakeups); it is
	// ignored on other stores, which publish every runnable job.
	PollInterval time.Duration
	// ShutdownGrace is how long, once Run's context is done, the jobs
	// already claimed may finish before their handlers are cancelled and
	// they are returned to pending. Default 10 seconds.
	ShutdownGrace time.Duration
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
	// looking for the next run time), so that a connection that hangs
	// cannot hold a worker or the shutdown forever. Default 10 seconds.
	StoreTimeout time.Duration
	// Metrics records the attempts (outcome, duration), busy workers and
	// outcomes waiting to be written; nil records nothing.
	Metrics *metrics.Metrics
}

// Defaults of Options.
const (
	DefaultJobTimeout    = 5 * time.Minute
	DefaultHandlerGrace  = 5 * time.Second
	DefaultLeaseDuration = 30 * time.Second
	DefaultStoreTimeout  = 10 * time.Second
	DefaultShutdownGrace = 10 * time.Second
	// DefaultProgressInterval is Options.ProgressInterval's default.
	DefaultProgressInterval = 100 * time.Millisecond
	// DefaultOutcomesPerWorker is how many outcomes per worker are written
	// at once on a store whose Tuning states none: enough that a commit
	// that takes a while holds no worker, few enough that a crash runs
	// only a few finished jobs again.
	DefaultOutcomesPerWorker = 4
)

// ErrInterrupted is wrapped by the error of Run when the
// shutdown grace period ended with jobs still running: they were cancelled
// and returned to pending.
var ErrInterrupted = errors.New("running jobs interrupted")

// Pool runs jobs from a store: a dispatcher, Workers executors and a
// completer (see the package doc). Create it with New and run it with Run;
// Publish, Owner and Stopping are safe for concurrent use at any time.
type Pool struct {
	opts Options
	disp *dispatcher
	exec *executor
	comp *completer

	ran         atomic.Bool
	stopping    chan struct{} // closed when Run's context is done
	interrupted atomic.Int64
}

// New returns a pool over st, tuned as st states (store.TuningOf), that
// hears of st's changes through inbox (see Inbox); a nil inbox hears of
// none, and the pool finds new jobs only as it frees slots or polls.
// Nothing runs until Run.
func New(st Store, inbox *Inbox, opts Options) *Pool {
	if inbox == nil {
		inbox = NewInbox()
	}
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
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = DefaultShutdownGrace
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
	tuning := store.TuningOf(st)
	perWorker := tuning.OutcomesPerWorker
	if perWorker <= 0 {
		perWorker = DefaultOutcomesPerWorker
	}
	opts.Metrics.SetWorkers(opts.Workers)
	p := &Pool{opts: opts, stopping: make(chan struct{})}
	p.disp = newDispatcher(st, inbox, opts, tuning)
	p.exec = newExecutor(st, opts)
	p.comp = newCompleter(st, opts, perWorker*opts.Workers, inbox.forget)
	return p
}

// Owner returns the name this pool claims jobs under.
func (p *Pool) Owner() string { return p.opts.Owner }

// Stopping returns a channel that is closed as soon as the pool stops
// claiming (Run's context is done). Long handlers may
// watch it to wrap up early.
func (p *Pool) Stopping() <-chan struct{} { return p.stopping }

// Run runs the pool until ctx is done, then stops softly: it claims no
// more jobs, lets the jobs already claimed (running, or handed to an
// executor) finish for up to ShutdownGrace, then cancels the handlers
// still running and returns their jobs to pending (they were not at
// fault), as it does with claimed jobs no executor started. It returns
// once every outcome is written and every goroutine it started has exited
// (except handlers that ignore their context: it waits for those only
// within HandlerGrace). The error wraps ErrInterrupted when jobs were
// interrupted. Run may be called once.
func (p *Pool) Run(ctx context.Context) error {
	n, err := p.run(ctx)
	if err == nil && n > 0 {
		err = fmt.Errorf("worker: %d running job(s) returned to pending after the %s shutdown grace period: %w", n, p.opts.ShutdownGrace, ErrInterrupted)
	}
	return err
}

// run is Run; it returns how many running jobs were interrupted.
func (p *Pool) run(ctx context.Context) (int64, error) {
	if !p.ran.CompareAndSwap(false, true) {
		return 0, errors.New("worker: Run called twice")
	}
	// The parts wind down in this order, each once the one before it is
	// done, because each consumes what the one before produces:
	//  1. the dispatcher, when ctx is done: it finishes a claim in flight
	//     and closes its channel of claimed jobs;
	//  2. the executors, once that channel is drained: they run the jobs
	//     it held while the grace period lasts (workCtx), release the rest,
	//     hand every outcome to the completer, then close its input;
	//  3. the completer, once its input is closed and every outcome taken
	//     is written: until then the jobs are leased to this pool;
	//  4. the heartbeat, last: it renews those leases until the last
	//     outcome is written.
	// The group is not an errgroup.WithContext: no part fails the others,
	// each stops on the signal above, not on a sibling's error.
	base := context.WithoutCancel(ctx)
	workCtx, cancelWork := context.WithCancel(base)
	defer cancelWork()
	beatCtx, stopBeat := context.WithCancel(base)
	defer stopBeat()
	executorsDone := make(chan struct{})
	var g errgroup.Group
	g.Go(func() error { return p.disp.Run(ctx) })
	g.Go(func() error {
		// The grace period: from ctx's end until the executors are done,
		// or it runs out and the jobs still running are cancelled.
		<-ctx.Done()
		close(p.stopping)
		over := time.NewTimer(p.opts.ShutdownGrace)
		defer over.Stop()
		select {
		case <-executorsDone:
		case <-over.C:
			cancelWork()
		}
		return nil
	})
	g.Go(func() error {
		var workers sync.WaitGroup
		for range p.opts.Workers {
			workers.Go(func() { p.work(workCtx) })
		}
		workers.Wait()
		close(p.comp.outcomes)
		close(executorsDone)
		return nil
	})
	g.Go(func() error {
		defer stopBeat()
		return p.comp.Run(base)
	})
	g.Go(func() error { return p.disp.heartbeat(beatCtx) })
	err := g.Wait()
	// Handlers abandoned for ignoring their context: wait for them only
	// within the handler grace period.
	if !p.exec.waitHandlers() {
		p.opts.Logger.Error("worker shutdown: handlers that ignored their context are still running; they outlive the pool")
	}
	return p.interrupted.Load(), err
}

// work is one executor's loop: it runs the jobs the dispatcher hands out
// until their channel is closed, and hands each outcome to the completer
// before it gives its slot back. Once ctx is done (the grace period is
// over) the jobs left are released without running.
func (p *Pool) work(ctx context.Context) {
	for c := range p.disp.jobs {
		var o outcome
		if ctx.Err() != nil {
			o = released(c.job, c.held)
		} else {
			p.opts.Metrics.WorkerBusy(1)
			o = p.exec.execute(ctx, c.job, c.held)
			p.opts.Metrics.WorkerBusy(-1)
		}
		if o.interrupted {
			p.interrupted.Add(1)
		}
		p.opts.Metrics.OutcomeWaiting(1)
		p.comp.outcomes <- o // waits for a free writer: the completer's bound
		p.disp.freed <- struct{}{}
	}
}
