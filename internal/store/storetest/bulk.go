package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// CreateMany stores every job, returns them in the order given, publishes
// each once and keeps the counts exact.
func testCreateMany(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	types := []string{"a", "b", "a", "c", "a"}
	njs := make([]domain.NewJob, len(types))
	for i, typ := range types {
		njs[i] = domain.NewJob{Type: typ, Payload: json.RawMessage(`{"i":` + string(rune('0'+i)) + `}`), Priority: i, Owner: alice}
	}
	jobs, err := s.CreateMany(ctx, njs)
	if err != nil {
		t.Fatalf("create many: %v", err)
	}
	if len(jobs) != len(njs) {
		t.Fatalf("create many returned %d jobs, want %d", len(jobs), len(njs))
	}
	events := rec.all()
	if len(events) != len(njs) {
		t.Fatalf("%d events, want one per job (%d)", len(events), len(njs))
	}
	for i, j := range jobs {
		if j.Type != types[i] || j.Priority != i || string(j.Payload) != string(njs[i].Payload) || j.Status != domain.StatusPending || j.Version != 1 || j.Owner != alice {
			t.Errorf("job %d = %+v, want input %d", i, j, i)
		}
		if i > 0 && j.Seq <= jobs[i-1].Seq {
			t.Errorf("job %d has seq %d after %d: not in input order", i, j.Seq, jobs[i-1].Seq)
		}
		if events[i].ID != j.ID || events[i].Version != 1 {
			t.Errorf("event %d is job %s v%d, want %s v1", i, events[i].ID, events[i].Version, j.ID)
		}
		got, err := s.Get(ctx, j.ID)
		if err != nil || got.Type != j.Type || got.Seq != j.Seq {
			t.Errorf("get job %d = %+v, %v", i, got, err)
		}
	}
	if st, _ := s.Stats(ctx, store.StatsQuery{}); st != (domain.Stats{Pending: 5}) {
		t.Errorf("stats = %+v, want 5 pending", st)
	}
	if st, _ := s.Stats(ctx, store.StatsQuery{Type: "a", Owner: alice}); st != (domain.Stats{Pending: 3}) {
		t.Errorf("alice's stats of a = %+v, want 3 pending", st)
	}
	if page, err := s.List(ctx, store.ListQuery{Owner: alice, Limit: 10}); err != nil || page.Total != 5 || len(page.Jobs) != 5 || page.Jobs[0].ID != jobs[4].ID {
		t.Errorf("alice's list = %d total, %s, %v", page.Total, ids(page.Jobs), err)
	}
	// All of them are runnable, in dispatch order.
	if claimed := claim(t, s, 10); len(claimed) != 5 || claimed[0].ID != jobs[4].ID {
		t.Errorf("claimed %s, want all 5, highest priority first", ids(claimed))
	}
	// Nothing to create is no error.
	if none, err := s.CreateMany(ctx, nil); err != nil || len(none) != 0 {
		t.Errorf("create none = %d jobs, %v", len(none), err)
	}
}

// Idempotency keys keep their meaning inside CreateMany: a taken key
// answers with its job, a key given twice makes one job, per owner.
func testCreateManyKeys(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	stored, err := s.Create(ctx, domain.NewJob{Type: "t", Owner: alice, IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := s.CreateMany(ctx, []domain.NewJob{
		{Type: "other", Owner: alice, IdempotencyKey: "k1"}, // taken: the stored job
		{Type: "t", Owner: alice, IdempotencyKey: "k2"},     // new
		{Type: "other", Owner: alice, IdempotencyKey: "k2"}, // the previous one's job
		{Type: "t", Owner: bob, IdempotencyKey: "k1"},       // another owner: new
		{Type: "t", Owner: alice},                           // no key: new
		{Type: "t", Owner: alice},                           // no key: new
	})
	if err != nil {
		t.Fatalf("create many: %v", err)
	}
	if len(jobs) != 6 {
		t.Fatalf("create many returned %d jobs, want 6", len(jobs))
	}
	if jobs[0].ID != stored.ID || jobs[0].Type != "t" {
		t.Errorf("a taken key gave job %s (%s), want the stored %s", jobs[0].ID, jobs[0].Type, stored.ID)
	}
	if jobs[2].ID != jobs[1].ID || jobs[2].Type != "t" {
		t.Errorf("a key given twice gave jobs %s and %s (%s), want the first's twice", jobs[1].ID, jobs[2].ID, jobs[2].Type)
	}
	if jobs[3].ID == stored.ID || jobs[3].Owner != bob {
		t.Errorf("bob's key k1 gave %+v, want a new job of bob's", jobs[3])
	}
	if jobs[4].ID == jobs[5].ID {
		t.Error("two jobs without a key got one id")
	}
	fresh := []*domain.Job{jobs[1], jobs[3], jobs[4], jobs[5]}
	events := rec.all()[1:]
	if len(events) != len(fresh) {
		t.Fatalf("%d events, want one per new job (%d)", len(events), len(fresh))
	}
	for i, j := range fresh {
		if events[i].ID != j.ID {
			t.Errorf("event %d is job %s, want %s", i, events[i].ID, j.ID)
		}
	}
	if st, _ := s.Stats(ctx, store.StatsQuery{}); st != (domain.Stats{Pending: 5}) {
		t.Errorf("stats = %+v, want 5 pending", st)
	}
	if st, _ := s.Stats(ctx, store.StatsQuery{Owner: alice}); st != (domain.Stats{Pending: 4}) {
		t.Errorf("alice's stats = %+v, want 4 pending", st)
	}
}

// A CreateMany that fails stores nothing and publishes nothing.
func testCreateManyAllOrNothing(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if jobs, err := s.CreateMany(ctx, []domain.NewJob{{Type: "t"}, {Type: "t"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("create many with a cancelled context = %d jobs, %v; want context.Canceled", len(jobs), err)
	}
	// A job a store cannot keep (PostgreSQL refuses NUL characters) must
	// not leave the ones before it stored.
	njs := []domain.NewJob{{Type: "t"}, {Type: "t", IdempotencyKey: "k"}, {Type: "t\x00"}, {Type: "t"}}
	jobs, err := s.CreateMany(context.Background(), njs)
	want := domain.Stats{}
	if err == nil {
		want.Pending = len(jobs) // the store keeps such types: all stored
	} else {
		var ie *store.ItemError
		if !errors.As(err, &ie) || ie.Index != 2 {
			t.Errorf("error %v names no index 2", err)
		}
		if n := len(rec.all()); n != 0 {
			t.Errorf("a failed create many published %d events", n)
		}
	}
	if st, _ := s.Stats(context.Background(), store.StatsQuery{}); st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	if page, _ := s.List(context.Background(), store.ListQuery{Limit: 10}); len(page.Jobs) != want.Pending {
		t.Errorf("list holds %s, want %d jobs", ids(page.Jobs), want.Pending)
	}
}

// Delete deletes a finished job (and frees its key), refuses an
// unfinished one and publishes nothing.
func testDelete(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	pending := put(t, s, domain.StatusPending)
	running := put(t, s, domain.StatusProcessing)
	done := putJob(t, s, domain.NewJob{Type: "t", Owner: alice, IdempotencyKey: "k1"}, domain.StatusCompleted)
	failed := put(t, s, domain.StatusFailed)
	cancelled := put(t, s, domain.StatusCancelled)
	events := len(rec.all())

	for _, j := range []*domain.Job{pending, running} {
		_, err := s.Delete(ctx, j.ID)
		if !errors.Is(err, domain.ErrConflict) || !strings.Contains(err.Error(), string(j.Status)) {
			t.Errorf("delete a %s job = %v, want ErrConflict naming the status", j.Status, err)
		}
		if got, err := s.Get(ctx, j.ID); err != nil || got.Status != j.Status {
			t.Errorf("refused delete changed the job: %+v, %v", got, err)
		}
	}
	for _, j := range []*domain.Job{done, failed, cancelled} {
		got, err := s.Delete(ctx, j.ID)
		if err != nil || got.ID != j.ID || got.Status != j.Status {
			t.Errorf("delete a %s job = %+v, %v", j.Status, got, err)
		}
		if _, err := s.Get(ctx, j.ID); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("deleted job: get = %v, want ErrNotFound", err)
		}
		if _, err := s.Delete(ctx, j.ID); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("delete again = %v, want ErrNotFound", err)
		}
	}
	for _, id := range []string{"00000000-0000-7000-8000-000000000000", "nope"} {
		if _, err := s.Delete(ctx, id); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("delete unknown %q = %v, want ErrNotFound", id, err)
		}
	}
	if n := len(rec.all()); n != events {
		t.Errorf("deleting published %d events, want none", n-events)
	}
	if st, _ := s.Stats(ctx, store.StatsQuery{}); st != (domain.Stats{Pending: 1, Processing: 1}) {
		t.Errorf("stats after delete = %+v", st)
	}
	if st, _ := s.Stats(ctx, store.StatsQuery{Owner: alice}); st != (domain.Stats{}) {
		t.Errorf("alice's stats after delete = %+v, want none", st)
	}
	if page, err := s.List(ctx, store.ListQuery{Limit: 10}); err != nil || page.Total != 2 || len(page.Jobs) != 2 || page.Jobs[0].ID != running.ID {
		t.Errorf("list after delete = %d total, %s, %v", page.Total, ids(page.Jobs), err)
	}
	again, err := s.Create(ctx, domain.NewJob{Type: "t", Owner: alice, IdempotencyKey: "k1"})
	if err != nil || again.ID == done.ID {
		t.Errorf("create with a deleted job's key = %+v, %v; want a new job", again, err)
	}
}
