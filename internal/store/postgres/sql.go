package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// jobColumns are the columns scanJob reads, in its order.
const jobColumns = `id, seq, type, payload, status, attempts, max_attempts, error, errors, idempotency_key,
	timeout_ms, run_at, priority, progress, result, cancel_requested, version, created_at, updated_at,
	started_at, finished_at, owner, tags, trace_parent`

// changeTail ends the SET list of every statement that makes a new version
// of jobs: $1 is the statement's token (see events.go), updated_at is $now.
func changeTail(now string) string {
	return `version = version + 1, updated_at = ` + now + `, prior_writer = writer, writer = $1`
}

// leaveProcessing clears the lease of a job that stops processing. Every
// statement that moves a job out of processing uses it, so a job has a lease
// owner exactly while it is processing (the batch completion relies on it).
const leaveProcessing = `lease_owner = NULL, lease_expires_at = NULL, `

// appendError is the errors history with one more entry for the current
// attempt, of which the newest keep entries stay: the lax jsonpath slice
// starts at the first entry when the history is shorter. A history kept
// under a larger limit shrinks to keep at once. The trim is part of the
// statement that appends, so a job's history never exceeds keep, and the
// row a failure rewrites is as large after thousands of failures as after
// keep of them.
func appendError(message, at string, keep int) string {
	return `jsonb_path_query_array(COALESCE(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object('attempt', attempts, 'message', ` + message + `, 'at', ` + at + `)), ` +
		quote(fmt.Sprintf("$[last - %d to last]", max(keep, 1)-1)) + `)`
}

// statements are the SQL texts that depend on the store's notification
// channel, instance and error history.
type statements struct {
	create, claim, claimControlled, rescue, complete string
	finish, progress, release, fail, cancel, retry   string
	enqueuePeriodic                                  string
	// CancelJobs and RetryJobs.
	cancelJobs, retryJobs string
}

// Cancel's and Retry's rules (domain.Job.Cancel and Retry), shared by the
// statements that change one job and those that change many: the SET list
// ($1 token, $3 now) and the condition of the jobs it changes.
var (
	cancelSet = `status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
		finished_at = CASE WHEN status = 'pending' THEN $3 ELSE finished_at END,
		cancel_requested = status = 'processing', ` + changeTail("$3")
	cancellable = `(status = 'pending' OR status = 'processing' AND NOT cancel_requested)`
	retrySet    = `status = 'pending', run_at = $3, started_at = NULL, finished_at = NULL, cancel_requested = false, ` + changeTail("$3")
	retryable   = `status IN ('failed', 'cancelled')`
)

// notifyChunk is how many (id, version) pairs one notification carries:
// about 47 bytes each, which with the prefix (at most 90 bytes, see
// noticePrefix) keeps payloads under PostgreSQL's 8000 bytes.
const notifyChunk = 150

// channelName derives the notification channel from the schema, so that
// stores on different schemas do not hear each other. Channel names are
// identifiers (at most 63 bytes): long schema names are hashed.
func channelName(schema string) string {
	name := "jobqueue_changes_" + schema
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(schema))
		name = "jobqueue_changes_" + hex.EncodeToString(sum[:16])
	}
	return name
}

// quote makes s a SQL string literal (standard_conforming_strings is on
// in every supported server).
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// notice is the payload of a change notification: the instance that made
// the changes and the (id, version) of each changed job, or the types
// whose controls changed.
type notice struct {
	Instance string `json:"o"`
	Jobs     []ref  `json:"j"`
	// Types names the job types whose controls changed (SetTypeControl).
	Types []string `json:"t"`
}

// ref names a version of a job: a JSON pair [id, version].
type ref struct {
	id      string
	version int64
}

func (r *ref) UnmarshalJSON(b []byte) error {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return err
	}
	if err := json.Unmarshal(pair[0], &r.id); err != nil {
		return err
	}
	return json.Unmarshal(pair[1], &r.version)
}

// noticePrefix is how the notifications of instance begin. A long or
// unusual instance id is replaced by a digest, so that the prefix stays
// short (payloads are limited) and needs no escaping.
func noticePrefix(instance string) string {
	origin := instance
	if len(origin) > 64 || strings.ContainsFunc(origin, func(r rune) bool { return r < ' ' || r == '"' || r == '\\' || r > '~' }) {
		sum := sha256.Sum256([]byte(instance))
		origin = "sha256:" + hex.EncodeToString(sum[:16])
	}
	return `{"o":"` + origin + `","j":`
}

func newStatements(channel, instance string, errorHistory int) statements {
	// notifyingRows completes a query that returns the changed rows of
	// jobs (jobColumns and prior_writer, after the CTEs in before) so
	// that the statement also notifies the channel of the changes, in
	// chunks of notifyChunk, within the same transaction.
	notifyingRows := func(before, rows string) string {
		return `WITH ` + before + ` changed AS (` + rows + `),
			notified AS (
				SELECT pg_notify(` + quote(channel) + `, ` + quote(noticePrefix(instance)) + ` || json_agg(json_build_array(id, version))::text || '}')
				FROM (SELECT id, version, (row_number() OVER () - 1) / ` + fmt.Sprint(notifyChunk) + ` AS chunk FROM changed) c
				GROUP BY chunk)
			SELECT * FROM changed WHERE (SELECT count(*) FROM notified) >= 0`
	}
	// notifying completes a statement that changes jobs (the CTE
	// "changed") with RETURNING jobColumns and prior_writer, and
	// notifyingRows.
	notifying := func(before, change string) string {
		return notifyingRows(before, change+` RETURNING `+jobColumns+`, prior_writer`)
	}
	// leased is the condition of a write about a claim: $2 id, $3 owner,
	// $4 attempt.
	const leased = ` WHERE id = $2 AND status = 'processing' AND lease_owner = $3 AND attempts = $4`
	return statements{
		// $2 ids, $3 types, $4 payloads, $5 max_attempts, $6 keys, $7
		// timeout_ms, $8 run_at, $9 priorities, $10 now, $11 owners, $12
		// tags (each job's joined by commas, which no tag has: a
		// two-dimensional array would need as many tags for every job),
		// $13 trace parents.
		// Rows are inserted in the order given, so seq follows it.
		create: notifying(``, `
			INSERT INTO jobs (id, type, payload, status, max_attempts, idempotency_key, timeout_ms, run_at, priority, created_at, updated_at, writer, owner, tags, trace_parent)
			SELECT i_id, i_type, i_payload, 'pending', i_max_attempts, i_key, i_timeout_ms, i_run_at, i_priority, $10, $10, $1, i_owner, string_to_array(i_tags, ','), i_trace_parent
			FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::int[], $6::text[], $7::bigint[], $8::timestamptz[], $9::int[], $11::text[], $12::text[], $13::text[])
				WITH ORDINALITY AS i(i_id, i_type, i_payload, i_max_attempts, i_key, i_timeout_ms, i_run_at, i_priority, i_owner, i_tags, i_trace_parent, i_ord)
			ORDER BY i_ord
			ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING`),
		// $2 runnable cutoff, $3 limit, $4 now, $5 owner, $6 lease
		// expiry. It claims nothing while any type has controls: those
		// claims are made by claimControlled.
		claim: notifying(`
			picked AS (
				SELECT id AS picked_id FROM jobs
				WHERE status = 'pending' AND run_at <= $2 AND NOT EXISTS (SELECT FROM job_type_controls)
				ORDER BY priority DESC, run_at, seq
				LIMIT $3
				FOR UPDATE SKIP LOCKED),`, `
			UPDATE jobs SET status = 'processing', attempts = attempts + 1, started_at = $4, progress = NULL, result = NULL,
				lease_owner = $5, lease_expires_at = $6, `+changeTail("$4")+`
			FROM picked WHERE id = picked_id`),
		// The claim under type controls (see claim): claim_controlled
		// claims and returns the jobs, with the same arguments as claim.
		claimControlled: notifyingRows(``, `SELECT `+jobColumns+`, prior_writer FROM claim_controlled($1, $2, $3, $4, $5, $6)`),
		// $2 expiry cutoff, $3 limit, $4 message, $5 error time, $6 now.
		rescue: notifying(`
			expired AS (
				SELECT id AS expired_id FROM jobs
				WHERE status = 'processing' AND lease_expires_at < $2
				ORDER BY lease_expires_at, id
				LIMIT $3
				FOR UPDATE SKIP LOCKED),`, `
			UPDATE jobs SET
				status = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts < max_attempts THEN 'pending' ELSE 'failed' END,
				error = CASE WHEN cancel_requested THEN error ELSE $4 END,
				errors = CASE WHEN cancel_requested THEN errors ELSE `+appendError("$4::text", "$5::text", errorHistory)+` END,
				run_at = CASE WHEN NOT cancel_requested AND attempts < max_attempts THEN $6 ELSE run_at END,
				started_at = CASE WHEN NOT cancel_requested AND attempts < max_attempts THEN NULL ELSE started_at END,
				finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN $6 ELSE finished_at END,
				cancel_requested = false, `+leaveProcessing+changeTail("$6")+`
			FROM expired WHERE id = expired_id`),
		// $2 ids, $3 owners, $4 attempts, $5 results, $6 now. The rows
		// are found by primary key alone: the claim is checked by its
		// owner and attempt only (a lease owner is set exactly while a
		// job is processing), since a condition on status would let the
		// planner scan a status index instead, which statistics from
		// before a burst (no job processing yet) make look cheap while it
		// holds every processing job and dead versions of them. The join
		// may visit the rows in any order; Heartbeat, the other statement
		// that waits for several rows of processing jobs, skips the rows
		// others hold, so the two cannot deadlock (locking the rows in id
		// order first instead cost a WAL record per job).
		complete: notifying(`
			input AS (SELECT * FROM unnest($2::uuid[], $3::text[], $4::int[], $5::bytea[]) AS i(input_id, input_owner, input_attempt, input_result)),`, `
			UPDATE jobs SET status = 'completed', result = input_result, cancel_requested = false, finished_at = $6,
				`+leaveProcessing+changeTail("$6")+`
			FROM input
			WHERE id = input_id AND lease_owner = input_owner AND attempts = input_attempt`),
		// $5 now, $6 status, $7 message, $8 error time.
		finish: notifying(``, `
			UPDATE jobs SET status = $6,
				error = CASE WHEN $7::text <> '' THEN $7::text ELSE error END,
				errors = CASE WHEN $6::text = 'failed' THEN `+appendError("CASE WHEN $7::text <> '' THEN $7::text ELSE error END", "$8::text", errorHistory)+` ELSE errors END,
				cancel_requested = false, finished_at = $5, `+leaveProcessing+changeTail("$5")+leased),
		// $5 now, $6 percent.
		progress: notifying(``, `
			UPDATE jobs SET progress = $6, `+changeTail("$5")+leased+` AND progress IS DISTINCT FROM $6`),
		// $5 now.
		release: notifying(``, `
			UPDATE jobs SET
				status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
				finished_at = CASE WHEN cancel_requested THEN $5::timestamptz END,
				started_at = CASE WHEN cancel_requested THEN started_at END,
				cancel_requested = false, `+leaveProcessing+changeTail("$5")+leased),
		// $5 now, $6 message, $7 retry time (NULL for none), $8 error
		// time.
		fail: notifying(``, `
			UPDATE jobs SET
				error = $6,
				errors = `+appendError("$6::text", "$8::text", errorHistory)+`,
				status = CASE WHEN attempts < max_attempts AND $7::timestamptz IS NOT NULL THEN 'pending' ELSE 'failed' END,
				run_at = CASE WHEN attempts < max_attempts AND $7::timestamptz IS NOT NULL THEN $7::timestamptz ELSE run_at END,
				started_at = CASE WHEN attempts < max_attempts AND $7::timestamptz IS NOT NULL THEN NULL ELSE started_at END,
				finished_at = CASE WHEN attempts < max_attempts AND $7::timestamptz IS NOT NULL THEN NULL ELSE $5::timestamptz END,
				cancel_requested = false, `+leaveProcessing+changeTail("$5")+leased),
		// $2 id, $3 now.
		cancel: notifying(``, `UPDATE jobs SET `+cancelSet+` WHERE id = $2 AND `+cancellable),
		// $2 ids, $3 now, $4 owner ('' for any).
		cancelJobs: notifying(``, `UPDATE jobs SET `+cancelSet+` WHERE id = ANY($2::uuid[]) AND ($4::text = '' OR owner = $4::text) AND `+cancellable),
		// $2 new job's id, $3 periodic job's name, $4 its revision, $5
		// tick, $6 type, $7 payload, $8 max_attempts, $9 timeout_ms, $10
		// priority, $11 tags, $12 now. The job is inserted only if the
		// definition's last tick advanced (see migration 00012).
		enqueuePeriodic: notifying(`
			tick AS (
				UPDATE periodic_jobs SET last_run_at = $5, last_job_id = $2
				WHERE name = $3 AND revision = $4 AND NOT paused AND (last_run_at IS NULL OR last_run_at < $5)
				RETURNING name),`, `
			INSERT INTO jobs (id, type, payload, status, max_attempts, timeout_ms, run_at, priority, created_at, updated_at, writer, owner, tags)
			SELECT $2, $6, $7, 'pending', $8, $9, $12, $10, $12, $12, $1, '', coalesce($11::text[], '{}') FROM tick`),
		// $2 id, $3 now.
		retry: notifying(``, `UPDATE jobs SET `+retrySet+` WHERE id = $2 AND `+retryable),
		// $2 ids, $3 now, $4 owner ('' for any).
		retryJobs: notifying(``, `UPDATE jobs SET `+retrySet+` WHERE id = ANY($2::uuid[]) AND ($4::text = '' OR owner = $4::text) AND `+retryable),
	}
}

// scanner is a pgx.Row or pgx.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanJob reads jobColumns, then the extra columns into extra.
func scanJob(row scanner, extra ...any) (*domain.Job, error) {
	return newJobRow(extra...).scan(row)
}

// jobRow receives rows of jobColumns (then extra columns). One serves all
// the rows of a result: each scan copies its values into a new Job. Its
// destinations are of types pgx scans without reflection.
type jobRow struct {
	job                   domain.Job
	status                string
	payload, result, errs []byte
	key                   pgtype.Text
	timeoutMS             int64
	progress              pgtype.Int4
	startedAt, finishedAt pgtype.Timestamptz
	dest                  []any
}

func newJobRow(extra ...any) *jobRow {
	r := &jobRow{}
	j := &r.job
	r.dest = append([]any{&j.ID, &j.Seq, &j.Type, &r.payload, &r.status, &j.Attempts, &j.MaxAttempts, &j.Error, &r.errs, &r.key,
		&r.timeoutMS, &j.RunAt, &j.Priority, &r.progress, &r.result, &j.CancelRequested, &j.Version, &j.CreatedAt, &j.UpdatedAt,
		&r.startedAt, &r.finishedAt, &j.Owner, &j.Tags, &j.TraceParent}, extra...)
	return r
}

// scan reads the current row into a new Job (and the extra columns into
// their destinations).
func (r *jobRow) scan(row scanner) (*domain.Job, error) {
	if err := row.Scan(r.dest...); err != nil {
		return nil, err
	}
	j := r.job // pgx gives every row new strings and byte slices
	j.Payload, j.Result = r.payload, r.result
	j.Status = domain.Status(r.status)
	if r.key.Valid {
		j.IdempotencyKey = r.key.String
	}
	if len(j.Tags) == 0 {
		j.Tags = nil
	}
	j.Timeout = time.Duration(r.timeoutMS) * time.Millisecond
	if r.progress.Valid {
		p := int(r.progress.Int32)
		j.Progress = &p
	}
	j.RunAt, j.CreatedAt, j.UpdatedAt = j.RunAt.UTC(), j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	if r.startedAt.Valid {
		t := r.startedAt.Time.UTC()
		j.StartedAt = &t
	}
	if r.finishedAt.Valid {
		t := r.finishedAt.Time.UTC()
		j.FinishedAt = &t
	}
	if r.errs != nil {
		var history []struct {
			Attempt int       `json:"attempt"`
			Message string    `json:"message"`
			At      time.Time `json:"at"`
		}
		if err := json.Unmarshal(r.errs, &history); err != nil {
			return nil, &decodeError{fmt.Errorf("job %s: decode error history: %w", j.ID, err)}
		}
		j.Errors = make([]domain.JobError, len(history))
		for i, e := range history {
			j.Errors[i] = domain.JobError{Attempt: e.Attempt, Message: e.Message, At: e.At.UTC()}
		}
	}
	return &j, nil
}

// collectChanges reads the rows of a statement built by notifying and
// closes them. The changes are committed only when it returns no error.
func collectChanges(rows pgx.Rows) ([]change, error) {
	defer rows.Close()
	var (
		changes []change
		prior   int64
	)
	r := newJobRow(&prior)
	for rows.Next() {
		j, err := r.scan(rows)
		if err != nil {
			return nil, err
		}
		changes = append(changes, change{job: j, prior: prior})
	}
	return changes, rows.Err()
}
