package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// typeRecorder is a recorder that also keeps the type controls published.
type typeRecorder struct {
	recorder
	tmu   sync.Mutex
	types []domain.TypeControl
}

func (r *typeRecorder) PublishType(c domain.TypeControl) {
	r.tmu.Lock()
	r.types = append(r.types, c)
	r.tmu.Unlock()
}

func (r *typeRecorder) allTypes() []domain.TypeControl {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	return append([]domain.TypeControl(nil), r.types...)
}

func setControl(t *testing.T, s store.Store, name string, ch domain.TypeChange) domain.TypeControl {
	t.Helper()
	c, err := s.SetTypeControl(context.Background(), name, ch)
	if err != nil {
		t.Fatalf("set controls of %s: %v", name, err)
	}
	return c
}

func paused(p bool) domain.TypeChange { return domain.TypeChange{Paused: &p} }

func limits(l domain.TypeLimits) domain.TypeChange { return domain.TypeChange{Limits: &l} }

// claimAt claims up to limit jobs as of now for owner.
func claimAt(t *testing.T, s store.Store, who string, limit int, now time.Time) []*domain.Job {
	t.Helper()
	jobs, err := s.Claim(context.Background(), store.ClaimRequest{Owner: who, Limit: limit, Now: now, LeaseUntil: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return jobs
}

func countTypes(jobs []*domain.Job) map[string]int {
	n := make(map[string]int)
	for _, j := range jobs {
		n[j.Type]++
	}
	return n
}

// A paused type's pending jobs are passed over (the other types' are
// claimed), new ones are still accepted, and they are claimed again once
// the type is resumed; the controls are listed and published while they
// exist, and forgotten once empty.
func testTypePause(t *testing.T, newStore NewStore) {
	rec := &typeRecorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	// The paused type's jobs come first in dispatch order.
	for range 3 {
		if _, err := s.Create(ctx, domain.NewJob{Type: "mail", Priority: 10}); err != nil {
			t.Fatal(err)
		}
	}
	c := setControl(t, s, "mail", paused(true))
	if !c.Paused || c.Name != "mail" {
		t.Fatalf("pause = %+v", c)
	}
	mustCreate(t, s, "mail") // accepted while paused
	other := mustCreate(t, s, "sms")
	if got := claim(t, s, 10); len(got) != 1 || got[0].ID != other.ID {
		t.Fatalf("claim with mail paused = %v, want only the sms job", countTypes(got))
	}
	list, err := s.TypeControls(ctx)
	if err != nil || len(list) != 1 || !list[0].Paused || list[0].Name != "mail" {
		t.Fatalf("type controls = %+v, %v; want mail paused", list, err)
	}
	stats, err := s.TypeStats(ctx, "")
	if err != nil || stats["mail"].Pending != 4 || stats["sms"].Processing != 1 {
		t.Fatalf("type stats = %+v, %v", stats, err)
	}
	c = setControl(t, s, "mail", paused(false))
	if c.Paused {
		t.Fatalf("resume = %+v", c)
	}
	if got := claim(t, s, 10); countTypes(got)["mail"] != 4 {
		t.Fatalf("claim after resume = %v, want the 4 mail jobs", countTypes(got))
	}
	if list, err := s.TypeControls(ctx); err != nil || len(list) != 0 {
		t.Fatalf("type controls after resume = %+v, %v; want none", list, err)
	}
	pub := rec.allTypes()
	if len(pub) != 2 || !pub[0].Paused || pub[1].Paused || pub[1].Name != "mail" {
		t.Fatalf("published controls = %+v, want mail paused then resumed", pub)
	}
}

// A type never has more jobs processing than its concurrency, counted
// over every claimer; other types' jobs behind it are claimed; a finished
// job frees its place.
func testTypeConcurrency(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	c := setControl(t, s, "api", limits(domain.TypeLimits{Concurrency: 2}))
	if c.Concurrency != 2 || c.Paused || c.RatePerSecond != 0 {
		t.Fatalf("limit = %+v", c)
	}
	for range 5 {
		if _, err := s.Create(ctx, domain.NewJob{Type: "api", Priority: 5}); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, s, "other")
	mustCreate(t, s, "other")
	now := time.Now()
	first := claimAt(t, s, "a", 1, now)
	got := claimAt(t, s, "b", 10, now)
	if n := countTypes(append(got, first...)); n["api"] != 2 || n["other"] != 2 {
		t.Fatalf("claims = %v, want 2 api and 2 other", n)
	}
	if more := claimAt(t, s, "c", 10, now); len(more) != 0 {
		t.Fatalf("claim at the limit = %v, want none", countTypes(more))
	}
	if _, err := s.Complete(ctx, store.LeaseOf(first[0], "a"), nil); err != nil {
		t.Fatal(err)
	}
	if more := claimAt(t, s, "c", 10, now); len(more) != 1 || more[0].Type != "api" {
		t.Fatalf("claim after a completion = %v, want one api job", countTypes(more))
	}
	// Raising the limit lets more run at once.
	setControl(t, s, "api", limits(domain.TypeLimits{Concurrency: 3}))
	if more := claimAt(t, s, "c", 10, now); len(more) != 1 {
		t.Fatalf("claim after raising the limit = %v, want one more", countTypes(more))
	}
}

// Concurrent claimers together never take more of a limited type than
// its concurrency.
func testTypeConcurrencyRace(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	setControl(t, s, "api", limits(domain.TypeLimits{Concurrency: 3}))
	njs := make([]domain.NewJob, 40)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "api"}
	}
	if _, err := s.CreateMany(ctx, njs); err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	now := time.Now()
	for i := range 8 {
		wg.Go(func() {
			for range 5 {
				jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "w" + string(rune('a'+i)), Limit: 2, Now: now, LeaseUntil: now.Add(time.Hour)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += len(jobs)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if total != 3 {
		t.Fatalf("concurrent claims took %d jobs of a type limited to 3", total)
	}
}

// A claim whose now is older than the last spend (a claimer with a slow
// clock, or one that waited for another's claim) spends as of the last
// spend: moving the bucket back in time would refill an interval twice.
func testTypeRateOlderNow(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	setControl(t, s, "api", limits(domain.TypeLimits{RatePerSecond: 10, RateBurst: 10}))
	njs := make([]domain.NewJob, 30)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "api"}
	}
	if _, err := s.CreateMany(ctx, njs); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(time.Hour).Truncate(time.Millisecond) // every job is due
	for _, step := range []struct {
		at          time.Duration
		limit, want int
	}{
		{0, 10, 10},                     // the burst
		{time.Second, 5, 5},             // 10 more tokens by now; 5 left
		{500 * time.Millisecond, 10, 5}, // an older now: the 5 left, no more
		{time.Second, 10, 0},            // nothing refilled since the spend
		{1500 * time.Millisecond, 10, 5},
	} {
		if got := claimAt(t, s, "a", step.limit, t0.Add(step.at)); len(got) != step.want {
			t.Fatalf("claim of %d at +%v = %d jobs, want %d", step.limit, step.at, len(got), step.want)
		}
	}
}

// A rate-limited type starts at most its burst at once, then one job per
// 1/rate seconds of the claims' clock; NextRunAt tells when the next
// token comes; clearing the rate lifts the limit.
func testTypeRate(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	c := setControl(t, s, "api", limits(domain.TypeLimits{RatePerSecond: 2, RateBurst: 2}))
	if c.RatePerSecond != 2 || c.RateBurst != 2 || c.Concurrency != 0 {
		t.Fatalf("limit = %+v", c)
	}
	njs := make([]domain.NewJob, 10)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "api", Priority: 1}
	}
	if _, err := s.CreateMany(ctx, njs); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "other")
	t0 := time.Now().Add(time.Hour).Truncate(time.Millisecond) // every job is due
	if got := claimAt(t, s, "a", 10, t0); countTypes(got)["api"] != 2 || countTypes(got)["other"] != 1 {
		t.Fatalf("first claim = %v, want the burst of 2 api jobs and the other one", countTypes(got))
	}
	if got := claimAt(t, s, "a", 10, t0); len(got) != 0 {
		t.Fatalf("claim with the bucket empty = %v, want none", countTypes(got))
	}
	next, err := s.NextRunAt(ctx, t0)
	if want := t0.Add(500 * time.Millisecond); err != nil || next.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("next run time = %v, %v; want the next token at %v", next, err, want)
	}
	if got := claimAt(t, s, "a", 10, t0.Add(499*time.Millisecond)); len(got) != 0 {
		t.Fatalf("claim before the next token = %d jobs", len(got))
	}
	if got := claimAt(t, s, "a", 10, t0.Add(500*time.Millisecond)); len(got) != 1 {
		t.Fatalf("claim at the next token = %d jobs, want 1", len(got))
	}
	// Ten seconds later the bucket holds its burst, no more.
	if got := claimAt(t, s, "a", 10, t0.Add(10*time.Second)); len(got) != 2 {
		t.Fatalf("claim after a long pause = %d jobs, want the burst of 2", len(got))
	}
	setControl(t, s, "api", limits(domain.TypeLimits{}))
	if got := claimAt(t, s, "a", 10, t0.Add(10*time.Second)); len(got) != 5 {
		t.Fatalf("claim with the rate cleared = %d jobs, want the 5 left", len(got))
	}
	if list, err := s.TypeControls(ctx); err != nil || len(list) != 0 {
		t.Fatalf("type controls once cleared = %+v, %v", list, err)
	}
}

// Controls survive as set: limits and pause together, listed in name
// order; a type with controls needs no jobs.
func testTypeControlsKept(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	setControl(t, s, "zeta", limits(domain.TypeLimits{Concurrency: 4, RatePerSecond: 0.5}))
	setControl(t, s, "alpha", paused(true))
	setControl(t, s, "zeta", paused(true))
	list, err := s.TypeControls(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("type controls = %+v, %v", list, err)
	}
	a, z := list[0], list[1]
	if a.Name != "alpha" || !a.Paused || a.Limited() {
		t.Fatalf("alpha = %+v", a)
	}
	if z.Name != "zeta" || !z.Paused || z.Concurrency != 4 || z.RatePerSecond != 0.5 || z.RateBurst != 1 {
		t.Fatalf("zeta = %+v, want paused, concurrency 4, rate 0.5 with the default burst 1", z)
	}
	if stats, err := s.TypeStats(ctx, ""); err != nil || len(stats) != 0 {
		t.Fatalf("type stats without jobs = %+v, %v", stats, err)
	}
}
