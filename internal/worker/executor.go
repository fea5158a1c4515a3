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
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// executor runs one attempt of a job (River's job executor): the handler
// for its type under the attempt's timeout and the job's cancellation, a
// panic turned into a failure, progress and result reports (report.go),
// and it returns the attempt's outcome as a value for the completer. It
// writes nothing but progress. Its methods are safe for concurrent use.
type executor struct {
	store            Store
	log              *slog.Logger
	handlers         map[string]Handler
	fallback         Handler
	jobTimeout       time.Duration
	handlerGrace     time.Duration
	progressInterval time.Duration
	storeTimeout     time.Duration
	retryBackoff     time.Duration
	retryBackoffMax  time.Duration

	// handlerWG counts handler goroutines, including abandoned ones (see
	// invoke); the pool waits for them, within HandlerGrace, last.
	handlerWG sync.WaitGroup
}

func newExecutor(st Store, opts Options) *executor {
	return &executor{
		store:            st,
		log:              opts.Logger,
		handlers:         opts.Handlers,
		fallback:         opts.Default,
		jobTimeout:       opts.JobTimeout,
		handlerGrace:     opts.HandlerGrace,
		progressInterval: opts.ProgressInterval,
		storeTimeout:     opts.StoreTimeout,
		retryBackoff:     opts.RetryBackoff,
		retryBackoffMax:  opts.RetryBackoffMax,
	}
}

// outcomeKind is what becomes of an attempt.
type outcomeKind int

const (
	outcomeCompleted outcomeKind = iota
	outcomeFailed                // retried at retryAt, or failed for good when retryAt is zero
	outcomeCancelled             // the user asked for it
	outcomeReleased              // given back to pending through no fault of the job (shutdown)
)

// outcome is the result of one attempt, to be written by the completer.
type outcome struct {
	held    *heldJob
	jobType string
	kind    outcomeKind
	took    time.Duration // how long the handler ran; zero if it did not
	// timedOut marks a failure because the attempt ran out of time.
	timedOut bool
	result   json.RawMessage // outcomeCompleted
	errMsg   string          // outcomeFailed
	retryAt  time.Time       // outcomeFailed
	// interrupted marks a released job whose handler ran and was cancelled
	// by the end of the shutdown grace period.
	interrupted bool
}

// released is the outcome of a claimed job that no handler started.
func released(job *domain.Job, h *heldJob) outcome {
	return outcome{held: h, jobType: job.Type, kind: outcomeReleased}
}

// execute runs one attempt of job and returns its outcome. ctx is the
// pool's work context: when it ends (the shutdown grace period is over)
// the handler is cancelled and the job released.
func (e *executor) execute(ctx context.Context, job *domain.Job, h *heldJob) outcome {
	// Progress writes must happen even while the pool is being cancelled.
	wctx := context.WithoutCancel(ctx)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var herr error
	var result json.RawMessage
	o := outcome{held: h, jobType: job.Type}
	if h.started(cancel) {
		a := &attempt{exec: e, lease: h.lease, written: -1, pending: -1}
		start := time.Now()
		herr = e.invoke(withAttempt(hctx, a), job)
		o.took = time.Since(start)
		result = a.finish(wctx)
	}
	switch {
	case h.wasCancelled():
		// Asked for by a user: cancelled, whatever the handler returned.
		o.kind = outcomeCancelled
	case herr != nil && ctx.Err() != nil:
		o.kind, o.interrupted = outcomeReleased, true
	case herr != nil:
		if !errors.Is(herr, errPermanent) {
			o.retryAt = time.Now().UTC().Add(e.backoff(job.Attempts))
		}
		o.kind, o.errMsg, o.timedOut = outcomeFailed, herr.Error(), errors.Is(herr, errTimedOut)
	default:
		o.kind, o.result = outcomeCompleted, result
	}
	return o
}

// errTimedOut is wrapped by the error of an attempt that ran out of time.
var errTimedOut = errors.New("attempt timed out")

// backoff is the delay before the attempt after attempt n (1-based):
// RetryBackoff doubled per attempt, capped, minus a random part of up to
// half (so that jobs failing together do not retry together).
func (e *executor) backoff(n int) time.Duration {
	d := e.retryBackoffMax
	if n-1 < 32 {
		d = min(e.retryBackoff<<(n-1), e.retryBackoffMax)
	}
	if d <= 0 { // overflow
		d = e.retryBackoffMax
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

// invoke runs the handler for one attempt under the job's timeout and
// returns its error. The handler runs on a goroutine of its own so that one
// that ignores its context cannot hold the job: once the context is done
// (timeout, cancellation, shutdown), the handler has HandlerGrace to
// return; after that the executor stops waiting and the attempt ends with
// an error saying so. The abandoned goroutine runs on until the handler
// returns (handlerWG counts it; the pool waits for it only within
// HandlerGrace).
func (e *executor) invoke(ctx context.Context, job *domain.Job) error {
	timeout := job.Timeout
	if timeout <= 0 {
		timeout = e.jobTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	e.handlerWG.Add(1)
	go func() {
		defer e.handlerWG.Done()
		done <- e.call(hctx, job)
	}()

	timedOut := func(err error) error {
		if ctx.Err() == nil && errors.Is(hctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w after %s", errTimedOut, timeout)
		}
		return err
	}
	select {
	case err := <-done:
		return timedOut(err)
	case <-hctx.Done():
	}
	grace := time.NewTimer(e.handlerGrace)
	defer grace.Stop()
	select {
	case err := <-done:
		return timedOut(err)
	case <-grace.C:
		e.log.Error("handler ignored its context; abandoned", "id", job.ID, "type", job.Type, "grace", e.handlerGrace)
		return timedOut(fmt.Errorf("handler did not return within %s of its context ending; abandoned", e.handlerGrace))
	}
}

// call runs the handler for job.Type, turning a panic into an error.
func (e *executor) call(ctx context.Context, job *domain.Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("handler panicked", "id", job.ID, "type", job.Type, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	h := e.handlers[job.Type]
	if h == nil {
		h = e.fallback
	}
	if h == nil {
		return fmt.Errorf("no handler for job type %q", job.Type)
	}
	return h.Handle(ctx, job)
}

// waitHandlers waits for the handler goroutines still running (abandoned
// ones) for at most HandlerGrace, and reports whether they all returned.
func (e *executor) waitHandlers() bool {
	done := make(chan struct{})
	go func() {
		e.handlerWG.Wait()
		close(done)
	}()
	grace := time.NewTimer(e.handlerGrace)
	defer grace.Stop()
	select {
	case <-done:
		return true
	case <-grace.C:
		return false
	}
}
