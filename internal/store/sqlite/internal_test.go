package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// A write that fails undoes its own statements and count changes, and
// nothing of the writes it shares a transaction with.
func TestFailedWriteUndoesOnlyItself(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	victim, err := s.Create(ctx, domain.NewJob{Type: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	const rounds, creators = 200, 4
	for range rounds {
		var wg sync.WaitGroup
		wg.Add(1 + creators)
		go func() {
			defer wg.Done()
			err := s.write(ctx, func(w *writeTx) error {
				if _, err := w.exec(`UPDATE jobs SET priority = 99 WHERE id = ?`, victim.ID); err != nil {
					return err
				}
				w.count("", "victim", domain.StatusPending, 1)
				return errBoom
			})
			if !errors.Is(err, errBoom) {
				t.Errorf("failing write: %v, want boom", err)
			}
		}()
		for range creators {
			go func() {
				defer wg.Done()
				if _, err := s.Create(ctx, domain.NewJob{Type: "t"}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	if got, err := s.Get(ctx, victim.ID); err != nil || got.Priority != 0 || got.Version != 1 {
		t.Fatalf("the failed writes' job = %+v, %v; want it unchanged", got, err)
	}
	if st, err := s.Stats(ctx, store.StatsQuery{}); err != nil || st.Pending != 1+rounds*creators {
		t.Fatalf("stats = %+v, %v; want %d pending", st, err, 1+rounds*creators)
	}
	checkCounts(t, s)
}

// The counts that Stats and List totals read match the jobs after every
// kind of change, made concurrently, the refused ones included.
func TestCountsMatchJobs(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			owner := fmt.Sprint("w", g)
			for range 60 {
				typ := fmt.Sprint("type", rng.IntN(3))
				jobOwner := []string{"", "alice", "bob"}[rng.IntN(3)]
				j, err := s.Create(ctx, domain.NewJob{Type: typ, Owner: jobOwner, MaxAttempts: 2, IdempotencyKey: fmt.Sprint("k", rng.IntN(100))})
				if err != nil {
					t.Error(err)
					return
				}
				now := time.Now().Add(time.Minute)
				claimed, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 2, Now: now, LeaseUntil: now.Add(time.Minute)})
				if err != nil {
					t.Error(err)
					return
				}
				for _, c := range claimed {
					l := store.LeaseOf(c, owner)
					switch rng.IntN(5) {
					case 0:
						_, err = s.Complete(ctx, l, nil)
					case 1:
						_, err = s.Fail(ctx, l, "x", now)
					case 2:
						_, err = s.Release(ctx, l)
					case 3:
						_, err = s.Finish(ctx, l, domain.StatusCancelled, "")
					default: // left processing
					}
					if err != nil && !errors.Is(err, domain.ErrLeaseLost) && !errors.Is(err, domain.ErrNotFound) { // rescued (and deleted) by another goroutine
						t.Error(err)
					}
				}
				// Refused writes change nothing: a cancel of a finished
				// job, a retry of a pending one, a lost lease.
				_, _ = s.Cancel(ctx, j.ID)
				_, _ = s.Retry(ctx, j.ID)
				_, _ = s.Complete(ctx, store.Lease{JobID: j.ID, Owner: "nobody", Attempt: 1}, nil)
				if rng.IntN(10) == 0 {
					if _, err := s.RescueExpired(ctx, now.Add(2*time.Minute), 3); err != nil {
						t.Error(err)
					}
					if _, err := s.DeleteFinished(ctx, time.Now().Add(time.Hour), 5); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	checkCounts(t, s)
}

// checkCounts compares job_counts and job_owner_counts with the jobs, and
// Stats with them.
func checkCounts(t *testing.T, s *Store) {
	t.Helper()
	want := readCounts(t, s, `SELECT '', type, status, COUNT(*) FROM jobs GROUP BY type, status`)
	got := readCounts(t, s, `SELECT '', type, status, n FROM job_counts WHERE n <> 0`)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("job_counts = %v\njobs       = %v", got, want)
	}
	wantOwned := readCounts(t, s, `SELECT owner, type, status, COUNT(*) FROM jobs WHERE owner <> '' GROUP BY owner, type, status`)
	gotOwned := readCounts(t, s, `SELECT owner, type, status, n FROM job_owner_counts WHERE n <> 0`)
	if fmt.Sprint(gotOwned) != fmt.Sprint(wantOwned) {
		t.Fatalf("job_owner_counts = %v\njobs             = %v", gotOwned, wantOwned)
	}
	types, owners := map[string]bool{"": true}, map[string]bool{"": true}
	for k := range wantOwned {
		types[k.typ], owners[k.owner] = true, true
		want[k] = wantOwned[k]
	}
	for k := range want {
		types[k.typ] = true
	}
	for typ := range types {
		for owner := range owners {
			checkStats(t, s, want, owner, typ)
		}
	}
}

// checkStats compares Stats of owner and typ with the counts in want,
// where owner "" stands for every owner.
func checkStats(t *testing.T, s *Store, want map[countKey]int, owner, typ string) {
	t.Helper()
	st, err := s.Stats(context.Background(), store.StatsQuery{Owner: owner, Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	var w domain.Stats
	for k, n := range want {
		if typ != "" && k.typ != typ || k.owner != owner {
			continue
		}
		switch k.status {
		case domain.StatusPending:
			w.Pending += n
		case domain.StatusProcessing:
			w.Processing += n
		case domain.StatusCompleted:
			w.Completed += n
		case domain.StatusFailed:
			w.Failed += n
		case domain.StatusCancelled:
			w.Cancelled += n
		}
	}
	if st != w {
		t.Fatalf("stats of owner %q type %q = %+v, want %+v", owner, typ, st, w)
	}
}

// readCounts runs a query of (owner, type, status, count) rows.
func readCounts(t *testing.T, s *Store, query string) map[countKey]int {
	t.Helper()
	rows, err := s.rdb.QueryContext(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	counts := map[countKey]int{}
	for rows.Next() {
		var (
			owner, typ, status string
			n                  int
		)
		if err := rows.Scan(&owner, &typ, &status, &n); err != nil {
			t.Fatal(err)
		}
		counts[countKey{owner, typ, domain.Status(status)}] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// A listing by tag, and its total, walk job_tags by its key (the tag, then
// the job newest first from the cursor) and look each job up by seq:
// neither scans the jobs nor sorts them, however many jobs there are.
func TestTagListingUsesItsIndex(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	plan := func(query string, args []any) string {
		t.Helper()
		return queryPlan(t, s, query, args...)
	}
	for _, q := range []store.ListQuery{
		{Tag: "red"},
		{Tag: "red", Type: "a"},
		{Tag: "red", Status: domain.StatusFailed},
		{Tag: "red", Owner: "alice", Type: "a"},
		{Tag: "red", BeforeSeq: 100},
	} {
		q.Limit = 50
		st := listStatements(q)
		for what, p := range map[string]string{"page": plan(st.page, st.pageArgs), "total": plan(st.total, st.totalArgs)} {
			if !strings.HasPrefix(p, "SEARCH job_tags USING PRIMARY KEY (tag=?") || strings.Contains(p, "SCAN") || strings.Contains(p, "TEMP B-TREE") {
				t.Errorf("%s of %+v: plan\n%s\nwant a search of job_tags by tag first, no scan, no sort", what, q, p)
			}
		}
	}
}
