package retention_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/retention"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSweeperDeletesOldFinishedJobsOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New(nil)
	finished := make([]string, 0, 1500) // more than one delete batch
	for range cap(finished) {
		j, _ := st.Create(ctx, domain.NewJob{Type: "t"})
		finish(t, st, domain.StatusCompleted)
		finished = append(finished, j.ID)
	}
	pending, _ := st.Create(ctx, domain.NewJob{Type: "t"})

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	s := &retention.Sweeper{Store: st, Retention: time.Millisecond, Interval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	go func() {
		defer close(done)
		s.Run(runCtx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, _ := st.Stats(ctx, ""); st.Completed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("finished jobs not deleted within 10s")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	stop()
	<-done // Run returns when its context ends
	for _, id := range finished {
		if _, err := st.Get(ctx, id); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("finished job %s still there: %v", id, err)
		}
	}
	if _, err := st.Get(ctx, pending.ID); err != nil {
		t.Fatalf("pending job deleted: %v", err)
	}
}

// swept signals each DeleteFinished call.
type swept struct {
	*memory.Store
	calls chan struct{}
}

func (s swept) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := s.Store.DeleteFinished(ctx, before, limit)
	select {
	case s.calls <- struct{}{}:
	default:
	}
	return n, err
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
	ctx := context.Background()
	st := swept{Store: memory.New(nil), calls: make(chan struct{}, 1)}
	j, _ := st.Create(ctx, domain.NewJob{Type: "t"})
	finish(t, st, domain.StatusFailed)
	s := &retention.Sweeper{Store: st, Retention: time.Hour, Interval: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Run(runCtx) }()
	select {
	case <-st.calls: // the first sweep, which runs at once, has happened
	case <-time.After(10 * time.Second):
		t.Fatal("no sweep within 10s")
	}
	stop()
	<-done
	if _, err := st.Get(ctx, j.ID); err != nil {
		t.Fatalf("a job that finished within the retention period was deleted: %v", err)
	}
}
