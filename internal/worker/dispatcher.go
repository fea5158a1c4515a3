package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// dispatcher claims jobs for the pool's executors (River's producer). It
// owns the free slots, the wake-ups, the claim cooldown and the poll, and
// the leases the pool holds: it registers every job it claims and renews
// the leases (heartbeat) until the completer has written the job's outcome.
//
// Free slots are a count local to Run: a claim takes as many as it found
// jobs, and an executor gives its slot back through freed once its
// attempt's outcome is handed to the completer. Nothing else counts slots,
// so no formula must agree with a wake-up rule: a returned slot is the
// wake-up.
type dispatcher struct {
	store    Store
	owner    string
	log      *slog.Logger
	workers  int // slots
	batch    int // most jobs one claim takes
	cooldown time.Duration
	poll     time.Duration // 0: no poll
	lease    time.Duration
	timeout  time.Duration // StoreTimeout

	inbox *Inbox        // wake-ups, and the jobs held
	jobs  chan claimed  // to the executors; closed when Run returns
	freed chan struct{} // slots given back; capacity workers, sends never block
}

// claimed is a job handed to an executor, with its entry among the held
// leases.
type claimed struct {
	job  *domain.Job
	held *heldJob
}

func newDispatcher(st Store, inbox *Inbox, opts Options, tuning store.Tuning) *dispatcher {
	cooldown := opts.ClaimCooldown
	switch {
	case cooldown == 0:
		cooldown = tuning.ClaimCooldown
	case cooldown < 0:
		cooldown = 0
	}
	var poll time.Duration
	if tuning.MissableWakeups {
		poll = opts.PollInterval
	}
	return &dispatcher{
		store:    st,
		owner:    opts.Owner,
		log:      opts.Logger,
		workers:  opts.Workers,
		batch:    opts.QueueCapacity,
		cooldown: cooldown,
		poll:     poll,
		lease:    opts.LeaseDuration,
		timeout:  opts.StoreTimeout,
		inbox:    inbox,
		jobs:     make(chan claimed, opts.Workers),
		freed:    make(chan struct{}, opts.Workers),
	}
}

// Run claims jobs while slots are free until ctx is done, then closes jobs
// and returns (a claim in flight is finished first, and its jobs handed
// on: the executors run or release them). It starts no goroutine; the
// error is always nil (a failing store is retried with a backoff).
func (d *dispatcher) Run(ctx context.Context) error {
	defer close(d.jobs)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	retry := minDispatchRetry
	full := min(d.workers, d.batch)
	free := d.workers
	var handedOut time.Time // when the last claim that found jobs returned
	for ctx.Err() == nil {
		for taken := false; !taken; {
			select {
			case <-d.freed:
				free++
			default:
				taken = true
			}
		}
		var next time.Time
		switch {
		case free <= 0:
		case free < full && time.Since(handedOut) < d.cooldown:
			// Jobs keep coming: wait for the cooldown or a full batch,
			// so that the slots freed meanwhile share one claim.
			next = handedOut.Add(d.cooldown)
		default:
			limit := min(free, d.batch)
			// The next run time is asked as of the claim's now: a job due
			// between the two calls must not be missed by both.
			now := time.Now()
			n, err := d.claim(ctx, limit, now)
			free -= n
			if n > 0 {
				handedOut = time.Now()
			}
			if err == nil && n == limit {
				continue // perhaps more
			}
			if err == nil {
				nctx, cancel := context.WithTimeout(ctx, d.timeout)
				next, err = d.store.NextRunAt(nctx, now)
				cancel()
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// The store failed. Pending jobs stay in it meanwhile; retry
				// after a backoff, or sooner when woken.
				d.log.Error("dispatcher: claim jobs", "err", err, "retry_in", retry)
				next = time.Now().Add(retry)
				retry = min(2*retry, maxDispatchRetry)
			} else {
				retry = minDispatchRetry
			}
		}
		// Sleep until a job becomes pending, a slot is freed, the earliest
		// scheduled job is due, or the poll: no busy waiting.
		if d.poll > 0 {
			if poll := time.Now().Add(d.poll); next.IsZero() || poll.Before(next) {
				next = poll
			}
		}
		var due <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			due = timer.C
		}
		select {
		case <-d.inbox.wake:
		case <-d.freed:
			free++
		case <-due:
		case <-ctx.Done():
			return nil
		}
		if due != nil {
			timer.Stop() // Go 1.23 timers: no stale value survives Stop
		}
	}
	return nil
}

// claim claims up to limit jobs, registers them as held and hands them to
// the executors; it returns how many it claimed.
func (d *dispatcher) claim(ctx context.Context, limit int, now time.Time) (int, error) {
	d.inbox.claimStarted()
	// Not cancelled by the stop: a claim that commits while its caller
	// gives up would strand its jobs as processing until their leases
	// expire. Run finishes it and the executors release what it claimed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	jobs, err := d.store.Claim(cctx, store.ClaimRequest{Owner: d.owner, Limit: limit, Now: now, LeaseUntil: now.Add(d.lease)})

	out := d.inbox.claimed(jobs, d.owner)
	for _, c := range out {
		d.jobs <- c // never blocks: no more jobs are out than slots, and jobs holds as many
	}
	if err != nil {
		return len(jobs), fmt.Errorf("claim jobs: %w", err)
	}
	return len(jobs), nil
}

// heartbeat renews the leases of the held jobs every LeaseDuration/3 until
// ctx ends. The pool stops it only after the completer has written the
// last outcome: a job is leased until then.
func (d *dispatcher) heartbeat(ctx context.Context) error {
	every := d.lease / 3
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		// Only the jobs this pool still holds: a lease it forgot (an
		// outcome it could not record, a claim whose reply was lost) must
		// expire so that a rescuer gives the job back.
		ids := d.inbox.heldIDs()
		if len(ids) == 0 {
			continue
		}
		// Bounded, so that a hung connection cannot outlast the leases.
		hctx, cancel := context.WithTimeout(ctx, every)
		_, err := d.store.Heartbeat(hctx, d.owner, ids, time.Now().Add(d.lease))
		cancel()
		if err != nil && ctx.Err() == nil {
			d.log.Error("heartbeat: leases not renewed; running jobs may be rescued and run again elsewhere", "err", err)
		}
	}
}

// claimTimeout bounds one claim, which the stop does not interrupt.
const claimTimeout = 30 * time.Second

// Backoff of the dispatcher after a store error.
const (
	minDispatchRetry = 100 * time.Millisecond
	maxDispatchRetry = 5 * time.Second
)
