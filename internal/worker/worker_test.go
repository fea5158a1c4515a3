package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/maintenance"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/jobwatch"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type bundle struct {
	mem  *memory.Store
	pool *worker.Pool
	jobs *jobwatch.Watcher // every change the store published
}

// setup wires a memory store to a pool the way the server does: the store
// publishes to the pool, to a watcher and to extra publishers. wrap, when
// not nil, puts a test double between the pool and the store.
func setup(t *testing.T, opts worker.Options, wrap func(*memory.Store) worker.Store, extra ...store.Publisher) *bundle {
	t.Helper()
	b := &bundle{jobs: jobwatch.New()}
	inbox := worker.NewInbox()
	b.mem = memory.New(append(store.Publishers{inbox, b.jobs}, extra...))
	var st worker.Store = b.mem
	if wrap != nil {
		st = wrap(b.mem)
	}
	b.pool = worker.New(st, inbox, opts)
	return b
}

// run runs the pool until the returned stop is called (or the test ends,
// which then fails if Run returns an error); stop cancels Run's context
// and returns Run's error.
func (b *bundle) run(t *testing.T) (stop func() error) {
	t.Helper()
	return runtest.Start(t, b.pool)
}

// stopped stops the pool and fails the test if Run reports an error.
func stopped(t *testing.T, stop func() error) {
	t.Helper()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func (b *bundle) create(t *testing.T, n int, payload string) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		j, err := b.mem.Create(context.Background(), domain.NewJob{Type: "t", Payload: []byte(payload)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = j.ID
	}
	return ids
}

func (b *bundle) createJob(t *testing.T, nj domain.NewJob) string {
	t.Helper()
	j, err := b.mem.Create(context.Background(), nj)
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func (b *bundle) get(t *testing.T, id string) *domain.Job {
	t.Helper()
	j, err := b.mem.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

var noop = worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })

func TestEveryJobRunsExactlyOnce(t *testing.T) {
	t.Parallel()
	const jobs = 10000
	var mu sync.Mutex
	runs := map[string]int{}
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		mu.Lock()
		runs[j.ID]++
		mu.Unlock()
		return nil
	})
	b := setup(t, worker.Options{Workers: 8, QueueCapacity: 100, Default: h}, nil)
	stop := b.run(t)
	// Half created before and half while the workers run.
	ids := b.create(t, jobs/2, "")
	ids = append(ids, b.create(t, jobs/2, "")...)
	final := b.jobs.WaitFinal(t, ids...)
	stopped(t, stop)

	mu.Lock()
	defer mu.Unlock()
	for i, id := range ids {
		if runs[id] != 1 {
			t.Fatalf("job %s ran %d times, want once", id, runs[id])
		}
		if final[i].Status != domain.StatusCompleted {
			t.Fatalf("job %s is %s, want completed", id, final[i].Status)
		}
	}
}

func TestFullQueueLosesNoJob(t *testing.T) {
	t.Parallel()
	const jobs = 1000
	release := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		<-release // hold the only worker until every job is stored
		return nil
	})
	b := setup(t, worker.Options{Workers: 1, QueueCapacity: 1, Default: h}, nil)
	stop := b.run(t)
	ids := b.create(t, jobs, "")
	close(release)
	for _, j := range b.jobs.WaitFinal(t, ids...) {
		if j.Status != domain.StatusCompleted {
			t.Fatalf("job %s is %q, want completed", j.ID, j.Status)
		}
	}
	stopped(t, stop)
}

func TestJobsStoredBeforeRunRun(t *testing.T) {
	t.Parallel()
	b := setup(t, worker.Options{Default: noop}, nil)
	ids := b.create(t, 5, "")
	stop := b.run(t)
	b.jobs.WaitFinal(t, ids...)
	stopped(t, stop)
}

func TestFailuresAndPanicsFailTheJob(t *testing.T) {
	t.Parallel()
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		switch string(j.Payload) {
		case `"panic"`:
			panic("handler bug")
		case `"fail"`:
			return errors.New("no such mailbox")
		}
		return nil
	})
	b := setup(t, worker.Options{Workers: 2, Default: h}, nil)
	stop := b.run(t)
	panicked := b.create(t, 1, `"panic"`)[0]
	failed := b.create(t, 1, `"fail"`)[0]
	ok := b.create(t, 1, `"ok"`)[0]
	b.jobs.WaitFinal(t, panicked, failed, ok)
	stopped(t, stop)
	for id, want := range map[string]string{panicked: "handler panicked: handler bug", failed: "no such mailbox", ok: ""} {
		j := b.get(t, id)
		wantStatus := domain.StatusFailed
		if want == "" {
			wantStatus = domain.StatusCompleted
		}
		if j.Status != wantStatus || j.Error != want || j.Attempts != 1 {
			t.Fatalf("job %s = %s %q attempts %d, want %s %q attempts 1", string(j.Payload), j.Status, j.Error, j.Attempts, wantStatus, want)
		}
	}
}

func TestHandlersByType(t *testing.T) {
	t.Parallel()
	var got sync.Map
	mk := func(name string) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error { got.Store(j.ID, name); return nil })
	}
	b := setup(t, worker.Options{Handlers: map[string]worker.Handler{"email": mk("email")}, Default: mk("default")}, nil)
	stop := b.run(t)
	e := b.createJob(t, domain.NewJob{Type: "email"})
	o := b.createJob(t, domain.NewJob{Type: "other"})
	b.jobs.WaitFinal(t, e, o)
	stopped(t, stop)
	if v, _ := got.Load(e); v != "email" {
		t.Fatalf("email job ran on %v", v)
	}
	if v, _ := got.Load(o); v != "default" {
		t.Fatalf("other job ran on %v", v)
	}
}

func TestStopLetsRunningJobsFinish(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	finish := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		close(started)
		<-finish
		return nil
	})
	b := setup(t, worker.Options{Default: h}, nil)
	stop := b.run(t)
	id := b.create(t, 1, "")[0]
	waiting := b.create(t, 1, "")[0]
	<-started
	done := make(chan error)
	go func() { done <- stop() }()
	<-b.pool.Stopping() // release the running job only once claiming has stopped
	close(finish)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if j := b.get(t, id); j.Status != domain.StatusCompleted {
		t.Fatalf("running job is %s after a soft stop, want completed", j.Status)
	}
	if j := b.get(t, waiting); j.Status != domain.StatusPending || j.Attempts != 0 {
		t.Fatalf("queued job is %s (attempts %d) after the stop, want pending and never started", j.Status, j.Attempts)
	}
}

// Once the grace period is over, a running job is cancelled and goes back
// to pending, its attempt counted; a pool run later picks it up.
func TestStopAfterTheGracePeriodReturnsJobToPending(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		var cancelledAt time.Time
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			close(started)
			<-ctx.Done()
			cancelledAt = time.Now()
			return ctx.Err()
		})
		b := setup(t, worker.Options{Default: h, ShutdownGrace: 3 * time.Second}, nil)
		stop := b.run(t)
		id := b.create(t, 1, "")[0]
		<-started
		stopAt := time.Now()
		err := stop()
		if !errors.Is(err, worker.ErrInterrupted) {
			t.Fatalf("Run = %v, want ErrInterrupted", err)
		}
		if d := cancelledAt.Sub(stopAt); d != 3*time.Second {
			t.Fatalf("handler cancelled %v after the stop, want the grace period (3s)", d)
		}
		j := b.get(t, id)
		if j.Status != domain.StatusPending || j.Attempts != 1 || j.Error != "" {
			t.Fatalf("interrupted job = %s attempts %d error %q, want pending, attempt counted, no error", j.Status, j.Attempts, j.Error)
		}
		stopAgain := runtest.Start(t, worker.New(b.mem, nil, worker.Options{Default: noop}))
		synctest.Wait()
		if j := b.get(t, id); j.Status != domain.StatusCompleted {
			t.Fatalf("interrupted job = %s under a new pool, want completed", j.Status)
		}
		if err := stopAgain(); err != nil {
			t.Fatal(err)
		}
	})
}

// With a short grace period every running job is interrupted: its handler
// sees its context cancelled, the job goes back to pending with its
// attempt counted, and Run says how many were interrupted.
func TestShortShutdownGraceInterruptsRunningJobs(t *testing.T) {
	t.Parallel()
	const workers = 2
	started := make(chan struct{}, workers)
	causes := make(chan error, workers)
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		started <- struct{}{}
		<-ctx.Done()
		causes <- ctx.Err()
		return ctx.Err()
	})
	b := setup(t, worker.Options{Workers: workers, Default: h, ShutdownGrace: time.Millisecond}, nil)
	stop := b.run(t)
	ids := b.create(t, workers, "")
	for range workers {
		<-started
	}
	if err := stop(); !errors.Is(err, worker.ErrInterrupted) || !strings.Contains(err.Error(), fmt.Sprintf("%d running job(s)", workers)) {
		t.Fatalf("Run = %v, want ErrInterrupted counting %d jobs", err, workers)
	}
	for range workers {
		if err := <-causes; !errors.Is(err, context.Canceled) {
			t.Fatalf("handler's context ended with %v, want context.Canceled", err)
		}
	}
	for _, id := range ids {
		if j := b.get(t, id); j.Status != domain.StatusPending || j.Attempts != 1 || j.Error != "" {
			t.Fatalf("interrupted job = %s attempts %d error %q, want pending, attempt counted, no error", j.Status, j.Attempts, j.Error)
		}
	}
}

func TestRunTwiceFails(t *testing.T) {
	t.Parallel()
	b := setup(t, worker.Options{}, nil)
	stopped(t, b.run(t))
	if err := b.pool.Run(context.Background()); err == nil {
		t.Fatal("a second Run returned nil")
	}
}

// BenchmarkThroughput measures jobs per second from Create to COMPLETED
// with a no-op handler, in process: memory store, broker and pool wired as
// in the server, without HTTP. Each worker count runs with metrics off and
// on (the store wrapped and the pool recording, as the server does by
// default): the two figures of one run show what metrics cost.
func BenchmarkThroughput(b *testing.B) {
	for _, workers := range []int{1, 8} {
		for _, metricsOn := range []bool{false, true} {
			name := fmt.Sprintf("workers=%d/metrics=off", workers)
			if metricsOn {
				name = fmt.Sprintf("workers=%d/metrics=on", workers)
			}
			b.Run(name, func(b *testing.B) { benchThroughput(b, workers, metricsOn) })
		}
	}
}

func benchThroughput(b *testing.B, workers int, metricsOn bool) {
	var completed atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	counter := store.PublisherFunc(func(j *domain.Job) {
		if j.Status == domain.StatusCompleted && completed.Add(1) == target {
			close(done)
		}
	})
	events, stopEvents := brokertest.Run(b, broker.Options{})
	defer stopEvents()
	inbox := worker.NewInbox()
	var m *metrics.Metrics // nil: off
	if metricsOn {
		m = metrics.New(metrics.Options{Backend: "memory"})
	}
	st := m.Store(memory.New(store.Publishers{events, inbox, counter}))
	stop := runtest.Start(b, worker.New(st, inbox, worker.Options{Workers: workers, Default: noop, Metrics: m}))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Create(context.Background(), domain.NewJob{Type: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	if err := stop(); err != nil {
		b.Fatal(err)
	}
}

// A running job's cancellation, asked for one job or in a bulk change,
// cancels its handler's context and ends the job cancelled.
func TestCancelRunningJob(t *testing.T) {
	t.Parallel()
	for name, cancel := range map[string]func(st *memory.Store, id string) error{
		"cancel": func(st *memory.Store, id string) error {
			_, err := st.Cancel(context.Background(), id)
			return err
		},
		"cancel jobs": func(st *memory.Store, id string) error {
			jobs, err := st.CancelJobs(context.Background(), []string{id}, "")
			if err == nil && (len(jobs) != 1 || !jobs[0].CancelRequested) {
				err = fmt.Errorf("cancel jobs changed %d jobs, want the running one asked to cancel", len(jobs))
			}
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			started := make(chan string, 1)
			returned := make(chan error, 1)
			h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
				started <- j.ID
				<-ctx.Done()
				returned <- ctx.Err()
				return ctx.Err()
			})
			b := setup(t, worker.Options{Default: h}, nil)
			stop := b.run(t)
			id := b.create(t, 1, "")[0]
			<-started
			if err := cancel(b.mem, id); err != nil {
				t.Fatal(err)
			}
			if err := <-returned; !errors.Is(err, context.Canceled) {
				t.Fatalf("handler saw %v, want context.Canceled", err)
			}
			j := b.jobs.WaitFinal(t, id)[0]
			stopped(t, stop)
			if j.Status != domain.StatusCancelled || j.CancelRequested || j.FinishedAt == nil || len(j.Errors) != 0 {
				t.Fatalf("cancelled job = %+v, want cancelled, finished, no error recorded", j)
			}
		})
	}
}

func TestCancelledJobThatCompletesAnywayIsCancelled(t *testing.T) {
	t.Parallel()
	started := make(chan string, 1)
	proceed := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		started <- j.ID
		<-proceed // ignores its context, then reports success
		return nil
	})
	b := setup(t, worker.Options{Default: h}, nil)
	stop := b.run(t)
	id := b.create(t, 1, "")[0]
	<-started
	if _, err := b.mem.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if j := b.jobs.WaitFinal(t, id)[0]; j.Status != domain.StatusCancelled {
		t.Fatalf("job is %s, want cancelled: cancellation was requested before the handler returned", j.Status)
	}
	stopped(t, stop)
}

// slowRetryingStore retries a job right after its first failure and then
// holds the failing worker for a moment (a slow store write): the job is
// pending again while the worker that failed it has not left yet.
type slowRetryingStore struct {
	*memory.Store
	once atomic.Bool
}

func (s *slowRetryingStore) Fail(ctx context.Context, l store.Lease, msg string, retryAt time.Time) (*domain.Job, error) {
	j, err := s.Store.Fail(ctx, l, msg, retryAt)
	if err == nil && j.Status == domain.StatusFailed && s.once.CompareAndSwap(false, true) {
		if _, err := s.Store.Retry(ctx, l.JobID); err != nil {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond) // the slow write (synctest's clock)
	}
	return j, err
}

func TestJobRetriedWhileItsWorkerLeavesIsRun(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		b := setup(t, worker.Options{Workers: 2, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error {
			if calls.Add(1) == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		})}, func(m *memory.Store) worker.Store { return &slowRetryingStore{Store: m} })
		stop := b.run(t)
		id := b.createJob(t, domain.NewJob{Type: "t"})
		b.jobs.WaitStatus(t, id, domain.StatusCompleted)
		stopped(t, stop)
	})
}

// flakyClaimStore fails Claim while fail > 0.
type flakyClaimStore struct {
	*memory.Store
	fail atomic.Int32
}

func (s *flakyClaimStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	if s.fail.Add(-1) >= 0 {
		return nil, errors.New("transient store error")
	}
	return s.Store.Claim(ctx, req)
}

// A wake-up that meets a failing store is not lost: the dispatcher retries
// after its backoff (100 ms first).
func TestDispatcherRetriesAfterStoreError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var st *flakyClaimStore
		b := setup(t, worker.Options{Default: noop}, func(m *memory.Store) worker.Store {
			st = &flakyClaimStore{Store: m}
			return st
		})
		stop := b.run(t)
		synctest.Wait() // the dispatcher's first look found nothing; it now sleeps
		st.fail.Store(1)
		id := b.create(t, 1, "")[0]
		synctest.Wait()
		if j := b.get(t, id); j.Status != domain.StatusPending {
			t.Fatalf("job = %s after the failed claim, want pending", j.Status)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if j := b.get(t, id); j.Status != domain.StatusCompleted {
			t.Fatalf("job = %s after the dispatcher's backoff, want completed", j.Status)
		}
		stopped(t, stop)
	})
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			<-ctx.Done()
			return ctx.Err()
		})
		b := setup(t, worker.Options{Workers: 2, Default: h, JobTimeout: 40 * time.Millisecond}, nil)
		stop := b.run(t)
		own := b.createJob(t, domain.NewJob{Type: "t", Timeout: 30 * time.Millisecond})
		dflt := b.create(t, 1, "")[0]
		b.jobs.WaitFinal(t, own, dflt)
		stopped(t, stop)
		for id, want := range map[string]string{own: "attempt timed out after 30ms", dflt: "attempt timed out after 40ms"} {
			if j := b.get(t, id); j.Status != domain.StatusFailed || j.Error != want {
				t.Errorf("job = %s %q, want failed %q", j.Status, j.Error, want)
			}
		}
	})
}

func TestHandlerIgnoringItsContextDoesNotHoldTheJob(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		unblock := make(chan struct{})
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			<-unblock // ignores ctx
			return nil
		})
		b := setup(t, worker.Options{Default: h, JobTimeout: 20 * time.Millisecond, HandlerGrace: 20 * time.Millisecond}, nil)
		stop := b.run(t)
		id := b.create(t, 1, "")[0]
		j := b.jobs.WaitFinal(t, id)[0]
		if j.Status != domain.StatusFailed || !strings.Contains(j.Error, "timed out after 20ms") {
			t.Fatalf("job = %s %q, want failed for timing out", j.Status, j.Error)
		}
		if d := j.FinishedAt.Sub(*j.StartedAt); d < 40*time.Millisecond {
			t.Fatalf("attempt ended %v after it started, want the timeout plus the grace (40ms)", d)
		}
		close(unblock) // the abandoned handler returns; Run then finds it gone
		stopped(t, stop)
	})
}

func TestProgressIsCoalescedAndResultStored(t *testing.T) {
	t.Parallel()
	var progressEvents atomic.Int32
	counter := store.PublisherFunc(func(j *domain.Job) {
		if j.Status == domain.StatusProcessing && j.Progress != nil {
			progressEvents.Add(1)
		}
	})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		for i := 0; i <= 1000; i++ {
			if err := worker.ReportProgress(ctx, i/10); err != nil {
				return err
			}
		}
		if err := worker.ReportProgress(ctx, 101); !errors.Is(err, domain.ErrInvalid) {
			return fmt.Errorf("progress 101 accepted: %v", err)
		}
		return worker.SetResult(ctx, json.RawMessage(`{"sent": 3}`))
	})
	b := setup(t, worker.Options{Default: h, ProgressInterval: time.Hour}, nil, counter)
	stop := b.run(t)
	id := b.create(t, 1, "")[0]
	j := b.jobs.WaitFinal(t, id)[0]
	stopped(t, stop)
	if j.Status != domain.StatusCompleted || string(j.Result) != `{"sent":3}` {
		t.Fatalf("job = %s result %s, want completed with the result", j.Status, j.Result)
	}
	if j.Progress == nil || *j.Progress != 100 {
		t.Fatalf("progress = %v, want the last report (100)", j.Progress)
	}
	// 1001 reports within one interval: the first is written at once, the
	// last before the outcome, nothing in between.
	if n := progressEvents.Load(); n != 2 {
		t.Fatalf("%d progress events for 1001 reports, want 2", n)
	}
	if err := worker.ReportProgress(context.Background(), 5); !errors.Is(err, worker.ErrNotInHandler) {
		t.Fatalf("ReportProgress outside a handler: %v", err)
	}
}

func TestHeldBackProgressIsWrittenAtTheEndOfTheInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		reported := make(chan struct{})
		finish := make(chan struct{})
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			_ = worker.ReportProgress(ctx, 10)
			_ = worker.ReportProgress(ctx, 90) // within the interval: held back
			close(reported)
			<-finish
			return nil
		})
		b := setup(t, worker.Options{Default: h, ProgressInterval: 30 * time.Millisecond}, nil)
		stop := b.run(t)
		id := b.create(t, 1, "")[0]
		<-reported
		synctest.Wait()
		if j := b.get(t, id); j.Progress == nil || *j.Progress != 10 {
			t.Fatalf("progress = %v within the interval, want 10 (90 held back)", j.Progress)
		}
		time.Sleep(30 * time.Millisecond) // the interval ends; the handler still runs
		synctest.Wait()
		if j := b.get(t, id); j.Status != domain.StatusProcessing || j.Progress == nil || *j.Progress != 90 {
			t.Fatalf("job = %s progress %v at the end of the interval, want processing at 90", j.Status, j.Progress)
		}
		close(finish)
		b.jobs.WaitStatus(t, id, domain.StatusCompleted)
		stopped(t, stop)
	})
}

func TestFailedAttemptsAreRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			switch string(j.Payload) {
			case `"permanent"`:
				return worker.Permanent(errors.New("410 gone"))
			}
			if calls.Add(1) < 3 {
				return fmt.Errorf("attempt %d failed", j.Attempts)
			}
			return nil
		})
		b := setup(t, worker.Options{Default: h, RetryBackoff: 20 * time.Millisecond, RetryBackoffMax: time.Second}, nil)
		stop := b.run(t)
		retried := b.createJob(t, domain.NewJob{Type: "t", MaxAttempts: 3})
		permanent := b.createJob(t, domain.NewJob{Type: "t", MaxAttempts: 3, Payload: json.RawMessage(`"permanent"`)})
		b.jobs.WaitFinal(t, retried, permanent)
		stopped(t, stop)

		j := b.get(t, retried)
		if j.Status != domain.StatusCompleted || j.Attempts != 3 || len(j.Errors) != 2 || j.Errors[0].Message != "attempt 1 failed" {
			t.Fatalf("retried job = %s attempts %d errors %+v, want completed on attempt 3 after 2 failures", j.Status, j.Attempts, j.Errors)
		}
		// Backoff: 20 ms then 40 ms, each less a random part of up to half.
		if gap := j.Errors[1].At.Sub(j.Errors[0].At); gap < 10*time.Millisecond || gap > 20*time.Millisecond {
			t.Fatalf("second failure %v after the first, want the first backoff (10-20ms)", gap)
		}
		if gap := j.FinishedAt.Sub(j.Errors[1].At); gap < 20*time.Millisecond || gap > 40*time.Millisecond {
			t.Fatalf("third attempt ended %v after the second failure, want the doubled backoff (20-40ms)", gap)
		}
		p := b.get(t, permanent)
		if p.Status != domain.StatusFailed || p.Attempts != 1 || p.Error != "410 gone" {
			t.Fatalf("permanent failure = %s attempts %d %q, want failed after 1 attempt", p.Status, p.Attempts, p.Error)
		}
	})
}

func TestScheduledJobRunsWhenDue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		started := make(chan time.Time, 1)
		h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			started <- time.Now()
			return nil
		})
		b := setup(t, worker.Options{Default: h}, nil)
		stop := b.run(t)
		runAt := time.Now().Add(150 * time.Millisecond)
		b.createJob(t, domain.NewJob{Type: "t", RunAt: runAt})
		if at := <-started; at.Before(runAt) || at.Sub(runAt) > time.Millisecond {
			t.Fatalf("ran %v after its runAt, want when due", at.Sub(runAt))
		}
		stopped(t, stop)
	})
}

func TestHigherPriorityRunsFirst(t *testing.T) {
	t.Parallel()
	var order []string
	var mu sync.Mutex
	hold := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		if j.Type == "hold" {
			<-hold
			return nil
		}
		mu.Lock()
		order = append(order, j.Type)
		mu.Unlock()
		return nil
	})
	b := setup(t, worker.Options{Default: h, Workers: 1, QueueCapacity: 1}, nil)
	stop := b.run(t)
	// The only worker is busy: the jobs created next wait in the store,
	// where priority decides.
	b.jobs.WaitStatus(t, b.createJob(t, domain.NewJob{Type: "hold"}), domain.StatusProcessing)
	var ids []string
	for _, nj := range []domain.NewJob{{Type: "low", Priority: -1}, {Type: "normal"}, {Type: "high", Priority: 5}} {
		ids = append(ids, b.createJob(t, nj))
	}
	close(hold)
	b.jobs.WaitFinal(t, ids...)
	stopped(t, stop)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != "[high normal low]" {
		t.Fatalf("order %v, want by priority", order)
	}
}

// BenchmarkScheduledDispatchLatency measures how late a scheduled job
// starts: from its runAt to the moment its handler runs, on an idle pool.
// Target: 50 ms.
func BenchmarkScheduledDispatchLatency(b *testing.B) {
	started := make(chan time.Time, 1)
	inbox := worker.NewInbox()
	st := memory.New(inbox)
	runtest.Start(b, worker.New(st, inbox, worker.Options{Default: worker.HandlerFunc(func(context.Context, *domain.Job) error {
		started <- time.Now()
		return nil
	})}))
	var worst, total time.Duration
	for b.Loop() {
		runAt := time.Now().Add(2 * time.Millisecond)
		if _, err := st.Create(context.Background(), domain.NewJob{Type: "t", RunAt: runAt}); err != nil {
			b.Fatal(err)
		}
		late := (<-started).Sub(runAt)
		total += late
		worst = max(worst, late)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-late/op")
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-late-max")
}

// BenchmarkRetryThroughput measures jobs per second to COMPLETED when every
// job fails its first attempt and succeeds on the retry (no-op handler,
// backoff of a microsecond).
func BenchmarkRetryThroughput(b *testing.B) {
	var completed atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	inbox := worker.NewInbox()
	st := memory.New(store.Publishers{inbox, store.PublisherFunc(func(j *domain.Job) {
		if j.Status == domain.StatusCompleted && completed.Add(1) == target {
			close(done)
		}
	})})
	pool := worker.New(st, inbox, worker.Options{Workers: 8, RetryBackoff: time.Microsecond, RetryBackoffMax: time.Microsecond,
		Default: worker.HandlerFunc(func(_ context.Context, j *domain.Job) error {
			if j.Attempts == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		})})
	runtest.Start(b, pool)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Create(context.Background(), domain.NewJob{Type: "t", MaxAttempts: 2}); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// countingStore counts heartbeats and rescue passes.
type countingStore struct {
	*memory.Store
	heartbeats, rescues atomic.Int32
}

func (s *countingStore) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	s.heartbeats.Add(1)
	return s.Store.Heartbeat(ctx, owner, ids, until)
}

func (s *countingStore) RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error) {
	s.rescues.Add(1)
	return s.Store.RescueExpired(ctx, now, limit)
}

// rescue runs a rescuer over st, as the server does beside the pool, until
// the test ends.
func rescue(t *testing.T, st maintenance.RescuerStore, every time.Duration) {
	t.Helper()
	runtest.Start(t, &maintenance.Rescuer{Store: st, Interval: every})
}

// A job running for many lease durations keeps its lease: the rescuer,
// passing all the while, never takes it away.
func TestHeartbeatKeepsTheLeaseOfALongJob(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var calls atomic.Int32
		var st *countingStore
		b := setup(t, worker.Options{LeaseDuration: 150 * time.Millisecond,
			Default: worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
				calls.Add(1)
				<-release
				return nil
			})}, func(m *memory.Store) worker.Store {
			st = &countingStore{Store: m}
			return st
		})
		rescue(t, st, 10*time.Millisecond)
		stop := b.run(t)
		id := b.create(t, 1, "")[0]
		time.Sleep(400 * time.Millisecond) // eight heartbeats: more than two lease durations
		synctest.Wait()
		got := b.get(t, id)
		if got.Status != domain.StatusProcessing || got.Attempts != 1 || st.heartbeats.Load() != 8 || st.rescues.Load() < 40 {
			t.Fatalf("after %d heartbeats and %d rescue passes: %s, attempt %d; want 8 heartbeats, still processing its first attempt", st.heartbeats.Load(), st.rescues.Load(), got.Status, got.Attempts)
		}
		close(release)
		got = b.jobs.WaitFinal(t, id)[0]
		stopped(t, stop)
		if got.Status != domain.StatusCompleted || got.Attempts != 1 || calls.Load() != 1 {
			t.Fatalf("job = %s, attempt %d, %d handler calls; want completed by its only run", got.Status, got.Attempts, calls.Load())
		}
	})
}

// A job claimed by a worker that died (its lease expired) is rescued and
// run again here.
func TestRescuerRunsTheJobsOfALostWorker(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, worker.Options{Default: noop}, nil)
		ctx := context.Background()
		id := b.createJob(t, domain.NewJob{Type: "t", MaxAttempts: 2})
		now := time.Now()
		if got, err := b.mem.Claim(ctx, store.ClaimRequest{Owner: "dead", Limit: 1, Now: now, LeaseUntil: now.Add(20 * time.Millisecond)}); err != nil || len(got) != 1 {
			t.Fatalf("claim as the dead worker: %v, %v", got, err)
		}
		rescue(t, b.mem, 10*time.Millisecond)
		stop := b.run(t)
		got := b.jobs.WaitFinal(t, id)[0]
		stopped(t, stop)
		if got.Status != domain.StatusCompleted || got.Attempts != 2 || len(got.Errors) != 1 || got.Errors[0].Message != store.WorkerLost {
			t.Fatalf("job = %+v; want completed on attempt 2 after a worker-lost failure", got)
		}
	})
}

// A worker whose lease was taken away while its handler ran (another
// process's rescuer decided it was lost) cannot overwrite what happened
// since: its outcome is dropped and the job runs again.
func TestWorkerThatLostItsLeaseCannotRecordItsOutcome(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var b *bundle
	b = setup(t, worker.Options{Default: worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		if calls.Add(1) == 1 {
			// Another process's rescuer, far in the future: this lease expired.
			if got, err := b.mem.RescueExpired(ctx, time.Now().Add(time.Hour), 10); err != nil || len(got) != 1 {
				return fmt.Errorf("rescue: %v, %v", got, err)
			}
			return errors.New("this failure must not be recorded")
		}
		return nil
	})}, nil)
	id := b.createJob(t, domain.NewJob{Type: "t", MaxAttempts: 3})
	stop := b.run(t)
	got := b.jobs.WaitFinal(t, id)[0]
	stopped(t, stop)
	if got.Status != domain.StatusCompleted || got.Attempts != 2 || len(got.Errors) != 1 || got.Errors[0].Message != store.WorkerLost || calls.Load() != 2 {
		t.Fatalf("job = %+v after %d runs; want completed on attempt 2, only the rescue in its errors", got, calls.Load())
	}
}

// committingStore's Claim commits even when its caller's context ends
// meanwhile (as a database statement can) and holds each claim until
// proceed is closed.
type committingStore struct {
	*memory.Store
	started chan struct{}
	proceed chan struct{}
	once    sync.Once
}

func (s *committingStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	s.once.Do(func() { close(s.started) })
	<-s.proceed
	jobs, err := s.Store.Claim(context.WithoutCancel(ctx), req)
	if ctx.Err() != nil {
		return nil, ctx.Err() // committed, but the caller hears of a cancellation
	}
	return jobs, err
}

// A claim in flight when the stop begins is not abandoned: its jobs run
// (claimed before the stop, subscribers saw them processing) or are
// released to pending rather than stranded as processing.
func TestStopDuringAClaimStrandsNoJob(t *testing.T) {
	t.Parallel()
	var st *committingStore
	b := setup(t, worker.Options{Workers: 4, Default: noop}, func(m *memory.Store) worker.Store {
		st = &committingStore{Store: m, started: make(chan struct{}), proceed: make(chan struct{})}
		return st
	})
	b.create(t, 3, "")
	stop := b.run(t)
	<-st.started
	stoppedc := make(chan error, 1)
	go func() { stoppedc <- stop() }()
	<-b.pool.Stopping()
	close(st.proceed)
	if err := <-stoppedc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	stats, err := b.mem.Stats(context.Background(), store.StatsQuery{})
	if err != nil || stats.Processing != 0 || stats.Pending+stats.Completed != 3 {
		t.Fatalf("after the stop: %+v, %v; want no job left processing", stats, err)
	}
}

// failingCompleteStore cannot record the completion of a first attempt,
// except for the jobs in ok.
type failingCompleteStore struct {
	*memory.Store
	ok sync.Map
}

func (s *failingCompleteStore) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	if _, ok := s.ok.Load(l.JobID); !ok && l.Attempt == 1 {
		return nil, errors.New("store unreachable")
	}
	return s.Store.Complete(ctx, l, result)
}

// A job whose outcome the worker could not record is not kept alive by the
// heartbeat of the jobs still running: its lease expires, it is rescued and
// it runs again.
func TestUnrecordedOutcomeIsRescuedWhileOtherJobsRun(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var st *failingCompleteStore
		release := make(chan struct{})
		b := setup(t, worker.Options{Workers: 2, LeaseDuration: 300 * time.Millisecond,
			Handlers: map[string]worker.Handler{"block": worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
				st.ok.Store(j.ID, true) // its completion is recorded
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			})},
			Default: noop}, func(m *memory.Store) worker.Store {
			st = &failingCompleteStore{Store: m}
			return st
		})
		rescue(t, b.mem, 20*time.Millisecond)
		blocker := b.createJob(t, domain.NewJob{Type: "block", Priority: 10})
		id := b.createJob(t, domain.NewJob{Type: "t", MaxAttempts: 3})
		stop := b.run(t)
		got := b.jobs.WaitStatus(t, id, domain.StatusCompleted)
		if got.Attempts != 2 || len(got.Errors) != 1 || got.Errors[0].Message != store.WorkerLost {
			t.Fatalf("job = %+v; want completed on attempt 2 after a worker-lost rescue", got)
		}
		if bj := b.get(t, blocker); bj.Status != domain.StatusProcessing || bj.Attempts != 1 {
			t.Fatalf("the blocking job = %s, attempt %d; want still running its first attempt", bj.Status, bj.Attempts)
		}
		close(release)
		stopped(t, stop)
	})
}

// slowCompleteStore holds every Complete until release is closed, and
// states a Tuning of its own.
type slowCompleteStore struct {
	*memory.Store
	tuning  store.Tuning
	release chan struct{}
	held    atomic.Int32 // Complete calls waiting for release
	claimed atomic.Int32
}

func (s *slowCompleteStore) Tuning() store.Tuning { return s.tuning }

func (s *slowCompleteStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	jobs, err := s.Store.Claim(ctx, req)
	s.claimed.Add(int32(len(jobs)))
	return jobs, err
}

func (s *slowCompleteStore) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	s.held.Add(1)
	<-s.release
	return s.Store.Complete(ctx, l, result)
}

// A worker takes its next job while its last job's outcome is still being
// written, up to the store's Tuning.OutcomesPerWorker (or the default):
// with one worker the pool then holds 1 + that many jobs, whose outcomes
// wait to be written, and claims no more.
func TestWorkerIsFreeWhileItsOutcomeIsWritten(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		perWorker, bound int
	}{
		{0, 1 + worker.DefaultOutcomesPerWorker},
		{2, 3},
	} {
		t.Run(fmt.Sprint(tc.perWorker), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var st *slowCompleteStore
				var runs atomic.Int32
				b := setup(t, worker.Options{Workers: 1, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error {
					runs.Add(1)
					return nil
				})}, func(m *memory.Store) worker.Store {
					st = &slowCompleteStore{Store: m, tuning: store.Tuning{OutcomesPerWorker: tc.perWorker}, release: make(chan struct{})}
					return st
				})
				ids := b.create(t, tc.bound+2, "")
				stop := b.run(t)
				synctest.Wait()
				if c, r, h := st.claimed.Load(), runs.Load(), st.held.Load(); c != int32(tc.bound) || r != int32(tc.bound) || h != int32(tc.bound-1) {
					t.Fatalf("%d jobs claimed, %d run, %d outcomes being written while none can be; want %d, %d, %d", c, r, h, tc.bound, tc.bound, tc.bound-1)
				}
				close(st.release)
				b.jobs.WaitFinal(t, ids...)
				stopped(t, stop)
			})
		})
	}
}

// limitsStore reports the limit of every claim and states a Tuning.
type limitsStore struct {
	*memory.Store
	tuning store.Tuning
	limits chan int
}

func (s *limitsStore) Tuning() store.Tuning { return s.tuning }

func (s *limitsStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	jobs, err := s.Store.Claim(ctx, req)
	if len(jobs) > 0 {
		s.limits <- req.Limit
	}
	return jobs, err
}

// With a claim cooldown (the store's, unless the options override it),
// workers freed one after the other soon after a claim share the next
// claim; without it each is served as it is freed.
func TestClaimCooldownGathersFreedWorkers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		option, tuning time.Duration
		want           []int
	}{
		{"option", time.Hour, 0, []int{4, 4}},
		{"store", 0, time.Hour, []int{4, 4}},
		{"none", 0, 0, []int{4, 1, 1, 1, 1}},
		{"overridden", -1, time.Hour, []int{4, 1, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var st *limitsStore
			proceed := make(chan struct{})
			b := setup(t, worker.Options{Workers: 4, ClaimCooldown: tc.option, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error {
				<-proceed
				return nil
			})}, func(m *memory.Store) worker.Store {
				st = &limitsStore{Store: m, tuning: store.Tuning{ClaimCooldown: tc.tuning}, limits: make(chan int, 8)}
				return st
			})
			ids := b.create(t, 8, "")
			stop := b.run(t)
			gathers := len(tc.want) == 2
			var got []int
			got = append(got, <-st.limits)
			for range 4 { // free the workers one at a time
				proceed <- struct{}{}
				if !gathers {
					got = append(got, <-st.limits)
				}
			}
			if gathers {
				got = append(got, <-st.limits)
			}
			close(proceed)
			b.jobs.WaitFinal(t, ids...)
			stopped(t, stop)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("claim limits %v, want %v", got, tc.want)
			}
		})
	}
}

// missableStore states that its wake-ups can be missed.
type missableStore struct {
	*memory.Store
	missable bool
}

func (s *missableStore) Tuning() store.Tuning { return store.Tuning{MissableWakeups: s.missable} }

// The dispatcher polls at PollInterval only on a store whose wake-ups can
// be missed; elsewhere it sleeps until woken.
func TestPollOnlyWhereWakeUpsCanBeMissed(t *testing.T) {
	t.Parallel()
	for _, missable := range []bool{true, false} {
		t.Run(fmt.Sprint(missable), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				mem := memory.New(nil) // publishes to nobody: every wake-up is missed
				stop := runtest.Start(t, worker.New(&missableStore{Store: mem, missable: missable}, nil, worker.Options{Default: noop, PollInterval: time.Second}))
				ctx := context.Background()
				synctest.Wait()
				j, err := mem.Create(ctx, domain.NewJob{Type: "t"})
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				want := domain.StatusPending
				if missable {
					want = domain.StatusCompleted
				}
				if got, _ := mem.Get(ctx, j.ID); got.Status != want {
					t.Fatalf("job = %s one poll interval after its creation, want %s", got.Status, want)
				}
				stopped(t, stop)
			})
		})
	}
}

// hangingCompleteStore's Complete hangs like a blackholed connection: it
// returns only when its context ends.
type hangingCompleteStore struct {
	*memory.Store
	calls, bounded atomic.Int32
}

func (s *hangingCompleteStore) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	s.calls.Add(1)
	if _, ok := ctx.Deadline(); ok {
		s.bounded.Add(1)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// A store call that hangs holds neither the completer nor the stop
// forever: each try ends at StoreTimeout, the completer gives up after its
// tries and the job is left to its lease.
func TestHangingStoreCallsEndAtStoreTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var st *hangingCompleteStore
		b := setup(t, worker.Options{Workers: 1, StoreTimeout: 20 * time.Millisecond, Default: noop}, func(m *memory.Store) worker.Store {
			st = &hangingCompleteStore{Store: m}
			return st
		})
		id := b.create(t, 1, "")[0]
		stop := b.run(t)
		synctest.Wait()
		start := time.Now()
		stopped(t, stop)
		// Six tries of 20 ms, 50 ms doubling between them.
		if d := time.Since(start); d > 6*20*time.Millisecond+(50+100+200+400+800)*time.Millisecond {
			t.Fatalf("the stop waited %v for a hung store call", d)
		}
		if c, b := st.calls.Load(), st.bounded.Load(); c != 6 || b != 6 {
			t.Fatalf("%d completion tries, %d of them with a deadline; want 6, all bounded", c, b)
		}
		if got := b.get(t, id); got.Status != domain.StatusProcessing {
			t.Fatalf("job = %s; want still processing (left to its lease)", got.Status)
		}
	})
}

// slowClaimStore's Claim takes 10 ms (synctest's clock) after looking for
// jobs.
type slowClaimStore struct{ *memory.Store }

func (s slowClaimStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	jobs, err := s.Store.Claim(ctx, req)
	time.Sleep(10 * time.Millisecond)
	return jobs, err
}

// A job that becomes due while a claim that did not find it is under way
// is not missed: the next run time is asked as of the claim's time.
func TestJobDueDuringAClaimRuns(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, worker.Options{Default: noop}, func(m *memory.Store) worker.Store { return slowClaimStore{m} })
		stop := b.run(t)
		time.Sleep(time.Second) // the first claim is over: the dispatcher sleeps
		// The wake-up's claim starts now, finds nothing, and ends after
		// the job became due.
		id := b.createJob(t, domain.NewJob{Type: "t", RunAt: time.Now().Add(5 * time.Millisecond)})
		time.Sleep(time.Second)
		synctest.Wait()
		if j := b.get(t, id); j.Status != domain.StatusCompleted {
			t.Fatalf("job = %s a second after it was due, want completed", j.Status)
		}
		stopped(t, stop)
	})
}

// cancellingClaimStore asks for the cancellation of every job it claims
// before the claim returns, as a user may while a claim is under way.
type cancellingClaimStore struct{ *memory.Store }

func (s cancellingClaimStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	jobs, err := s.Store.Claim(ctx, req)
	for _, j := range jobs {
		if _, err := s.Store.Cancel(ctx, j.ID); err != nil {
			return nil, err
		}
	}
	return jobs, err
}

// A cancellation that arrives while the claim of its job is under way
// (the dispatcher does not hold the job yet) still reaches it: its handler
// never starts and the job ends cancelled.
func TestCancellationDuringItsClaimIsNotLost(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var runs atomic.Int32
		b := setup(t, worker.Options{Default: worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			runs.Add(1)
			<-ctx.Done()
			return ctx.Err()
		})}, func(m *memory.Store) worker.Store { return cancellingClaimStore{m} })
		stop := b.run(t)
		id := b.create(t, 1, "")[0]
		j := b.jobs.WaitFinal(t, id)[0]
		stopped(t, stop)
		if j.Status != domain.StatusCancelled || runs.Load() != 0 {
			t.Fatalf("job = %s after %d handler runs; want cancelled, never run", j.Status, runs.Load())
		}
	})
}

// beatingSlowStore holds completions (slowCompleteStore) and counts
// heartbeats.
type beatingSlowStore struct {
	*slowCompleteStore
	heartbeats atomic.Int32
}

func (s *beatingSlowStore) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	s.heartbeats.Add(1)
	return s.slowCompleteStore.Heartbeat(ctx, owner, ids, until)
}

// The stop waits for the last outcome to be written, and the heartbeat
// keeps the job's lease until then: the heartbeat winds down after the
// completer.
func TestLeaseIsRenewedUntilTheLastOutcomeIsWritten(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var st *beatingSlowStore
		b := setup(t, worker.Options{LeaseDuration: 300 * time.Millisecond, Default: noop}, func(m *memory.Store) worker.Store {
			st = &beatingSlowStore{slowCompleteStore: &slowCompleteStore{Store: m, release: make(chan struct{})}}
			return st
		})
		stop := b.run(t)
		var releaseOnce sync.Once
		release := func() { releaseOnce.Do(func() { close(st.release) }) }
		t.Cleanup(release) // before run's cleanup: a failed test must not hang on the held write
		id := b.create(t, 1, "")[0]
		synctest.Wait() // the job ran; its completion is held
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		time.Sleep(time.Second) // more than three leases
		synctest.Wait()
		select {
		case err := <-stopped:
			t.Fatalf("Run returned (%v) before the outcome was written", err)
		default:
		}
		if n := st.heartbeats.Load(); n != 10 {
			t.Fatalf("%d heartbeats in 1s with a 300ms lease, want 10 (one per 100ms)", n)
		}
		now := time.Now()
		if got, _ := b.mem.RescueExpired(context.Background(), now, 10); len(got) != 0 {
			t.Fatalf("rescued %d jobs: the lease of a job whose outcome was being written expired", len(got))
		}
		release()
		if err := <-stopped; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if j := b.get(t, id); j.Status != domain.StatusCompleted {
			t.Fatalf("job = %s, want completed", j.Status)
		}
	})
}
