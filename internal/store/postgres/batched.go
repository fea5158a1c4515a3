package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Tuning of the coalesced calls (see batch.go).
const (
	createBatch     = 500
	createExecutors = 2
	completeBatch   = 500
	// completeExecutors is low on purpose: completions arrive in bursts
	// (a claimed batch finishing), which a busy executor gathers.
	completeExecutors = 2
	// completeLinger is how long an executor under load gathers
	// completions before its statement. A worker does not wait for its
	// job's completion to be written, so under load the wait costs no
	// throughput, while every statement saved is a plan, a commit and a
	// notification less; a lone completion runs at once.
	completeLinger = 5 * time.Millisecond
)

// completeArg is a Complete call.
type completeArg struct {
	lease  store.Lease
	result json.RawMessage
}

// completeBatchOf completes the leased jobs of the calls in one statement
// and answers each call: with its job, or, for the calls whose claim no
// longer stands, ErrLeaseLost or ErrNotFound.
func (s *Store) completeBatchOf(batch []*call[completeArg]) error {
	calls := make(map[string][]*call[completeArg], len(batch))
	first := make([]*call[completeArg], 0, len(batch))
	for _, c := range batch {
		id := c.arg.lease.JobID
		if len(calls[id]) == 0 {
			first = append(first, c)
		}
		// A second call about the same job within the batch is answered
		// after the first, as if it came later.
		calls[id] = append(calls[id], c)
	}
	// In id order, the order the statement locks the rows in (canonical
	// ids sort as their UUIDs do).
	slices.SortFunc(first, func(a, b *call[completeArg]) int { return strings.Compare(a.arg.lease.JobID, b.arg.lease.JobID) })
	var (
		ids      = make([]string, len(first))
		owners   = make([]string, len(first))
		attempts = make([]int, len(first))
		results  = make([][]byte, len(first))
	)
	for i, c := range first {
		ids[i], owners[i], attempts[i], results[i] = c.arg.lease.JobID, c.arg.lease.Owner, c.arg.lease.Attempt, []byte(c.arg.result)
	}
	jobs, err := s.write(s.ctx, s.sql.complete, ids, owners, attempts, results, s.now())
	if err != nil {
		return err
	}
	var later []*call[completeArg]
	for _, j := range jobs {
		cs := calls[j.ID]
		cs[0].answer(j, nil)
		// The job is completed: the other calls about it are refused.
		for _, c := range cs[1:] {
			c.answer(nil, s.completeFailure(c.ctx, j.ID, c.arg.lease))
		}
		delete(calls, j.ID)
	}
	for id, cs := range calls {
		// The first call's claim no longer stands, but a later call about
		// the same job (a newer attempt) may hold the current one.
		cs[0].answer(nil, s.completeFailure(cs[0].ctx, id, cs[0].arg.lease))
		later = append(later, cs[1:]...)
	}
	if len(later) > 0 {
		// These calls were not answered; a failed statement answers none.
		if err := s.completeBatchOf(later); err != nil {
			for _, c := range later {
				c.answer(nil, err)
			}
		}
	}
	return nil
}

// completeFailure explains why a completion did not apply.
func (s *Store) completeFailure(ctx context.Context, id string, l store.Lease) error {
	j, holder, err := s.getLeased(ctx, id)
	if err != nil {
		return err
	}
	if err := l.Check(j, holder); err != nil {
		return err
	}
	// The claim stands now, so it did not when the statement ran: a
	// newer attempt of this owner cannot exist, the statement saw an
	// older version of the row.
	return fmt.Errorf("%s, attempt %d, claim of %s at attempt %d not held when completing: %w", j.Status, j.Attempts, l.Owner, l.Attempt, domain.ErrLeaseLost)
}

// createBatchOf inserts the jobs of the calls in one statement and answers
// each call: with its new job, or with the job that already has its
// idempotency key.
func (s *Store) createBatchOf(batch []*call[domain.NewJob]) error {
	njs := make([]domain.NewJob, len(batch))
	for i, c := range batch {
		njs[i] = c.arg
	}
	ids, jobs, err := s.insert(s.ctx, njs)
	if err != nil {
		return err
	}
	for i, c := range batch {
		if j := jobs[ids[i]]; j != nil {
			store.NoteCreated(c.ctx, j)
			c.answer(j, nil)
			continue
		}
		// The key belongs to a stored job, or to one made earlier in
		// this batch.
		j, err := s.jobWithKey(c.ctx, c.arg)
		c.answer(j, err)
	}
	return nil
}

// insert inserts new jobs in one statement, in order. It returns the ids it
// gave them and, by id, the jobs it inserted: those whose idempotency key
// no stored job has.
func (s *Store) insert(ctx context.Context, njs []domain.NewJob) ([]string, map[string]*domain.Job, error) {
	now := s.now()
	var (
		ids         = make([]string, len(njs))
		types       = make([]string, len(njs))
		payloads    = make([][]byte, len(njs))
		maxAttempts = make([]int, len(njs))
		keys        = make([]*string, len(njs))
		timeouts    = make([]int64, len(njs))
		runAts      = make([]time.Time, len(njs))
		priorities  = make([]int, len(njs))
		owners      = make([]string, len(njs))
		tags        = make([]string, len(njs))
		traces      = make([]string, len(njs))
	)
	for i, nj := range njs {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, nil, fmt.Errorf("new id: %w", err)
		}
		ids[i], types[i], payloads[i], maxAttempts[i] = id.String(), nj.Type, []byte(nj.Payload), max(nj.MaxAttempts, 1)
		if nj.IdempotencyKey != "" {
			keys[i] = &nj.IdempotencyKey
		}
		timeouts[i], runAts[i], priorities[i], owners[i] = nj.Timeout.Milliseconds(), nj.RunAt, nj.Priority, nj.Owner
		tags[i], traces[i] = strings.Join(nj.Tags, ","), nj.TraceParent
		if runAts[i].IsZero() {
			runAts[i] = now
		}
	}
	jobs, err := s.write(ctx, s.sql.create, ids, types, payloads, maxAttempts, keys, timeouts, runAts, priorities, now, owners, tags, traces)
	if err != nil {
		return nil, nil, err
	}
	inserted := make(map[string]*domain.Job, len(jobs))
	for _, j := range jobs {
		inserted[j.ID] = j
	}
	return ids, inserted, nil
}

// jobWithKey returns the job of nj's owner with nj's idempotency key, or
// creates it if the key is free again (its job was deleted since the
// conflict).
func (s *Store) jobWithKey(ctx context.Context, nj domain.NewJob) (*domain.Job, error) {
	for range maxTries {
		j, err := s.queryJob(ctx, `SELECT `+jobColumns+` FROM jobs WHERE owner = $1 AND idempotency_key = $2`, nj.Owner, nj.IdempotencyKey)
		if err == nil {
			return j, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, wrapf(err, "idempotency key %q", nj.IdempotencyKey)
		}
		ids, jobs, err := s.insert(ctx, []domain.NewJob{nj})
		if err != nil {
			return nil, err
		}
		if j := jobs[ids[0]]; j != nil {
			store.NoteCreated(ctx, j)
			return j, nil
		}
	}
	return nil, fmt.Errorf("idempotency key %q: its job keeps being deleted: %w", nj.IdempotencyKey, domain.ErrConflict)
}
