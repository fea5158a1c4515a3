package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// periodicColumns are the columns scanPeriodic reads, in its order.
const periodicColumns = `name, schedule, timezone, paused, source, job, revision, updated_at, last_run_at, last_job_id::text`

func scanPeriodic(row scanner) (*domain.PeriodicJob, error) {
	var (
		p         domain.PeriodicJob
		source    string
		job       string
		lastRunAt pgtype.Timestamptz
		lastJobID pgtype.Text
	)
	if err := row.Scan(&p.Name, &p.Schedule, &p.Timezone, &p.Paused, &source, &job, &p.Revision, &p.UpdatedAt, &lastRunAt, &lastJobID); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(job), &p.Job); err != nil {
		return nil, &decodeError{fmt.Errorf("periodic job %s: decode its template: %w", p.Name, err)}
	}
	p.Source, p.UpdatedAt = domain.PeriodicSource(source), p.UpdatedAt.UTC()
	if lastRunAt.Valid {
		t := lastRunAt.Time.UTC()
		p.LastRunAt = &t
	}
	p.LastJobID = lastJobID.String
	return &p, nil
}

// checkPeriodic refuses what the periodic_jobs table cannot keep.
func checkPeriodic(p domain.PeriodicJob) error {
	for _, f := range [][2]string{{"name", p.Name}, {"schedule", p.Schedule}, {"timezone", p.Timezone}} {
		if !storable(f[1]) {
			return &domain.ValidationError{Field: f[0], Message: "must be valid UTF-8 without NUL characters"}
		}
	}
	return checkNewJob(p.Job.NewJob())
}

// errRaced asks PutPeriodic to try again: a definition of the name was
// inserted between its read and its insert.
var errRaced = errors.New("periodic job inserted meanwhile")

// PutPeriodic stores a periodic job definition (see store.Periodics) in
// one transaction that reads the definition it replaces under a row lock.
func (s *Store) PutPeriodic(ctx context.Context, p domain.PeriodicJob) (*domain.PeriodicJob, error) {
	if err := checkPeriodic(p); err != nil {
		return nil, fmt.Errorf("put periodic job %s: %w", p.Name, err)
	}
	job, err := json.Marshal(p.Job)
	if err != nil {
		return nil, fmt.Errorf("put periodic job %s: %w", p.Name, err)
	}
	for range maxTries {
		var out *domain.PeriodicJob
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			old, err := scanPeriodic(tx.QueryRow(ctx, `SELECT `+periodicColumns+` FROM periodic_jobs WHERE name = $1 FOR UPDATE`, p.Name))
			if errors.Is(err, pgx.ErrNoRows) {
				old, err = nil, nil
			}
			if err != nil {
				return err
			}
			put, write, err := store.ReplacePeriodic(old, p, s.now())
			if err != nil || !write {
				out = put
				return err
			}
			args := []any{put.Name, put.Schedule, put.Timezone, put.Paused, string(put.Source), string(job), put.Revision, put.UpdatedAt}
			if old != nil {
				_, err = tx.Exec(ctx, `UPDATE periodic_jobs SET schedule = $2, timezone = $3, paused = $4, source = $5, job = $6, revision = $7, updated_at = $8
					WHERE name = $1`, args...)
				out = put
				return err
			}
			// A definition of the name inserted since the read (which
			// found none to lock) makes the insert do nothing: try again.
			tag, err := tx.Exec(ctx, `INSERT INTO periodic_jobs (name, schedule, timezone, paused, source, job, revision, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING`, args...)
			if err == nil && tag.RowsAffected() == 0 {
				return errRaced
			}
			out = put
			return err
		})
		if !errors.Is(err, errRaced) {
			if err != nil {
				return nil, wrapf(err, "put periodic job %s", p.Name)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("put periodic job %s: %w", p.Name, errRaced)
}

// DeletePeriodic deletes a periodic job definition of source.
func (s *Store) DeletePeriodic(ctx context.Context, name string, source domain.PeriodicSource) error {
	if !storable(name) {
		return fmt.Errorf("delete periodic job %s: %w", name, domain.ErrNotFound)
	}
	var was string
	err := s.pool.QueryRow(ctx, `WITH doomed AS (SELECT name, source FROM periodic_jobs WHERE name = $1 FOR UPDATE),
			deleted AS (DELETE FROM periodic_jobs p USING doomed WHERE p.name = doomed.name AND doomed.source = $2)
		SELECT source FROM doomed`, name, string(source)).Scan(&was)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("delete periodic job %s: %w", name, domain.ErrNotFound)
	case err != nil:
		return wrapf(err, "delete periodic job %s", name)
	case domain.PeriodicSource(was) != source:
		return fmt.Errorf("delete periodic job %s: defined by the %s: %w", name, was, domain.ErrConflict)
	}
	return nil
}

// ListPeriodic returns every periodic job definition, by name.
func (s *Store) ListPeriodic(ctx context.Context) ([]*domain.PeriodicJob, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+periodicColumns+` FROM periodic_jobs ORDER BY name`)
	if err != nil {
		return nil, wrapf(err, "list periodic jobs")
	}
	defer rows.Close()
	out := []*domain.PeriodicJob{}
	for rows.Next() {
		p, err := scanPeriodic(rows)
		if err != nil {
			return nil, wrapf(err, "list periodic jobs")
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapf(err, "list periodic jobs")
	}
	return out, nil
}

// EnqueuePeriodic advances the definition's last tick and inserts the
// tick's job in one statement, which notifies the other instances of the
// job as every change does.
func (s *Store) EnqueuePeriodic(ctx context.Context, t store.PeriodicTick) (*domain.Job, error) {
	nj := t.Job
	if err := checkNewJob(nj); err != nil || !storable(t.Name) {
		return nil, fmt.Errorf("enqueue periodic job %s: %w", t.Name, errors.Join(err, domain.ErrInvalid))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("enqueue periodic job %s: new id: %w", t.Name, err)
	}
	jobs, err := s.write(ctx, s.sql.enqueuePeriodic, id.String(), t.Name, t.Revision, t.At.UTC().Truncate(time.Microsecond),
		nj.Type, []byte(nj.Payload), max(nj.MaxAttempts, 1), nj.Timeout.Milliseconds(), nj.Priority, nj.Tags, s.now())
	if err != nil {
		return nil, fmt.Errorf("enqueue periodic job %s: %w", t.Name, err)
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	return jobs[0], nil
}
