package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// Creations and completions are coalesced: concurrent calls are queued,
// and a few executors each take what is queued (up to a bound) and run it
// as one statement, so that a busy server pays one round trip and one
// commit per batch instead of per job. This matters beyond round trips: a
// transaction that notifies holds PostgreSQL's notification lock from its
// commit until the end of its WAL flush, so notifying commits are
// serialised database-wide, and the number of them per second is what
// bounds the store's throughput.
//
// Executors are goroutines that exist only while calls wait: a call that
// finds fewer than the batcher's number of executors running starts one,
// and an executor returns once it finds the queue empty. An idle store
// runs no goroutine. When calls are rare each one runs on its own at once;
// under load the calls that arrive while the executors are busy make up
// the next batches, and an executor may linger for more (see execute).

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
	// exec runs a batch as one statement and answers every call of it,
	// unless the statement fails: then it returns the error and answers
	// none. Its statements end when ctx (the store's) is done.
	exec func(batch []*call[T]) error
	ctx  context.Context
	// max bounds a batch, linger is how long an executor under load (see
	// execute) waits for more calls after the first one of a batch;
	// otherwise, or when zero, it takes what is queued. executors bounds
	// the executors running at once.
	max       int
	linger    time.Duration
	executors int

	mu      sync.Mutex
	running int  // executors started and not returned
	closed  bool // set by close; no executor starts after it
	wg      sync.WaitGroup
}

func newBatcher[T any](ctx context.Context, max, executors int, linger time.Duration, exec func([]*call[T]) error) *batcher[T] {
	return &batcher[T]{queue: make(chan *call[T], 2*max), exec: exec, ctx: ctx, max: max, linger: linger, executors: executors}
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
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// After the send: an executor that found the queue empty has either
	// left the count already (then one starts here) or will see c when it
	// checks again under the lock (see execute).
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.drain()
	} else {
		if b.running < b.executors {
			b.running++
			b.wg.Add(1)
			go b.execute()
		}
		b.mu.Unlock()
	}
	select {
	case r := <-c.reply:
		return r.job, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close answers the calls still queued with errClosed once the running
// executors have returned; later calls are answered so at once. The
// store's ctx must be done first, so that executors do not linger.
func (b *batcher[T]) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
	b.drain()
}

// drain answers every queued call with errClosed.
func (b *batcher[T]) drain() {
	for {
		select {
		case c := <-b.queue:
			c.answer(nil, errClosed)
		default:
			return
		}
	}
}

// execute is one executor: it gathers batches and runs them until the
// queue is empty or the store closes, then returns. It lingers for more
// calls only under load (its last batch had several calls, or calls were
// waiting when it ended): a lone call runs at once.
func (b *batcher[T]) execute() {
	defer b.wg.Done()
	var linger *time.Timer
	if b.linger > 0 {
		linger = time.NewTimer(b.linger)
		linger.Stop()
	}
	loaded := false
	for {
		var batch []*call[T]
		select {
		case c := <-b.queue:
			batch = append(batch, c)
		default:
			b.mu.Lock()
			if len(b.queue) == 0 || b.ctx.Err() != nil {
				b.running--
				b.mu.Unlock()
				return
			}
			b.mu.Unlock()
			continue
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
			case <-b.ctx.Done():
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
			b.runBatch(live)
		}
		loaded = len(batch) > 1 || len(b.queue) > 0
	}
}

// runBatch runs a batch. When its statement fails for a reason other than
// the database being unavailable (a value the database refused), each call
// runs on its own, so that one bad call fails alone.
func (b *batcher[T]) runBatch(batch []*call[T]) {
	err := b.exec(batch)
	if err == nil {
		return
	}
	if b.ctx.Err() != nil {
		err = errClosed
	}
	if len(batch) == 1 || errors.Is(err, domain.ErrUnavailable) {
		for _, c := range batch {
			c.answer(nil, err)
		}
		return
	}
	for _, c := range batch {
		b.runBatch([]*call[T]{c})
	}
}
