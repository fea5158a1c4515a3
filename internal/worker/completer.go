package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
)

// completer writes the outcomes of attempts (River's job completer). Its
// backlog is its input channel, unbuffered and read by a fixed number of
// writers: at most that many outcomes are being written at once, and an
// executor whose outcome no writer takes yet waits, holding its slot, so
// that a slow store slows claiming down instead of piling up finished
// jobs. Concurrent writers let a store coalesce their writes (PostgreSQL
// gathers completions into one statement).
type completer struct {
	store   Store
	log     *slog.Logger
	timeout time.Duration // StoreTimeout, per try
	writers int
	metrics *metrics.Metrics

	outcomes chan outcome     // closed by the pool once no executor is left
	written  func(h *heldJob) // called after each outcome, written or given up on
}

func newCompleter(st Store, opts Options, writers int, written func(*heldJob)) *completer {
	return &completer{
		store:    st,
		log:      opts.Logger,
		timeout:  opts.StoreTimeout,
		writers:  writers,
		metrics:  opts.Metrics,
		outcomes: make(chan outcome),
		written:  written,
	}
}

// Run writes outcomes until its input is closed and every outcome taken is
// written (or given up on); it returns then, once its writers have exited.
// Outcomes are written even after ctx is done (ctx only carries values):
// a job stays leased to the pool until its outcome is written, so shutdown
// must wait for them. The error is always nil.
func (c *completer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range c.writers {
		wg.Go(func() {
			for o := range c.outcomes {
				job, err := c.write(ctx, o)
				c.written(o.held)
				c.metrics.OutcomeWaiting(-1)
				c.metrics.AttemptEnded(o.jobType, attemptOutcome(o, job, err), o.took)
			}
		})
	}
	wg.Wait()
	return nil
}

// write writes one outcome, retrying a failing store a few times with a
// doubling delay, each try bounded by StoreTimeout. A conflict means the
// job changed meanwhile (its lease was lost: another worker may run it) and
// is not retried. A job whose outcome cannot be written stays processing
// until its lease expires (the heartbeat no longer renews it once the
// writer gives up) and a rescuer gives it back.
//
// It returns the job as written, or the last error.
func (c *completer) write(ctx context.Context, o outcome) (*domain.Job, error) {
	l := o.held.lease
	delay := 50 * time.Millisecond
	for try := 1; ; try++ {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		var job *domain.Job
		var err error
		switch o.kind {
		case outcomeCompleted:
			job, err = c.store.Complete(wctx, l, o.result)
		case outcomeFailed:
			job, err = c.store.Fail(wctx, l, o.errMsg, o.retryAt)
		case outcomeCancelled:
			job, err = c.store.Finish(wctx, l, domain.StatusCancelled, "")
		case outcomeReleased:
			job, err = c.store.Release(wctx, l)
		}
		cancel()
		if errors.Is(err, domain.ErrLeaseLost) {
			c.log.Warn("record job outcome: the lease was lost meanwhile; the outcome is dropped", "id", l.JobID, "err", err)
			return nil, err
		}
		if err == nil || errors.Is(err, domain.ErrConflict) || errors.Is(err, domain.ErrNotFound) {
			return job, err
		}
		if try == recordAttempts {
			c.log.Error("record job outcome: giving up; the job stays processing until its lease expires", "id", l.JobID, "attempts", try, "err", err)
			return nil, err
		}
		c.log.Warn("record job outcome: retrying", "id", l.JobID, "attempt", try, "err", err)
		time.Sleep(delay)
		delay *= 2
	}
}

// attemptOutcome is the metrics' outcome of o, written as job (or not:
// err). An outcome not written counts as lease_lost or write_failed,
// never as what it would have been.
func attemptOutcome(o outcome, job *domain.Job, err error) metrics.Outcome {
	switch {
	case errors.Is(err, domain.ErrLeaseLost):
		return metrics.OutcomeLeaseLost
	case err != nil:
		return metrics.OutcomeWriteFailed
	case o.kind == outcomeCompleted:
		return metrics.OutcomeCompleted
	case o.kind == outcomeCancelled:
		return metrics.OutcomeCancelled
	case o.kind == outcomeReleased:
		return metrics.OutcomeReleased
	case o.timedOut:
		return metrics.OutcomeTimedOut
	case job != nil && job.Status == domain.StatusPending:
		return metrics.OutcomeRetried
	}
	return metrics.OutcomeFailed
}

// recordAttempts bounds write's tries (about 1.5 s of waiting between
// them, plus up to StoreTimeout per try).
const recordAttempts = 6
