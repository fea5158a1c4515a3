package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
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

// claimControlled claims under the type controls. The types that may
// take no more are closed; the candidates come from the other types,
// either in one walk of jobs_runnable (candidatesInOrder) or type by type
// (candidatesByType) when the closed types hold so many pending jobs that
// the walk could step over them for longer. Processing jobs are counted in
// the transaction (the kept counts are written at the batch's commit).
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
	candidates := w.candidatesInOrder
	if byType, err := w.pickByType(closed, req.Limit); err != nil {
		return nil, err
	} else if byType {
		candidates = w.candidatesByType
	}
	chosen, taken, err := candidates(req, left, closed)
	if err != nil {
		return nil, err
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

// byTypeAbove is how many closed types' pending jobs per open type make a
// claim pick type by type: a pick costs a few statements per open type,
// about what walking past this many index entries costs.
const byTypeAbove = 64

// pickByType reports whether a claim of up to limit jobs with the closed
// types shut out should pick type by type, from the kept counts of
// pending jobs (as of the last commit: a guess, not a promise).
func (w *writeTx) pickByType(closed []string, limit int) (bool, error) {
	if len(closed) == 0 {
		return false, nil
	}
	shut, _ := json.Marshal(closed)
	var closedPending, openTypes int
	err := w.queryRow(`SELECT coalesce(sum(n) FILTER (WHERE type IN (SELECT value FROM json_each(?1))), 0),
			count(*) FILTER (WHERE type NOT IN (SELECT value FROM json_each(?1)))
		FROM job_counts WHERE status = 'pending' AND n > 0`, string(shut)).Scan(&closedPending, &openTypes)
	if err != nil {
		return false, err
	}
	return closedPending > byTypeAbove*max(openTypes, 1)+limit, nil
}

// candidatesInOrder picks the jobs to claim in one walk of jobs_runnable
// in dispatch order, the closed types left out: a candidate over its
// type's quota shuts that type out, and the walk starts again with it left
// out, so it runs at most once per limited type more than once. It steps
// over every pending job of a closed type ahead of the jobs it takes.
func (w *writeTx) candidatesInOrder(req store.ClaimRequest, left map[string]int, closed []string) (chosen []int64, taken map[string]int, err error) {
	chosen, taken = []int64{}, make(map[string]int)
	for len(chosen) < req.Limit {
		shut, _ := json.Marshal(closed)
		taking, _ := json.Marshal(chosen)
		need := req.Limit - len(chosen)
		rows, err := w.query(claimCandidates, micros(req.Now), string(shut), need, string(taking))
		if err != nil {
			return nil, nil, err
		}
		n, again := 0, false
		for rows.Next() {
			var (
				seq int64
				typ string
			)
			if err := rows.Scan(&seq, &typ); err != nil {
				rows.Close()
				return nil, nil, err
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
			return nil, nil, err
		}
		if !again || n < need {
			break
		}
	}
	return chosen, taken, nil
}

// pendingTypes lists the types that have pending jobs, except those in
// the JSON array ?1: one seek in jobs_type_runnable per type.
const pendingTypes = `WITH RECURSIVE types(name) AS (
		SELECT (SELECT type FROM jobs INDEXED BY jobs_type_runnable WHERE status = 'pending'
			ORDER BY type LIMIT 1)
		UNION ALL
		SELECT (SELECT type FROM jobs INDEXED BY jobs_type_runnable WHERE status = 'pending' AND type > name
			ORDER BY type LIMIT 1)
		FROM types WHERE name IS NOT NULL)
	SELECT name FROM types WHERE name IS NOT NULL AND name NOT IN (SELECT value FROM json_each(?1))`

// typeCandidates picks, in dispatch order, up to ?3 runnable jobs (RunAt
// not after ?1) of the type ?2, as claimQuery walks jobs_runnable but in
// jobs_type_runnable: one priority at a time, each a range of the type's
// entries, so that neither other types' jobs nor the type's jobs
// scheduled for later are stepped over.
const typeCandidates = `WITH RECURSIVE prio(p) AS (
		SELECT (SELECT priority FROM jobs INDEXED BY jobs_type_runnable WHERE status = 'pending' AND type = ?2
			ORDER BY priority DESC LIMIT 1)
		UNION ALL
		SELECT (SELECT priority FROM jobs INDEXED BY jobs_type_runnable WHERE status = 'pending' AND type = ?2 AND priority < p
			ORDER BY priority DESC LIMIT 1)
		FROM prio WHERE p IS NOT NULL)
	SELECT seq, priority, run_at FROM prio CROSS JOIN jobs INDEXED BY jobs_type_runnable
	WHERE jobs.status = 'pending' AND jobs.type = ?2 AND jobs.priority = prio.p AND jobs.run_at <= ?1
	LIMIT CAST(?3 AS INTEGER)`

// candidatesByType picks the jobs to claim type by type: the first
// runnable jobs of each open type, as many as the claim or the type's
// quota allows, merged in dispatch order, the first req.Limit taken. The
// closed types' jobs are never read.
func (w *writeTx) candidatesByType(req store.ClaimRequest, left map[string]int, closed []string) (chosen []int64, taken map[string]int, err error) {
	shut, _ := json.Marshal(closed)
	rows, err := w.query(pendingTypes, string(shut))
	if err != nil {
		return nil, nil, err
	}
	var types []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, nil, err
		}
		types = append(types, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	type candidate struct {
		seq, runAt int64
		priority   int
		typ        string
	}
	var all []candidate
	for _, typ := range types {
		n := req.Limit
		if q, limited := left[typ]; limited && q >= 0 {
			n = min(n, q)
		}
		rows, err := w.query(typeCandidates, micros(req.Now), typ, n)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			c := candidate{typ: typ}
			if err := rows.Scan(&c.seq, &c.priority, &c.runAt); err != nil {
				rows.Close()
				return nil, nil, err
			}
			all = append(all, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
	}
	slices.SortFunc(all, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.priority, a.priority), cmp.Compare(a.runAt, b.runAt), cmp.Compare(a.seq, b.seq))
	})
	chosen, taken = []int64{}, make(map[string]int)
	for _, c := range all[:min(len(all), req.Limit)] {
		chosen = append(chosen, c.seq)
		taken[c.typ]++
	}
	return chosen, taken, nil
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
