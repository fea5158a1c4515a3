// Package memory is an in-memory, concurrency-safe implementation of
// store.Store. It keeps nothing across restarts: use it for tests, demos and
// single-process deployments that can lose their jobs.
package memory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

var _ store.Store = (*Store)(nil)

// Store is an in-memory job store. It is safe for concurrent use. All
// changes are serialised by one mutex and published while it is held, which
// is what guarantees that each job's events leave in version order.
type Store struct {
	pub     store.Publisher
	now     func() time.Time
	history int // failures kept per job (store.ErrorHistory)

	mu      sync.Mutex
	seq     int64
	byID    map[string]*domain.Job
	ordered []*domain.Job          // by Seq ascending; entries are replaced on change
	index   map[string]int         // id → position in ordered
	byKey   map[keyOf]string       // owner and idempotency key → id
	pending map[string]*domain.Job // the current snapshot of every pending job
	queue   *runQueue
	counts  map[countKey]int
	leases  map[string]lease // processing job id → its claim
	// controls are the types' controls, only of types that have some.
	controls map[string]domain.TypeControl
	typePub  store.TypePublisher
	// periodics are the periodic job definitions by name.
	periodics map[string]*domain.PeriodicJob
}

// lease is the claim a processing job is held by.
type lease struct {
	owner   string
	attempt int
	expires time.Time
}

// keyOf scopes an idempotency key to its owner.
type keyOf struct{ owner, key string }

type countKey struct {
	owner  string // "" counts every owner
	typ    string // "" counts every type
	status domain.Status
}

// Options configure a Store. The zero value is usable.
type Options struct {
	// Publisher receives every change (nil for none).
	Publisher store.Publisher
	// ErrorHistory is how many failures a job keeps (see
	// store.ErrorHistory); zero means domain.DefaultErrorHistory.
	ErrorHistory int
}

// New returns an empty store with the default options that reports every
// change to pub (which may be nil).
func New(pub store.Publisher) *Store {
	s, _ := NewWithOptions(Options{Publisher: pub}) // the zero options are valid
	return s
}

// NewWithOptions returns an empty store configured by opts, or an error
// wrapping domain.ErrInvalid when an option is out of range.
func NewWithOptions(opts Options) (*Store, error) {
	history, err := store.ErrorHistory(opts.ErrorHistory)
	if err != nil {
		return nil, fmt.Errorf("new memory store: %w", err)
	}
	pub := opts.Publisher
	if pub == nil {
		pub = store.PublisherFunc(func(*domain.Job) {})
	}
	return &Store{
		pub:     pub,
		now:     func() time.Time { return time.Now().UTC() },
		history: history,
		byID:    make(map[string]*domain.Job),
		index:   make(map[string]int),
		byKey:   make(map[keyOf]string),
		pending: make(map[string]*domain.Job),
		queue:   newRunQueue(),
		counts:  make(map[countKey]int),
		leases:  make(map[string]lease),

		controls:  make(map[string]domain.TypeControl),
		typePub:   store.TypePublisherOf(pub),
		periodics: make(map[string]*domain.PeriodicJob),
	}, nil
}

// Create stores a new pending job, or returns the job that already has
// nj's idempotency key.
func (s *Store) Create(ctx context.Context, nj domain.NewJob) (*domain.Job, error) {
	jobs, err := s.create(ctx, []domain.NewJob{nj})
	if err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	return jobs[0], nil
}

// CreateMany stores the new jobs under one hold of the lock: nothing can
// fail half-way.
func (s *Store) CreateMany(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error) {
	jobs, err := s.create(ctx, njs)
	if err != nil {
		return nil, fmt.Errorf("create jobs: %w", err)
	}
	return jobs, nil
}

func (s *Store) create(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fresh, err := s.newJobs(njs)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	out := s.insert(fresh)
	s.mu.Unlock()
	for i, j := range out {
		if j == fresh[i] {
			store.NoteCreated(ctx, j)
		}
	}
	return out, nil
}

// newJobs makes the jobs of njs, not stored yet.
func (s *Store) newJobs(njs []domain.NewJob) ([]*domain.Job, error) {
	now := s.now()
	fresh := make([]*domain.Job, len(njs))
	for i, nj := range njs {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("new id: %w", err)
		}
		j := &domain.Job{
			ID:        id.String(),
			Type:      nj.Type,
			Payload:   nj.Payload,
			Status:    domain.StatusPending,
			CreatedAt: now,
			UpdatedAt: now,
			Version:   1,

			IdempotencyKey: nj.IdempotencyKey,
			Owner:          nj.Owner,
			Timeout:        nj.Timeout,
			MaxAttempts:    max(nj.MaxAttempts, 1),
			RunAt:          nj.RunAt,
			Priority:       nj.Priority,
			Tags:           nj.Tags,
			TraceParent:    nj.TraceParent,
		}
		if j.RunAt.IsZero() {
			j.RunAt = now
		}
		fresh[i] = j
	}
	return fresh, nil
}

// insert stores and publishes new jobs, or returns the job that has a
// new job's idempotency key in its place. The caller holds the lock.
func (s *Store) insert(fresh []*domain.Job) []*domain.Job {
	out := make([]*domain.Job, len(fresh))
	for i, j := range fresh {
		if j.IdempotencyKey != "" {
			k := keyOf{j.Owner, j.IdempotencyKey}
			if id, ok := s.byKey[k]; ok {
				out[i] = s.byID[id]
				continue
			}
			s.byKey[k] = j.ID
		}
		s.seq++
		j.Seq = s.seq
		s.byID[j.ID] = j
		s.index[j.ID] = len(s.ordered)
		s.ordered = append(s.ordered, j)
		s.count(j, 1)
		s.pending[j.ID] = j
		s.queue.add(j)
		s.pub.Publish(j)
		out[i] = j
	}
	return out
}

// Get returns the job with the id.
func (s *Store) Get(ctx context.Context, id string) (*domain.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	s.mu.Lock()
	j, ok := s.byID[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get job %s: %w", id, domain.ErrNotFound)
	}
	return j, nil
}

// List returns matching jobs newest first. It scans from the cursor
// backwards, so a page costs O(page + skipped non-matching jobs); Total comes
// from counters kept on every change, except for a tag, whose total is
// counted over every job. (A memory store holds what one process can:
// scanning past other owners' jobs is cheap enough there.)
func (s *Store) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	if err := ctx.Err(); err != nil {
		return store.ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	if q.Limit <= 0 {
		return store.ListPage{}, fmt.Errorf("list jobs: limit %d: %w", q.Limit, domain.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	page := store.ListPage{}
	if q.Tag == "" && q.CreatedBefore.IsZero() && q.CreatedAfter.IsZero() {
		page.Total = s.total(q.Owner, q.Type, q.Status)
	} else {
		// No counts per tag or creation time: the jobs are counted one
		// by one.
		for _, j := range s.ordered {
			if matches(q, j) {
				page.Total++
			}
		}
	}
	end := len(s.ordered)
	if q.BeforeSeq > 0 {
		end = sort.Search(len(s.ordered), func(i int) bool { return s.ordered[i].Seq >= q.BeforeSeq })
	}
	for i := end - 1; i >= 0; i-- {
		j := s.ordered[i]
		if !matches(q, j) {
			continue
		}
		if len(page.Jobs) == q.Limit {
			page.HasMore = true
			break
		}
		page.Jobs = append(page.Jobs, j)
	}
	return page, nil
}

// matches reports whether j passes q's filters.
func matches(q store.ListQuery, j *domain.Job) bool {
	return (q.Status == "" || j.Status == q.Status) && (q.Type == "" || j.Type == q.Type) &&
		(q.Owner == "" || j.Owner == q.Owner) && (q.Tag == "" || j.HasTag(q.Tag)) &&
		(q.CreatedBefore.IsZero() || j.CreatedAt.Before(q.CreatedBefore)) &&
		(q.CreatedAfter.IsZero() || j.CreatedAt.After(q.CreatedAfter))
}

func (s *Store) total(owner, typ string, status domain.Status) int {
	if status != "" {
		return s.counts[countKey{owner, typ, status}]
	}
	n := 0
	for _, st := range domain.Statuses {
		n += s.counts[countKey{owner, typ, st}]
	}
	return n
}

// Claim moves up to req.Limit runnable jobs to processing, leased to
// req.Owner, taking them from the run queue in dispatch order.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	if req.Owner == "" || req.Limit <= 0 {
		return nil, fmt.Errorf("claim jobs: owner %q, limit %d: %w", req.Owner, req.Limit, domain.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	accept, spend := s.quotas(req.Now)
	jobs := s.queue.take(req.Now, req.Limit, s.isPending, accept)
	spend()
	for i, old := range jobs {
		jobs[i] = s.apply(old, (*domain.Job).Claim)
		s.leases[old.ID] = lease{owner: req.Owner, attempt: jobs[i].Attempts, expires: req.LeaseUntil}
	}
	return jobs, nil
}

func (s *Store) isPending(j *domain.Job) bool { return s.pending[j.ID] == j }

// quotas returns what a claim at now may take under the type controls:
// accept takes a job when its type's quota allows (nil when no type has
// controls), and spend, called once the claim is made, takes the rate
// tokens of the jobs accepted. The caller holds the lock.
func (s *Store) quotas(now time.Time) (accept func(*domain.Job) bool, spend func()) {
	if len(s.controls) == 0 {
		return nil, func() {}
	}
	left := make(map[string]int, len(s.controls))
	for name, c := range s.controls {
		left[name] = c.Quota(s.counts[countKey{"", name, domain.StatusProcessing}], now)
	}
	taken := make(map[string]int)
	accept = func(j *domain.Job) bool {
		q, ok := left[j.Type]
		if !ok || q < 0 {
			return true
		}
		if q == 0 {
			return false
		}
		left[j.Type] = q - 1
		taken[j.Type]++
		return true
	}
	spend = func() {
		for name, n := range taken {
			if c := s.controls[name]; c.RatePerSecond > 0 {
				c.Spend(n, now)
				s.controls[name] = c
			}
		}
	}
	return accept, spend
}

// NextRunAt returns the earliest RunAt after now among pending jobs, or
// the next token of an empty rate bucket if sooner.
func (s *Store) NextRunAt(ctx context.Context, now time.Time) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("next run time: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.queue.due(now, s.isPending)
	for _, c := range s.controls {
		next = store.Earliest(next, c.NextToken(now))
	}
	return next, nil
}

// TypeControls returns the controls of the types that have any.
func (s *Store) TypeControls(ctx context.Context) ([]domain.TypeControl, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("type controls: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]domain.TypeControl, 0, len(s.controls))
	for _, c := range s.controls {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b domain.TypeControl) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// SetTypeControl changes a type's controls and publishes them. A paused
// type that is resumed, or one whose limits change, wakes the
// dispatchers through the publication.
func (s *Store) SetTypeControl(ctx context.Context, name string, change domain.TypeChange) (domain.TypeControl, error) {
	if err := ctx.Err(); err != nil {
		return domain.TypeControl{}, fmt.Errorf("set controls of type %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.controls[name]
	if !ok {
		c.Name = name
	}
	change.Apply(&c, s.now())
	if c.Empty() {
		delete(s.controls, name)
	} else {
		s.controls[name] = c
	}
	s.typePub.PublishType(c)
	return c, nil
}

// TypeStats counts the jobs of each type that has some.
func (s *Store) TypeStats(ctx context.Context, owner string) (map[string]domain.Stats, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("type stats: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]domain.Stats)
	for k, n := range s.counts {
		if k.owner != owner || k.typ == "" {
			continue
		}
		st := out[k.typ]
		st.Add(k.status, n)
		out[k.typ] = st
	}
	return out, nil
}

// OldestRunnable returns the earliest RunAt not after now among pending
// jobs of types not paused. It looks at every runnable job (those the
// queue holds as due): the memory store keeps no index by RunAt of due
// jobs.
func (s *Store) OldestRunnable(ctx context.Context, now time.Time) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("oldest runnable job: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.oldestDue(now, s.isPending, func(j *domain.Job) bool { return !s.controls[j.Type].Paused }), nil
}

// Heartbeat extends the leases owner holds.
func (s *Store) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("heartbeat of %s: %w", owner, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if l, ok := s.leases[id]; ok && l.owner == owner {
			l.expires = until
			s.leases[id] = l
			n++
		}
	}
	return n, nil
}

// RescueExpired gives back the processing jobs whose lease expired.
func (s *Store) RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rescue jobs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The longest expired first, as the SQL stores do.
	var expired []string
	for id, l := range s.leases {
		if l.expires.Before(now) {
			expired = append(expired, id)
		}
	}
	slices.SortFunc(expired, func(a, b string) int {
		if c := s.leases[a].expires.Compare(s.leases[b].expires); c != 0 {
			return c
		}
		return cmp.Compare(s.byID[a].Seq, s.byID[b].Seq)
	})
	expired = expired[:min(len(expired), max(limit, 0))]
	slices.Sort(expired) // a stable order for events and tests
	out := make([]*domain.Job, 0, len(expired))
	for _, id := range expired {
		out = append(out, s.apply(s.byID[id], func(j *domain.Job, now time.Time) { j.Rescue(store.WorkerLost, now, s.history) }))
	}
	return out, nil
}

// Finish moves a processing job to a final status; a failure is added to
// the job's error history.
func (s *Store) Finish(ctx context.Context, l store.Lease, status domain.Status, errMsg string) (*domain.Job, error) {
	if !status.Final() {
		return nil, fmt.Errorf("finish job %s as %s: not a final status: %w", l.JobID, status, domain.ErrInvalid)
	}
	return s.leased(ctx, "finish", l, func(j *domain.Job, now time.Time) error {
		j.Finish(status, errMsg, now, s.history)
		return nil
	})
}

// Complete moves a processing job to completed with a result.
func (s *Store) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	return s.leased(ctx, "complete", l, func(j *domain.Job, now time.Time) error {
		j.Complete(result, now)
		return nil
	})
}

// Progress records a processing job's progress.
func (s *Store) Progress(ctx context.Context, l store.Lease, percent int) (*domain.Job, error) {
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("progress of job %s: %d: %w", l.JobID, percent, domain.ErrInvalid)
	}
	return s.leased(ctx, "progress", l, func(j *domain.Job, now time.Time) error { return j.SetProgress(percent) })
}

// Fail records a failed attempt: back to pending at retryAt when attempts
// are left, failed otherwise.
func (s *Store) Fail(ctx context.Context, l store.Lease, errMsg string, retryAt time.Time) (*domain.Job, error) {
	return s.leased(ctx, "fail", l, func(j *domain.Job, now time.Time) error {
		j.Fail(errMsg, retryAt, now, s.history)
		return nil
	})
}

// Release moves a processing job back to pending, or to cancelled when a
// cancellation was requested meanwhile (the user asked for it; running it
// again would ignore that).
func (s *Store) Release(ctx context.Context, l store.Lease) (*domain.Job, error) {
	return s.leased(ctx, "release", l, func(j *domain.Job, now time.Time) error {
		j.Release(now)
		return nil
	})
}

// Cancel cancels a pending job at once; for a processing job it records
// the request (the worker then cancels the handler). The status is read and
// changed under one lock, so a claim racing the cancel cannot turn it into
// a conflict.
func (s *Store) Cancel(ctx context.Context, id string) (*domain.Job, error) {
	return s.change(ctx, "cancel", id, func(j *domain.Job, now time.Time) error { return j.Cancel(now) })
}

// Retry puts a failed or cancelled job back to pending, keeping its
// attempts and error history.
func (s *Store) Retry(ctx context.Context, id string) (*domain.Job, error) {
	return s.change(ctx, "retry", id, func(j *domain.Job, now time.Time) error { return j.Retry(now) })
}

// CancelJobs cancels the jobs with the ids that Cancel would change, under
// one lock per batch.
func (s *Store) CancelJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	return s.changeMany(ctx, "cancel", ids, owner, func(j *domain.Job, now time.Time) error { return j.Cancel(now) })
}

// RetryJobs puts back to pending the failed or cancelled jobs with the
// ids, under one lock per batch.
func (s *Store) RetryJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	return s.changeMany(ctx, "retry", ids, owner, func(j *domain.Job, now time.Time) error { return j.Retry(now) })
}

// changeMany applies one change to each job with the ids (only owner's
// when owner is not empty) that it changes, store.BulkBatch jobs under
// one lock, and returns the changed jobs. Jobs it refuses or leaves
// unchanged, and unknown ids, are skipped.
func (s *Store) changeMany(ctx context.Context, op string, ids []string, owner string, apply func(j *domain.Job, now time.Time) error) ([]*domain.Job, error) {
	var changed []*domain.Job
	err := store.Batches(ids, func(batch []string) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s jobs: %w", op, err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range batch {
			old, ok := s.byID[id]
			if !ok || owner != "" && old.Owner != owner {
				continue
			}
			j, err := s.update(old, apply)
			if errors.Is(err, domain.ErrConflict) {
				continue
			} else if err != nil {
				return fmt.Errorf("%s job %s: %w", op, id, err)
			}
			if j != old {
				changed = append(changed, j)
			}
		}
		return nil
	})
	return changed, err
}

// DeleteFinished deletes final jobs that finished before the given time.
// It compacts the store in one pass: O(jobs), under the lock.
func (s *Store) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("delete finished jobs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The longest finished first, as the SQL stores do.
	var doomed []*domain.Job
	for _, j := range s.ordered {
		if j.Status.Final() && j.FinishedAt != nil && j.FinishedAt.Before(before) {
			doomed = append(doomed, j)
		}
	}
	slices.SortStableFunc(doomed, func(a, b *domain.Job) int { return a.FinishedAt.Compare(*b.FinishedAt) })
	doomed = doomed[:min(len(doomed), max(limit, 0))]
	if len(doomed) == 0 {
		return 0, nil
	}
	deleting := make(map[string]bool, len(doomed))
	for _, j := range doomed {
		deleting[j.ID] = true
	}
	n := 0
	kept := s.ordered[:0]
	for _, j := range s.ordered {
		if deleting[j.ID] {
			n++
			delete(s.byID, j.ID)
			delete(s.index, j.ID)
			if j.IdempotencyKey != "" {
				delete(s.byKey, keyOf{j.Owner, j.IdempotencyKey})
			}
			s.count(j, -1)
			continue
		}
		s.index[j.ID] = len(kept)
		kept = append(kept, j)
	}
	clear(s.ordered[len(kept):])
	s.ordered = kept
	return n, nil
}

// Delete deletes a job in a final status.
func (s *Store) Delete(ctx context.Context, id string) (*domain.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("delete job %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.byID[id]
	if !ok {
		return nil, fmt.Errorf("delete job %s: %w", id, domain.ErrNotFound)
	}
	if !j.Status.Final() {
		return nil, fmt.Errorf("delete job %s: %s: %w", id, j.Status, domain.ErrConflict)
	}
	i := s.index[id]
	s.ordered = slices.Delete(s.ordered, i, i+1)
	for _, later := range s.ordered[i:] {
		s.index[later.ID]--
	}
	delete(s.byID, id)
	delete(s.index, id)
	if j.IdempotencyKey != "" {
		delete(s.byKey, keyOf{j.Owner, j.IdempotencyKey})
	}
	s.count(j, -1)
	return j, nil
}

// Stats counts jobs per status, of one type and one owner when q names
// them.
func (s *Store) Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error) {
	if err := ctx.Err(); err != nil {
		return domain.Stats{}, fmt.Errorf("job stats: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := func(st domain.Status) int { return s.counts[countKey{q.Owner, q.Type, st}] }
	return domain.Stats{
		Pending:    n(domain.StatusPending),
		Processing: n(domain.StatusProcessing),
		Completed:  n(domain.StatusCompleted),
		Failed:     n(domain.StatusFailed),
		Cancelled:  n(domain.StatusCancelled),
	}, nil
}

// leased applies a change a worker makes about the attempt l names: only
// while the job is processing under that very claim.
func (s *Store) leased(ctx context.Context, op string, l store.Lease, apply func(j *domain.Job, now time.Time) error) (*domain.Job, error) {
	return s.change(ctx, op, l.JobID, func(j *domain.Job, now time.Time) error {
		held := s.leases[j.ID] // the zero lease when none is held
		if err := l.Check(j, held.owner); err != nil {
			return err
		}
		if held.attempt != j.Attempts {
			return fmt.Errorf("lease of %s recorded at attempt %d, job at %d: %w", held.owner, held.attempt, j.Attempts, domain.ErrLeaseLost)
		}
		return apply(j, now)
	})
}

// change applies one change as a copy-on-write update, under the lock, and
// publishes it: the old snapshot stays valid for whoever holds it.
func (s *Store) change(ctx context.Context, op, id string, apply func(j *domain.Job, now time.Time) error) (*domain.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s job %s: %w", op, id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.byID[id]
	if !ok {
		return nil, fmt.Errorf("%s job %s: %w", op, id, domain.ErrNotFound)
	}
	j, err := s.update(old, apply)
	if err != nil {
		return nil, fmt.Errorf("%s job %s: %w", op, id, err)
	}
	return j, nil
}

// update applies apply to a copy of old and commits it, or returns old
// itself when apply leaves the job unchanged (domain.ErrUnchanged), or
// apply's error. The caller holds the lock.
func (s *Store) update(old *domain.Job, apply func(j *domain.Job, now time.Time) error) (*domain.Job, error) {
	j := *old
	now := s.now()
	if err := apply(&j, now); errors.Is(err, domain.ErrUnchanged) {
		return old, nil
	} else if err != nil {
		return nil, err
	}
	if old.Status == domain.StatusPending {
		s.queue.replaced(s.pending) // its queue entry is stale now
	}
	return s.commit(old, &j, now), nil
}

// apply makes an unconditional change of a job taken off the run queue (a
// claim) or found by the caller under the lock (a rescue).
func (s *Store) apply(old *domain.Job, change func(j *domain.Job, now time.Time)) *domain.Job {
	j := *old
	now := s.now()
	change(&j, now)
	return s.commit(old, &j, now)
}

// commit stores j as the next version of old and publishes it. The caller
// holds the lock.
func (s *Store) commit(old, j *domain.Job, now time.Time) *domain.Job {
	j.UpdatedAt = now
	j.Version++
	s.byID[j.ID] = j
	s.ordered[s.index[j.ID]] = j
	s.count(old, -1)
	s.count(j, 1)
	if j.Status == domain.StatusPending {
		s.pending[j.ID] = j
		s.queue.add(j)
	} else {
		delete(s.pending, j.ID)
	}
	if j.Status != domain.StatusProcessing {
		delete(s.leases, j.ID)
	}
	s.pub.Publish(j)
	return j
}

// count adds delta to the counts j is in: of every job, of its type, and,
// when it has an owner, of its owner and of its owner and type.
func (s *Store) count(j *domain.Job, delta int) {
	keys := [4]countKey{{"", "", j.Status}, {"", j.Type, j.Status}, {j.Owner, "", j.Status}, {j.Owner, j.Type, j.Status}}
	n := 2
	if j.Owner != "" {
		n = 4
	}
	for _, k := range keys[:n] {
		if c := s.counts[k] + delta; c == 0 {
			delete(s.counts, k) // types come from clients: keep no empty entries
		} else {
			s.counts[k] = c
		}
	}
}

// runsBefore is the dispatch order: priority, then RunAt, then Seq.
func runsBefore(a, b *domain.Job) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if !a.RunAt.Equal(b.RunAt) {
		return a.RunAt.Before(b.RunAt)
	}
	return a.Seq < b.Seq
}

var _ store.Tuner = (*Store)(nil)

// Tuning is the zero store.Tuning: a claim is a map walk under a mutex, so
// claiming for each freed worker costs nothing worth gathering; every
// runnable job is published by this process, so no wake-up is missed; and
// writes are not coalesced, so the worker's default of outcomes in flight
// applies. Safe for concurrent use.
func (s *Store) Tuning() store.Tuning { return store.Tuning{} }
