package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// periodicDef is a definition as the jobs service would store it.
func periodicDef(name string, source domain.PeriodicSource) domain.PeriodicJob {
	return domain.PeriodicJob{
		Name: name, Schedule: "@every 1m", Timezone: "Europe/Paris", Source: source,
		Job: domain.JobTemplate{
			Type: "report", Payload: json.RawMessage(`{"kind":"daily"}`), Timeout: 90 * time.Second,
			MaxAttempts: 4, Priority: 7, Tags: []string{"ops", domain.PeriodicTag(name)},
		},
	}
}

// samePeriodic fails the test unless got is want as stored.
func samePeriodic(t *testing.T, what string, got *domain.PeriodicJob, want domain.PeriodicJob) {
	t.Helper()
	if got == nil || !store.SamePeriodic(got, &want) {
		t.Fatalf("%s = %+v; want %+v", what, got, want)
	}
}

// Periodic definitions are stored by name and read back whole; putting
// the same definition again changes nothing, a different one makes a new
// revision; the API cannot replace or delete a definition from the file,
// the file replaces any.
func testPeriodicDefinitions(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	if got, err := s.ListPeriodic(ctx); err != nil || len(got) != 0 {
		t.Fatalf("list of a new store = %v, %v; want none", got, err)
	}
	def := periodicDef("nightly", domain.PeriodicFromAPI)
	p, err := s.PutPeriodic(ctx, def)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	samePeriodic(t, "put", p, def)
	if p.Revision != 1 || p.UpdatedAt.IsZero() || p.LastRunAt != nil || p.LastJobID != "" {
		t.Fatalf("new definition = revision %d, updated %v, last run %v, last job %q; want revision 1, updated now, never run", p.Revision, p.UpdatedAt, p.LastRunAt, p.LastJobID)
	}
	again, err := s.PutPeriodic(ctx, def)
	if err != nil || again.Revision != 1 || !again.UpdatedAt.Equal(p.UpdatedAt) {
		t.Fatalf("put again = %+v, %v; want revision 1 unchanged", again, err)
	}
	changed := def
	changed.Schedule, changed.Paused = "0 9 * * 1-5", true
	changed.Job.Tags = []string{domain.PeriodicTag("nightly")}
	c, err := s.PutPeriodic(ctx, changed)
	if err != nil || c.Revision != 2 {
		t.Fatalf("put a change = %+v, %v; want revision 2", c, err)
	}
	samePeriodic(t, "changed", c, changed)
	other := periodicDef("a-first", domain.PeriodicFromAPI)
	other.Job.Payload, other.Job.Timeout, other.Job.Priority = nil, 0, -3
	if _, err := s.PutPeriodic(ctx, other); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListPeriodic(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "a-first" || list[1].Name != "nightly" {
		t.Fatalf("list = %v, %v; want a-first and nightly, by name", list, err)
	}
	samePeriodic(t, "listed a-first", list[0], other)
	samePeriodic(t, "listed nightly", list[1], changed)

	// The file takes over a name; then the API may not change it.
	fromFile := periodicDef("nightly", domain.PeriodicFromFile)
	f, err := s.PutPeriodic(ctx, fromFile)
	if err != nil || f.Source != domain.PeriodicFromFile || f.Revision != 3 {
		t.Fatalf("put from the file over the API's = %+v, %v; want revision 3 from the file", f, err)
	}
	if _, err := s.PutPeriodic(ctx, def); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("put from the API over the file's: %v; want a conflict", err)
	}
	if err := s.DeletePeriodic(ctx, "nightly", domain.PeriodicFromAPI); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("delete the file's from the API: %v; want a conflict", err)
	}
	if err := s.DeletePeriodic(ctx, "missing", domain.PeriodicFromAPI); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("delete an unknown name: %v; want not found", err)
	}
	if err := s.DeletePeriodic(ctx, "nightly", domain.PeriodicFromFile); err != nil {
		t.Fatalf("delete from the file: %v", err)
	}
	if err := s.DeletePeriodic(ctx, "a-first", domain.PeriodicFromAPI); err != nil {
		t.Fatalf("delete from the API: %v", err)
	}
	if got, err := s.ListPeriodic(ctx); err != nil || len(got) != 0 {
		t.Fatalf("list after deleting both = %v, %v; want none", got, err)
	}
}

// Each tick of a definition creates one job, however many creators race
// for it; a tick at or before the last one, a tick of an older revision,
// of a paused or of a deleted definition creates none.
func testPeriodicTickOnce(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	def := periodicDef("every-minute", domain.PeriodicFromAPI)
	p, err := s.PutPeriodic(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	enqueue := func(at time.Time, revision int64) (*domain.Job, error) {
		return s.EnqueuePeriodic(ctx, store.PeriodicTick{Name: def.Name, Revision: revision, At: at, Job: def.Job.NewJob()})
	}

	const creators = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []*domain.Job
	)
	for range creators {
		wg.Go(func() {
			j, err := enqueue(tick, p.Revision)
			if err != nil {
				t.Errorf("enqueue: %v", err)
				return
			}
			if j != nil {
				mu.Lock()
				created = append(created, j)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(created) != 1 {
		t.Fatalf("%d creators racing for one tick created %d jobs (%s); want 1", creators, len(created), ids(created))
	}
	j := created[0]
	if j.Type != "report" || string(j.Payload) != `{"kind":"daily"}` || j.MaxAttempts != 4 || j.Priority != 7 ||
		j.Timeout != 90*time.Second || !slices.Equal(j.Tags, []string{"ops", "periodic:every-minute"}) || j.Status != domain.StatusPending || j.Owner != "" {
		t.Fatalf("tick's job = %+v; want the template's pending job", j)
	}
	if got, err := s.Get(ctx, j.ID); err != nil || got.ID != j.ID {
		t.Fatalf("get the tick's job = %v, %v", got, err)
	}
	if evs := rec.all(); len(evs) != 1 || evs[0].ID != j.ID {
		t.Fatalf("events = %s; want the tick's job once", ids(evs))
	}
	list, err := s.ListPeriodic(ctx)
	if err != nil || len(list) != 1 || list[0].LastRunAt == nil || !list[0].LastRunAt.Equal(tick) || list[0].LastJobID != j.ID || list[0].Revision != p.Revision {
		t.Fatalf("definition after its tick = %+v, %v; want last run %v by job %s, same revision", list, err, tick, j.ID)
	}

	for _, at := range []time.Time{tick, tick.Add(-time.Minute)} {
		if j, err := enqueue(at, p.Revision); err != nil || j != nil {
			t.Fatalf("enqueue %v after the tick %v = %v, %v; want nothing created", at, tick, j, err)
		}
	}
	next := tick.Add(time.Minute)
	if j, err := enqueue(next, p.Revision-1); err != nil || j != nil {
		t.Fatalf("enqueue of an older revision = %v, %v; want nothing created", j, err)
	}
	if j, err := enqueue(next, p.Revision); err != nil || j == nil {
		t.Fatalf("enqueue of the next tick = %v, %v; want its job", j, err)
	}

	paused := def
	paused.Paused = true
	pp, err := s.PutPeriodic(ctx, paused)
	if err != nil {
		t.Fatal(err)
	}
	if pp.LastRunAt == nil || !pp.LastRunAt.Equal(next) {
		t.Fatalf("a change lost the last run: %v; want %v", pp.LastRunAt, next)
	}
	if j, err := enqueue(next.Add(time.Minute), pp.Revision); err != nil || j != nil {
		t.Fatalf("enqueue of a paused definition = %v, %v; want nothing created", j, err)
	}
	if err := s.DeletePeriodic(ctx, def.Name, domain.PeriodicFromAPI); err != nil {
		t.Fatal(err)
	}
	if j, err := enqueue(next.Add(2*time.Minute), pp.Revision); err != nil || j != nil {
		t.Fatalf("enqueue of a deleted definition = %v, %v; want nothing created", j, err)
	}
	if st, err := s.Stats(ctx, store.StatsQuery{}); err != nil || st.Pending != 2 {
		t.Fatalf("stats = %+v, %v; want the 2 jobs of the 2 ticks", st, err)
	}
}
