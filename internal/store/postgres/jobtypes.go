package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// typeControlColumns are the columns collectTypeControls reads.
const typeControlColumns = `name, paused, concurrency, rate_per_second, rate_burst, tokens, tokens_at`

func scanTypeControl(row scanner) (domain.TypeControl, error) {
	var (
		c           domain.TypeControl
		conc, burst pgtype.Int4
		rate        pgtype.Float8
		at          pgtype.Timestamptz
	)
	if err := row.Scan(&c.Name, &c.Paused, &conc, &rate, &burst, &c.Tokens, &at); err != nil {
		return c, err
	}
	c.Concurrency, c.RatePerSecond, c.RateBurst = int(conc.Int32), rate.Float64, int(burst.Int32)
	if at.Valid {
		c.TokensAt = at.Time.UTC()
	}
	return c, nil
}

func collectTypeControls(rows pgx.Rows) ([]domain.TypeControl, error) {
	defer rows.Close()
	var out []domain.TypeControl
	for rows.Next() {
		c, err := scanTypeControl(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// queueSaveTypeControl queues the statement that writes c's row, or
// deletes it when c is empty.
func queueSaveTypeControl(b *pgx.Batch, c domain.TypeControl) {
	if c.Empty() {
		b.Queue(`DELETE FROM job_type_controls WHERE name = $1`, c.Name)
		return
	}
	var at *time.Time
	if !c.TokensAt.IsZero() {
		at = &c.TokensAt
	}
	positive := func(n int) *int {
		if n <= 0 {
			return nil
		}
		return &n
	}
	var rate *float64
	if c.RatePerSecond > 0 {
		rate = &c.RatePerSecond
	}
	b.Queue(`INSERT INTO job_type_controls (`+typeControlColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, concurrency = excluded.concurrency,
			rate_per_second = excluded.rate_per_second, rate_burst = excluded.rate_burst,
			tokens = excluded.tokens, tokens_at = excluded.tokens_at`,
		c.Name, c.Paused, positive(c.Concurrency), rate, positive(c.RateBurst), c.Tokens, at)
}

// claim runs one claim, in one round trip, as one implicit transaction:
// the shared advisory lock typesLock (which a change of controls takes
// exclusively, so that no claim runs on controls older than a change
// that committed before it started), then the claim statement.
//
// Without type controls the statement is s.sql.claim, after a look at
// whether any type has controls (it claims nothing when one has). With
// controls it is s.sql.claimControlled, the function claim_controlled
// (migration 00014), which locks the control rows of only the limited
// types among its candidates and counts their processing jobs after the
// lock, so that the claims of every instance take turns on a limited
// type, each counting what the one before committed, while the claims of
// other types do not wait for them. The same round trip tells whether
// types still have controls, and whether the function skipped a limited
// type whose control row another claim held (NextRunAt then asks for a
// claim again soon).
//
// s.controlled remembers the last finding, so while types have controls
// the first statement is not sent.
func (s *Store) claim(ctx context.Context, tok int64, req store.ClaimRequest, changes *[]change) error {
	collect := func(rows pgx.Rows) (err error) {
		*changes, err = collectChanges(rows)
		return err
	}
	var (
		b                   pgx.Batch
		controlled, skipped bool
	)
	if !s.controlled.Load() {
		b.Queue(claimPlanning)
		b.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, s.typesLock)
		b.Queue(`SELECT EXISTS (SELECT FROM job_type_controls)`).QueryRow(func(row pgx.Row) error { return row.Scan(&controlled) })
		b.Queue(s.sql.claim, tok, req.Now, req.Limit, s.now(), req.Owner, req.LeaseUntil).Query(collect)
		if err := s.pool.SendBatch(ctx, &b).Close(); err != nil || !controlled {
			return err
		}
		s.controlled.Store(true)
		b = pgx.Batch{}
	}
	b.Queue(claimPlanning)
	b.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, s.typesLock)
	b.Queue(s.sql.claimControlled, tok, req.Now, req.Limit, s.now(), req.Owner, req.LeaseUntil).Query(collect)
	b.Queue(`SELECT EXISTS (SELECT FROM job_type_controls), coalesce(current_setting('jobqueue.claim_skipped', true), '') = 'on'`).
		QueryRow(func(row pgx.Row) error { return row.Scan(&controlled, &skipped) })
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return err
	}
	s.controlled.Store(controlled)
	if skipped {
		s.contended.Store(true)
	}
	return nil
}

// TypeControls returns the controls of the types that have any.
func (s *Store) TypeControls(ctx context.Context) ([]domain.TypeControl, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+typeControlColumns+` FROM job_type_controls ORDER BY name`)
	if err != nil {
		return nil, wrapf(err, "type controls")
	}
	out, err := collectTypeControls(rows)
	if err != nil {
		return nil, wrapf(err, "type controls")
	}
	return out, nil
}

// typeControlsOf returns the controls of the named types, a type without
// a row as one without controls.
func (s *Store) typeControlsOf(ctx context.Context, names []string) ([]domain.TypeControl, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+typeControlColumns+` FROM job_type_controls WHERE name = ANY($1)`, names)
	if err != nil {
		return nil, err
	}
	found, err := collectTypeControls(rows)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]domain.TypeControl, len(found))
	for _, c := range found {
		byName[c.Name] = c
	}
	out := make([]domain.TypeControl, len(names))
	for i, name := range names {
		c, ok := byName[name]
		if !ok {
			c = domain.TypeControl{Name: name}
		}
		out[i] = c
	}
	return out, nil
}

// SetTypeControl changes a type's controls in a transaction that holds
// typesLock exclusively (it waits for the claims running, and claims
// after it see the change) and notifies the other instances, whose
// listeners publish the controls; this instance publishes them after the
// commit.
func (s *Store) SetTypeControl(ctx context.Context, name string, change domain.TypeChange) (domain.TypeControl, error) {
	if !storable(name) {
		return domain.TypeControl{}, fmt.Errorf("set controls of type %q: %w", name, domain.ErrInvalid)
	}
	var out domain.TypeControl
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.typesLock); err != nil {
			return err
		}
		c, err := scanTypeControl(tx.QueryRow(ctx, `SELECT `+typeControlColumns+` FROM job_type_controls WHERE name = $1 FOR UPDATE`, name))
		if errors.Is(err, pgx.ErrNoRows) {
			c, err = domain.TypeControl{Name: name}, nil
		}
		if err != nil {
			return err
		}
		change.Apply(&c, s.now())
		var b pgx.Batch
		queueSaveTypeControl(&b, c)
		b.Queue(`SELECT pg_notify($1, $2 || '[],"t":' || json_build_array($3::text)::text || '}')`, channelName(s.schema), noticePrefix(s.instance), name)
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return domain.TypeControl{}, wrapf(err, "set controls of type %s", name)
	}
	s.typePub.PublishType(out)
	return out, nil
}

// TypeStats counts the jobs of each type that has some, from the counts
// tables.
func (s *Store) TypeStats(ctx context.Context, owner string) (map[string]domain.Stats, error) {
	query, args := `SELECT type, status, sum(n) FROM job_counts GROUP BY type, status HAVING sum(n) <> 0`, []any{}
	if owner != "" {
		query, args = `SELECT type, status, sum(n) FROM job_owner_counts WHERE owner = $1 GROUP BY type, status HAVING sum(n) <> 0`, []any{owner}
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrapf(err, "type stats")
	}
	out := make(map[string]domain.Stats)
	var (
		typ, status string
		n           int
	)
	_, err = pgx.ForEachRow(rows, []any{&typ, &status, &n}, func() error {
		st := out[typ]
		st.Add(domain.Status(status), n)
		out[typ] = st
		return nil
	})
	if err != nil {
		return nil, wrapf(err, "type stats")
	}
	return out, nil
}
