package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// countsCompaction is how often a store folds job_counts (see
// compactCounts); one instance at a time does it.
const countsCompaction = 10 * time.Minute

// compactCounts folds the shards of each (type, status) in job_counts into
// one row and drops the rows that count nothing, so that the table holds
// about one row per (type, status) in use rather than up to 16 for every
// type ever seen; and the same in job_owner_counts per (owner, type,
// status). It holds no lock a writer waits for while it waits for
// one itself, so it cannot deadlock with them; writers wait for it for the
// few milliseconds it takes. When another instance is at it, it does
// nothing and reports false, as when the counts table stays busy for
// compactionLockTimeout.
func (s *Store) compactCounts(ctx context.Context) (bool, error) {
	var done bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, s.countsLock).Scan(&done); err != nil || !done {
			return err
		}
		// Writers (the counting triggers) wait meanwhile; readers do not.
		// Row locks would not do: a trigger may add a row for a new shard
		// after they were taken. Every writer queues behind this request
		// while it waits, so it waits briefly: a transaction that holds
		// the table long (an operator's, a vacuum) makes it skip a turn
		// rather than stall every write.
		// The tables in the order the triggers write them.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+fmt.Sprint(compactionLockTimeout.Milliseconds())+`ms'; LOCK TABLE job_counts, job_owner_counts IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			WITH folded AS (DELETE FROM job_counts RETURNING type, status, n)
			INSERT INTO job_counts (type, status, shard, n)
			SELECT type, status, 0, sum(n) FROM folded
			GROUP BY type, status HAVING sum(n) <> 0 ORDER BY type, status`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			WITH folded AS (DELETE FROM job_owner_counts RETURNING owner, type, status, n)
			INSERT INTO job_owner_counts (owner, type, status, shard, n)
			SELECT owner, type, status, 0, sum(n) FROM folded
			GROUP BY owner, type, status HAVING sum(n) <> 0 ORDER BY owner, type, status`)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == lockNotAvailable {
		s.log.Debug("postgres store: job counts busy; compacting them at the next turn")
		return false, nil
	}
	if err != nil {
		return false, wrapf(err, "compact job counts")
	}
	return done, nil
}

// compactionLockTimeout bounds compactCounts' wait for the counts table.
const compactionLockTimeout = 200 * time.Millisecond

// CountsUpkeep keeps the job_counts table small: every countsCompaction
// it folds the counts (one instance at a time does the work; see
// compactCounts). Every server on PostgreSQL runs one beside its store.
type CountsUpkeep struct{ s *Store }

// CountsUpkeep returns the store's counts upkeep; run it with Run.
func (s *Store) CountsUpkeep() *CountsUpkeep { return &CountsUpkeep{s: s} }

// Run compacts the counts every countsCompaction until ctx is done, then
// returns nil. Failures are logged and tried again at the next turn. It
// starts no goroutine.
func (u *CountsUpkeep) Run(ctx context.Context) error {
	s := u.s
	t := time.NewTicker(countsCompaction)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		compactCtx, cancel := context.WithTimeout(ctx, time.Minute)
		if _, err := s.compactCounts(compactCtx); err != nil && ctx.Err() == nil {
			s.log.Warn("postgres store: compacting job counts failed; trying again later", "err", err, "retry_in", countsCompaction)
		}
		cancel()
	}
}
