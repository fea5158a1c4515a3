package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Owners the tests give jobs ("" is none).
const (
	alice = "alice"
	bob   = "bob"
)

// A job keeps the owner it was created with, through every change, in
// what every method returns and publishes.
func testOwnerPersists(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	owned, err := s.Create(ctx, domain.NewJob{Type: "t", Owner: "alice@example.com|sub:42"})
	if err != nil || owned.Owner != "alice@example.com|sub:42" {
		t.Fatalf("create with an owner = %+v, %v", owned, err)
	}
	plain := mustCreate(t, s, "t")
	if plain.Owner != "" {
		t.Fatalf("a job created without an owner has owner %q", plain.Owner)
	}
	got, err := s.Get(ctx, owned.ID)
	if err != nil || got.Owner != owned.Owner {
		t.Fatalf("get = %+v, %v; want owner %q", got, err, owned.Owner)
	}
	c, l := claimID(t, s, owned.ID)
	if c.Owner != owned.Owner {
		t.Fatalf("claimed job's owner = %q", c.Owner)
	}
	if _, err := s.Progress(ctx, l, 50); err != nil {
		t.Fatal(err)
	}
	f, err := s.Fail(ctx, l, "boom", time.Time{})
	if err != nil || f.Owner != owned.Owner {
		t.Fatalf("failed job = %+v, %v", f, err)
	}
	r, err := s.Retry(ctx, owned.ID)
	if err != nil || r.Owner != owned.Owner {
		t.Fatalf("retried job = %+v, %v", r, err)
	}
	x, err := s.Cancel(ctx, owned.ID)
	if err != nil || x.Owner != owned.Owner {
		t.Fatalf("cancelled job = %+v, %v", x, err)
	}
	page, err := s.List(ctx, store.ListQuery{Limit: 10})
	if err != nil || len(page.Jobs) != 2 || page.Jobs[1].Owner != owned.Owner || page.Jobs[0].Owner != "" {
		t.Fatalf("list = %s, %v; want both jobs with their owners", ids(page.Jobs), err)
	}
	n := 0
	for _, ev := range rec.all() {
		if ev.ID == owned.ID {
			n++
			if ev.Owner != owned.Owner {
				t.Fatalf("event v%d has owner %q, want %q", ev.Version, ev.Owner, owned.Owner)
			}
		}
	}
	if n != int(x.Version) {
		t.Fatalf("%d events of the owned job, want %d", n, x.Version)
	}
}

// List by owner: only the owner's jobs, combined with the type and status
// filters, newest first, paged, with totals of the owner's jobs only.
func testOwnerList(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	// Interleaved: alice a, bob a, none a, alice b, bob b, none b, ...
	var mine []*domain.Job // alice's, oldest first
	for i := range 12 {
		typ := "a"
		if i/3%2 == 1 {
			typ = "b"
		}
		owner := []string{alice, bob, ""}[i%3]
		j, err := s.Create(ctx, domain.NewJob{Type: typ, Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		if owner == alice {
			mine = append(mine, j)
		}
	}
	// alice: a, b, a, b (seq order). Claim everything: all processing;
	// then complete alice's first b.
	if got := claim(t, s, 100); len(got) != 12 {
		t.Fatalf("claimed %d jobs, want 12", len(got))
	}
	if _, err := s.Complete(ctx, store.LeaseOf(mustGet(t, s, mine[1].ID), owner), nil); err != nil {
		t.Fatal(err)
	}

	list := func(q store.ListQuery) store.ListPage {
		t.Helper()
		q.Limit = max(q.Limit, 10)
		p, err := s.List(ctx, q)
		if err != nil {
			t.Fatalf("list %+v: %v", q, err)
		}
		return p
	}
	want := func(name string, p store.ListPage, total int, jobs ...*domain.Job) {
		t.Helper()
		if got, w := ids(p.Jobs), ids(jobs); got != w || p.Total != total {
			t.Fatalf("%s = %s, total %d; want %s, total %d", name, got, p.Total, w, total)
		}
		for _, j := range p.Jobs {
			if j.Owner != alice {
				t.Fatalf("%s lists job %d of owner %q", name, j.Seq, j.Owner)
			}
		}
	}
	want("alice's jobs", list(store.ListQuery{Owner: alice}), 4, mine[3], mine[2], mine[1], mine[0])
	want("alice's type a", list(store.ListQuery{Owner: alice, Type: "a"}), 2, mine[2], mine[0])
	want("alice's completed", list(store.ListQuery{Owner: alice, Status: domain.StatusCompleted}), 1, mine[1])
	want("alice's processing b", list(store.ListQuery{Owner: alice, Status: domain.StatusProcessing, Type: "b"}), 1, mine[3])
	want("alice's pending", list(store.ListQuery{Owner: alice, Status: domain.StatusPending}), 0)
	want("nobody's", list(store.ListQuery{Owner: "nobody"}), 0)
	if p := list(store.ListQuery{}); p.Total != 12 || len(p.Jobs) != 10 || !p.HasMore {
		t.Fatalf("unfiltered list = %d jobs of %d, more %v; want every owner's", len(p.Jobs), p.Total, p.HasMore)
	}

	// Pages of 3, then 1: the cursor walks alice's jobs only.
	first, err := s.List(ctx, store.ListQuery{Owner: alice, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !first.HasMore {
		t.Fatalf("first page of 3 of alice's 4 jobs says no more")
	}
	want("first page", first, 4, mine[3], mine[2], mine[1])
	rest, err := s.List(ctx, store.ListQuery{Owner: alice, Limit: 3, BeforeSeq: first.Jobs[2].Seq})
	if err != nil {
		t.Fatal(err)
	}
	want("second page", rest, 4, mine[0])
	if rest.HasMore {
		t.Fatal("the last page of alice's jobs says more")
	}
	// Type and owner paged together.
	p, err := s.List(ctx, store.ListQuery{Owner: alice, Type: "b", Limit: 1})
	if err != nil || !p.HasMore {
		t.Fatalf("first page of alice's type b: more %v, %v", p.HasMore, err)
	}
	want("alice's b, page 1", p, 2, mine[3])
	p, err = s.List(ctx, store.ListQuery{Owner: alice, Type: "b", Limit: 1, BeforeSeq: p.Jobs[0].Seq})
	if err != nil || p.HasMore {
		t.Fatalf("last page of alice's type b: more %v, %v", p.HasMore, err)
	}
	want("alice's b, page 2", p, 2, mine[1])
}

func mustGet(t *testing.T, s store.Store, id string) *domain.Job {
	t.Helper()
	j, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// Stats by owner count the owner's jobs only, by type too.
func testOwnerStats(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	putJob(t, s, domain.NewJob{Type: "t", Owner: alice}, domain.StatusPending)
	putJob(t, s, domain.NewJob{Type: "t", Owner: alice}, domain.StatusCompleted)
	putJob(t, s, domain.NewJob{Type: "u", Owner: alice}, domain.StatusFailed)
	putJob(t, s, domain.NewJob{Type: "t", Owner: bob}, domain.StatusPending)
	putJob(t, s, domain.NewJob{Type: "t"}, domain.StatusCancelled)
	for _, tc := range []struct {
		q    store.StatsQuery
		want domain.Stats
	}{
		{store.StatsQuery{Owner: alice}, domain.Stats{Pending: 1, Completed: 1, Failed: 1}},
		{store.StatsQuery{Owner: alice, Type: "t"}, domain.Stats{Pending: 1, Completed: 1}},
		{store.StatsQuery{Owner: alice, Type: "nope"}, domain.Stats{}},
		{store.StatsQuery{Owner: bob}, domain.Stats{Pending: 1}},
		{store.StatsQuery{Owner: "nobody"}, domain.Stats{}},
		{store.StatsQuery{Type: "t"}, domain.Stats{Pending: 2, Completed: 1, Cancelled: 1}},
		{store.StatsQuery{}, domain.Stats{Pending: 2, Completed: 1, Failed: 1, Cancelled: 1}},
	} {
		if got, err := s.Stats(ctx, tc.q); err != nil || got != tc.want {
			t.Errorf("stats %+v = %+v, %v; want %+v", tc.q, got, err, tc.want)
		}
	}
}

// The counts behind Stats and List totals stay exact, per owner and in
// all, through every kind of change: creations, claims, completions,
// failures with and without retry, manual retries, cancellations (pending
// and processing), releases, rescues and deletions by retention.
func testOwnerCounts(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	owners := []string{alice, bob, ""}
	for i, st := range []domain.Status{domain.StatusPending, domain.StatusProcessing, domain.StatusCompleted, domain.StatusFailed, domain.StatusCancelled} {
		for k, o := range owners {
			typ := []string{"a", "b"}[(i+k)%2]
			putJob(t, s, domain.NewJob{Type: typ, Owner: o, MaxAttempts: 3}, st)
		}
	}
	checkOwnerCounts(t, s, "after creations")

	// Every job of every owner through more changes.
	pending := func(o string) *domain.Job {
		t.Helper()
		return putJob(t, s, domain.NewJob{Type: "a", Owner: o, MaxAttempts: 3}, domain.StatusPending)
	}
	now := time.Now()
	for _, o := range owners {
		if _, err := s.Cancel(ctx, pending(o).ID); err != nil {
			t.Fatal(err)
		}
		j, l := claimID(t, s, pending(o).ID)
		// Back to pending, to run before every other pending job.
		if _, err := s.Fail(ctx, l, "retry later", time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
		_, l = claimID(t, s, j.ID)
		if _, err := s.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
		_, l = claimID(t, s, j.ID)
		if _, err := s.Cancel(ctx, j.ID); err != nil { // requested
			t.Fatal(err)
		}
		if _, err := s.Finish(ctx, l, domain.StatusCancelled, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Retry(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		_, l = claimID(t, s, pending(o).ID)
		if _, err := s.Complete(ctx, l, nil); err != nil {
			t.Fatal(err)
		}
	}
	checkOwnerCounts(t, s, "after transitions")

	// Leases that expire: rescued back to pending (attempts left).
	for _, o := range owners {
		j := pending(o)
		if _, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: now.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, s, j.ID); got.Status != domain.StatusProcessing {
			t.Fatalf("job %d not claimed: %s", got.Seq, got.Status)
		}
	}
	if got, err := s.RescueExpired(ctx, now, 100); err != nil || len(got) != len(owners) {
		t.Fatalf("rescued %s, %v; want %d jobs", ids(got), err, len(owners))
	}
	checkOwnerCounts(t, s, "after rescues")

	if n, err := s.DeleteFinished(ctx, time.Now().Add(time.Hour), 1000); err != nil || n == 0 {
		t.Fatalf("deleted %d, %v", n, err)
	}
	checkOwnerCounts(t, s, "after deletions")
	if st, err := s.Stats(ctx, store.StatsQuery{Owner: alice}); err != nil || st.Completed+st.Failed+st.Cancelled != 0 || st.Pending == 0 {
		t.Fatalf("alice's stats after deleting every finished job = %+v, %v", st, err)
	}
}

// checkOwnerCounts compares Stats and List totals, for every owner and
// type in use (and none), with the jobs the store lists.
func checkOwnerCounts(t *testing.T, s store.Store, when string) {
	t.Helper()
	ctx := context.Background()
	type key struct {
		owner, typ string
		status     domain.Status
	}
	want := map[key]int{}
	owners, types := map[string]bool{"": true, "nobody": true}, map[string]bool{"": true}
	var before int64
	for {
		p, err := s.List(ctx, store.ListQuery{Limit: 100, BeforeSeq: before})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range p.Jobs {
			keys := []key{{"", "", j.Status}, {"", j.Type, j.Status}}
			if j.Owner != "" {
				keys = append(keys, key{j.Owner, "", j.Status}, key{j.Owner, j.Type, j.Status})
			}
			for _, k := range keys {
				want[k]++
			}
			owners[j.Owner], types[j.Type] = true, true
		}
		if !p.HasMore {
			break
		}
		before = p.Jobs[len(p.Jobs)-1].Seq
	}
	for o := range owners {
		for typ := range types {
			k := func(st domain.Status) int {
				return want[key{o, typ, st}] // o "": every owner, none included
			}
			w := domain.Stats{
				Pending: k(domain.StatusPending), Processing: k(domain.StatusProcessing), Completed: k(domain.StatusCompleted),
				Failed: k(domain.StatusFailed), Cancelled: k(domain.StatusCancelled),
			}
			got, err := s.Stats(ctx, store.StatsQuery{Owner: o, Type: typ})
			if err != nil || got != w {
				t.Fatalf("%s: stats of owner %q type %q = %+v, %v; want %+v", when, o, typ, got, err, w)
			}
			for _, st := range append([]domain.Status{""}, domain.Statuses[:]...) {
				n := w.Pending + w.Processing + w.Completed + w.Failed + w.Cancelled
				if st != "" {
					n = k(st)
				}
				p, err := s.List(ctx, store.ListQuery{Owner: o, Type: typ, Status: st, Limit: 1})
				if err != nil || p.Total != n {
					t.Fatalf("%s: list total of owner %q type %q status %q = %d, %v; want %d", when, o, typ, st, p.Total, err, n)
				}
			}
		}
	}
}

// Idempotency keys are scoped per owner: one owner's key never returns
// another owner's job, also when the owners' creations race; each owner
// gets its own job back; deleting one owner's job frees only its key.
func testOwnerIdempotencyKey(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	const racers = 16
	owners := []string{alice, bob, ""}
	got := make([][]*domain.Job, len(owners))
	var wg sync.WaitGroup
	for i, o := range owners {
		got[i] = make([]*domain.Job, racers)
		for r := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j, err := s.Create(ctx, domain.NewJob{Type: "t", Owner: o, IdempotencyKey: "order-42"})
				if err != nil {
					t.Error(err)
					return
				}
				got[i][r] = j
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[string]string{}
	for i, o := range owners {
		for _, j := range got[i] {
			if j.Owner != o || j.ID != got[i][0].ID {
				t.Fatalf("owner %q's creations with the key got job %s of owner %q and job %s", o, j.ID, j.Owner, got[i][0].ID)
			}
		}
		if other, ok := seen[got[i][0].ID]; ok {
			t.Fatalf("owners %q and %q share job %s through one key", other, o, got[i][0].ID)
		}
		seen[got[i][0].ID] = o
	}
	if p, err := s.List(ctx, store.ListQuery{Limit: 10}); err != nil || p.Total != len(owners) {
		t.Fatalf("%d jobs, %v; want one per owner", p.Total, err)
	}

	// alice's and bob's jobs finish and are deleted: their keys are free
	// again, each for a new job of its own; the key of the job without an
	// owner, still running, still gives that job.
	for _, j := range claim(t, s, 10) {
		if j.Owner == "" {
			continue
		}
		if _, err := s.Complete(ctx, lease(j), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeleteFinished(ctx, time.Now().Add(time.Hour), 100); err != nil || n != 2 {
		t.Fatalf("delete = %d, %v; want alice's and bob's jobs", n, err)
	}
	aliceAgain, err := s.Create(ctx, domain.NewJob{Type: "t", Owner: alice, IdempotencyKey: "order-42"})
	if err != nil || seen[aliceAgain.ID] != "" || aliceAgain.Owner != alice {
		t.Fatalf("alice's key after her job was deleted = %+v, %v; want a new job of hers", aliceAgain, err)
	}
	bobAgain, err := s.Create(ctx, domain.NewJob{Type: "t", Owner: bob, IdempotencyKey: "order-42"})
	if err != nil || seen[bobAgain.ID] != "" || bobAgain.ID == aliceAgain.ID || bobAgain.Owner != bob {
		t.Fatalf("bob's key after his job was deleted = %+v, %v; want a new job of his", bobAgain, err)
	}
	none, err := s.Create(ctx, domain.NewJob{Type: "t", IdempotencyKey: "order-42"})
	if err != nil || none.ID != got[2][0].ID {
		t.Fatalf("the key without an owner = %+v, %v; want its running job %s", none, err, got[2][0].ID)
	}
}
