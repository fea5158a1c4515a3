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
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// finals counts jobs that reached a final status and signals when a target
// is reached.
type finals struct {
	mu      sync.Mutex
	byID    map[string]domain.Status
	target  int
	reached chan struct{}
}

func newFinals(target int) *finals {
	return &finals{byID: map[string]domain.Status{}, target: target, reached: make(chan struct{})}
}

func (f *finals) Publish(j *domain.Job) {
	if !j.Status.Final() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byID[j.ID] = j.Status
	if len(f.byID) == f.target {
		close(f.reached)
	}
}

func (f *finals) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-f.reached:
	case <-time.After(d):
		f.mu.Lock()
		defer f.mu.Unlock()
		t.Fatalf("%d of %d jobs final after %v", len(f.byID), f.target, d)
	}
}

type bundle struct {
	store *memory.Store
	pool  *worker.Pool
}

// setup wires a memory store to a pool the way the server does: the store
// publishes to the pool (and to extra publishers).
func setup(t *testing.T, opts worker.Options, extra ...store.Publisher) *bundle {
	t.Helper()
	var pool *worker.Pool
	pubs := store.Publishers{store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) })}
	st := memory.New(append(pubs, extra...))
	pool = worker.New(st, opts)
	return &bundle{store: st, pool: pool}
}

func (b *bundle) create(t *testing.T, n int, payload string) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		j, err := b.store.Create(context.Background(), domain.NewJob{Type: "t", Payload: []byte(payload)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = j.ID
	}
	return ids
}

func stop(t *testing.T, p *worker.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

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
	f := newFinals(jobs)
	b := setup(t, worker.Options{Workers: 8, QueueCapacity: 100, Default: h}, f)
	b.pool.Start(context.Background())
	// Half created before and half while the workers run.
	ids := b.create(t, jobs/2, "")
	ids = append(ids, b.create(t, jobs/2, "")...)
	f.wait(t, 60*time.Second)
	stop(t, b.pool)

	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if runs[id] != 1 {
			t.Fatalf("job %s ran %d times, want once", id, runs[id])
		}
		if f.byID[id] != domain.StatusCompleted {
			t.Fatalf("job %s is %s, want completed", id, f.byID[id])
		}
	}
}

func TestFullQueueLosesNoJob(t *testing.T) {
	t.Parallel()
	const jobs = 1000
	f := newFinals(jobs)
	release := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		<-release // hold the only worker until every job is stored
		return nil
	})
	b := setup(t, worker.Options{Workers: 1, QueueCapacity: 1, Default: h}, f)
	b.pool.Start(context.Background())
	ids := b.create(t, jobs, "")
	close(release)
	f.wait(t, 30*time.Second)
	stop(t, b.pool)
	for _, id := range ids {
		if f.byID[id] != domain.StatusCompleted {
			t.Fatalf("job %s is %q, want completed", id, f.byID[id])
		}
	}
}

func TestJobsStoredBeforeStartRun(t *testing.T) {
	t.Parallel()
	f := newFinals(5)
	b := setup(t, worker.Options{Default: worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })}, f)
	b.create(t, 5, "")
	b.pool.Start(context.Background())
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
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
	f := newFinals(3)
	b := setup(t, worker.Options{Workers: 2, Default: h}, f)
	b.pool.Start(context.Background())
	panicked := b.create(t, 1, `"panic"`)[0]
	failed := b.create(t, 1, `"fail"`)[0]
	ok := b.create(t, 1, `"ok"`)[0]
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
	for id, want := range map[string]string{panicked: "handler panicked: handler bug", failed: "no such mailbox", ok: ""} {
		j, err := b.store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
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
	f := newFinals(2)
	b := setup(t, worker.Options{Handlers: map[string]worker.Handler{"email": mk("email")}, Default: mk("default")}, f)
	b.pool.Start(context.Background())
	e, _ := b.store.Create(context.Background(), domain.NewJob{Type: "email"})
	o, _ := b.store.Create(context.Background(), domain.NewJob{Type: "other"})
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
	if v, _ := got.Load(e.ID); v != "email" {
		t.Fatalf("email job ran on %v", v)
	}
	if v, _ := got.Load(o.ID); v != "default" {
		t.Fatalf("other job ran on %v", v)
	}
}

func TestShutdownLetsRunningJobsFinish(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	finish := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		close(started)
		<-finish
		return nil
	})
	b := setup(t, worker.Options{Default: h})
	b.pool.Start(context.Background())
	id := b.create(t, 1, "")[0]
	waiting := b.create(t, 1, "")[0]
	<-started
	done := make(chan error)
	go func() { done <- b.pool.Shutdown(context.Background()) }()
	<-b.pool.Stopping() // release the running job only once claiming has stopped
	close(finish)
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if j, _ := b.store.Get(context.Background(), id); j.Status != domain.StatusCompleted {
		t.Fatalf("running job is %s after a soft shutdown, want completed", j.Status)
	}
	if j, _ := b.store.Get(context.Background(), waiting); j.Status != domain.StatusPending || j.Attempts != 0 {
		t.Fatalf("queued job is %s (attempts %d) after shutdown, want pending and never started", j.Status, j.Attempts)
	}
}

func TestShutdownTimeoutReturnsJobToPending(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	b := setup(t, worker.Options{Default: h})
	b.pool.Start(context.Background())
	id := b.create(t, 1, "")[0]
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the grace period is already over
	err := b.pool.Shutdown(ctx)
	if err == nil {
		t.Fatal("shutdown reported no interrupted job")
	}
	j, _ := b.store.Get(context.Background(), id)
	if j.Status != domain.StatusPending || j.Attempts != 1 || j.Error != "" {
		t.Fatalf("interrupted job = %s attempts %d error %q, want pending, attempt counted, no error", j.Status, j.Attempts, j.Error)
	}
	// A restarted pool on the same store picks it up again.
	f := newFinals(1)
	again := worker.New(b.store, worker.Options{Default: worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		f.Publish(&domain.Job{ID: j.ID, Status: domain.StatusCompleted})
		return nil
	})})
	again.Start(context.Background())
	f.wait(t, 10*time.Second)
	stop(t, again)
}

func TestShutdownWithoutStart(t *testing.T) {
	t.Parallel()
	p := worker.New(memory.New(nil), worker.Options{})
	stop(t, p)
	stop(t, p)
}

// BenchmarkThroughput measures jobs per second from Create to COMPLETED
// with a no-op handler, in process: memory store, broker and pool wired as
// in the server, without HTTP.
func BenchmarkThroughput(b *testing.B) {
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var completed atomic.Int64
			done := make(chan struct{})
			target := int64(b.N)
			counter := store.PublisherFunc(func(j *domain.Job) {
				if j.Status == domain.StatusCompleted && completed.Add(1) == target {
					close(done)
				}
			})
			var pool *worker.Pool
			events := broker.New(broker.Options{})
			defer events.Close()
			st := memory.New(store.Publishers{events, store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }), counter})
			pool = worker.New(st, worker.Options{Workers: workers, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })})
			pool.Start(context.Background())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := st.Create(context.Background(), domain.NewJob{Type: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
			_ = pool.Shutdown(context.Background())
		})
	}
}

func TestCancelRunningJob(t *testing.T) {
	t.Parallel()
	started := make(chan string, 1)
	returned := make(chan error, 1)
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		started <- j.ID
		<-ctx.Done()
		returned <- ctx.Err()
		return ctx.Err()
	})
	f := newFinals(1)
	b := setup(t, worker.Options{Default: h}, f)
	b.pool.Start(context.Background())
	id := b.create(t, 1, "")[0]
	<-started
	if _, err := b.store.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler saw %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
	j, _ := b.store.Get(context.Background(), id)
	if j.Status != domain.StatusCancelled || j.CancelRequested || j.FinishedAt == nil || len(j.Errors) != 0 {
		t.Fatalf("cancelled job = %+v, want cancelled, finished, no error recorded", j)
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
	f := newFinals(1)
	b := setup(t, worker.Options{Default: h}, f)
	b.pool.Start(context.Background())
	id := b.create(t, 1, "")[0]
	<-started
	if _, err := b.store.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
	if j, _ := b.store.Get(context.Background(), id); j.Status != domain.StatusCancelled {
		t.Fatalf("job is %s, want cancelled: cancellation was requested before the handler returned", j.Status)
	}
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
		time.Sleep(50 * time.Millisecond) // the slow write the test is about
	}
	return j, err
}

func TestJobRetriedWhileItsWorkerLeavesIsRun(t *testing.T) {
	t.Parallel()
	var pool *worker.Pool
	mem := memory.New(store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }))
	var calls atomic.Int32
	pool = worker.New(&slowRetryingStore{Store: mem}, worker.Options{Workers: 2, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error {
		if calls.Add(1) == 1 {
			return errors.New("first attempt fails")
		}
		return nil
	})})
	pool.Start(context.Background())
	j, err := mem.Create(context.Background(), domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func() bool {
		got, _ := mem.Get(context.Background(), j.ID)
		return got.Status == domain.StatusCompleted
	}
	deadline := time.Now().Add(10 * time.Second)
	for !waitFor() {
		if time.Now().After(deadline) {
			got, _ := mem.Get(context.Background(), j.ID)
			t.Fatalf("retried job is %s after 10s (handler calls %d), want completed", got.Status, calls.Load())
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	stop(t, pool)
}

// flakyClaimStore fails Claim while fail > 0 and reports each call.
type flakyClaimStore struct {
	*memory.Store
	fail  atomic.Int32
	calls chan struct{}
}

func (s *flakyClaimStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	defer func() {
		select {
		case s.calls <- struct{}{}:
		default:
		}
	}()
	if s.fail.Add(-1) >= 0 {
		return nil, errors.New("transient store error")
	}
	return s.Store.Claim(ctx, req)
}

func TestDispatcherRetriesAfterStoreError(t *testing.T) {
	t.Parallel()
	f := newFinals(1)
	var pool *worker.Pool
	mem := memory.New(store.Publishers{store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }), f})
	st := &flakyClaimStore{Store: mem, calls: make(chan struct{}, 1)}
	pool = worker.New(st, worker.Options{Default: worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })})
	pool.Start(context.Background())
	<-st.calls // the dispatcher's first look found nothing; it now sleeps
	st.fail.Store(1)
	if _, err := mem.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	// Its wake-up meets the failing store; only a retry runs the job.
	f.wait(t, 10*time.Second)
	stop(t, pool)
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		<-ctx.Done()
		return ctx.Err()
	})
	f := newFinals(2)
	b := setup(t, worker.Options{Workers: 2, Default: h, JobTimeout: 40 * time.Millisecond}, f)
	b.pool.Start(context.Background())
	own, err := b.store.Create(context.Background(), domain.NewJob{Type: "t", Timeout: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dflt := b.create(t, 1, "")[0]
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
	for id, want := range map[string]string{own.ID: "attempt timed out after 30ms", dflt: "attempt timed out after 40ms"} {
		j, _ := b.store.Get(context.Background(), id)
		if j.Status != domain.StatusFailed || j.Error != want {
			t.Errorf("job = %s %q, want failed %q", j.Status, j.Error, want)
		}
	}
}

func TestHandlerIgnoringItsContextDoesNotHoldTheJob(t *testing.T) {
	t.Parallel()
	unblock := make(chan struct{})
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		<-unblock // ignores ctx
		return nil
	})
	f := newFinals(1)
	b := setup(t, worker.Options{Default: h, JobTimeout: 20 * time.Millisecond, HandlerGrace: 20 * time.Millisecond}, f)
	b.pool.Start(context.Background())
	id := b.create(t, 1, "")[0]
	f.wait(t, 10*time.Second)
	j, _ := b.store.Get(context.Background(), id)
	if j.Status != domain.StatusFailed || !strings.Contains(j.Error, "timed out after 20ms") {
		t.Fatalf("job = %s %q, want failed for timing out", j.Status, j.Error)
	}
	close(unblock) // the abandoned handler returns; Shutdown then finds it gone
	stop(t, b.pool)
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
	f := newFinals(1)
	b := setup(t, worker.Options{Default: h, ProgressInterval: time.Hour}, f, counter)
	b.pool.Start(context.Background())
	id := b.create(t, 1, "")[0]
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
	j, _ := b.store.Get(context.Background(), id)
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
	var st *memory.Store
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		_ = worker.ReportProgress(ctx, 10)
		_ = worker.ReportProgress(ctx, 90) // within the interval: held back
		// Still running: the 90 must show without another report.
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, _ := st.Get(ctx, j.ID)
			if got.Progress != nil && *got.Progress == 90 {
				return nil
			}
			if time.Now().After(deadline) {
				return errors.New("held-back progress never written while the handler ran")
			}
			time.Sleep(time.Millisecond) // polling interval
		}
	})
	f := newFinals(1)
	b := setup(t, worker.Options{Default: h, ProgressInterval: 30 * time.Millisecond}, f)
	st = b.store
	b.pool.Start(context.Background())
	id := b.create(t, 1, "")[0]
	f.wait(t, 20*time.Second)
	stop(t, b.pool)
	if j, _ := b.store.Get(context.Background(), id); j.Status != domain.StatusCompleted {
		t.Fatalf("job = %s %q", j.Status, j.Error)
	}
}

func TestFailedAttemptsAreRetriedWithBackoff(t *testing.T) {
	t.Parallel()
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
	f := newFinals(2)
	b := setup(t, worker.Options{Default: h, RetryBackoff: 20 * time.Millisecond, RetryBackoffMax: time.Second}, f)
	b.pool.Start(context.Background())
	retried, err := b.store.Create(context.Background(), domain.NewJob{Type: "t", MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	permanent, err := b.store.Create(context.Background(), domain.NewJob{Type: "t", MaxAttempts: 3, Payload: json.RawMessage(`"permanent"`)})
	if err != nil {
		t.Fatal(err)
	}
	f.wait(t, 10*time.Second)
	stop(t, b.pool)

	j, _ := b.store.Get(context.Background(), retried.ID)
	if j.Status != domain.StatusCompleted || j.Attempts != 3 || len(j.Errors) != 2 || j.Errors[0].Message != "attempt 1 failed" {
		t.Fatalf("retried job = %s attempts %d errors %+v, want completed on attempt 3 after 2 failures", j.Status, j.Attempts, j.Errors)
	}
	// Backoff: the second attempt started at least half the base delay
	// after the first failure (jitter takes off at most half).
	if gap := j.Errors[1].At.Sub(j.Errors[0].At); gap < 10*time.Millisecond {
		t.Fatalf("second failure %v after the first: no backoff", gap)
	}
	p, _ := b.store.Get(context.Background(), permanent.ID)
	if p.Status != domain.StatusFailed || p.Attempts != 1 || p.Error != "410 gone" {
		t.Fatalf("permanent failure = %s attempts %d %q, want failed after 1 attempt", p.Status, p.Attempts, p.Error)
	}
}

func TestScheduledJobRunsWhenDue(t *testing.T) {
	t.Parallel()
	started := make(chan time.Time, 1)
	h := worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
		started <- time.Now()
		return nil
	})
	b := setup(t, worker.Options{Default: h})
	b.pool.Start(context.Background())
	runAt := time.Now().Add(150 * time.Millisecond)
	if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t", RunAt: runAt}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-started:
		if at.Before(runAt) {
			t.Fatalf("ran %v before its runAt", runAt.Sub(at))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("scheduled job never ran: the dispatcher did not wake for it")
	}
	stop(t, b.pool)
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
	f := newFinals(4)
	b := setup(t, worker.Options{Default: h, Workers: 1, QueueCapacity: 1}, f)
	b.pool.Start(context.Background())
	// The only worker is busy and the channel takes one id: of the jobs
	// created next, at most the first waits in the channel; the others wait
	// in the store, where priority decides.
	if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "hold"}); err != nil {
		t.Fatal(err)
	}
	waitFor := time.Now().Add(10 * time.Second)
	for {
		st, _ := b.store.Stats(context.Background(), "hold")
		if st.Processing == 1 {
			break
		}
		if time.Now().After(waitFor) {
			t.Fatal("hold job not running")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	for _, nj := range []domain.NewJob{{Type: "low", Priority: -1}, {Type: "normal"}, {Type: "high", Priority: 5}} {
		if _, err := b.store.Create(context.Background(), nj); err != nil {
			t.Fatal(err)
		}
	}
	close(hold)
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
	mu.Lock()
	defer mu.Unlock()
	prio := map[string]int{"low": -1, "normal": 0, "high": 5}
	if len(order) != 3 || prio[order[1]] < prio[order[2]] {
		t.Fatalf("order %v: after the one already in the channel, priority must decide", order)
	}
}

// BenchmarkScheduledDispatchLatency measures how late a scheduled job
// starts: from its runAt to the moment its handler runs, on an idle pool.
// Target: 50 ms.
func BenchmarkScheduledDispatchLatency(b *testing.B) {
	started := make(chan time.Time, 1)
	var pool *worker.Pool
	st := memory.New(store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }))
	pool = worker.New(st, worker.Options{Default: worker.HandlerFunc(func(context.Context, *domain.Job) error {
		started <- time.Now()
		return nil
	})})
	pool.Start(context.Background())
	defer func() { _ = pool.Shutdown(context.Background()) }()
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
	var pool *worker.Pool
	st := memory.New(store.PublisherFunc(func(j *domain.Job) {
		pool.Publish(j)
		if j.Status == domain.StatusCompleted && completed.Add(1) == target {
			close(done)
		}
	}))
	pool = worker.New(st, worker.Options{Workers: 8, RetryBackoff: time.Microsecond, RetryBackoffMax: time.Microsecond,
		Default: worker.HandlerFunc(func(_ context.Context, j *domain.Job) error {
			if j.Attempts == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		})})
	pool.Start(context.Background())
	defer func() { _ = pool.Shutdown(context.Background()) }()
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

// A job running for many lease durations keeps its lease: the rescuer,
// passing all the while, never takes it away.
func TestHeartbeatKeepsTheLeaseOfALongJob(t *testing.T) {
	t.Parallel()
	f := newFinals(1)
	var pool *worker.Pool
	mem := memory.New(store.Publishers{store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }), f})
	st := &countingStore{Store: mem}
	release := make(chan struct{})
	var calls atomic.Int32
	pool = worker.New(st, worker.Options{LeaseDuration: 150 * time.Millisecond, RescueInterval: 10 * time.Millisecond,
		Default: worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			calls.Add(1)
			<-release
			return nil
		})})
	pool.Start(context.Background())
	j, err := mem.Create(context.Background(), domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	// Eight heartbeats span more than two lease durations.
	deadline := time.Now().Add(10 * time.Second)
	for st.heartbeats.Load() < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("%d heartbeats in 10s", st.heartbeats.Load())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	got, _ := mem.Get(context.Background(), j.ID)
	if got.Status != domain.StatusProcessing || got.Attempts != 1 || st.rescues.Load() < 10 {
		t.Fatalf("after %d heartbeats and %d rescue passes: %s, attempt %d; want still processing its first attempt", st.heartbeats.Load(), st.rescues.Load(), got.Status, got.Attempts)
	}
	close(release)
	f.wait(t, 10*time.Second)
	stop(t, pool)
	if got, _ := mem.Get(context.Background(), j.ID); got.Status != domain.StatusCompleted || got.Attempts != 1 || calls.Load() != 1 {
		t.Fatalf("job = %s, attempt %d, %d handler calls; want completed by its only run", got.Status, got.Attempts, calls.Load())
	}
}

// A job claimed by a worker that died (its lease expired) is rescued and
// run again here.
func TestRescuerRunsTheJobsOfALostWorker(t *testing.T) {
	t.Parallel()
	f := newFinals(1)
	b := setup(t, worker.Options{RescueInterval: 10 * time.Millisecond, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })}, f)
	ctx := context.Background()
	j, err := b.store.Create(ctx, domain.NewJob{Type: "t", MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if got, err := b.store.Claim(ctx, store.ClaimRequest{Owner: "dead", Limit: 1, Now: now, LeaseUntil: now.Add(20 * time.Millisecond)}); err != nil || len(got) != 1 {
		t.Fatalf("claim as the dead worker: %v, %v", got, err)
	}
	b.pool.Start(ctx)
	f.wait(t, 10*time.Second)
	stop(t, b.pool)
	got, _ := b.store.Get(ctx, j.ID)
	if got.Status != domain.StatusCompleted || got.Attempts != 2 || len(got.Errors) != 1 || got.Errors[0].Message != store.WorkerLost {
		t.Fatalf("job = %+v; want completed on attempt 2 after a worker-lost failure", got)
	}
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
			if got, err := b.store.RescueExpired(ctx, time.Now().Add(time.Hour), 10); err != nil || len(got) != 1 {
				return fmt.Errorf("rescue: %v, %v", got, err)
			}
			return errors.New("this failure must not be recorded")
		}
		return nil
	})})
	ctx := context.Background()
	j, err := b.store.Create(ctx, domain.NewJob{Type: "t", MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	b.pool.Start(ctx)
	for {
		got, _ := b.store.Get(ctx, j.ID)
		if got.Status.Final() {
			if got.Status != domain.StatusCompleted || got.Attempts != 2 || len(got.Errors) != 1 || got.Errors[0].Message != store.WorkerLost || calls.Load() != 2 {
				t.Fatalf("job = %+v after %d runs; want completed on attempt 2, only the rescue in its errors", got, calls.Load())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job is %s after 10s", got.Status)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	stop(t, b.pool)
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

// A claim in flight when shutdown begins is not abandoned: its jobs are
// released to pending rather than stranded as processing.
func TestShutdownDuringAClaimReleasesItsJobs(t *testing.T) {
	t.Parallel()
	var pool *worker.Pool
	mem := memory.New(store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }))
	st := &committingStore{Store: mem, started: make(chan struct{}), proceed: make(chan struct{})}
	pool = worker.New(st, worker.Options{Workers: 4, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })})
	ctx := context.Background()
	for range 3 {
		if _, err := mem.Create(ctx, domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	pool.Start(ctx)
	<-st.started
	stopped := make(chan error, 1)
	go func() { stopped <- pool.Shutdown(ctx) }()
	<-pool.Stopping()
	close(st.proceed)
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	stats, err := mem.Stats(ctx, "")
	if err != nil || stats.Processing != 0 || stats.Pending+stats.Completed != 3 {
		t.Fatalf("after shutdown: %+v, %v; want no job left processing", stats, err)
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

func (s *failingCompleteStore) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	return s.Store.Heartbeat(ctx, owner, ids, until)
}

// A job whose outcome the worker could not record is not kept alive by the
// heartbeat of the jobs still running: its lease expires, it is rescued and
// it runs again.
func TestUnrecordedOutcomeIsRescuedWhileOtherJobsRun(t *testing.T) {
	t.Parallel()
	var pool *worker.Pool
	mem := memory.New(store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }))
	st := &failingCompleteStore{Store: mem}
	release := make(chan struct{})
	pool = worker.New(st, worker.Options{Workers: 2, LeaseDuration: 300 * time.Millisecond, RescueInterval: 20 * time.Millisecond,
		Handlers: map[string]worker.Handler{"block": worker.HandlerFunc(func(ctx context.Context, j *domain.Job) error {
			st.ok.Store(j.ID, true) // its completion is recorded
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})},
		Default: worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })})
	ctx := context.Background()
	blocker, err := mem.Create(ctx, domain.NewJob{Type: "block", Priority: 10})
	if err != nil {
		t.Fatal(err)
	}
	j, err := mem.Create(ctx, domain.NewJob{Type: "t", MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	pool.Start(ctx)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, _ := mem.Get(ctx, j.ID)
		if got.Status == domain.StatusCompleted {
			if got.Attempts != 2 || len(got.Errors) != 1 || got.Errors[0].Message != store.WorkerLost {
				t.Fatalf("job = %+v; want completed on attempt 2 after a worker-lost rescue", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job is %s (attempt %d) after 15s while another job ran: its lease was kept alive", got.Status, got.Attempts)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if b, _ := mem.Get(ctx, blocker.ID); b.Status != domain.StatusProcessing || b.Attempts != 1 {
		t.Fatalf("the blocking job = %s, attempt %d; want still running its first attempt", b.Status, b.Attempts)
	}
	close(release)
	stop(t, pool)
}

// slowCompleteStore holds every Complete until release is closed.
type slowCompleteStore struct {
	*memory.Store
	release chan struct{}
	held    atomic.Int32 // Complete calls waiting for release
}

func (s *slowCompleteStore) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	s.held.Add(1)
	<-s.release
	return s.Store.Complete(ctx, l, result)
}

// A worker takes its next job while its last job's outcome is still being
// written, up to a bound: with one worker, the pool holds at most five
// jobs whose outcome is not written yet (1 + outcomeBacklog).
func TestWorkerIsFreeWhileItsOutcomeIsWritten(t *testing.T) {
	t.Parallel()
	const bound = 5
	var pool *worker.Pool
	f := newFinals(bound + 2)
	mem := memory.New(store.Publishers{store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }), f})
	st := &slowCompleteStore{Store: mem, release: make(chan struct{})}
	var runs atomic.Int32
	third := make(chan struct{}) // closed at the bound-th run
	pool = worker.New(st, worker.Options{Workers: 1, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error {
		if runs.Add(1) == bound {
			close(third)
		}
		return nil
	})})
	ctx := context.Background()
	for range bound + 2 {
		if _, err := mem.Create(ctx, domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	pool.Start(ctx)
	select {
	case <-third:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d handler runs while the first outcome is being written, want %d", runs.Load(), bound)
	}
	// Once every finished job's outcome is waiting to be written, the
	// dispatcher must not claim another.
	deadline := time.Now().Add(10 * time.Second)
	for st.held.Load() < bound {
		if time.Now().After(deadline) {
			t.Fatalf("%d outcomes being written after 10s, want %d", st.held.Load(), bound)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	if free := pool.Free(); free != 0 {
		t.Fatalf("with %d outcomes unwritten the dispatcher would claim %d more jobs, want none", bound, free)
	}
	if n := runs.Load(); n != bound {
		t.Fatalf("%d handler runs while no outcome could be written, want at most %d", n, bound)
	}
	close(st.release)
	f.wait(t, 10*time.Second)
	stop(t, pool)
}

// limitsStore reports the limit of every claim.
type limitsStore struct {
	*memory.Store
	limits chan int
}

func (s *limitsStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	jobs, err := s.Store.Claim(ctx, req)
	if len(jobs) > 0 {
		s.limits <- req.Limit
	}
	return jobs, err
}

// With a claim cooldown, workers freed one after the other soon after a
// claim share the next claim; without it each is served as it is freed.
func TestClaimCooldownGathersFreedWorkers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cooldown time.Duration
		want     []int
	}{
		{time.Hour, []int{4, 4}},
		{0, []int{4, 1, 1, 1, 1}},
	} {
		t.Run(tc.cooldown.String(), func(t *testing.T) {
			t.Parallel()
			var pool *worker.Pool
			f := newFinals(8)
			mem := memory.New(store.Publishers{store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }), f})
			st := &limitsStore{Store: mem, limits: make(chan int, 8)}
			proceed := make(chan struct{})
			pool = worker.New(st, worker.Options{Workers: 4, ClaimCooldown: tc.cooldown, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error {
				<-proceed
				return nil
			})})
			ctx := context.Background()
			for range 8 {
				if _, err := mem.Create(ctx, domain.NewJob{Type: "t"}); err != nil {
					t.Fatal(err)
				}
			}
			pool.Start(ctx)
			var got []int
			got = append(got, <-st.limits)
			for range 4 { // free the workers one at a time
				proceed <- struct{}{}
				if tc.cooldown == 0 {
					got = append(got, <-st.limits)
				}
			}
			if tc.cooldown > 0 {
				got = append(got, <-st.limits)
			}
			close(proceed)
			f.wait(t, 10*time.Second)
			stop(t, pool)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("claim limits %v, want %v", got, tc.want)
			}
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

// A store call that hangs holds neither the outcome's recorder nor
// Shutdown forever: each try ends at StoreTimeout, the recorder gives up
// after its tries and the job is left to its lease.
func TestHangingStoreCallsEndAtStoreTimeout(t *testing.T) {
	t.Parallel()
	var pool *worker.Pool
	mem := memory.New(store.PublisherFunc(func(j *domain.Job) { pool.Publish(j) }))
	st := &hangingCompleteStore{Store: mem}
	pool = worker.New(st, worker.Options{Workers: 1, StoreTimeout: 20 * time.Millisecond,
		Default: worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })})
	ctx := context.Background()
	j, err := mem.Create(ctx, domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	pool.Start(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for st.calls.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d completion tries after 10s; a hung try must end at StoreTimeout and be retried", st.calls.Load())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = pool.Shutdown(sctx)
	if sctx.Err() != nil {
		t.Fatal("Shutdown waited for a hung store call past its deadline")
	}
	if c, b := st.calls.Load(), st.bounded.Load(); c != b {
		t.Fatalf("%d completion tries, %d of them with a deadline", c, b)
	}
	if got, _ := mem.Get(ctx, j.ID); got.Status != domain.StatusProcessing {
		t.Fatalf("job = %s; want still processing (left to its lease)", got.Status)
	}
}
