package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/worker"
)

// claimCounter counts the claims the pool makes.
type claimCounter struct {
	*memory.Store
	claims atomic.Int32
}

func (s *claimCounter) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	s.claims.Add(1)
	return s.Store.Claim(ctx, req)
}

func limitsOf(l domain.TypeLimits) domain.TypeChange { return domain.TypeChange{Limits: &l} }

func pausedTo(p bool) domain.TypeChange { return domain.TypeChange{Paused: &p} }

// Jobs of a rate-limited type start as the tokens come, the dispatcher
// sleeping until each one (a claim per token, no polling in between).
func TestRateLimitedJobsStartAtTheirTokens(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		starts := make(chan time.Time, 8)
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			starts <- time.Now()
			return nil
		})
		var counter *claimCounter
		b := setup(t, worker.Options{Workers: 4, Default: h}, func(m *memory.Store) worker.Store {
			counter = &claimCounter{Store: m}
			return counter
		})
		ctx := context.Background()
		if _, err := b.mem.SetTypeControl(ctx, "api", limitsOf(domain.TypeLimits{RatePerSecond: 2, RateBurst: 1})); err != nil {
			t.Fatal(err)
		}
		stop := b.run(t)
		synctest.Wait()
		t0 := time.Now()
		before := counter.claims.Load()
		njs := make([]domain.NewJob, 4)
		for i := range njs {
			njs[i] = domain.NewJob{Type: "api"}
		}
		if _, err := b.mem.CreateMany(ctx, njs); err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			at := <-starts
			if want := t0.Add(time.Duration(i) * 500 * time.Millisecond); at.Sub(want).Abs() > time.Millisecond {
				t.Fatalf("job %d started at +%v, want +%v", i, at.Sub(t0), want.Sub(t0))
			}
		}
		synctest.Wait()
		// A claim per token and per finished job, give or take a couple:
		// a dispatcher polling the bucket would make many more.
		if n := counter.claims.Load() - before; n > 12 {
			t.Fatalf("%d claims for 4 jobs at 2/s: the dispatcher polls instead of sleeping until the next token", n)
		}
		stopped(t, stop)
	})
}

// A rate too small for a time.Duration of its wait (stored before rates
// had a least value) makes the dispatcher sleep, not claim in a loop: the
// next token is at most domain.MaxTokenWait away.
func TestTinyRateDispatcherSleeps(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var counter *claimCounter
		b := setup(t, worker.Options{Workers: 2, Default: noop}, func(m *memory.Store) worker.Store {
			counter = &claimCounter{Store: m}
			return counter
		})
		ctx := context.Background()
		if _, err := b.mem.SetTypeControl(ctx, "slow", limitsOf(domain.TypeLimits{RatePerSecond: 1e-12, RateBurst: 1})); err != nil {
			t.Fatal(err)
		}
		stop := b.run(t)
		first := b.createJob(t, domain.NewJob{Type: "slow"})
		second := b.createJob(t, domain.NewJob{Type: "slow"})
		synctest.Wait()
		before := counter.claims.Load()
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := counter.claims.Load() - before; n > 2 {
			t.Fatalf("%d claims in an hour with the next token far away: the dispatcher spins", n)
		}
		for id, want := range map[string]domain.Status{first: domain.StatusCompleted, second: domain.StatusPending} {
			if j, err := b.mem.Get(ctx, id); err != nil || j.Status != want {
				t.Fatalf("job %s = %v, %v; want %s", id, j, err, want)
			}
		}
		stopped(t, stop)
	})
}

// A paused type's jobs wait as pending; resuming wakes the dispatcher,
// which runs them.
func TestPausedTypeRunsOnceResumed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, worker.Options{Workers: 2, Default: noop}, nil)
		ctx := context.Background()
		if _, err := b.mem.SetTypeControl(ctx, "mail", pausedTo(true)); err != nil {
			t.Fatal(err)
		}
		stop := b.run(t)
		held := b.createJob(t, domain.NewJob{Type: "mail"})
		other := b.createJob(t, domain.NewJob{Type: "sms"})
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := b.get(t, held).Status; got != domain.StatusPending {
			t.Fatalf("paused type's job = %s, want pending", got)
		}
		if got := b.get(t, other).Status; got != domain.StatusCompleted {
			t.Fatalf("other type's job = %s, want completed", got)
		}
		if _, err := b.mem.SetTypeControl(ctx, "mail", pausedTo(false)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := b.get(t, held).Status; got != domain.StatusCompleted {
			t.Fatalf("job after resume = %s, want completed", got)
		}
		stopped(t, stop)
	})
}

// A new pending job of a paused type does not wake the dispatcher (it
// could not be claimed); one of a type that is not paused does.
func TestPausedTypesNewJobDoesNotWakeTheDispatcher(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var counter *claimCounter
		b := setup(t, worker.Options{Workers: 2, Default: noop}, func(m *memory.Store) worker.Store {
			counter = &claimCounter{Store: m}
			return counter
		})
		ctx := context.Background()
		if _, err := b.mem.SetTypeControl(ctx, "mail", pausedTo(true)); err != nil {
			t.Fatal(err)
		}
		stop := b.run(t)
		synctest.Wait()
		before := counter.claims.Load()
		held := b.createJob(t, domain.NewJob{Type: "mail"})
		synctest.Wait()
		if n := counter.claims.Load() - before; n != 0 {
			t.Fatalf("%d claims after a paused type's new job, want none", n)
		}
		other := b.createJob(t, domain.NewJob{Type: "sms"})
		synctest.Wait()
		if n := counter.claims.Load() - before; n == 0 {
			t.Fatal("no claim after a new job of a type that is not paused")
		}
		if got := b.get(t, other).Status; got != domain.StatusCompleted {
			t.Fatalf("other type's job = %s, want completed", got)
		}
		if got := b.get(t, held).Status; got != domain.StatusPending {
			t.Fatalf("paused type's job = %s, want pending", got)
		}
		stopped(t, stop)
	})
}

// A type at its concurrency limit holds back its own jobs only: another
// type's job runs meanwhile, and the held-back job starts when a place
// frees.
func TestConcurrencyLimitHoldsBackOnlyItsType(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			if j.Type == "api" {
				<-release
			}
			return nil
		})
		b := setup(t, worker.Options{Workers: 4, Default: h}, nil)
		ctx := context.Background()
		if _, err := b.mem.SetTypeControl(ctx, "api", limitsOf(domain.TypeLimits{Concurrency: 1})); err != nil {
			t.Fatal(err)
		}
		stop := b.run(t)
		first := b.createJob(t, domain.NewJob{Type: "api", Priority: 1})
		second := b.createJob(t, domain.NewJob{Type: "api", Priority: 1})
		other := b.createJob(t, domain.NewJob{Type: "sms"})
		synctest.Wait()
		if a, c, o := b.get(t, first).Status, b.get(t, second).Status, b.get(t, other).Status; a != domain.StatusProcessing || c != domain.StatusPending || o != domain.StatusCompleted {
			t.Fatalf("statuses = %s, %s, %s; want processing, pending (at the limit), completed", a, c, o)
		}
		release <- struct{}{}
		synctest.Wait()
		if got := b.get(t, second).Status; got != domain.StatusProcessing {
			t.Fatalf("second job once the first finished = %s, want processing", got)
		}
		close(release)
		stopped(t, stop)
	})
}
