package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// jobColumns are the columns scanJob reads, in its order.
const jobColumns = `seq, id, type, payload, status, attempts, max_attempts, error, errors,
	created_at, updated_at, started_at, finished_at, idempotency_key, timeout_ns,
	run_at, priority, progress, result, cancel_requested, version, owner, tags, trace_parent, lease_owner`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// scanJob reads one row of jobColumns into a new snapshot, and returns it
// with the owner of its lease ("" when it has none).
func scanJob(sc scanner) (*domain.Job, string, error) {
	var (
		j                     domain.Job
		status, errs, tags    string
		created, updated      int64
		started, finished     sql.NullInt64
		key, leaseOwner       sql.NullString
		timeout, runAt        int64
		progress              sql.NullInt64
		payload, result       []byte
		cancelRequested       int64
		attempts, maxAttempts int64
		priority              int64
	)
	err := sc.Scan(&j.Seq, &j.ID, &j.Type, &payload, &status, &attempts, &maxAttempts, &j.Error, &errs,
		&created, &updated, &started, &finished, &key, &timeout,
		&runAt, &priority, &progress, &result, &cancelRequested, &j.Version, &j.Owner, &tags, &j.TraceParent, &leaseOwner)
	if err != nil {
		return nil, "", err
	}
	j.Status = domain.Status(status)
	j.Attempts = int(attempts)
	j.MaxAttempts = int(maxAttempts)
	j.Priority = int(priority)
	j.Payload = rawJSON(payload)
	j.Result = rawJSON(result)
	j.CreatedAt = fromMicros(created)
	j.UpdatedAt = fromMicros(updated)
	j.StartedAt = nullTime(started)
	j.FinishedAt = nullTime(finished)
	j.IdempotencyKey = key.String
	j.Timeout = time.Duration(timeout)
	j.RunAt = fromMicros(runAt)
	if progress.Valid {
		p := int(progress.Int64)
		j.Progress = &p
	}
	j.CancelRequested = cancelRequested != 0
	if j.Errors, err = decodeErrors(errs); err != nil {
		return nil, "", fmt.Errorf("job %s: %w", j.ID, err)
	}
	if tags != "[]" {
		if err := json.Unmarshal([]byte(tags), &j.Tags); err != nil {
			return nil, "", fmt.Errorf("job %s: decode tags: %w", j.ID, err)
		}
	}
	return &j, leaseOwner.String, nil
}

// encodeTags returns the tags column of a job's tags.
func encodeTags(tags []string) (string, error) {
	if len(tags) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(tags)
	return string(b), err
}

// storedError is one entry of the errors column.
type storedError struct {
	Attempt int    `json:"attempt"`
	Message string `json:"message"`
	At      int64  `json:"at"` // unix microseconds
}

// encodeErrors returns the errors column of a history.
func encodeErrors(errs []domain.JobError) (string, error) {
	if len(errs) == 0 {
		return "[]", nil
	}
	out := make([]storedError, len(errs))
	for i, e := range errs {
		out[i] = storedError{Attempt: e.Attempt, Message: e.Message, At: e.At.UnixMicro()}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("encode error history: %w", err)
	}
	return string(b), nil
}

// decodeErrors reads the errors column; an empty history is nil.
func decodeErrors(s string) ([]domain.JobError, error) {
	if s == "[]" || s == "" {
		return nil, nil
	}
	var in []storedError
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return nil, fmt.Errorf("decode error history: %w", err)
	}
	out := make([]domain.JobError, len(in))
	for i, e := range in {
		out[i] = domain.JobError{Attempt: e.Attempt, Message: e.Message, At: fromMicros(e.At)}
	}
	return out, nil
}

// Times are kept as unix microseconds: micros and fromMicros convert, and
// truncate rounds a time down to what the database keeps, so that a
// returned job equals the stored one.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func truncate(t time.Time) time.Time { return fromMicros(micros(t)) }

// ceilMicros is the smallest whole microsecond not before t: for a stored
// x, x < t exactly when x < ceilMicros(t).
func ceilMicros(t time.Time) int64 {
	us := micros(t)
	if fromMicros(us).Before(t) {
		us++
	}
	return us
}

func nullTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// nullMicros is the column value of an optional time.
func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return micros(*t)
}

// blob is the column value of JSON bytes: NULL for none, the bytes as they
// are otherwise.
func blob(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// normalize truncates the times of a job changed in Go to what the
// database keeps.
func normalize(j *domain.Job) {
	j.CreatedAt = truncate(j.CreatedAt)
	j.UpdatedAt = truncate(j.UpdatedAt)
	j.RunAt = truncate(j.RunAt)
	if j.StartedAt != nil {
		t := truncate(*j.StartedAt)
		j.StartedAt = &t
	}
	if j.FinishedAt != nil {
		t := truncate(*j.FinishedAt)
		j.FinishedAt = &t
	}
}
