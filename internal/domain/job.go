// Package domain holds the job model shared by every other package: the Job
// type, its statuses, the transitions allowed between them and the sentinel
// errors callers branch on. It imports nothing of this project.
package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Status is where a job is in its life. Its string form is the lowercase
// name used by the REST API ("pending", "processing", ...).
type Status string

// The statuses a job can have.
const (
	StatusPending    Status = "pending"
	StatusProcessing Status = "processing"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
	StatusCancelled  Status = "cancelled"
)

// Statuses lists every status in lifecycle order.
var Statuses = [...]Status{StatusPending, StatusProcessing, StatusCompleted, StatusFailed, StatusCancelled}

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusProcessing, StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// Final reports whether s ends a job's run: nothing changes a job in a
// final status except an explicit manual retry (failed or cancelled back to
// pending), which starts a new run.
func (s Status) Final() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// CanTransition reports whether a job may move from status from to status
// to. The allowed edges are:
//
//	pending    → processing (claimed), cancelled
//	processing → completed, failed, cancelled, pending (released on shutdown)
//	failed     → pending (manual retry)
//	cancelled  → pending (manual retry)
//
// Completed has no outgoing edge.
func CanTransition(from, to Status) bool {
	switch from {
	case StatusPending:
		return to == StatusProcessing || to == StatusCancelled
	case StatusProcessing:
		return to == StatusCompleted || to == StatusFailed || to == StatusCancelled || to == StatusPending
	case StatusFailed, StatusCancelled:
		return to == StatusPending
	}
	return false
}

// Job is one background job. A Job value is a snapshot: stores hand out
// copies (or pointers to immutable snapshots), never a value they will
// mutate later, so a Job may be shared between goroutines once published.
type Job struct {
	ID string
	// Seq orders jobs by creation within one store: a later job has a
	// larger Seq. Cursors and "newest first" listings are built on it.
	Seq     int64
	Type    string
	Payload json.RawMessage // nil when the job has no payload
	Status  Status
	// Attempts counts how many times processing started.
	Attempts int
	// Error is the last failure message; empty when the job never failed.
	Error      string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
	// Errors holds one entry per failed attempt, oldest first: the newest
	// ones only, as many as the store keeps (its error history, at most
	// MaxErrorHistory), while Attempts counts them all. Snapshots share the
	// backing array: never modify it in place.
	Errors []JobError
	// IdempotencyKey is the key the job was created with, if any.
	IdempotencyKey string
	// Owner is the identity that created the job (a token's name or a
	// JWT's subject); empty when it has none (authentication was off).
	// It never changes.
	Owner string
	// Timeout bounds each attempt; zero means the worker's default.
	Timeout time.Duration
	// MaxAttempts is how many attempts the job gets; a failed attempt with
	// attempts left goes back to pending at a later RunAt.
	MaxAttempts int
	// RunAt is the earliest time the job may run.
	RunAt time.Time
	// Priority orders runnable jobs: higher first (MinPriority to
	// MaxPriority), then earlier RunAt, then creation order.
	Priority int
	// Progress is the last progress (0 to 100) the handler reported during
	// the current or last attempt; nil before any report.
	Progress *int
	// Result is the JSON value the handler returned on success.
	Result json.RawMessage
	// CancelRequested is set when cancellation was asked for while the job
	// was processing: its handler's context is cancelled and the job
	// becomes cancelled when the handler returns.
	CancelRequested bool
	// Version starts at 1 and increases by one on every change.
	Version int64
	// Tags label the job for listing and watching (at most MaxTags, each
	// valid as ValidateTag says), sorted, without duplicates; nil when it
	// has none. They never change.
	Tags []string
	// TraceParent is the W3C traceparent of the span that created the job
	// ("00-<trace id>-<span id>-<flags>"), empty when tracing was off: each
	// attempt's span links to it. It never changes.
	TraceParent string
}

// HasTag reports whether the job carries tag.
func (j *Job) HasTag(tag string) bool {
	_, found := slices.BinarySearch(j.Tags, tag)
	return found
}

// JobError records one failed attempt.
type JobError struct {
	Attempt int
	Message string
	At      time.Time
}

// Stats counts jobs per status.
type Stats struct {
	Pending, Processing, Completed, Failed, Cancelled int
}

// Add adds n to the count of status (an unknown status counts nowhere).
func (s *Stats) Add(status Status, n int) {
	switch status {
	case StatusPending:
		s.Pending += n
	case StatusProcessing:
		s.Processing += n
	case StatusCompleted:
		s.Completed += n
	case StatusFailed:
		s.Failed += n
	case StatusCancelled:
		s.Cancelled += n
	}
}

// ErrorMessage returns the last failure message, or nil when there is none.
func (j *Job) ErrorMessage() *string {
	if j.Error == "" {
		return nil
	}
	return &j.Error
}

// IdempotencyKeyOrNil returns the job's idempotency key, or nil when it has
// none.
func (j *Job) IdempotencyKeyOrNil() *string {
	if j.IdempotencyKey == "" {
		return nil
	}
	return &j.IdempotencyKey
}

// OwnerOrNil returns the job's owner, or nil when it has none.
func (j *Job) OwnerOrNil() *string {
	if j.Owner == "" {
		return nil
	}
	return &j.Owner
}

// TimeoutSeconds returns the job's own attempt timeout in whole seconds, or
// nil when the worker's default applies.
func (j *Job) TimeoutSeconds() *int {
	if j.Timeout <= 0 {
		return nil
	}
	n := int(j.Timeout / time.Second)
	return &n
}

// NewJob is what a caller supplies to create a job; the store sets the rest.
// The jobs service (internal/jobs) builds it from an API's request and
// checks it against the bounds below; stores check only what their own
// encoding cannot hold.
type NewJob struct {
	Type    string
	Payload json.RawMessage
	// IdempotencyKey, when set, makes creation idempotent: while a job with
	// the same key and the same Owner exists, creating another returns that
	// job instead. Keys are scoped per owner, so that no caller gets
	// another's job back through a key.
	IdempotencyKey string
	// Owner is the identity creating the job; empty for none.
	Owner string
	// Timeout bounds each attempt (MinTimeout to MaxTimeout); zero means
	// the worker's default.
	Timeout time.Duration
	// MaxAttempts (1 to MaxMaxAttempts); zero means 1.
	MaxAttempts int
	// RunAt delays the job; zero means now.
	RunAt time.Time
	// Priority, MinPriority to MaxPriority; higher runs first.
	Priority int
	// Tags, sorted and without duplicates (see NormalizeTags); at most
	// MaxTags, each valid as ValidateTag says.
	Tags []string
	// TraceParent is the W3C traceparent of the creating span, set by the
	// jobs service (never from client input); empty for none.
	TraceParent string
}

// MaxTags is the most tags a job may carry.
const MaxTags = 10

// NormalizeTags returns tags sorted, without duplicates, and nil when there
// are none. It does not modify tags.
func NormalizeTags(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}

// Bounds of MaxAttempts and Priority.
const (
	MaxMaxAttempts = 100
	MinPriority    = -100
	MaxPriority    = 100
)

// Bounds of a job's own timeout.
const (
	MinTimeout = time.Second
	MaxTimeout = 24 * time.Hour
)

// MaxIdempotencyKeyLength is the longest idempotency key accepted.
const MaxIdempotencyKeyLength = 255

// Bounds of a job's error history: a job that fails and is retried forever
// must not grow without end, nor make each further failure cost more.
const (
	// DefaultErrorHistory is how many failures a job keeps in Errors
	// unless the store is told otherwise.
	DefaultErrorHistory = 25
	// MaxErrorHistory is the most a store may be told to keep.
	MaxErrorHistory = 1000
	// MaxErrorMessageBytes bounds one failure message, in Error and in
	// each entry of Errors (see TruncateErrorMessage).
	MaxErrorMessageBytes = 2048
)

// TruncateErrorMessage returns msg when it is at most MaxErrorMessageBytes
// long. A longer one is cut at a character boundary and ends with a marker
// that gives its full length ("… [truncated, 10000 bytes]"): the result is
// at most MaxErrorMessageBytes long, and valid UTF-8 when msg is.
func TruncateErrorMessage(msg string) string {
	if len(msg) <= MaxErrorMessageBytes {
		return msg
	}
	marker := fmt.Sprintf("… [truncated, %d bytes]", len(msg))
	n := MaxErrorMessageBytes - len(marker)
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n] + marker
}

// Sentinel errors. Stores and services wrap them with context; callers
// compare with errors.Is.
var (
	// ErrNotFound means no job has the given id.
	ErrNotFound = errors.New("job not found")
	// ErrConflict means the job is not in a status that allows the
	// requested change (e.g. claiming a job that is not pending).
	ErrConflict = errors.New("job status conflict")
	// ErrInvalid means the caller's input breaks a validation rule.
	ErrInvalid = errors.New("invalid input")
	// ErrForbidden means the caller's role does not allow the operation
	// on any job. (A job the caller may not see is ErrNotFound instead,
	// as if it did not exist: ids leak nothing.)
	ErrForbidden = errors.New("forbidden")
	// ErrLeaseLost means a worker wrote about an attempt it no longer
	// holds: its lease expired and the job was rescued, or another claim
	// followed. It wraps ErrConflict.
	ErrLeaseLost = fmt.Errorf("lease lost: %w", ErrConflict)
	// ErrUnavailable means the store could not be reached or failed for a
	// reason that is not the caller's (a database down or restarting). The
	// request may succeed if tried again later.
	ErrUnavailable = errors.New("job store unavailable")
)

// ValidationError names the input field that broke a rule. It wraps
// ErrInvalid.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Message) }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// MaxTypeLength is the longest job type accepted.
const MaxTypeLength = 128

// NoJobHasTag reports whether t, a filter of jobs by tag, can match no job
// at all: it is not empty and not a valid tag (see NoJobHasType).
func NoJobHasTag(t string) bool { return t != "" && ValidateTag(t, "tag") != nil }

// NoJobHasType reports whether t, a filter of jobs by type, can match no
// job at all: it is not empty and not a valid type. Callers answer such
// filters with nothing instead of asking a store that may choke on the
// bytes (invalid UTF-8, NUL).
func NoJobHasType(t string) bool { return t != "" && ValidateType(t) != nil }

// ValidateType checks a job type: non-empty, at most MaxTypeLength
// characters of ASCII letters, digits and . _ : -
func ValidateType(t string) error { return validateName(t, "type") }

// ValidateTag checks a tag by the rule of a job type (see ValidateType); an
// error names field.
func ValidateTag(t, field string) error { return validateName(t, field) }

func validateName(t, field string) error {
	if t == "" {
		return &ValidationError{Field: field, Message: "must not be empty"}
	}
	if len(t) > MaxTypeLength {
		return &ValidationError{Field: field, Message: fmt.Sprintf("must be at most %d characters, got %d", MaxTypeLength, len(t))}
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return &ValidationError{Field: field, Message: fmt.Sprintf("may contain only letters, digits and . _ : - (found %q at position %d)", rune(c), i)}
		}
	}
	return nil
}
