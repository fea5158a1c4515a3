package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The rules below apply one change to a job, the same in every store: a
// store copies its current snapshot, applies the rule to the copy at time
// now, and keeps the copy as the next version (Version and UpdatedAt are the
// store's to set). Rules that can refuse check the job's status; rules for a
// worker's writes assume the store has checked the worker's lease (the job
// is processing under it). Rules that record a failure take the store's
// error history, keep: the job keeps the newest keep entries of Errors
// (at least one), and failure messages are cut to MaxErrorMessageBytes.

// ErrUnchanged is returned by a rule when the job is already as asked: the
// store keeps it as it is (no new version, no event) and returns it.
var ErrUnchanged = errors.New("job unchanged")

// Claim starts an attempt of a pending job.
func (j *Job) Claim(now time.Time) {
	j.Status = StatusProcessing
	j.Attempts++
	j.StartedAt = &now
	j.Progress = nil
	j.Result = nil
}

// Finish ends a processing job in a final status, recording errMsg as its
// error when not empty; a failure joins the error history, of which the
// newest keep entries stay.
func (j *Job) Finish(status Status, errMsg string, now time.Time, keep int) {
	j.Status = status
	if errMsg != "" {
		j.Error = TruncateErrorMessage(errMsg)
	}
	if status == StatusFailed {
		j.addError(j.Error, now, keep)
	}
	j.CancelRequested = false
	j.FinishedAt = &now
}

// Complete ends a processing job successfully with the handler's result.
func (j *Job) Complete(result json.RawMessage, now time.Time) {
	j.Status = StatusCompleted
	j.Result = result
	j.CancelRequested = false
	j.FinishedAt = &now
}

// SetProgress records a processing job's progress; ErrUnchanged when it
// already has that value.
func (j *Job) SetProgress(percent int) error {
	if j.Progress != nil && *j.Progress == percent {
		return ErrUnchanged
	}
	j.Progress = &percent
	return nil
}

// Fail records a failed attempt (the newest keep entries of the history
// stay): back to pending at retryAt when attempts are left and retryAt is
// set, failed for good otherwise.
func (j *Job) Fail(errMsg string, retryAt, now time.Time, keep int) {
	j.Error = TruncateErrorMessage(errMsg)
	j.addError(j.Error, now, keep)
	j.CancelRequested = false
	if j.Attempts < j.MaxAttempts && !retryAt.IsZero() {
		j.Status = StatusPending
		j.RunAt = retryAt
		j.StartedAt = nil
		return
	}
	j.Status = StatusFailed
	j.FinishedAt = &now
}

// Release gives a processing job back through no fault of its own (the
// worker stopped): pending again with its attempt count, or cancelled when
// cancellation was requested meanwhile (the user asked for it; running it
// again would ignore that).
func (j *Job) Release(now time.Time) {
	if j.CancelRequested {
		j.Status = StatusCancelled
		j.FinishedAt = &now
	} else {
		j.Status = StatusPending
		j.StartedAt = nil
	}
	j.CancelRequested = false
}

// Rescue gives back a processing job whose worker was lost (msg says so):
// the attempt is spent and recorded as a failure (the newest keep entries
// of the history stay); the job runs again at once when attempts are
// left, is failed otherwise, and is cancelled when cancellation was
// requested.
func (j *Job) Rescue(msg string, now time.Time, keep int) {
	msg = TruncateErrorMessage(msg)
	switch {
	case j.CancelRequested:
		j.Status = StatusCancelled
		j.FinishedAt = &now
	case j.Attempts < j.MaxAttempts:
		j.Error = msg
		j.addError(msg, now, keep)
		j.Status = StatusPending
		j.RunAt = now
		j.StartedAt = nil
	default:
		j.Error = msg
		j.addError(msg, now, keep)
		j.Status = StatusFailed
		j.FinishedAt = &now
	}
	j.CancelRequested = false
}

// Cancel cancels a pending job at once and records the request on a
// processing one (its worker then stops the handler); ErrUnchanged when it
// was requested already, an error wrapping ErrConflict in a final status.
func (j *Job) Cancel(now time.Time) error {
	switch j.Status {
	case StatusPending:
		j.Status = StatusCancelled
		j.FinishedAt = &now
	case StatusProcessing:
		if j.CancelRequested {
			return ErrUnchanged
		}
		j.CancelRequested = true
	default:
		return fmt.Errorf("%s: %w", j.Status, ErrConflict)
	}
	return nil
}

// Retry puts a failed or cancelled job back to pending now, keeping its
// attempts and error history; other statuses give ErrConflict.
func (j *Job) Retry(now time.Time) error {
	if (j.Status != StatusFailed && j.Status != StatusCancelled) || !CanTransition(j.Status, StatusPending) {
		return fmt.Errorf("%s → %s: %w", j.Status, StatusPending, ErrConflict)
	}
	j.Status = StatusPending
	j.RunAt = now
	j.StartedAt = nil
	j.FinishedAt = nil
	j.CancelRequested = false
	return nil
}

// addError appends a failure of the current attempt to a copy of the
// history (snapshots share their slices) and keeps the newest keep
// entries, at least one. A history kept under a larger limit shrinks to
// keep at once.
func (j *Job) addError(msg string, now time.Time, keep int) {
	old := j.Errors[max(len(j.Errors)-max(keep, 1)+1, 0):]
	out := make([]JobError, len(old), len(old)+1)
	copy(out, old)
	j.Errors = append(out, JobError{Attempt: j.Attempts, Message: msg, At: now})
}
