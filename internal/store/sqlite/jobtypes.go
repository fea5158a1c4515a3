package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// typeControlColumns are the columns scanTypeControl reads.
const typeControlColumns = `name, paused, concurrency, rate_per_second, rate_burst, tokens, tokens_at`

func scanTypeControl(row scanner) (domain.TypeControl, error) {
	var (
		c           domain.TypeControl
		conc, burst sql.NullInt64
		rate        sql.NullFloat64
		at          sql.NullInt64
	)
	if err := row.Scan(&c.Name, &c.Paused, &conc, &rate, &burst, &c.Tokens, &at); err != nil {
		return c, err
	}
	c.Concurrency, c.RatePerSecond, c.RateBurst = int(conc.Int64), rate.Float64, int(burst.Int64)
	if at.Valid {
		c.TokensAt = fromMicros(at.Int64)
	}
	return c, nil
}

// typeControls reads every type's controls in the write transaction.
func (w *writeTx) typeControls() (map[string]domain.TypeControl, error) {
	rows, err := w.query(`SELECT ` + typeControlColumns + ` FROM job_type_controls`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]domain.TypeControl)
	for rows.Next() {
		c, err := scanTypeControl(rows)
		if err != nil {
			return nil, err
		}
		out[c.Name] = c
	}
	return out, rows.Err()
}

// saveTypeControl writes c's row, or deletes it when c is empty.
func (w *writeTx) saveTypeControl(c domain.TypeControl) error {
	if c.Empty() {
		_, err := w.exec(`DELETE FROM job_type_controls WHERE name = ?`, c.Name)
		return err
	}
	var at any
	if !c.TokensAt.IsZero() {
		at = micros(c.TokensAt)
	}
	_, err := w.exec(`INSERT INTO job_type_controls (`+typeControlColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, concurrency = excluded.concurrency,
			rate_per_second = excluded.rate_per_second, rate_burst = excluded.rate_burst,
			tokens = excluded.tokens, tokens_at = excluded.tokens_at`,
		c.Name, boolInt(c.Paused), nullPositive(c.Concurrency), nullPositiveFloat(c.RatePerSecond), nullPositive(c.RateBurst), c.Tokens, at)
	return err
}

func nullPositive(n int) any {
	if n <= 0 {
		return nil
	}
	return n
}

func nullPositiveFloat(f float64) any {
	if f <= 0 {
		return nil
	}
	return f
}

// claimCandidates picks, in dispatch order, up to ?3 runnable jobs (RunAt
// not after ?1) of types not in the JSON array ?2, but not those whose
// seq is in the JSON array ?4 (chosen already), as claimQuery walks them.
const claimCandidates = pendingPriorities + `
	SELECT seq, type FROM prio CROSS JOIN jobs INDEXED BY jobs_runnable
	WHERE jobs.status = 'pending' AND jobs.priority = prio.p AND jobs.run_at <= ?1
		AND jobs.type NOT IN (SELECT value FROM json_each(?2))
		AND jobs.seq NOT IN (SELECT value FROM json_each(?4))
	LIMIT CAST(?3 AS INTEGER)`

// claimChosen claims the jobs whose seq is in the JSON array ?4.
const claimChosen = `UPDATE jobs SET status = 'processing', attempts = attempts + 1, started_at = ?1, updated_at = ?1,
		progress = NULL, result = NULL, version = version + 1, lease_owner = ?2, lease_expires_at = ?3
	WHERE seq IN (SELECT value FROM json_each(?4))
	RETURNING ` + jobColumns

// claimControlled claims under the type controls: the candidates come in
// dispatch order without the types that may take no more; a candidate
// over its type's quota shuts that type out, and the walk starts again
// with it left out, so it runs at most once per limited type more than
// once. Processing jobs are counted in the transaction (the kept counts
// are written at the batch's commit).
func (w *writeTx) claimControlled(req store.ClaimRequest, controls map[string]domain.TypeControl) ([]*domain.Job, error) {
	left := make(map[string]int, len(controls))
	closed := []string{}
	for name, c := range controls {
		processing := 0
		if c.Concurrency > 0 {
			if err := w.queryRow(`SELECT count(*) FROM jobs INDEXED BY jobs_status WHERE status = 'processing' AND type = ?`, name).Scan(&processing); err != nil {
				return nil, err
			}
		}
		q := c.Quota(processing, req.Now)
		left[name] = q
		if q == 0 {
			closed = append(closed, name)
		}
	}
	chosen := []int64{}
	taken := make(map[string]int)
	for len(chosen) < req.Limit {
		shut, _ := json.Marshal(closed)
		taking, _ := json.Marshal(chosen)
		need := req.Limit - len(chosen)
		rows, err := w.query(claimCandidates, micros(req.Now), string(shut), need, string(taking))
		if err != nil {
			return nil, err
		}
		n, again := 0, false
		for rows.Next() {
			var (
				seq int64
				typ string
			)
			if err := rows.Scan(&seq, &typ); err != nil {
				rows.Close()
				return nil, err
			}
			n++
			q, limited := left[typ]
			if limited && q == 0 {
				again = true
				continue
			}
			if limited && q > 0 {
				left[typ] = q - 1
				if q == 1 {
					closed = append(closed, typ)
				}
			}
			taken[typ]++
			chosen = append(chosen, seq)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if !again || n < need {
			break
		}
	}
	if len(chosen) == 0 {
		return nil, nil
	}
	for name, n := range taken {
		if c, ok := controls[name]; ok && c.RatePerSecond > 0 {
			c.Spend(n, req.Now)
			if err := w.saveTypeControl(c); err != nil {
				return nil, err
			}
		}
	}
	list, _ := json.Marshal(chosen)
	rows, err := w.query(claimChosen, micros(w.now), req.Owner, micros(req.LeaseUntil), string(list))
	if err != nil {
		return nil, err
	}
	return scanJobs(rows)
}

// nextToken returns when the first empty rate bucket gets a token after
// now (zero when none is empty).
func (s *Store) nextToken(ctx context.Context, now time.Time) (time.Time, error) {
	controls, err := s.TypeControls(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, c := range controls {
		next = store.Earliest(next, c.NextToken(now))
	}
	return next, nil
}

// TypeControls returns the controls of the types that have any.
func (s *Store) TypeControls(ctx context.Context) ([]domain.TypeControl, error) {
	if err := s.closed(); err != nil {
		return nil, fmt.Errorf("type controls: %w", err)
	}
	st, err := s.reads.get(ctx, `SELECT `+typeControlColumns+` FROM job_type_controls ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("type controls: %w", dbError(err))
	}
	rows, err := st.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("type controls: %w", dbError(err))
	}
	defer rows.Close()
	var out []domain.TypeControl
	for rows.Next() {
		c, err := scanTypeControl(rows)
		if err != nil {
			return nil, fmt.Errorf("type controls: %w", dbError(err))
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("type controls: %w", dbError(err))
	}
	return out, nil
}

// SetTypeControl changes a type's controls in one write transaction and
// publishes them after the commit.
func (s *Store) SetTypeControl(ctx context.Context, name string, change domain.TypeChange) (domain.TypeControl, error) {
	var out domain.TypeControl
	err := s.write(ctx, func(w *writeTx) error {
		c, err := scanTypeControl(w.queryRow(`SELECT `+typeControlColumns+` FROM job_type_controls WHERE name = ?`, name))
		if err == sql.ErrNoRows {
			c, err = domain.TypeControl{Name: name}, nil
		}
		if err != nil {
			return err
		}
		change.Apply(&c, w.now)
		if err := w.saveTypeControl(c); err != nil {
			return err
		}
		w.req.types = append(w.req.types, c)
		out = c
		return nil
	})
	if err != nil {
		return domain.TypeControl{}, fmt.Errorf("set controls of type %s: %w", name, err)
	}
	return out, nil
}

// TypeStats counts the jobs of each type that has some, from the kept
// counts.
func (s *Store) TypeStats(ctx context.Context, owner string) (map[string]domain.Stats, error) {
	if err := s.closed(); err != nil {
		return nil, fmt.Errorf("type stats: %w", err)
	}
	query, args := `SELECT type, status, n FROM job_counts WHERE n <> 0`, []any{}
	if owner != "" {
		query, args = `SELECT type, status, n FROM job_owner_counts WHERE owner = ? AND n <> 0`, []any{owner}
	}
	st, err := s.reads.get(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("type stats: %w", dbError(err))
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("type stats: %w", dbError(err))
	}
	defer rows.Close()
	out := make(map[string]domain.Stats)
	for rows.Next() {
		var (
			typ, status string
			n           int
		)
		if err := rows.Scan(&typ, &status, &n); err != nil {
			return nil, fmt.Errorf("type stats: %w", dbError(err))
		}
		stats := out[typ]
		stats.Add(domain.Status(status), n)
		out[typ] = stats
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("type stats: %w", dbError(err))
	}
	return out, nil
}
