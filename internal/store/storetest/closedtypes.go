package storetest

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Claims take the jobs of the open types in dispatch order across types
// (priority, runAt, creation) however many jobs closed types have waiting
// ahead of them: a paused type's backlog is passed over, a limited type
// gives what its quota allows in its own order, jobs scheduled later are
// left, and the closed type's jobs come in order once it is open again.
func testClaimOrderPastClosedTypes(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	// The paused type's backlog is ahead of the other jobs of its
	// priority: enough of it that a backend may pick the open types' jobs
	// by type.
	if err := fillBacklog(ctx, s, "paused", 3000); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rnd := rand.New(rand.NewPCG(1, 2))
	var njs []domain.NewJob
	for i := range 120 {
		njs = append(njs, domain.NewJob{
			Type:     []string{"open", "limited", "paused", "other"}[i%4],
			Priority: rnd.IntN(3) - 1,
			RunAt:    now.Add(time.Duration(rnd.IntN(40)-30) * time.Second), // a quarter later than now
		})
	}
	created, err := s.CreateMany(ctx, njs)
	if err != nil {
		t.Fatal(err)
	}
	setControl(t, s, "paused", paused(true))
	setControl(t, s, "limited", limits(domain.TypeLimits{Concurrency: 5}))

	dispatch := func(a, b *domain.Job) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		if c := a.RunAt.Compare(b.RunAt); c != 0 {
			return c
		}
		return int(a.Seq - b.Seq)
	}
	// inOrder returns the jobs created runnable at now that keep keeps,
	// asked in dispatch order.
	inOrder := func(keep func(*domain.Job) bool) []*domain.Job {
		var out []*domain.Job
		for _, j := range created {
			if !j.RunAt.After(now) {
				out = append(out, j)
			}
		}
		slices.SortFunc(out, dispatch)
		return slices.DeleteFunc(out, func(j *domain.Job) bool { return !keep(j) })
	}
	claimAll := func() []*domain.Job {
		t.Helper()
		var out []*domain.Job
		for {
			jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 7, Now: now, LeaseUntil: now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if len(jobs) == 0 {
				return out
			}
			out = append(out, jobs...)
		}
	}

	limited := 0
	want := inOrder(func(j *domain.Job) bool {
		switch j.Type {
		case "paused":
			return false
		case "limited":
			limited++
			return limited <= 5
		}
		return true
	})
	if got := claimAll(); ids(got) != ids(want) {
		t.Fatalf("claims with a paused backlog ahead = %s, want %s", ids(got), ids(want))
	}

	setControl(t, s, "paused", paused(false))
	setControl(t, s, "limited", limits(domain.TypeLimits{}))
	// The rest: the paused backlog, the paused and limited types' jobs
	// left, none scheduled later.
	limited = 0
	left := inOrder(func(j *domain.Job) bool {
		switch j.Type {
		case "paused":
			return true
		case "limited":
			limited++
			return limited > 5
		}
		return false
	})
	got := claimAll()
	if len(got) != 3000+len(left) || !slices.IsSortedFunc(got, dispatch) {
		t.Fatalf("claims after resuming took %d jobs (sorted: %v), want %d in dispatch order", len(got), slices.IsSortedFunc(got, dispatch), 3000+len(left))
	}
	for _, j := range got {
		if j.RunAt.After(now) {
			t.Fatalf("claimed job %d scheduled at %v, later than %v", j.Seq, j.RunAt, now)
		}
	}
}
