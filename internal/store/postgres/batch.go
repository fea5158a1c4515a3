package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// Creations and completions are coalesced: concurrent calls are queued,
// and a few executor goroutines each take what is queued (up to a bound)
// and run it as one statement, so that a busy server pays one round trip
// and one commit per batch instead of per job. This matters beyond round
// trips: a transaction that notifies holds PostgreSQL's notification lock
// from its commit until the end of its WAL flush, so notifying commits are
// serialised database-wide, and the number of them per second is what
// bounds the store's throughput.
//
// When calls are rare each one runs on its own at once; under load the
// calls that arrive while the executors are busy make up the next batches,
// and an executor may linger for more (see batcher.linger).

// call is one coalesced call: arg describes it, reply receives its answer
// (buffered, so that executors never wait for a caller that gave up).
type call[T any] struct {
	ctx   context.Context
	arg   T
	reply chan callResult
}

type callResult struct {
	job *domain.Job
	err error
}

func (c *call[T]) answer(j *domain.Job, err error) { c.reply <- callResult{job: j, err: err} }

// batcher queues calls for its executors. It is safe for concurrent use.
type batcher[T any] struct {
	queue chan *call[T]
	// stopped is closed once the executors returned and every call they
	// left queued has been answered.
	stopped chan struct{}
	// exec runs a batch as one statement and answers every call of it,
	// unless the statement fails: then it returns the error and answers
	// none.
	exec func(batch []*call[T]) error
	// max bounds a batch, linger is how long an executor under load (see
	// execute) waits for more calls after the first one of a batch;
	// otherwise, or when zero, it takes what is queued.
	max    int
	linger time.Duration
}

func newBatcher[T any](max int, linger time.Duration, exec func([]*call[T]) error) *batcher[T] {
	return &batcher[T]{queue: make(chan *call[T], 2*max), stopped: make(chan struct{}), exec: exec, max: max, linger: linger}
}

// do queues a call and waits for its answer. A call whose ctx is done
// before its batch runs is answered with the ctx's error; once its batch
// runs, the caller stops waiting when ctx is done but the call may still
// take effect, as with any statement cancelled in flight.
func (b *batcher[T]) do(ctx context.Context, arg T) (*domain.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &call[T]{ctx: ctx, arg: arg, reply: make(chan callResult, 1)}
	select {
	case b.queue <- c:
	case <-b.stopped:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-c.reply:
		return r.job, r.err
	case <-b.stopped:
		// Every call taken before the stop was answered.
		select {
		case r := <-c.reply:
			return r.job, r.err
		default:
			return nil, errClosed
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run runs executors goroutines until ctx is done, waits for them, then
// answers the calls left queued with errClosed and closes stopped.
func (b *batcher[T]) run(ctx context.Context, executors int) {
	var wg sync.WaitGroup
	for range executors {
		wg.Add(1)
		go func() { defer wg.Done(); b.execute(ctx) }()
	}
	wg.Wait()
	for {
		select {
		case c := <-b.queue:
			c.answer(nil, errClosed)
		default:
			close(b.stopped)
			return
		}
	}
}

// execute is one executor: it gathers batches and runs them until ctx is
// done. It lingers for more calls only under load (its last batch had
// several calls, or calls were waiting when it ended): a lone call runs at
// once.
func (b *batcher[T]) execute(ctx context.Context) {
	var linger *time.Timer
	if b.linger > 0 {
		linger = time.NewTimer(b.linger)
		linger.Stop()
	}
	loaded := false
	for {
		var batch []*call[T]
		select {
		case <-ctx.Done():
			return
		case c := <-b.queue:
			batch = append(batch, c)
		}
		wait := linger != nil && loaded
		if wait {
			linger.Reset(b.linger)
		}
	gather:
		for len(batch) < b.max {
			if !wait {
				select {
				case c := <-b.queue:
					batch = append(batch, c)
				default:
					break gather
				}
				continue
			}
			select {
			case c := <-b.queue:
				batch = append(batch, c)
			case <-linger.C:
				break gather
			}
		}
		if wait {
			linger.Stop()
		}
		live := batch[:0]
		for _, c := range batch {
			if err := c.ctx.Err(); err != nil {
				c.answer(nil, err)
				continue
			}
			live = append(live, c)
		}
		if len(live) > 0 {
			b.runBatch(ctx, live)
		}
		loaded = len(batch) > 1 || len(b.queue) > 0
	}
}

// runBatch runs a batch. When its statement fails for a reason other than
// the database being unavailable (a value the database refused), each call
// runs on its own, so that one bad call fails alone.
func (b *batcher[T]) runBatch(ctx context.Context, batch []*call[T]) {
	err := b.exec(batch)
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		err = errClosed
	}
	if len(batch) == 1 || errors.Is(err, domain.ErrUnavailable) {
		for _, c := range batch {
			c.answer(nil, err)
		}
		return
	}
	for _, c := range batch {
		b.runBatch(ctx, []*call[T]{c})
	}
}
