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

// claim runs one claim. Without type controls it is one round trip, as
// one implicit transaction: the shared advisory lock typesLock (which a
// change of controls takes exclusively, so that no claim runs on
// controls older than a change that committed before it started), a
// look at whether any type has controls, and the claim statement, which
// claims nothing when one has. With controls it is a transaction of its
// own on one connection (claimControlled):
//
//  1. BEGIN; typesLock shared; the controls of limited types locked FOR
//     UPDATE in name order, so that the claims of every instance take
//     turns on a limited type, each counting what the one before
//     committed; the paused types; the processing jobs of the types with
//     a concurrency limit, counted after the lock;
//  2. the candidates (once more per limited type over its quota);
//  3. the claim, the tokens spent, COMMIT.
//
// While types have controls the first round trip is skipped (s.controlled
// remembers the last finding).
//
// A connection left in a transaction by a failure is closed by the pool
// on release, which rolls it back.
func (s *Store) claim(ctx context.Context, tok int64, req store.ClaimRequest, changes *[]change) error {
	var b pgx.Batch
	// The last claim's finding saves the first round trip while types
	// have controls; either path reads them afresh.
	if !s.controlled.Load() {
		var controlled bool
		b.Queue(claimPlanning)
		b.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, s.typesLock)
		b.Queue(`SELECT EXISTS (SELECT FROM job_type_controls)`).QueryRow(func(row pgx.Row) error { return row.Scan(&controlled) })
		b.Queue(s.sql.claim, tok, req.Now, req.Limit, s.now(), req.Owner, req.LeaseUntil).Query(func(rows pgx.Rows) (err error) {
			*changes, err = collectChanges(rows)
			return err
		})
		if err := s.pool.SendBatch(ctx, &b).Close(); err != nil || !controlled {
			return err
		}
		s.controlled.Store(true)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var limited, paused []domain.TypeControl
	processing := make(map[string]int)
	b = pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, s.typesLock)
	b.Queue(claimPlanning)
	b.Queue(`SELECT ` + typeControlColumns + ` FROM job_type_controls
		WHERE concurrency IS NOT NULL OR rate_per_second IS NOT NULL ORDER BY name FOR UPDATE`).Query(func(rows pgx.Rows) (err error) {
		limited, err = collectTypeControls(rows)
		return err
	})
	b.Queue(`SELECT ` + typeControlColumns + ` FROM job_type_controls
		WHERE paused AND concurrency IS NULL AND rate_per_second IS NULL`).Query(func(rows pgx.Rows) (err error) {
		paused, err = collectTypeControls(rows)
		return err
	})
	// A statement of its own, after the lock: its snapshot holds the
	// claims committed before it. The counts the triggers keep in the
	// statements that change jobs (migration 00004) are exact at any
	// snapshot, and a few rows per type, where counting the jobs would
	// walk index entries of every processing version a burst left behind.
	b.Queue(`SELECT type, sum(n)::bigint FROM job_counts
		WHERE status = 'processing' AND type IN (SELECT name FROM job_type_controls WHERE concurrency IS NOT NULL AND NOT paused)
		GROUP BY type`).Query(func(rows pgx.Rows) error {
		var (
			typ string
			n   int
		)
		_, err := pgx.ForEachRow(rows, []any{&typ, &n}, func() error { processing[typ] = n; return nil })
		return err
	})
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return err
	}
	if len(limited) == 0 && len(paused) == 0 {
		s.controlled.Store(false)
	}
	b = pgx.Batch{}
	if err := s.claimControlled(ctx, conn.Conn(), &b, tok, req, limited, paused, processing, changes); err != nil {
		return err
	}
	b.Queue(`COMMIT`)
	return conn.SendBatch(ctx, &b).Close()
}

// claimControlled picks the jobs of a claim under the type controls and
// queues, in b, the statements that claim them and spend their types'
// tokens. The candidates come in dispatch order (FOR UPDATE SKIP LOCKED)
// without the types that may take no more; a candidate over its type's
// quota shuts that type out and the pick goes on without it, so it runs
// at most once more per limited type. processing counts the processing
// jobs of the types with a concurrency limit, counted after their rows
// were locked.
func (s *Store) claimControlled(ctx context.Context, conn *pgx.Conn, b *pgx.Batch, tok int64, req store.ClaimRequest, limited, paused []domain.TypeControl, processing map[string]int, changes *[]change) error {
	controls := make(map[string]domain.TypeControl, len(limited))
	closed := []string{}
	for _, c := range paused {
		closed = append(closed, c.Name)
	}
	for _, c := range limited {
		controls[c.Name] = c
	}
	left := make(map[string]int, len(controls))
	for name, c := range controls {
		left[name] = c.Quota(processing[name], req.Now)
		if left[name] == 0 {
			closed = append(closed, name)
		}
	}
	chosen := []string{}
	taken := make(map[string]int)
	for len(chosen) < req.Limit {
		need := req.Limit - len(chosen)
		rows, err := conn.Query(ctx, `SELECT id, type FROM jobs
			WHERE status = 'pending' AND run_at <= $1 AND type <> ALL($2) AND id <> ALL($3::uuid[])
			ORDER BY priority DESC, run_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED`, req.Now, closed, chosen, need)
		if err != nil {
			return err
		}
		var (
			id, typ string
			n       int
			again   bool
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &typ}, func() error {
			n++
			q, ok := left[typ]
			if ok && q == 0 {
				again = true
				return nil
			}
			if ok && q > 0 {
				left[typ] = q - 1
				if q == 1 {
					closed = append(closed, typ)
				}
			}
			taken[typ]++
			chosen = append(chosen, id)
			return nil
		})
		if err != nil {
			return err
		}
		if !again || n < need {
			break
		}
	}
	for name, n := range taken {
		if c, ok := controls[name]; ok && c.RatePerSecond > 0 {
			c.Spend(n, req.Now)
			queueSaveTypeControl(b, c)
		}
	}
	if len(chosen) > 0 {
		b.Queue(s.sql.claimChosen, tok, chosen, s.now(), req.Owner, req.LeaseUntil).Query(func(rows pgx.Rows) (err error) {
			*changes, err = collectChanges(rows)
			return err
		})
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
