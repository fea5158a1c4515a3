package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// attempt is what a handler can report about its current attempt. The
// worker puts it in the handler's context.
type attempt struct {
	exec  *executor
	lease store.Lease

	mu        sync.Mutex
	result    json.RawMessage
	written   int // last progress written to the store; -1 for none
	pending   int // last progress reported and not written; -1 for none
	lastWrite time.Time
	flush     *time.Timer // writes a held-back report at the end of the interval
	done      bool        // the attempt's outcome is being recorded: reports are late
}

type attemptKey struct{}

func withAttempt(ctx context.Context, a *attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

// ErrNotInHandler is returned by ReportProgress and SetResult when ctx is
// not a handler's context.
var ErrNotInHandler = errors.New("not called with a job handler's context")

// ReportProgress records the progress (0 to 100) of the job the handler
// runs; subscribers see it as the job's progress. Reports are coalesced so
// that a chatty handler cannot flood subscribers: at most one is written per
// Options.ProgressInterval, and the last one reported is always written
// before the attempt's outcome. Safe for concurrent use.
func ReportProgress(ctx context.Context, percent int) error {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil {
		return ErrNotInHandler
	}
	if percent < 0 || percent > 100 {
		return fmt.Errorf("progress %d: must be between 0 and 100: %w", percent, domain.ErrInvalid)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return nil // an abandoned handler reporting after its attempt ended
	}
	a.pending = percent
	if wait := a.exec.progressInterval - time.Since(a.lastWrite); wait > 0 {
		// Held back; written when the interval ends unless a later report
		// or the attempt's end writes it first.
		if a.flush == nil {
			a.flush = time.AfterFunc(wait, a.flushPending)
		}
		return nil
	}
	return a.writeLocked(ctx)
}

// flushPending writes a held-back report (the timer's function).
func (a *attempt) flushPending() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flush = nil
	if a.done {
		return
	}
	if err := a.writeLocked(context.Background()); err != nil {
		a.exec.log.Warn("progress report lost", "id", a.lease.JobID, "err", err)
	}
}

// SetResult sets the JSON value stored as the job's result if the attempt
// succeeds. The last call wins. Safe for concurrent use.
func SetResult(ctx context.Context, result json.RawMessage) error {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil {
		return ErrNotInHandler
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, result); err != nil {
		return fmt.Errorf("result is not valid JSON: %v: %w", err, domain.ErrInvalid)
	}
	a.mu.Lock()
	if !a.done {
		a.result = compact.Bytes()
	}
	a.mu.Unlock()
	return nil
}

// writeLocked writes the pending progress, if it differs from the last one
// written. A job that is no longer processing (cancelled and finished
// meanwhile) is not an error for the handler.
func (a *attempt) writeLocked(ctx context.Context) error {
	if a.pending < 0 || a.pending == a.written {
		return nil
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.exec.storeTimeout)
	defer cancel()
	_, err := a.exec.store.Progress(wctx, a.lease, a.pending)
	if err != nil && !errors.Is(err, domain.ErrConflict) {
		return fmt.Errorf("report progress of job %s: %w", a.lease.JobID, err)
	}
	a.written, a.lastWrite = a.pending, time.Now()
	return nil
}

// finish writes the last progress reported and returns the result.
func (a *attempt) finish(ctx context.Context) json.RawMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done = true
	if a.flush != nil {
		a.flush.Stop() // if it already fired, it finds done and writes nothing
		a.flush = nil
	}
	if err := a.writeLocked(ctx); err != nil {
		a.exec.log.Warn("last progress report lost", "id", a.lease.JobID, "err", err)
	}
	return a.result
}
