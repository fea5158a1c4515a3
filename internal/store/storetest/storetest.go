// Package storetest is the conformance suite of the store.Store contract.
// Every backend runs it from its own tests:
//
//	storetest.Run(t, func(t *testing.T, opts storetest.Options) store.Store {
//		s, err := memory.NewWithOptions(memory.Options{Publisher: opts.Publisher, ErrorHistory: opts.ErrorHistory})
//		...
//	})
//
// A backend is done when it passes the whole suite. Backends may keep times
// at microsecond precision; the times they return are the ones they keep.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// NewStore returns a fresh, empty store configured by opts.
type NewStore func(t *testing.T, opts Options) store.Store

// Options are what the suite configures in the stores it asks for: each
// backend passes them to its own options.
type Options struct {
	// Publisher receives every change of the store (nil for none).
	Publisher store.Publisher
	// ErrorHistory is how many failures a job keeps (zero for the
	// default, domain.DefaultErrorHistory; see store.ErrorHistory).
	ErrorHistory int
}

// Run runs every conformance test against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Run("CreateAndGet", func(t *testing.T) { t.Parallel(); testCreateAndGet(t, newStore) })
	t.Run("GetUnknown", func(t *testing.T) { t.Parallel(); testGetUnknown(t, newStore) })
	t.Run("Lifecycle", func(t *testing.T) { t.Parallel(); testLifecycle(t, newStore) })
	t.Run("TransitionsOnlyAlongAllowedEdges", func(t *testing.T) { t.Parallel(); testTransitions(t, newStore) })
	t.Run("ConcurrentClaims", func(t *testing.T) { t.Parallel(); testConcurrentClaims(t, newStore) })
	t.Run("EventsInVersionOrder", func(t *testing.T) { t.Parallel(); testEventsInVersionOrder(t, newStore) })
	t.Run("List", func(t *testing.T) { t.Parallel(); testList(t, newStore) })
	t.Run("ClaimOrder", func(t *testing.T) { t.Parallel(); testClaimOrder(t, newStore) })
	t.Run("Leases", func(t *testing.T) { t.Parallel(); testLeases(t, newStore) })
	t.Run("LostLeaseRacingCompletion", func(t *testing.T) { t.Parallel(); testLostLeaseRace(t, newStore) })
	t.Run("FailRetries", func(t *testing.T) { t.Parallel(); testFailRetries(t, newStore) })
	t.Run("Cancel", func(t *testing.T) { t.Parallel(); testCancel(t, newStore) })
	t.Run("RetryKeepsHistory", func(t *testing.T) { t.Parallel(); testRetryKeepsHistory(t, newStore) })
	t.Run("ErrorHistory", func(t *testing.T) { t.Parallel(); testErrorHistory(t, newStore) })
	t.Run("ErrorMessageCap", func(t *testing.T) { t.Parallel(); testErrorMessageCap(t, newStore) })
	t.Run("Stats", func(t *testing.T) { t.Parallel(); testStats(t, newStore) })
	t.Run("IdempotencyKey", func(t *testing.T) { t.Parallel(); testIdempotencyKey(t, newStore) })
	t.Run("ProgressAndResult", func(t *testing.T) { t.Parallel(); testProgressAndResult(t, newStore) })
	t.Run("DeleteFinished", func(t *testing.T) { t.Parallel(); testDeleteFinished(t, newStore) })
	t.Run("OldestFirst", func(t *testing.T) { t.Parallel(); testOldestFirst(t, newStore) })
	t.Run("CancelRacingClaim", func(t *testing.T) { t.Parallel(); testCancelRacingClaim(t, newStore) })
	t.Run("SnapshotsAreImmutable", func(t *testing.T) { t.Parallel(); testSnapshots(t, newStore) })
	t.Run("RulesAgree", func(t *testing.T) { t.Parallel(); testRulesAgree(t, newStore) })
	t.Run("OwnerPersists", func(t *testing.T) { t.Parallel(); testOwnerPersists(t, newStore) })
	t.Run("OwnerList", func(t *testing.T) { t.Parallel(); testOwnerList(t, newStore) })
	t.Run("OwnerStats", func(t *testing.T) { t.Parallel(); testOwnerStats(t, newStore) })
	t.Run("OwnerCounts", func(t *testing.T) { t.Parallel(); testOwnerCounts(t, newStore) })
	t.Run("TagsPersist", func(t *testing.T) { t.Parallel(); testTagsPersist(t, newStore) })
	t.Run("TraceParentPersists", func(t *testing.T) { t.Parallel(); testTraceParentPersists(t, newStore) })
	t.Run("TagList", func(t *testing.T) { t.Parallel(); testTagList(t, newStore) })
	t.Run("OwnerIdempotencyKey", func(t *testing.T) { t.Parallel(); testOwnerIdempotencyKey(t, newStore) })
	t.Run("CreateMany", func(t *testing.T) { t.Parallel(); testCreateMany(t, newStore) })
	t.Run("CreateManyKeys", func(t *testing.T) { t.Parallel(); testCreateManyKeys(t, newStore) })
	t.Run("CreateManyAllOrNothing", func(t *testing.T) { t.Parallel(); testCreateManyAllOrNothing(t, newStore) })
	t.Run("Delete", func(t *testing.T) { t.Parallel(); testDelete(t, newStore) })
	t.Run("TypePause", func(t *testing.T) { t.Parallel(); testTypePause(t, newStore) })
	t.Run("TypeConcurrency", func(t *testing.T) { t.Parallel(); testTypeConcurrency(t, newStore) })
	t.Run("TypeConcurrencyRace", func(t *testing.T) { t.Parallel(); testTypeConcurrencyRace(t, newStore) })
	t.Run("TypeRate", func(t *testing.T) { t.Parallel(); testTypeRate(t, newStore) })
	t.Run("TypeRateOlderNow", func(t *testing.T) { t.Parallel(); testTypeRateOlderNow(t, newStore) })
	t.Run("TypeControlsKept", func(t *testing.T) { t.Parallel(); testTypeControlsKept(t, newStore) })
	t.Run("PeriodicDefinitions", func(t *testing.T) { t.Parallel(); testPeriodicDefinitions(t, newStore) })
	t.Run("PeriodicTickOnce", func(t *testing.T) { t.Parallel(); testPeriodicTickOnce(t, newStore) })
	t.Run("CreatedBounds", func(t *testing.T) { t.Parallel(); testCreatedBounds(t, newStore) })
	t.Run("OldestRunnable", func(t *testing.T) { t.Parallel(); testOldestRunnable(t, newStore) })
	t.Run("ClaimOrderPastClosedTypes", func(t *testing.T) { t.Parallel(); testClaimOrderPastClosedTypes(t, newStore) })
	t.Run("CreationsNoted", func(t *testing.T) { t.Parallel(); testCreationsNoted(t, newStore) })
	t.Run("CancelJobs", func(t *testing.T) { t.Parallel(); testCancelJobs(t, newStore) })
	t.Run("RetryJobs", func(t *testing.T) { t.Parallel(); testRetryJobs(t, newStore) })
	t.Run("BulkChangesOwner", func(t *testing.T) { t.Parallel(); testBulkChangesOwner(t, newStore) })
	t.Run("BulkChangesBatches", func(t *testing.T) { t.Parallel(); testBulkChangesBatches(t, newStore) })
}

// recorder is a Publisher that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []*domain.Job
}

func (r *recorder) Publish(j *domain.Job) {
	r.mu.Lock()
	r.events = append(r.events, j)
	r.mu.Unlock()
}

func (r *recorder) all() []*domain.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*domain.Job(nil), r.events...)
}

// owner is the claimer the tests use unless they need several.
const owner = "storetest"

// claim claims up to limit runnable jobs as owner, leased for a minute.
func claim(t *testing.T, s store.Store, limit int) []*domain.Job {
	t.Helper()
	now := time.Now()
	jobs, err := s.Claim(context.Background(), store.ClaimRequest{Owner: owner, Limit: limit, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return jobs
}

// claimID claims the next runnable job, which must be the job with id, and
// returns it with its lease.
func claimID(t *testing.T, s store.Store, id string) (*domain.Job, store.Lease) {
	t.Helper()
	jobs := claim(t, s, 1)
	if len(jobs) != 1 || jobs[0].ID != id {
		t.Fatalf("claim = %s, want job %s", ids(jobs), id)
	}
	return jobs[0], store.LeaseOf(jobs[0], owner)
}

// lease is the lease owner would hold on j as it is.
func lease(j *domain.Job) store.Lease { return store.LeaseOf(j, owner) }

// firstSeq makes each job put creates run before every job made earlier:
// highest priority, and a RunAt further in the past each time.
var firstSeq atomic.Int64

func mustCreate(t *testing.T, s store.Store, typ string) *domain.Job {
	t.Helper()
	j, err := s.Create(context.Background(), domain.NewJob{Type: typ, Payload: json.RawMessage(`{"n":1}`)})
	if err != nil {
		t.Fatalf("create %s: %v", typ, err)
	}
	return j
}

func testCreateAndGet(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	j, err := s.Create(ctx, domain.NewJob{Type: "email", Payload: json.RawMessage(`{"to":"a@b.c"}`)})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if j.ID == "" || j.Status != domain.StatusPending || j.Version != 1 || j.Attempts != 0 || j.Seq <= 0 {
		t.Fatalf("created job = %+v, want pending, version 1, id and seq set", j)
	}
	if j.CreatedAt.IsZero() || !j.UpdatedAt.Equal(j.CreatedAt) || j.StartedAt != nil || j.FinishedAt != nil {
		t.Fatalf("created job times = %+v", j)
	}
	got, err := s.Get(ctx, j.ID)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.ID != j.ID || got.Type != "email" || string(got.Payload) != `{"to":"a@b.c"}` || got.Version != 1 {
		t.Fatalf("get = %+v, want the created job", got)
	}
	if ev := rec.all(); len(ev) != 1 || ev[0].ID != j.ID || ev[0].Version != 1 {
		t.Fatalf("events = %v, want one creation event", ev)
	}
	other := mustCreate(t, s, "email")
	if other.ID == j.ID || other.Seq <= j.Seq {
		t.Fatalf("second job id %s seq %d, first %s seq %d: want a new id and a larger seq", other.ID, other.Seq, j.ID, j.Seq)
	}
}

func testGetUnknown(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	if _, err := s.Get(ctx, "no-such-job"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("get unknown: err = %v, want ErrNotFound", err)
	}
	unknown := store.Lease{JobID: "no-such-job", Owner: owner, Attempt: 1}
	if _, err := s.Finish(ctx, unknown, domain.StatusCompleted, ""); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("finish unknown: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Complete(ctx, unknown, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("complete unknown: err = %v, want ErrNotFound", err)
	}
	if jobs := claim(t, s, 10); len(jobs) != 0 {
		t.Fatalf("claim from an empty store = %s", ids(jobs))
	}
	if _, err := s.Claim(ctx, store.ClaimRequest{Limit: 1, Now: time.Now()}); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("claim without an owner: err = %v, want ErrInvalid", err)
	}
}

func testLifecycle(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	j := mustCreate(t, s, "email")

	c, l := claimID(t, s, j.ID)
	if c.Status != domain.StatusProcessing || c.Attempts != 1 || c.StartedAt == nil || c.Version != 2 {
		t.Fatalf("claimed = %+v, want processing, attempt 1, started, version 2", c)
	}
	r, err := s.Release(ctx, l)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if r.Status != domain.StatusPending || r.Attempts != 1 || r.Version != 3 {
		t.Fatalf("released = %+v, want pending keeping attempt 1, version 3", r)
	}
	_, l = claimID(t, s, j.ID)
	if l.Attempt != 2 {
		t.Fatalf("second claim's lease = %+v, want attempt 2", l)
	}
	f, err := s.Finish(ctx, l, domain.StatusFailed, "boom")
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	if f.Status != domain.StatusFailed || f.Error != "boom" || f.Attempts != 2 || f.FinishedAt == nil || f.Version != 5 {
		t.Fatalf("finished = %+v, want failed with error boom, attempt 2, version 5", f)
	}
	if f.UpdatedAt.Before(j.UpdatedAt) {
		t.Fatalf("updatedAt went backwards: %v then %v", j.UpdatedAt, f.UpdatedAt)
	}
	var statuses []domain.Status
	for _, ev := range rec.all() {
		statuses = append(statuses, ev.Status)
	}
	want := []domain.Status{domain.StatusPending, domain.StatusProcessing, domain.StatusPending, domain.StatusProcessing, domain.StatusFailed}
	if fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("event statuses = %v, want %v", statuses, want)
	}

	done := mustCreate(t, s, "email")
	_, l = claimID(t, s, done.ID)
	if got, err := s.Finish(ctx, l, domain.StatusCompleted, ""); err != nil || got.Error != "" || got.ErrorMessage() != nil {
		t.Fatalf("complete = %+v, %v: want no error message", got, err)
	}
}

// put drives a fresh job of type t into status st through allowed edges.
// The job runs before every job made earlier (see firstSeq), so claimID
// can claim it whatever else is pending.
func put(t *testing.T, s store.Store, st domain.Status) *domain.Job {
	t.Helper()
	return putJob(t, s, domain.NewJob{Type: "t"}, st)
}

// putJob is put for a job made from nj (its Priority and RunAt are set).
func putJob(t *testing.T, s store.Store, nj domain.NewJob, st domain.Status) *domain.Job {
	t.Helper()
	ctx := context.Background()
	nj.Priority = domain.MaxPriority
	nj.RunAt = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Duration(firstSeq.Add(1)) * time.Second)
	j, err := s.Create(ctx, nj)
	if err != nil {
		t.Fatal(err)
	}
	if st == domain.StatusPending {
		return j
	}
	j, l := claimID(t, s, j.ID)
	if st == domain.StatusProcessing {
		return j
	}
	j, err = s.Finish(ctx, l, st, "")
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func testTransitions(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	type op struct {
		name string
		from []domain.Status // the statuses it applies to
		to   domain.Status   // the status it leaves the job in
		do   func(j *domain.Job) (*domain.Job, error)
	}
	P, R, C, F, X := domain.StatusPending, domain.StatusProcessing, domain.StatusCompleted, domain.StatusFailed, domain.StatusCancelled
	ops := []op{
		{"claim", []domain.Status{P}, R, func(j *domain.Job) (*domain.Job, error) {
			// Whatever else it claims, the job must be among the claimed
			// exactly when it was pending.
			for _, c := range claim(t, s, 1000) {
				if c.ID == j.ID {
					return c, nil
				}
			}
			return nil, fmt.Errorf("not claimed: %w", domain.ErrConflict)
		}},
		{"release", []domain.Status{R}, P, func(j *domain.Job) (*domain.Job, error) { return s.Release(ctx, lease(j)) }},
		{"complete", []domain.Status{R}, C, func(j *domain.Job) (*domain.Job, error) { return s.Complete(ctx, lease(j), nil) }},
		{"finish completed", []domain.Status{R}, C, func(j *domain.Job) (*domain.Job, error) { return s.Finish(ctx, lease(j), C, "") }},
		{"fail", []domain.Status{R}, F, func(j *domain.Job) (*domain.Job, error) { return s.Finish(ctx, lease(j), F, "x") }},
		{"fail with no retry", []domain.Status{R}, F, func(j *domain.Job) (*domain.Job, error) { return s.Fail(ctx, lease(j), "x", time.Time{}) }},
		{"progress", []domain.Status{R}, R, func(j *domain.Job) (*domain.Job, error) { return s.Progress(ctx, lease(j), 50) }},
		{"finish cancelled", []domain.Status{R}, X, func(j *domain.Job) (*domain.Job, error) { return s.Finish(ctx, lease(j), X, "") }},
		{"retry", []domain.Status{F, X}, P, func(j *domain.Job) (*domain.Job, error) { return s.Retry(ctx, j.ID) }},
	}
	for _, from := range domain.Statuses {
		for _, o := range ops {
			j := put(t, s, from)
			got, err := o.do(j)
			allowed := slices.Contains(o.from, from)
			switch {
			case allowed && err != nil:
				t.Errorf("%s from %s: %v, want success", o.name, from, err)
			case allowed && (got.Status != o.to || got.Version != j.Version+1):
				t.Errorf("%s from %s: got %s v%d, want %s v%d", o.name, from, got.Status, got.Version, o.to, j.Version+1)
			case allowed && o.to != from && !domain.CanTransition(from, o.to):
				t.Errorf("%s from %s to %s: the store allows an edge the domain does not", o.name, from, o.to)
			case !allowed && !errors.Is(err, domain.ErrConflict):
				t.Errorf("%s from %s: err = %v, want ErrConflict", o.name, from, err)
			}
			if !allowed {
				after, err := s.Get(ctx, j.ID)
				if err != nil || after.Version != j.Version || after.Status != from {
					t.Errorf("%s from %s changed the job: %+v %v", o.name, from, after, err)
				}
			}
		}
	}
	j := put(t, s, domain.StatusProcessing)
	if _, err := s.Finish(ctx, lease(j), domain.StatusPending, ""); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("finish as pending: err = %v, want ErrInvalid", err)
	}
}

func testCancel(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()

	pending := mustCreate(t, s, "c")
	got, err := s.Cancel(ctx, pending.ID)
	if err != nil || got.Status != domain.StatusCancelled || got.FinishedAt == nil || got.Version != 2 {
		t.Fatalf("cancel pending = %+v, %v; want cancelled at once, finished, v2", got, err)
	}
	if jobs := claim(t, s, 10); len(jobs) != 0 {
		t.Fatalf("claim after the only pending job was cancelled = %s", ids(jobs))
	}

	running := put(t, s, domain.StatusProcessing)
	got, err = s.Cancel(ctx, running.ID)
	if err != nil || got.Status != domain.StatusProcessing || !got.CancelRequested || got.Version != running.Version+1 {
		t.Fatalf("cancel processing = %+v, %v; want still processing with CancelRequested, one new version", got, err)
	}
	again, err := s.Cancel(ctx, running.ID)
	if err != nil || again.Version != got.Version {
		t.Fatalf("second cancel = v%d, %v; want no new version", again.Version, err)
	}
	done, err := s.Finish(ctx, lease(running), domain.StatusCancelled, "")
	if err != nil || done.Status != domain.StatusCancelled || done.CancelRequested {
		t.Fatalf("finish cancelled = %+v, %v", done, err)
	}
	// Released (shutdown) after a cancellation request: cancelled, not
	// pending, so that it does not run again.
	released := put(t, s, domain.StatusProcessing)
	if _, err := s.Cancel(ctx, released.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Release(ctx, lease(released)); err != nil || got.Status != domain.StatusCancelled || got.CancelRequested || got.FinishedAt == nil {
		t.Fatalf("release after a cancellation request = %+v, %v; want cancelled", got, err)
	}
	for _, st := range []domain.Status{domain.StatusCompleted, domain.StatusFailed, domain.StatusCancelled} {
		j := put(t, s, st)
		if _, err := s.Cancel(ctx, j.ID); !errors.Is(err, domain.ErrConflict) {
			t.Errorf("cancel %s: %v, want ErrConflict", st, err)
		}
	}
	if _, err := s.Cancel(ctx, "no-such-job"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("cancel unknown: %v, want ErrNotFound", err)
	}
	var sawRequest bool
	for _, ev := range rec.all() {
		if ev.ID == running.ID && ev.CancelRequested && ev.Status == domain.StatusProcessing {
			sawRequest = true
		}
	}
	if !sawRequest {
		t.Fatal("the cancellation request of a processing job was not published")
	}
}

func testRetryKeepsHistory(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	j := mustCreate(t, s, "r")
	for attempt := 1; attempt <= 2; attempt++ {
		_, l := claimID(t, s, j.ID)
		f, err := s.Finish(ctx, l, domain.StatusFailed, fmt.Sprintf("boom %d", attempt))
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Errors) != attempt || f.Errors[attempt-1].Attempt != attempt || f.Errors[attempt-1].Message != fmt.Sprintf("boom %d", attempt) || f.Errors[attempt-1].At.IsZero() {
			t.Fatalf("after failure %d errors = %+v", attempt, f.Errors)
		}
		r, err := s.Retry(ctx, j.ID)
		if err != nil || r.Status != domain.StatusPending || r.FinishedAt != nil || r.StartedAt != nil || len(r.Errors) != attempt || r.Error != f.Error || r.Attempts != attempt {
			t.Fatalf("retry = %+v, %v; want pending, history and attempts kept", r, err)
		}
		// The snapshot taken before the next failure must not change.
		defer func(snap *domain.Job, n int) {
			if len(snap.Errors) != n {
				t.Errorf("snapshot's error history changed: %d entries, want %d", len(snap.Errors), n)
			}
		}(r, attempt)
	}
}

func testStats(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	put(t, s, domain.StatusPending)
	put(t, s, domain.StatusPending)
	put(t, s, domain.StatusProcessing)
	put(t, s, domain.StatusCompleted)
	put(t, s, domain.StatusFailed)
	put(t, s, domain.StatusCancelled)
	mustCreate(t, s, "other")
	got, err := s.Stats(ctx, store.StatsQuery{Type: "t"})
	want := domain.Stats{Pending: 2, Processing: 1, Completed: 1, Failed: 1, Cancelled: 1}
	if err != nil || got != want {
		t.Fatalf("stats of type t = %+v, %v; want %+v", got, err, want)
	}
	all, err := s.Stats(ctx, store.StatsQuery{})
	want.Pending++
	if err != nil || all != want {
		t.Fatalf("stats = %+v, %v; want %+v", all, err, want)
	}
	if none, err := s.Stats(ctx, store.StatsQuery{Type: "nope"}); err != nil || none != (domain.Stats{}) {
		t.Fatalf("stats of an unknown type = %+v, %v; want zeros", none, err)
	}
}

func testConcurrentClaims(t *testing.T, newStore NewStore) {
	const (
		jobs     = 1000
		claimers = 16
	)
	s := newStore(t, Options{})
	ctx := context.Background()
	index := make(map[string]int, jobs)
	for i := range jobs {
		index[mustCreate(t, s, "race").ID] = i
	}
	wins := make([]atomic.Int32, jobs)
	var wg sync.WaitGroup
	errc := make(chan error, claimers)
	for g := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				now := time.Now()
				got, err := s.Claim(ctx, store.ClaimRequest{Owner: fmt.Sprintf("claimer-%d", g), Limit: 1 + g%7, Now: now, LeaseUntil: now.Add(time.Minute)})
				if err != nil {
					errc <- err
					return
				}
				if len(got) == 0 {
					return
				}
				for _, j := range got {
					if j.Status != domain.StatusProcessing || j.Attempts != 1 {
						errc <- fmt.Errorf("claimed %+v, want processing, attempt 1", j)
						return
					}
					wins[index[j.ID]].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("claim: %v", err)
	}
	for i := range wins {
		if n := wins[i].Load(); n != 1 {
			t.Fatalf("job %d claimed %d times, want exactly once", i, n)
		}
	}
}

func testEventsInVersionOrder(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Create(ctx, domain.NewJob{Type: "order"}); err != nil {
				t.Error(err)
				return
			}
			// Every goroutine creates before it claims, so one job at
			// least is there to claim, if not this one.
			now := time.Now()
			got, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
			if err != nil || len(got) != 1 {
				t.Errorf("claim = %d jobs, %v; want 1", len(got), err)
				return
			}
			if _, err := s.Complete(ctx, lease(got[0]), nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	last := map[string]int64{}
	events := rec.all()
	for _, ev := range events {
		if ev.Version != last[ev.ID]+1 {
			t.Fatalf("job %s: event version %d after %d", ev.ID, ev.Version, last[ev.ID])
		}
		last[ev.ID] = ev.Version
	}
	if len(events) != 3*n || len(last) != n {
		t.Fatalf("%d events for %d jobs, want %d for %d", len(events), len(last), 3*n, n)
	}
}

func testList(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	var made []*domain.Job
	for i := 0; i < 10; i++ {
		typ := "a"
		if i%2 == 1 {
			typ = "b"
		}
		made = append(made, mustCreate(t, s, typ))
		if i == 2 { // the first three (a, b, a) processing
			if got := claim(t, s, 10); len(got) != 3 {
				t.Fatalf("claimed %s, want the first three", ids(got))
			}
		}
	}

	page, err := s.List(ctx, store.ListQuery{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 10 || !page.HasMore || len(page.Jobs) != 4 || page.Jobs[0].ID != made[9].ID || page.Jobs[3].ID != made[6].ID {
		t.Fatalf("first page = total %d more %v %s, want newest first", page.Total, page.HasMore, ids(page.Jobs))
	}
	var all []*domain.Job
	before := int64(0)
	for {
		p, err := s.List(ctx, store.ListQuery{Limit: 3, BeforeSeq: before})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Jobs...)
		if !p.HasMore {
			break
		}
		before = p.Jobs[len(p.Jobs)-1].Seq
	}
	if len(all) != 10 {
		t.Fatalf("paging saw %d jobs, want 10: %s", len(all), ids(all))
	}
	for i, j := range all {
		if j.ID != made[9-i].ID {
			t.Fatalf("paging order: position %d is %s, want %s", i, j.ID, made[9-i].ID)
		}
	}

	p, err := s.List(ctx, store.ListQuery{Limit: 10, Status: domain.StatusProcessing, Type: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 2 || len(p.Jobs) != 2 || p.Jobs[0].ID != made[2].ID || p.Jobs[1].ID != made[0].ID || p.HasMore {
		t.Fatalf("processing type a = total %d %s, want jobs 2 and 0", p.Total, ids(p.Jobs))
	}
	p, err = s.List(ctx, store.ListQuery{Limit: 10, Type: "b"})
	if err != nil || p.Total != 5 || len(p.Jobs) != 5 {
		t.Fatalf("type b = total %d, %d jobs, %v; want 5", p.Total, len(p.Jobs), err)
	}
	p, err = s.List(ctx, store.ListQuery{Limit: 10, Status: domain.StatusPending})
	if err != nil || p.Total != 7 || len(p.Jobs) != 7 {
		t.Fatalf("pending = total %d, %d jobs, %v; want 7", p.Total, len(p.Jobs), err)
	}
	p, err = s.List(ctx, store.ListQuery{Limit: 10, Type: "nope"})
	if err != nil || p.Total != 0 || len(p.Jobs) != 0 || p.HasMore {
		t.Fatalf("unknown type = %+v, %v; want empty", p, err)
	}
	if _, err := s.List(ctx, store.ListQuery{}); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("limit 0: err = %v, want ErrInvalid", err)
	}
}

func testClaimOrder(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	now := time.Now()
	create := func(prio int, runAt time.Time) *domain.Job {
		t.Helper()
		j, err := s.Create(ctx, domain.NewJob{Type: "r", Priority: prio, RunAt: runAt})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	claimAt := func(at time.Time, limit int) []*domain.Job {
		t.Helper()
		jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: limit, Now: at, LeaseUntil: at.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return jobs
	}
	claimed := create(50, time.Time{})
	if got := claimAt(now.Add(time.Second), 1); len(got) != 1 || got[0].ID != claimed.ID {
		t.Fatalf("claim = %s, want the only job", ids(got))
	}
	low := create(-5, time.Time{})
	mid1 := create(0, time.Time{})
	mid2 := create(0, now.Add(-time.Minute)) // older runAt than mid1: before it
	high := create(10, time.Time{})
	later := create(100, now.Add(time.Hour))
	soon := create(0, now.Add(time.Minute))

	if next, err := s.NextRunAt(ctx, now.Add(time.Second)); err != nil || !next.Equal(soon.RunAt) {
		t.Fatalf("next = %v, %v; want the earliest future runAt %v", next, err, soon.RunAt)
	}
	first := claimAt(now.Add(time.Second), 2)
	rest := claimAt(now.Add(time.Second), 10)
	if got, want := ids(append(first, rest...)), ids([]*domain.Job{high, mid2, mid1, low}); got != want {
		t.Fatalf("claim order = %s, want high, mid2, mid1, low %s", got, want)
	}
	for _, j := range append(first, rest...) {
		if j.Status != domain.StatusProcessing || j.Attempts != 1 || j.StartedAt == nil {
			t.Fatalf("claimed job = %+v, want processing, attempt 1, started", j)
		}
	}
	if got := claimAt(now.Add(time.Second), 10); len(got) != 0 {
		t.Fatalf("claim before the scheduled jobs are due = %s, want none", ids(got))
	}
	later2 := claimAt(now.Add(2*time.Hour), 10)
	if got, want := ids(later2), ids([]*domain.Job{later, soon}); got != want {
		t.Fatalf("two hours later = %s, want the scheduled ones, later first %s", got, want)
	}
	if next, err := s.NextRunAt(ctx, now.Add(2*time.Hour)); err != nil || !next.IsZero() {
		t.Fatalf("next with nothing pending = %v, %v; want zero", next, err)
	}
}

func testFailRetries(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	j, err := s.Create(ctx, domain.NewJob{Type: "f", MaxAttempts: 2})
	if err != nil || j.MaxAttempts != 2 || j.RunAt.IsZero() {
		t.Fatalf("create = %+v, %v", j, err)
	}
	_, l := claimID(t, s, j.ID)
	retryAt := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	r, err := s.Fail(ctx, l, "boom 1", retryAt)
	if err != nil || r.Status != domain.StatusPending || !r.RunAt.Equal(retryAt) || len(r.Errors) != 1 || r.Error != "boom 1" || r.FinishedAt != nil {
		t.Fatalf("first failure = %+v, %v; want pending again at retryAt", r, err)
	}
	if got := claim(t, s, 10); len(got) != 0 {
		t.Fatalf("claim before retryAt = %s, want none", ids(got))
	}
	if next, err := s.NextRunAt(ctx, time.Now()); err != nil || !next.Equal(r.RunAt) {
		t.Fatalf("next = %v, %v; want retryAt %v", next, err, r.RunAt)
	}
	got, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: r.RunAt, LeaseUntil: r.RunAt.Add(time.Minute)})
	if err != nil || len(got) != 1 || got[0].Attempts != 2 {
		t.Fatalf("claim at retryAt = %s, %v; want the job's second attempt", ids(got), err)
	}
	f, err := s.Fail(ctx, lease(got[0]), "boom 2", time.Now())
	if err != nil || f.Status != domain.StatusFailed || len(f.Errors) != 2 || f.Errors[1].Attempt != 2 || f.FinishedAt == nil {
		t.Fatalf("last attempt's failure = %+v, %v; want failed for good", f, err)
	}
	once, _ := s.Create(ctx, domain.NewJob{Type: "f"})
	if once.MaxAttempts != 1 {
		t.Fatalf("default maxAttempts = %d, want 1", once.MaxAttempts)
	}
	_, l = claimID(t, s, once.ID)
	if g, err := s.Fail(ctx, l, "x", time.Now().Add(time.Minute)); err != nil || g.Status != domain.StatusFailed {
		t.Fatalf("failure with no attempt left = %+v, %v", g, err)
	}
	if _, err := s.Fail(ctx, l, "x", time.Time{}); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("fail of a failed job: %v, want ErrConflict", err)
	}
}

func testSnapshots(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	j := mustCreate(t, s, "snap")
	c, l := claimID(t, s, j.ID)
	if _, err := s.Progress(ctx, l, 10); err != nil {
		t.Fatal(err)
	}
	if c.Progress != nil || c.Version != 2 {
		t.Fatalf("a claimed snapshot changed afterwards: %+v", c)
	}
	if j.Status != domain.StatusPending || j.Version != 1 {
		t.Fatalf("a returned snapshot changed afterwards: %+v", j)
	}
}

func ids(jobs []*domain.Job) string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = fmt.Sprintf("%d", j.Seq)
	}
	return fmt.Sprint(out)
}

// A cancel racing a claim must cancel the job either way: at once if it
// came first, through CancelRequested if the claim did. Never a conflict.
func testCancelRacingClaim(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	for range 2000 {
		j := mustCreate(t, s, "race")
		var wg sync.WaitGroup
		var cancelErr error
		wg.Add(2)
		go func() { defer wg.Done(); claim(t, s, 1) }()
		go func() { defer wg.Done(); _, cancelErr = s.Cancel(ctx, j.ID) }()
		wg.Wait()
		if cancelErr != nil {
			t.Fatalf("cancel racing a claim: %v", cancelErr)
		}
		got, err := s.Get(ctx, j.ID)
		if err != nil || !(got.Status == domain.StatusCancelled || (got.Status == domain.StatusProcessing && got.CancelRequested)) {
			t.Fatalf("after the race: %+v, %v; want cancelled or cancellation requested", got, err)
		}
	}
}

func testIdempotencyKey(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	const racers = 32
	ids := make([]string, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := s.Create(ctx, domain.NewJob{Type: "mail", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), IdempotencyKey: "order-42"})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = j.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("racing creations with one key made jobs %s and %s, want one", ids[0], id)
		}
	}
	j, err := s.Get(ctx, ids[0])
	if err != nil || j.IdempotencyKey != "order-42" || j.Version != 1 {
		t.Fatalf("the job = %+v, %v", j, err)
	}
	if n := len(rec.all()); n != 1 {
		t.Fatalf("%d events for %d creations with one key, want 1", n, racers)
	}
	// Still deduplicated once the job has run; other keys and no key make
	// new jobs.
	claimID(t, s, j.ID)
	if again, err := s.Create(ctx, domain.NewJob{Type: "mail", IdempotencyKey: "order-42"}); err != nil || again.ID != j.ID || again.Status != domain.StatusProcessing {
		t.Fatalf("same key later = %+v, %v; want the existing job as it is now", again, err)
	}
	other, err := s.Create(ctx, domain.NewJob{Type: "mail", IdempotencyKey: "order-43"})
	if err != nil || other.ID == j.ID {
		t.Fatalf("another key = %+v, %v; want a new job", other, err)
	}
	a, _ := s.Create(ctx, domain.NewJob{Type: "mail"})
	b, _ := s.Create(ctx, domain.NewJob{Type: "mail"})
	if a.ID == b.ID {
		t.Fatal("two creations without a key made one job")
	}
}

func testDeleteFinished(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	done := put(t, s, domain.StatusCompleted)
	failed := put(t, s, domain.StatusFailed)
	keyed := putJob(t, s, domain.NewJob{Type: "t", IdempotencyKey: "k1"}, domain.StatusCancelled)
	pending := put(t, s, domain.StatusPending)
	running := put(t, s, domain.StatusProcessing)
	cutoff := time.Now().Add(time.Hour) // everything finished so far is older
	events := len(rec.all())

	// The limit bounds one call.
	if n, err := s.DeleteFinished(ctx, cutoff, 2); err != nil || n != 2 {
		t.Fatalf("delete with limit 2 = %d, %v", n, err)
	}
	if n, err := s.DeleteFinished(ctx, cutoff, 100); err != nil || n != 1 {
		t.Fatalf("second delete = %d, %v; want the last final job", n, err)
	}
	for _, id := range []string{done.ID, failed.ID, keyed.ID} {
		if _, err := s.Get(ctx, id); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("deleted job %s: get = %v, want ErrNotFound", id, err)
		}
	}
	for _, id := range []string{pending.ID, running.ID} {
		if _, err := s.Get(ctx, id); err != nil {
			t.Errorf("unfinished job %s deleted: %v", id, err)
		}
	}
	page, err := s.List(ctx, store.ListQuery{Limit: 10})
	if err != nil || page.Total != 2 || len(page.Jobs) != 2 || page.Jobs[0].ID != running.ID || page.Jobs[1].ID != pending.ID {
		t.Fatalf("list after delete = %d total, %s, %v", page.Total, ids(page.Jobs), err)
	}
	if st, _ := s.Stats(ctx, store.StatsQuery{}); st != (domain.Stats{Pending: 1, Processing: 1}) {
		t.Fatalf("stats after delete = %+v", st)
	}
	// The key is free again.
	again, err := s.Create(ctx, domain.NewJob{Type: "t", IdempotencyKey: "k1"})
	if err != nil || again.ID == keyed.ID {
		t.Fatalf("create with a deleted job's key = %+v, %v; want a new job", again, err)
	}
	if len(rec.all()) != events+1 {
		t.Fatalf("deleting published events (%d, want only the new job's)", len(rec.all())-events)
	}
	// Jobs that finished after the cutoff stay.
	recent := put(t, s, domain.StatusCompleted)
	if n, err := s.DeleteFinished(ctx, recent.FinishedAt.Add(-time.Nanosecond), 100); err != nil || n != 0 {
		t.Fatalf("delete before the recent finish = %d, %v; want 0", n, err)
	}
	// Claims still work on the compacted store.
	if got := claim(t, s, 10); len(got) != 2 {
		t.Fatalf("claim after delete = %s; want the 2 pending jobs", ids(got))
	}
}

func testProgressAndResult(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	j := put(t, s, domain.StatusProcessing)
	l := lease(j)
	p, err := s.Progress(ctx, l, 40)
	if err != nil || p.Progress == nil || *p.Progress != 40 || p.Version != j.Version+1 || p.Status != domain.StatusProcessing {
		t.Fatalf("progress 40 = %+v, %v", p, err)
	}
	same, err := s.Progress(ctx, l, 40)
	if err != nil || same.Version != p.Version {
		t.Fatalf("the same progress again = v%d, %v; want no new version", same.Version, err)
	}
	for _, bad := range []int{-1, 101} {
		if _, err := s.Progress(ctx, l, bad); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("progress %d: %v, want ErrInvalid", bad, err)
		}
	}
	c, err := s.Complete(ctx, l, json.RawMessage(`{"sent":3}`))
	if err != nil || c.Status != domain.StatusCompleted || string(c.Result) != `{"sent":3}` || c.FinishedAt == nil || *c.Progress != 40 {
		t.Fatalf("complete = %+v, %v; want completed with the result, progress kept", c, err)
	}
	if _, err := s.Progress(ctx, l, 50); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("progress of a completed job: %v, want ErrConflict", err)
	}
	if _, err := s.Complete(ctx, l, nil); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("complete twice: %v, want ErrConflict", err)
	}
	pending := mustCreate(t, s, "t")
	if _, err := s.Progress(ctx, lease(pending), 10); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("progress of a pending job: %v, want ErrConflict", err)
	}
}

func testLeases(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	// Claims happen "a minute from now", after every job made below is due.
	t0 := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	claimAs := func(who string, at time.Time) (*domain.Job, store.Lease) {
		t.Helper()
		got, err := s.Claim(ctx, store.ClaimRequest{Owner: who, Limit: 1, Now: at, LeaseUntil: at.Add(time.Minute)})
		if err != nil || len(got) != 1 {
			t.Fatalf("claim as %s = %s, %v; want one job", who, ids(got), err)
		}
		return got[0], store.LeaseOf(got[0], who)
	}

	j, err := s.Create(ctx, domain.NewJob{Type: "lease", MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	forgotten := mustCreate(t, s, "lease")
	_, a := claimAs("a", t0)
	claimAs("a", t0)
	// A heartbeat renews only the listed leases its owner holds, and is
	// not a change.
	events := len(rec.all())
	if n, err := s.Heartbeat(ctx, "b", []string{j.ID, forgotten.ID}, t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("heartbeat of an owner with no job = %d, %v", n, err)
	}
	if n, err := s.Heartbeat(ctx, "a", []string{j.ID, "no-such-job"}, t0.Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("heartbeat of a = %d, %v; want 1 lease renewed", n, err)
	}
	if n, err := s.Heartbeat(ctx, "a", nil, t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("heartbeat of no job = %d, %v", n, err)
	}
	if len(rec.all()) != events {
		t.Fatal("a heartbeat published an event")
	}
	if got, _ := s.Get(ctx, j.ID); got.Version != 2 {
		t.Fatalf("a heartbeat changed the job's version to %d", got.Version)
	}
	// Expired under the first expiry, not under the renewed one; the lease
	// left out of the heartbeat expired.
	if got, err := s.RescueExpired(ctx, t0.Add(90*time.Second), 100); err != nil || len(got) != 1 || got[0].ID != forgotten.ID {
		t.Fatalf("rescue before the renewed lease expires = %s, %v; want only the job left out of the heartbeat", ids(got), err)
	}
	rescued, err := s.RescueExpired(ctx, t0.Add(3*time.Minute), 100)
	if err != nil || len(rescued) != 1 {
		t.Fatalf("rescue after expiry = %s, %v; want the job", ids(rescued), err)
	}
	r := rescued[0]
	if r.ID != j.ID || r.Status != domain.StatusPending || r.Attempts != 1 || r.Error != store.WorkerLost ||
		len(r.Errors) != 1 || r.Errors[0].Attempt != 1 || r.Errors[0].Message != store.WorkerLost || r.Version != 3 || r.StartedAt != nil {
		t.Fatalf("rescued = %+v; want pending, attempt 1 spent, worker-lost error, version 3", r)
	}
	if ev := rec.all(); ev[len(ev)-1].Version != 3 || ev[len(ev)-1].Status != domain.StatusPending {
		t.Fatalf("the rescue was not published: last event %+v", ev[len(ev)-1])
	}
	// The lost worker can no longer write about its attempt.
	for name, write := range map[string]func() (*domain.Job, error){
		"complete": func() (*domain.Job, error) { return s.Complete(ctx, a, nil) },
		"fail":     func() (*domain.Job, error) { return s.Fail(ctx, a, "x", time.Time{}) },
		"progress": func() (*domain.Job, error) { return s.Progress(ctx, a, 10) },
		"release":  func() (*domain.Job, error) { return s.Release(ctx, a) },
		"finish":   func() (*domain.Job, error) { return s.Finish(ctx, a, domain.StatusCancelled, "") },
	} {
		if _, err := write(); !errors.Is(err, domain.ErrLeaseLost) || !errors.Is(err, domain.ErrConflict) {
			t.Errorf("%s after the rescue: err = %v, want ErrLeaseLost (a conflict)", name, err)
		}
	}
	// Nor once another worker claimed the job again: not with its old
	// attempt, and not as another owner with the new attempt.
	c, b := claimAs("b", t0.Add(3*time.Minute))
	if c.Attempts != 2 || b.Attempt != 2 {
		t.Fatalf("second claim = %+v, want attempt 2", c)
	}
	if _, err := s.Complete(ctx, a, nil); !errors.Is(err, domain.ErrLeaseLost) {
		t.Errorf("complete with the first lease after a new claim: %v, want ErrLeaseLost", err)
	}
	if _, err := s.Complete(ctx, store.Lease{JobID: j.ID, Owner: "a", Attempt: 2}, nil); !errors.Is(err, domain.ErrLeaseLost) {
		t.Errorf("complete by another owner with the current attempt: %v, want ErrLeaseLost", err)
	}
	if got, _ := s.Get(ctx, j.ID); got.Version != c.Version {
		t.Fatalf("refused writes changed the job: %+v", got)
	}
	// The last attempt lost: failed for good.
	rescued, err = s.RescueExpired(ctx, t0.Add(5*time.Minute), 100)
	if err != nil || len(rescued) != 1 || rescued[0].Status != domain.StatusFailed || rescued[0].FinishedAt == nil || len(rescued[0].Errors) != 2 {
		t.Fatalf("rescue of the last attempt = %+v, %v; want failed", rescued, err)
	}
	if _, err := s.Complete(ctx, b, nil); !errors.Is(err, domain.ErrLeaseLost) {
		t.Errorf("complete after the job failed: %v, want ErrLeaseLost", err)
	}

	// A job whose cancellation was requested is cancelled, not run again.
	k, err := s.Create(ctx, domain.NewJob{Type: "lease", MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	claimAs("a", t0)
	if _, err := s.Cancel(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if rescued, err := s.RescueExpired(ctx, t0.Add(5*time.Minute), 100); err != nil || len(rescued) != 1 || rescued[0].Status != domain.StatusCancelled || rescued[0].CancelRequested {
		t.Fatalf("rescue of a job being cancelled = %+v, %v; want cancelled", rescued, err)
	}

	// The limit bounds one call; the rest wait for the next.
	for range 3 {
		mustCreate(t, s, "lease")
	}
	if got, err := s.Claim(ctx, store.ClaimRequest{Owner: "c", Limit: 3, Now: t0, LeaseUntil: t0.Add(time.Second)}); err != nil || len(got) != 3 {
		t.Fatalf("claim 3 = %s, %v", ids(got), err)
	}
	if got, err := s.RescueExpired(ctx, t0.Add(time.Minute), 2); err != nil || len(got) != 2 {
		t.Fatalf("rescue with limit 2 = %s, %v", ids(got), err)
	}
	if got, err := s.RescueExpired(ctx, t0.Add(time.Minute), 2); err != nil || len(got) != 1 {
		t.Fatalf("second rescue = %s, %v; want the last one", ids(got), err)
	}
}

// A worker finishing its attempt races the rescuer that decided its lease
// expired: exactly one of them wins, and the loser changes nothing.
func testLostLeaseRace(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	completed, rescued := 0, 0
	for i := range 300 {
		j := mustCreate(t, s, "race")
		now := time.Now()
		got, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: now.Add(-time.Millisecond)})
		if err != nil || len(got) != 1 || got[0].ID != j.ID {
			t.Fatalf("claim = %v, %v", got, err)
		}
		var (
			wg          sync.WaitGroup
			completeErr error
			rescuedJobs []*domain.Job
			rescueErr   error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, completeErr = s.Complete(ctx, lease(got[0]), json.RawMessage(`1`))
			} else {
				_, completeErr = s.Fail(ctx, lease(got[0]), "handler error", time.Now())
			}
		}()
		go func() {
			defer wg.Done()
			rescuedJobs, rescueErr = s.RescueExpired(ctx, time.Now().Add(time.Second), 10)
		}()
		wg.Wait()
		if rescueErr != nil {
			t.Fatal(rescueErr)
		}
		final, err := s.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case completeErr == nil && len(rescuedJobs) == 0:
			completed++
			if final.Error == store.WorkerLost || !(final.Status == domain.StatusCompleted && string(final.Result) == "1" || final.Status == domain.StatusFailed && final.Error == "handler error") {
				t.Fatalf("the worker's write won, yet the job does not show it: %+v", final)
			}
		case errors.Is(completeErr, domain.ErrLeaseLost) && len(rescuedJobs) == 1:
			rescued++
			if final.Status != domain.StatusFailed || final.Error != store.WorkerLost || final.Result != nil || final.Version != 3 {
				t.Fatalf("the rescue won, yet the worker's write shows: %+v", final)
			}
		default:
			t.Fatalf("worker write: %v; rescued %d: want exactly one winner (job %+v)", completeErr, len(rescuedJobs), final)
		}
	}
	t.Logf("%d rounds won by the worker, %d by the rescuer", completed, rescued)
}

// RescueExpired takes the longest expired leases first, DeleteFinished the
// longest finished jobs first, whatever the order of creation: a bounded
// call never leaves the oldest behind.
func testOldestFirst(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	// Created a, b, c; leases expiring c, a, b.
	expiries := []time.Duration{2 * time.Second, 3 * time.Second, time.Second}
	created := make([]*domain.Job, 3)
	for i := range created {
		j, err := s.Create(ctx, domain.NewJob{Type: "t", MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		created[i] = j
	}
	base := time.Now()
	for i, d := range expiries {
		jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: base, LeaseUntil: base.Add(d)})
		if err != nil || len(jobs) != 1 || jobs[0].ID != created[i].ID {
			t.Fatalf("claim %d = %s, %v; want job %d", i, ids(jobs), err, created[i].Seq)
		}
	}
	for _, want := range []int{2, 0, 1} {
		got, err := s.RescueExpired(ctx, base.Add(time.Minute), 1)
		if err != nil || len(got) != 1 || got[0].ID != created[want].ID {
			t.Fatalf("rescue 1 = %s, %v; want job %d (the longest expired)", ids(got), err, created[want].Seq)
		}
	}

	// Finished in the order c, a, b.
	claimed := map[string]*domain.Job{}
	for _, j := range claim(t, s, 3) {
		claimed[j.ID] = j
	}
	for _, i := range []int{2, 0, 1} {
		j := claimed[created[i].ID]
		if j == nil {
			t.Fatalf("job %d not claimed again after its rescue", created[i].Seq)
		}
		if _, err := s.Complete(ctx, lease(j), nil); err != nil {
			t.Fatalf("complete %d: %v", j.Seq, err)
		}
	}
	for _, want := range []int{2, 0} {
		if n, err := s.DeleteFinished(ctx, time.Now().Add(time.Hour), 1); err != nil || n != 1 {
			t.Fatalf("delete 1 = %d, %v", n, err)
		}
		if _, err := s.Get(ctx, created[want].ID); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("after deleting one: job %d (the longest finished) get = %v, want ErrNotFound", created[want].Seq, err)
		}
	}
	if _, err := s.Get(ctx, created[1].ID); err != nil {
		t.Fatalf("the job finished last was deleted: %v", err)
	}
}
