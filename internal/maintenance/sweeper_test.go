package maintenance_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/maintenance"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The sweeper deletes, in batches, finished jobs older than the retention
// period, at once and then every Interval, and leaves the others alone.
func TestSweeperDeletesOldFinishedJobsOnly(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st := memory.New(nil)
		finished := make([]string, 0, 1500) // more than one delete batch
		for range cap(finished) {
			j, _ := st.Create(ctx, domain.NewJob{Type: "t"})
			finish(t, st, domain.StatusCompleted)
			finished = append(finished, j.ID)
		}
		pending, _ := st.Create(ctx, domain.NewJob{Type: "t"})
		s := &maintenance.Sweeper{Store: st, Retention: time.Minute, Interval: time.Hour, Logger: slog.New(slog.DiscardHandler)}
		runtest.Start(t, s)
		synctest.Wait() // the first sweep, at once: the jobs are too recent
		if stats, _ := st.Stats(ctx, store.StatsQuery{}); stats.Completed != len(finished) {
			t.Fatalf("%d of %d jobs left after a sweep within the retention period", stats.Completed, len(finished))
		}
		time.Sleep(time.Hour) // the next sweep
		synctest.Wait()
		for _, id := range finished {
			if _, err := st.Get(ctx, id); !errors.Is(err, domain.ErrNotFound) {
				t.Fatalf("finished job %s still there: %v", id, err)
			}
		}
		if _, err := st.Get(ctx, pending.ID); err != nil {
			t.Fatalf("pending job deleted: %v", err)
		}
	})
}

// finish claims the only pending job of st and finishes it as status.
func finish(t *testing.T, st store.Store, status domain.Status) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	jobs, err := st.Claim(ctx, store.ClaimRequest{Owner: "test", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim = %v, %v", jobs, err)
	}
	if _, err := st.Finish(ctx, store.LeaseOf(jobs[0], "test"), status, "x"); err != nil {
		t.Fatal(err)
	}
}

func TestSweeperKeepsRecentJobs(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st := memory.New(nil)
		j, _ := st.Create(ctx, domain.NewJob{Type: "t"})
		finish(t, st, domain.StatusFailed)
		runtest.Start(t, &maintenance.Sweeper{Store: st, Retention: time.Hour, Interval: time.Minute, Logger: slog.New(slog.DiscardHandler)})
		time.Sleep(59 * time.Minute) // many sweeps, all within the retention period
		synctest.Wait()
		if _, err := st.Get(ctx, j.ID); err != nil {
			t.Fatalf("a job that finished within the retention period was deleted: %v", err)
		}
	})
}
