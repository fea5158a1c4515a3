package storetest

import (
	"context"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// A job keeps the traceparent it was created with (Create and CreateMany),
// in what every method returns and publishes, claims and completion
// included, so that the worker running it can link to its creation; a job
// created without one has none.
func testTraceParentPersists(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	const tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const tp2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
	traced, err := s.Create(ctx, domain.NewJob{Type: "t", TraceParent: tp1})
	if err != nil || traced.TraceParent != tp1 {
		t.Fatalf("create with a traceparent = %+v, %v", traced, err)
	}
	plain := mustCreate(t, s, "t")
	if plain.TraceParent != "" {
		t.Fatalf("a job created without a traceparent has %q", plain.TraceParent)
	}
	many, err := s.CreateMany(ctx, []domain.NewJob{{Type: "t", TraceParent: tp2}, {Type: "t"}})
	if err != nil || many[0].TraceParent != tp2 || many[1].TraceParent != "" {
		t.Fatalf("create many = %+v, %v; want %q and none", many, err, tp2)
	}
	check := func(what string, j *domain.Job, err error, want string) {
		t.Helper()
		if err != nil || j.TraceParent != want {
			t.Fatalf("%s = %+v, %v; want traceparent %q", what, j, err, want)
		}
	}
	got, err := s.Get(ctx, traced.ID)
	check("get", got, err, tp1)
	got, err = s.Get(ctx, many[0].ID)
	check("get of a job of create many", got, err, tp2)
	c, l := claimID(t, s, traced.ID)
	check("claimed job", c, nil, tp1)
	done, err := s.Complete(ctx, l, nil)
	check("completed job", done, err, tp1)
	page, err := s.List(ctx, store.ListQuery{Limit: 10})
	if err != nil || len(page.Jobs) != 4 || page.Jobs[3].TraceParent != tp1 || page.Jobs[2].TraceParent != "" {
		t.Fatalf("list = %s, %v; want the jobs with their traceparents", ids(page.Jobs), err)
	}
	n := 0
	for _, ev := range rec.all() {
		if ev.ID == traced.ID {
			n++
			if ev.TraceParent != tp1 {
				t.Fatalf("event v%d has traceparent %q, want %q", ev.Version, ev.TraceParent, tp1)
			}
		}
	}
	if n != int(done.Version) {
		t.Fatalf("%d events of the traced job, want %d", n, done.Version)
	}
}
