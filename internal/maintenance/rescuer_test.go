package maintenance_test

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/maintenance"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// The rescuer gives back a job whose lease expired at its first pass after
// the expiry, and leaves a job whose lease stands alone.
func TestRescuerGivesBackExpiredLeases(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st := memory.New(nil)
		lost, _ := st.Create(ctx, domain.NewJob{Type: "t", MaxAttempts: 2})
		now := time.Now()
		if got, err := st.Claim(ctx, store.ClaimRequest{Owner: "dead", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)}); err != nil || len(got) != 1 {
			t.Fatalf("claim as the dead worker: %v, %v", got, err)
		}
		alive, _ := st.Create(ctx, domain.NewJob{Type: "t"})
		if got, err := st.Claim(ctx, store.ClaimRequest{Owner: "alive", Limit: 1, Now: now, LeaseUntil: now.Add(time.Hour)}); err != nil || len(got) != 1 {
			t.Fatalf("claim as the live worker: %v, %v", got, err)
		}
		runtest.Start(t, &maintenance.Rescuer{Store: st, Interval: 30 * time.Second, Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)})

		time.Sleep(45 * time.Second) // one pass, before the lease expired
		synctest.Wait()
		if got, _ := st.Get(ctx, lost.ID); got.Status != domain.StatusProcessing {
			t.Fatalf("job = %s before its lease expired; want still processing", got.Status)
		}
		time.Sleep(50 * time.Second) // the pass at 90 s, after the expiry at 60 s
		synctest.Wait()
		got, _ := st.Get(ctx, lost.ID)
		if got.Status != domain.StatusPending || len(got.Errors) != 1 || got.Errors[0].Message != store.WorkerLost {
			t.Fatalf("job = %s, errors %+v; want pending again after a worker-lost failure", got.Status, got.Errors)
		}
		if a, _ := st.Get(ctx, alive.ID); a.Status != domain.StatusProcessing {
			t.Fatalf("job with a live lease = %s; want still processing", a.Status)
		}
	})
}
