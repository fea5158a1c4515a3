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
	opCancelJobs
	opRetryJobs
	opDeleteFinished
	opDelete
	opStats
	opTypeControls
	opSetTypeControl
	opTypeStats
	opPutPeriodic
	opDeletePeriodic
	opListPeriodic
	opEnqueuePeriodic
	numStoreOps
)

var storeOpNames = [numStoreOps]string{
	"create", "create_many", "get", "list", "claim", "next_run_at", "oldest_runnable", "heartbeat",
	"rescue_expired", "finish", "complete", "progress", "release", "fail", "cancel", "retry",
	"cancel_jobs", "retry_jobs", "delete_finished", "delete", "stats", "type_controls", "set_type_control", "type_stats",
	"put_periodic", "delete_periodic", "list_periodic", "enqueue_periodic",
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
	return &instrumented{inner: st, m: m}
}

// instrumented is the store that Store returns. It implements every
// method itself, embedding nothing, so that a method added to store.Store
// does not compile until it is timed here too.
type instrumented struct {
	inner store.Store
	m     *Metrics
}

var _ store.Store = (*instrumented)(nil)

// Tuning forwards the wrapped store's.
func (s *instrumented) Tuning() store.Tuning { return store.TuningOf(s.inner) }

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
	j, err := s.inner.Create(s.created(ctx), nj)
	s.done(opCreate, start, err)
	return j, err
}

func (s *instrumented) CreateMany(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error) {
	start := time.Now()
	jobs, err := s.inner.CreateMany(s.created(ctx), njs)
	s.done(opCreateMany, start, err)
	return jobs, err
}

func (s *instrumented) Get(ctx context.Context, id string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.Get(ctx, id)
	s.done(opGet, start, err)
	return j, err
}

func (s *instrumented) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	start := time.Now()
	p, err := s.inner.List(ctx, q)
	s.done(opList, start, err)
	return p, err
}

func (s *instrumented) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	start := time.Now()
	jobs, err := s.inner.Claim(ctx, req)
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
	t, err := s.inner.NextRunAt(ctx, now)
	s.done(opNextRunAt, start, err)
	return t, err
}

func (s *instrumented) OldestRunnable(ctx context.Context, now time.Time) (time.Time, error) {
	start := time.Now()
	t, err := s.inner.OldestRunnable(ctx, now)
	s.done(opOldestRunnable, start, err)
	return t, err
}

func (s *instrumented) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	start := time.Now()
	n, err := s.inner.Heartbeat(ctx, owner, ids, until)
	s.done(opHeartbeat, start, err)
	return n, err
}

func (s *instrumented) RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error) {
	start := time.Now()
	jobs, err := s.inner.RescueExpired(ctx, now, limit)
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
	j, err := s.inner.Finish(ctx, l, status, errMsg)
	return s.write(opFinish, start, j, err)
}

func (s *instrumented) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.Complete(ctx, l, result)
	return s.write(opComplete, start, j, err)
}

func (s *instrumented) Progress(ctx context.Context, l store.Lease, percent int) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.Progress(ctx, l, percent)
	s.done(opProgress, start, err)
	return j, err
}

func (s *instrumented) Release(ctx context.Context, l store.Lease) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.Release(ctx, l)
	return s.write(opRelease, start, j, err)
}

func (s *instrumented) Fail(ctx context.Context, l store.Lease, errMsg string, retryAt time.Time) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.Fail(ctx, l, errMsg, retryAt)
	return s.write(opFail, start, j, err)
}

func (s *instrumented) Cancel(ctx context.Context, id string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.Cancel(ctx, id)
	return s.write(opCancel, start, j, err)
}

func (s *instrumented) Retry(ctx context.Context, id string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.Retry(ctx, id)
	s.done(opRetry, start, err)
	return j, err
}

// CancelJobs counts each job it cancelled as finished, as Cancel does.
func (s *instrumented) CancelJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	start := time.Now()
	jobs, err := s.inner.CancelJobs(ctx, ids, owner)
	s.done(opCancelJobs, start, err)
	for _, j := range jobs {
		s.m.jobFinished(j)
	}
	return jobs, err
}

func (s *instrumented) RetryJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	start := time.Now()
	jobs, err := s.inner.RetryJobs(ctx, ids, owner)
	s.done(opRetryJobs, start, err)
	return jobs, err
}

func (s *instrumented) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	start := time.Now()
	n, err := s.inner.DeleteFinished(ctx, before, limit)
	s.done(opDeleteFinished, start, err)
	s.m.deleted.Add(float64(n))
	return n, err
}

func (s *instrumented) Delete(ctx context.Context, id string) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.Delete(ctx, id)
	s.done(opDelete, start, err)
	return j, err
}

func (s *instrumented) Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error) {
	start := time.Now()
	st, err := s.inner.Stats(ctx, q)
	s.done(opStats, start, err)
	return st, err
}

func (s *instrumented) TypeControls(ctx context.Context) ([]domain.TypeControl, error) {
	start := time.Now()
	cs, err := s.inner.TypeControls(ctx)
	s.done(opTypeControls, start, err)
	return cs, err
}

func (s *instrumented) SetTypeControl(ctx context.Context, name string, change domain.TypeChange) (domain.TypeControl, error) {
	start := time.Now()
	c, err := s.inner.SetTypeControl(ctx, name, change)
	s.done(opSetTypeControl, start, err)
	return c, err
}

func (s *instrumented) TypeStats(ctx context.Context, owner string) (map[string]domain.Stats, error) {
	start := time.Now()
	st, err := s.inner.TypeStats(ctx, owner)
	s.done(opTypeStats, start, err)
	return st, err
}

func (s *instrumented) PutPeriodic(ctx context.Context, p domain.PeriodicJob) (*domain.PeriodicJob, error) {
	start := time.Now()
	out, err := s.inner.PutPeriodic(ctx, p)
	s.done(opPutPeriodic, start, err)
	return out, err
}

func (s *instrumented) DeletePeriodic(ctx context.Context, name string, source domain.PeriodicSource) error {
	start := time.Now()
	err := s.inner.DeletePeriodic(ctx, name, source)
	s.done(opDeletePeriodic, start, err)
	return err
}

func (s *instrumented) ListPeriodic(ctx context.Context) ([]*domain.PeriodicJob, error) {
	start := time.Now()
	ps, err := s.inner.ListPeriodic(ctx)
	s.done(opListPeriodic, start, err)
	return ps, err
}

// EnqueuePeriodic counts the tick's job as created when there is one (a
// nil job: the tick was taken, nothing was inserted).
func (s *instrumented) EnqueuePeriodic(ctx context.Context, t store.PeriodicTick) (*domain.Job, error) {
	start := time.Now()
	j, err := s.inner.EnqueuePeriodic(ctx, t)
	s.done(opEnqueuePeriodic, start, err)
	if err == nil && j != nil {
		s.m.typ(j.Type).created.Inc()
	}
	return j, err
}
