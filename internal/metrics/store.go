package metrics

import (
	"context"
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Store operations, as indexes of Metrics.storeOps.
const (
	opCreate = iota
	opCreateMany
	opGet
	opList
	opClaim
	opNextRunAt
	opOldestRunnable
	opHeartbeat
	opRescueExpired
	opFinish
	opComplete
	opProgress
	opRelease
	opFail
	opCancel
	opRetry
	opDeleteFinished
	opDelete
	opStats
	numStoreOps
)

var storeOpNames = [numStoreOps]string{
	"create", "create_many", "get", "list", "claim", "next_run_at", "oldest_runnable", "heartbeat",
	"rescue_expired", "finish", "complete", "progress", "release", "fail", "cancel", "retry",
	"delete_finished", "delete", "stats",
}

// storeOp is one operation's resolved children.
type storeOp struct {
	dur  prometheus.Observer
	errs prometheus.Counter
}

// Store returns st with every call timed (jobqueue_store_call_duration_seconds,
// jobqueue_store_errors_total) and the jobs' changes this instance makes
// counted from what the calls return: jobs created, claimed (and how long
// they waited), finished (and how long they took from creation), rescued
// and deleted by retention. Counting at the store's door counts each
// change once, by the instance that made it, whichever API or part asked
// for it. On a nil *Metrics it returns st.
func (m *Metrics) Store(st store.Store) store.Store {
	if m == nil {
		return st
	}
	return &instrumented{Store: st, m: m}
}

// instrumented is the store that Store returns.
type instrumented struct {
	store.Store
	m *Metrics
}

// Tuning forwards the wrapped store's (an embedded interface does not
// carry it).
func (s *instrumented) Tuning() store.Tuning { return store.TuningOf(s.Store) }

// done records a call of op that started at start.
func (s *instrumented) done(op int, start time.Time, err error) {
	o := &s.m.storeOps[op]
	o.dur.Observe(time.Since(start).Seconds())
	if err != nil {
		o.errs.Inc()
	}
}

// jobFinished counts j when it is in a final status.
func (m *Metrics) jobFinished(j *domain.Job) {
	i := finalIndex(j.Status)
	if i < 0 {
		return
	}
	tm := m.typ(j.Type)
	tm.finished[i].Inc()
	if j.FinishedAt != nil {
		tm.endToEnd.Observe(j.FinishedAt.Sub(j.CreatedAt).Seconds())
	}
}

// created returns a context under which the store reports the jobs the
// call inserts to be counted as created (store.WithCreations): a job
// returned for its idempotency key, stored before or by a racing call,
// is not counted.
func (s *instrumented) created(ctx context.Context) context.Context {
	return store.WithCreations(ctx, func(j *domain.Job) { s.m.typ(j.Type).created.Inc() })
}

func (s *instrumented) Create(ctx context.Context, nj domain.NewJob) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Create(s.created(ctx), nj)
	s.done(opCreate, start, err)
	return j, err
}

func (s *instrumented) CreateMany(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error) {
	start := time.Now()
	jobs, err := s.Store.CreateMany(s.created(ctx), njs)
	s.done(opCreateMany, start, err)
	return jobs, err
}

func (s *instrumented) Get(ctx context.Context, id string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Get(ctx, id)
	s.done(opGet, start, err)
	return j, err
}

func (s *instrumented) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	start := time.Now()
	p, err := s.Store.List(ctx, q)
	s.done(opList, start, err)
	return p, err
}

func (s *instrumented) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	start := time.Now()
	jobs, err := s.Store.Claim(ctx, req)
	s.done(opClaim, start, err)
	if err == nil {
		s.m.claimJobs.Observe(float64(len(jobs)))
		for _, j := range jobs {
			if j.StartedAt != nil {
				s.m.typ(j.Type).wait.Observe(max(j.StartedAt.Sub(j.RunAt), 0).Seconds())
			}
		}
	}
	return jobs, err
}

func (s *instrumented) NextRunAt(ctx context.Context, now time.Time) (time.Time, error) {
	start := time.Now()
	t, err := s.Store.NextRunAt(ctx, now)
	s.done(opNextRunAt, start, err)
	return t, err
}

func (s *instrumented) OldestRunnable(ctx context.Context, now time.Time) (time.Time, error) {
	start := time.Now()
	t, err := s.Store.OldestRunnable(ctx, now)
	s.done(opOldestRunnable, start, err)
	return t, err
}

func (s *instrumented) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	start := time.Now()
	n, err := s.Store.Heartbeat(ctx, owner, ids, until)
	s.done(opHeartbeat, start, err)
	return n, err
}

func (s *instrumented) RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error) {
	start := time.Now()
	jobs, err := s.Store.RescueExpired(ctx, now, limit)
	s.done(opRescueExpired, start, err)
	s.m.rescued.Add(float64(len(jobs)))
	for _, j := range jobs {
		s.m.jobFinished(j)
	}
	return jobs, err
}

// write records a call that changes one job and counts the job if the
// change finished it.
func (s *instrumented) write(op int, start time.Time, j *domain.Job, err error) (*domain.Job, error) {
	s.done(op, start, err)
	if err == nil && j != nil {
		s.m.jobFinished(j)
	}
	return j, err
}

func (s *instrumented) Finish(ctx context.Context, l store.Lease, status domain.Status, errMsg string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Finish(ctx, l, status, errMsg)
	return s.write(opFinish, start, j, err)
}

func (s *instrumented) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Complete(ctx, l, result)
	return s.write(opComplete, start, j, err)
}

func (s *instrumented) Progress(ctx context.Context, l store.Lease, percent int) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Progress(ctx, l, percent)
	s.done(opProgress, start, err)
	return j, err
}

func (s *instrumented) Release(ctx context.Context, l store.Lease) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Release(ctx, l)
	return s.write(opRelease, start, j, err)
}

func (s *instrumented) Fail(ctx context.Context, l store.Lease, errMsg string, retryAt time.Time) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Fail(ctx, l, errMsg, retryAt)
	return s.write(opFail, start, j, err)
}

func (s *instrumented) Cancel(ctx context.Context, id string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Cancel(ctx, id)
	return s.write(opCancel, start, j, err)
}

func (s *instrumented) Retry(ctx context.Context, id string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Retry(ctx, id)
	s.done(opRetry, start, err)
	return j, err
}

func (s *instrumented) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	start := time.Now()
	n, err := s.Store.DeleteFinished(ctx, before, limit)
	s.done(opDeleteFinished, start, err)
	s.m.deleted.Add(float64(n))
	return n, err
}

func (s *instrumented) Delete(ctx context.Context, id string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.Store.Delete(ctx, id)
	s.done(opDelete, start, err)
	return j, err
}

func (s *instrumented) Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error) {
	start := time.Now()
	st, err := s.Store.Stats(ctx, q)
	s.done(opStats, start, err)
	return st, err
}
