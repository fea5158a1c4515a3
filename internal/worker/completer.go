package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
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

	outcomes chan outcome     // closed by the pool once no executor is left
	written  func(h *heldJob) // called after each outcome, written or given up on
}

func newCompleter(st Store, opts Options, writers int, written func(*heldJob)) *completer {
	return &completer{
		store:    st,
		log:      opts.Logger,
		timeout:  opts.StoreTimeout,
		writers:  writers,
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
				c.write(ctx, o)
				c.written(o.held)
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
func (c *completer) write(ctx context.Context, o outcome) {
	l := o.held.lease
	delay := 50 * time.Millisecond
	for try := 1; ; try++ {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		var err error
		switch o.kind {
		case outcomeCompleted:
			_, err = c.store.Complete(wctx, l, o.result)
		case outcomeFailed:
			_, err = c.store.Fail(wctx, l, o.errMsg, o.retryAt)
		case outcomeCancelled:
			_, err = c.store.Finish(wctx, l, domain.StatusCancelled, "")
		case outcomeReleased:
			_, err = c.store.Release(wctx, l)
		}
		cancel()
		if errors.Is(err, domain.ErrLeaseLost) {
			c.log.Warn("record job outcome: the lease was lost meanwhile; the outcome is dropped", "id", l.JobID, "err", err)
			return
		}
		if err == nil || errors.Is(err, domain.ErrConflict) || errors.Is(err, domain.ErrNotFound) {
			return
		}
		if try == recordAttempts {
			c.log.Error("record job outcome: giving up; the job stays processing until its lease expires", "id", l.JobID, "attempts", try, "err", err)
			return
		}
		c.log.Warn("record job outcome: retrying", "id", l.JobID, "attempt", try, "err", err)
		time.Sleep(delay)
		delay *= 2
	}
}

// recordAttempts bounds write's tries (about 1.5 s of waiting between
// them, plus up to StoreTimeout per try).
const recordAttempts = 6
