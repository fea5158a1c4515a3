// Package storetest is the conformance suite of the store.Store contract.
// Every backend runs it from its own tests:
//
//	storetest.Run(t, func(t *testing.T, pub store.Publisher) store.Store { return memory.New(pub) })
//
// A backend is done when it passes the whole suite.
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

// NewStore returns a fresh, empty store that reports changes to pub.
type NewStore func(t *testing.T, pub store.Publisher) store.Store

// Run runs every conformance test against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Run("CreateAndGet", func(t *testing.T) { t.Parallel(); testCreateAndGet(t, newStore) })
	t.Run("GetUnknown", func(t *testing.T) { t.Parallel(); testGetUnknown(t, newStore) })
	t.Run("Lifecycle", func(t *testing.T) { t.Parallel(); testLifecycle(t, newStore) })
	t.Run("TransitionsOnlyAlongAllowedEdges", func(t *testing.T) { t.Parallel(); testTransitions(t, newStore) })
	t.Run("ConcurrentClaims", func(t *testing.T) { t.Parallel(); testConcurrentClaims(t, newStore) })
	t.Run("EventsInVersionOrder", func(t *testing.T) { t.Parallel(); testEventsInVersionOrder(t, newStore) })
	t.Run("List", func(t *testing.T) { t.Parallel(); testList(t, newStore) })
	t.Run("Runnable", func(t *testing.T) { t.Parallel(); testRunnable(t, newStore) })
	t.Run("FailRetries", func(t *testing.T) { t.Parallel(); testFailRetries(t, newStore) })
	t.Run("Cancel", func(t *testing.T) { t.Parallel(); testCancel(t, newStore) })
	t.Run("RetryKeepsHistory", func(t *testing.T) { t.Parallel(); testRetryKeepsHistory(t, newStore) })
	t.Run("Stats", func(t *testing.T) { t.Parallel(); testStats(t, newStore) })
	t.Run("IdempotencyKey", func(t *testing.T) { t.Parallel(); testIdempotencyKey(t, newStore) })
	t.Run("ProgressAndResult", func(t *testing.T) { t.Parallel(); testProgressAndResult(t, newStore) })
	t.Run("DeleteFinished", func(t *testing.T) { t.Parallel(); testDeleteFinished(t, newStore) })
	t.Run("CancelRacingClaim", func(t *testing.T) { t.Parallel(); testCancelRacingClaim(t, newStore) })
	t.Run("SnapshotsAreImmutable", func(t *testing.T) { t.Parallel(); testSnapshots(t, newStore) })
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
	s := newStore(t, rec)
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
	s := newStore(t, nil)
	ctx := context.Background()
	if _, err := s.Get(ctx, "no-such-job"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("get unknown: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Claim(ctx, "no-such-job"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("claim unknown: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Finish(ctx, "no-such-job", domain.StatusCompleted, ""); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("finish unknown: err = %v, want ErrNotFound", err)
	}
}

func testLifecycle(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, rec)
	ctx := context.Background()
	j := mustCreate(t, s, "email")

	c, err := s.Claim(ctx, j.ID)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if c.Status != domain.StatusProcessing || c.Attempts != 1 || c.StartedAt == nil || c.Version != 2 {
		t.Fatalf("claimed = %+v, want processing, attempt 1, started, version 2", c)
	}
	r, err := s.Release(ctx, j.ID)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if r.Status != domain.StatusPending || r.Attempts != 1 || r.Version != 3 {
		t.Fatalf("released = %+v, want pending keeping attempt 1, version 3", r)
	}
	if _, err := s.Claim(ctx, j.ID); err != nil {
		t.Fatalf("claim again: %v", err)
	}
	f, err := s.Finish(ctx, j.ID, domain.StatusFailed, "boom")
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
	if _, err := s.Claim(ctx, done.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Finish(ctx, done.ID, domain.StatusCompleted, ""); err != nil || got.Error != "" || got.ErrorMessage() != nil {
		t.Fatalf("complete = %+v, %v: want no error message", got, err)
	}
}

// put drives a fresh job into status st through allowed edges.
func put(t *testing.T, s store.Store, st domain.Status) *domain.Job {
	t.Helper()
	ctx := context.Background()
	j := mustCreate(t, s, "t")
	if st == domain.StatusPending {
		return j
	}
	j, err := s.Claim(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st == domain.StatusProcessing {
		return j
	}
	j, err = s.Finish(ctx, j.ID, st, "")
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func testTransitions(t *testing.T, newStore NewStore) {
	s := newStore(t, nil)
	ctx := context.Background()
	type op struct {
		name string
		from []domain.Status // the statuses it applies to
		to   domain.Status   // the status it leaves the job in
		do   func(id string) (*domain.Job, error)
	}
	P, R, C, F, X := domain.StatusPending, domain.StatusProcessing, domain.StatusCompleted, domain.StatusFailed, domain.StatusCancelled
	ops := []op{
		{"claim", []domain.Status{P}, R, func(id string) (*domain.Job, error) { return s.Claim(ctx, id) }},
		{"release", []domain.Status{R}, P, func(id string) (*domain.Job, error) { return s.Release(ctx, id) }},
		{"complete", []domain.Status{R}, C, func(id string) (*domain.Job, error) { return s.Finish(ctx, id, C, "") }},
		{"fail", []domain.Status{R}, F, func(id string) (*domain.Job, error) { return s.Finish(ctx, id, F, "x") }},
		{"finish cancelled", []domain.Status{R}, X, func(id string) (*domain.Job, error) { return s.Finish(ctx, id, X, "") }},
		{"retry", []domain.Status{F, X}, P, func(id string) (*domain.Job, error) { return s.Retry(ctx, id) }},
	}
	for _, from := range domain.Statuses {
		for _, o := range ops {
			j := put(t, s, from)
			got, err := o.do(j.ID)
			allowed := slices.Contains(o.from, from)
			switch {
			case allowed && err != nil:
				t.Errorf("%s from %s: %v, want success", o.name, from, err)
			case allowed && (got.Status != o.to || got.Version != j.Version+1):
				t.Errorf("%s from %s: got %s v%d, want %s v%d", o.name, from, got.Status, got.Version, o.to, j.Version+1)
			case allowed && !domain.CanTransition(from, o.to):
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
	if _, err := s.Finish(ctx, j.ID, domain.StatusPending, ""); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("finish as pending: err = %v, want ErrInvalid", err)
	}
}

func testCancel(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, rec)
	ctx := context.Background()

	pending := mustCreate(t, s, "c")
	got, err := s.Cancel(ctx, pending.ID)
	if err != nil || got.Status != domain.StatusCancelled || got.FinishedAt == nil || got.Version != 2 {
		t.Fatalf("cancel pending = %+v, %v; want cancelled at once, finished, v2", got, err)
	}
	if _, err := s.Claim(ctx, pending.ID); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("claim of a cancelled job: %v, want ErrConflict", err)
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
	done, err := s.Finish(ctx, running.ID, domain.StatusCancelled, "")
	if err != nil || done.Status != domain.StatusCancelled || done.CancelRequested {
		t.Fatalf("finish cancelled = %+v, %v", done, err)
	}
	// Released (shutdown) after a cancellation request: cancelled, not
	// pending, so that it does not run again.
	released := put(t, s, domain.StatusProcessing)
	if _, err := s.Cancel(ctx, released.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Release(ctx, released.ID); err != nil || got.Status != domain.StatusCancelled || got.CancelRequested || got.FinishedAt == nil {
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
	s := newStore(t, nil)
	ctx := context.Background()
	j := mustCreate(t, s, "r")
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := s.Claim(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		f, err := s.Finish(ctx, j.ID, domain.StatusFailed, fmt.Sprintf("boom %d", attempt))
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
	s := newStore(t, nil)
	ctx := context.Background()
	put(t, s, domain.StatusPending)
	put(t, s, domain.StatusPending)
	put(t, s, domain.StatusProcessing)
	put(t, s, domain.StatusCompleted)
	put(t, s, domain.StatusFailed)
	put(t, s, domain.StatusCancelled)
	mustCreate(t, s, "other")
	got, err := s.Stats(ctx, "t")
	want := domain.Stats{Pending: 2, Processing: 1, Completed: 1, Failed: 1, Cancelled: 1}
	if err != nil || got != want {
		t.Fatalf("stats of type t = %+v, %v; want %+v", got, err, want)
	}
	all, err := s.Stats(ctx, "")
	want.Pending++
	if err != nil || all != want {
		t.Fatalf("stats = %+v, %v; want %+v", all, err, want)
	}
	if none, err := s.Stats(ctx, "nope"); err != nil || none != (domain.Stats{}) {
		t.Fatalf("stats of an unknown type = %+v, %v; want zeros", none, err)
	}
}

func testConcurrentClaims(t *testing.T, newStore NewStore) {
	const (
		jobs     = 1000
		claimers = 32
	)
	s := newStore(t, nil)
	ctx := context.Background()
	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = mustCreate(t, s, "race").ID
	}
	wins := make([]atomic.Int32, jobs)
	var wg sync.WaitGroup
	errc := make(chan error, claimers)
	for g := 0; g < claimers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each claimer walks the jobs from a different offset so claims
			// really collide instead of running in lockstep.
			for k := 0; k < jobs; k++ {
				i := (k + g*jobs/claimers) % jobs
				_, err := s.Claim(ctx, ids[i])
				switch {
				case err == nil:
					wins[i].Add(1)
				case !errors.Is(err, domain.ErrConflict):
					errc <- err
					return
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
	s := newStore(t, rec)
	ctx := context.Background()
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := s.Create(ctx, domain.NewJob{Type: "order"})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Claim(ctx, j.ID); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Finish(ctx, j.ID, domain.StatusCompleted, ""); err != nil {
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
	s := newStore(t, nil)
	ctx := context.Background()
	var made []*domain.Job
	for i := 0; i < 10; i++ {
		typ := "a"
		if i%2 == 1 {
			typ = "b"
		}
		made = append(made, mustCreate(t, s, typ))
	}
	for _, i := range []int{0, 1, 2} { // a, b, a processing
		if _, err := s.Claim(ctx, made[i].ID); err != nil {
			t.Fatal(err)
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

func testRunnable(t *testing.T, newStore NewStore) {
	s := newStore(t, nil)
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
	low := create(-5, time.Time{})
	mid1 := create(0, time.Time{})
	mid2 := create(0, now.Add(-time.Minute)) // older runAt than mid1: before it
	high := create(10, time.Time{})
	claimed := create(50, time.Time{})
	if _, err := s.Claim(ctx, claimed.ID); err != nil {
		t.Fatal(err)
	}
	later := create(100, now.Add(time.Hour))
	soon := create(0, now.Add(time.Minute))

	refs, next, err := s.Runnable(ctx, now.Add(time.Second), 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{high.ID, mid2.ID, mid1.ID, low.ID}
	if got := refIDs(refs); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("runnable = %v, want high, mid2, mid1, low %v", got, want)
	}
	if !next.Equal(soon.RunAt) {
		t.Fatalf("next = %v, want the earliest future runAt %v", next, soon.RunAt)
	}
	refs, _, err = s.Runnable(ctx, now.Add(time.Second), 2, []string{high.ID})
	if err != nil || fmt.Sprint(refIDs(refs)) != fmt.Sprint([]string{mid2.ID, mid1.ID}) {
		t.Fatalf("limit 2 excluding high = %v, %v", refIDs(refs), err)
	}
	refs, next, err = s.Runnable(ctx, now.Add(2*time.Hour), 10, nil)
	if err != nil || len(refs) != 6 || refs[0].ID != later.ID || !next.IsZero() {
		t.Fatalf("two hours later = %v next %v, %v; want the scheduled ones too, later first", refIDs(refs), next, err)
	}
}

func refIDs(refs []store.Ref) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.ID
	}
	return out
}

func testFailRetries(t *testing.T, newStore NewStore) {
	s := newStore(t, nil)
	ctx := context.Background()
	j, err := s.Create(ctx, domain.NewJob{Type: "f", MaxAttempts: 2})
	if err != nil || j.MaxAttempts != 2 || j.RunAt.IsZero() {
		t.Fatalf("create = %+v, %v", j, err)
	}
	if _, err := s.Claim(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	retryAt := time.Now().Add(time.Minute).UTC()
	r, err := s.Fail(ctx, j.ID, "boom 1", retryAt)
	if err != nil || r.Status != domain.StatusPending || !r.RunAt.Equal(retryAt) || len(r.Errors) != 1 || r.Error != "boom 1" || r.FinishedAt != nil {
		t.Fatalf("first failure = %+v, %v; want pending again at retryAt", r, err)
	}
	if refs, next, _ := s.Runnable(ctx, time.Now(), 10, nil); len(refs) != 0 || !next.Equal(retryAt) {
		t.Fatalf("runnable before retryAt = %v next %v", refIDs(refs), next)
	}
	if _, err := s.Claim(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	f, err := s.Fail(ctx, j.ID, "boom 2", time.Now())
	if err != nil || f.Status != domain.StatusFailed || len(f.Errors) != 2 || f.Errors[1].Attempt != 2 || f.FinishedAt == nil {
		t.Fatalf("last attempt's failure = %+v, %v; want failed for good", f, err)
	}
	once, _ := s.Create(ctx, domain.NewJob{Type: "f"})
	if once.MaxAttempts != 1 {
		t.Fatalf("default maxAttempts = %d, want 1", once.MaxAttempts)
	}
	if _, err := s.Claim(ctx, once.ID); err != nil {
		t.Fatal(err)
	}
	if g, err := s.Fail(ctx, once.ID, "x", time.Now().Add(time.Minute)); err != nil || g.Status != domain.StatusFailed {
		t.Fatalf("failure with no attempt left = %+v, %v", g, err)
	}
	if _, err := s.Fail(ctx, once.ID, "x", time.Time{}); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("fail of a failed job: %v, want ErrConflict", err)
	}
}

func testSnapshots(t *testing.T, newStore NewStore) {
	s := newStore(t, nil)
	ctx := context.Background()
	j := mustCreate(t, s, "snap")
	if _, err := s.Claim(ctx, j.ID); err != nil {
		t.Fatal(err)
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
	s := newStore(t, nil)
	ctx := context.Background()
	for range 2000 {
		j := mustCreate(t, s, "race")
		var wg sync.WaitGroup
		var cancelErr error
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = s.Claim(ctx, j.ID) }()
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
	s := newStore(t, rec)
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
	if _, err := s.Claim(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
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
	s := newStore(t, rec)
	ctx := context.Background()
	done := put(t, s, domain.StatusCompleted)
	failed := put(t, s, domain.StatusFailed)
	keyed, err := s.Create(ctx, domain.NewJob{Type: "t", IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, keyed.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Finish(ctx, keyed.ID, domain.StatusCancelled, ""); err != nil {
		t.Fatal(err)
	}
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
	if st, _ := s.Stats(ctx, ""); st != (domain.Stats{Pending: 1, Processing: 1}) {
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
	// Runnable still works on the compacted store.
	refs, _, err := s.Runnable(ctx, time.Now(), 10, nil)
	if err != nil || len(refs) != 2 {
		t.Fatalf("runnable after delete = %v, %v; want the 2 pending jobs", refs, err)
	}
}

func testProgressAndResult(t *testing.T, newStore NewStore) {
	s := newStore(t, nil)
	ctx := context.Background()
	j := put(t, s, domain.StatusProcessing)
	p, err := s.Progress(ctx, j.ID, 40)
	if err != nil || p.Progress == nil || *p.Progress != 40 || p.Version != j.Version+1 || p.Status != domain.StatusProcessing {
		t.Fatalf("progress 40 = %+v, %v", p, err)
	}
	same, err := s.Progress(ctx, j.ID, 40)
	if err != nil || same.Version != p.Version {
		t.Fatalf("the same progress again = v%d, %v; want no new version", same.Version, err)
	}
	for _, bad := range []int{-1, 101} {
		if _, err := s.Progress(ctx, j.ID, bad); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("progress %d: %v, want ErrInvalid", bad, err)
		}
	}
	c, err := s.Complete(ctx, j.ID, json.RawMessage(`{"sent":3}`))
	if err != nil || c.Status != domain.StatusCompleted || string(c.Result) != `{"sent":3}` || c.FinishedAt == nil || *c.Progress != 40 {
		t.Fatalf("complete = %+v, %v; want completed with the result, progress kept", c, err)
	}
	if _, err := s.Progress(ctx, j.ID, 50); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("progress of a completed job: %v, want ErrConflict", err)
	}
	if _, err := s.Complete(ctx, j.ID, nil); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("complete twice: %v, want ErrConflict", err)
	}
	pending := mustCreate(t, s, "t")
	if _, err := s.Progress(ctx, pending.ID, 10); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("progress of a pending job: %v, want ErrConflict", err)
	}
}
