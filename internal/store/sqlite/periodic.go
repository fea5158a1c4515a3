package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// periodicColumns are the columns scanPeriodic reads, in its order.
const periodicColumns = `name, schedule, timezone, paused, source, job, revision, updated_at, last_run_at, last_job_id`

func scanPeriodic(sc scanner) (*domain.PeriodicJob, error) {
	var (
		p         domain.PeriodicJob
		paused    int64
		source    string
		job       string
		updatedAt int64
		lastRunAt sql.NullInt64
		lastJobID sql.NullString
	)
	if err := sc.Scan(&p.Name, &p.Schedule, &p.Timezone, &paused, &source, &job, &p.Revision, &updatedAt, &lastRunAt, &lastJobID); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(job), &p.Job); err != nil {
		return nil, fmt.Errorf("periodic job %s: decode its template: %w", p.Name, err)
	}
	p.Paused, p.Source, p.UpdatedAt = paused != 0, domain.PeriodicSource(source), fromMicros(updatedAt)
	p.LastRunAt, p.LastJobID = nullTime(lastRunAt), lastJobID.String
	return &p, nil
}

// PutPeriodic stores a periodic job definition (see store.Periodics), in
// one write: the definition it replaces is read and compared there.
func (s *Store) PutPeriodic(ctx context.Context, p domain.PeriodicJob) (*domain.PeriodicJob, error) {
	job, err := json.Marshal(p.Job)
	if err != nil {
		return nil, fmt.Errorf("put periodic job %s: %w", p.Name, err)
	}
	var out *domain.PeriodicJob
	err = s.write(ctx, func(w *writeTx) error {
		old, err := scanPeriodic(w.queryRow(`SELECT `+periodicColumns+` FROM periodic_jobs WHERE name = ?`, p.Name))
		if errors.Is(err, sql.ErrNoRows) {
			old, err = nil, nil
		}
		if err != nil {
			return err
		}
		put, write, err := store.ReplacePeriodic(old, p, w.now)
		if err != nil || !write {
			out = put
			return err
		}
		_, err = w.exec(`INSERT INTO periodic_jobs (name, schedule, timezone, paused, source, job, revision, updated_at, last_run_at, last_job_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, timezone = excluded.timezone, paused = excluded.paused,
				source = excluded.source, job = excluded.job, revision = excluded.revision, updated_at = excluded.updated_at`,
			put.Name, put.Schedule, put.Timezone, boolInt(put.Paused), string(put.Source), string(job), put.Revision, micros(put.UpdatedAt),
			nullMicros(put.LastRunAt), nullString(put.LastJobID))
		out = put
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put periodic job %s: %w", p.Name, err)
	}
	return out, nil
}

// DeletePeriodic deletes a periodic job definition of source.
func (s *Store) DeletePeriodic(ctx context.Context, name string, source domain.PeriodicSource) error {
	err := s.write(ctx, func(w *writeTx) error {
		var was string
		err := w.queryRow(`SELECT source FROM periodic_jobs WHERE name = ?`, name).Scan(&was)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return domain.ErrNotFound
		case err != nil:
			return err
		case domain.PeriodicSource(was) != source:
			return fmt.Errorf("defined by the %s: %w", was, domain.ErrConflict)
		}
		_, err = w.exec(`DELETE FROM periodic_jobs WHERE name = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete periodic job %s: %w", name, err)
	}
	return nil
}

// ListPeriodic returns every periodic job definition, by name.
func (s *Store) ListPeriodic(ctx context.Context) ([]*domain.PeriodicJob, error) {
	if err := s.closed(); err != nil {
		return nil, fmt.Errorf("list periodic jobs: %w", err)
	}
	out, err := s.listPeriodic(ctx)
	if err != nil {
		return nil, fmt.Errorf("list periodic jobs: %w", dbError(err))
	}
	return out, nil
}

func (s *Store) listPeriodic(ctx context.Context) ([]*domain.PeriodicJob, error) {
	st, err := s.reads.get(ctx, `SELECT `+periodicColumns+` FROM periodic_jobs ORDER BY name`)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*domain.PeriodicJob{}
	for rows.Next() {
		p, err := scanPeriodic(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// EnqueuePeriodic advances the definition's last tick and inserts the
// tick's job in one write.
func (s *Store) EnqueuePeriodic(ctx context.Context, t store.PeriodicTick) (*domain.Job, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("enqueue periodic job %s: new id: %w", t.Name, err)
	}
	var out *domain.Job
	err = s.write(ctx, func(w *writeTx) error {
		res, err := w.exec(`UPDATE periodic_jobs SET last_run_at = ?, last_job_id = ?
			WHERE name = ? AND revision = ? AND paused = 0 AND (last_run_at IS NULL OR last_run_at < ?)`,
			micros(t.At), id.String(), t.Name, t.Revision, micros(t.At))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		out, err = w.create(id.String(), t.Job)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue periodic job %s: %w", t.Name, err)
	}
	return out, nil
}
