package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/sqlite"
	"github.com/jobqueue/jobqueue/internal/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, opts storetest.Options) store.Store {
		return open(t, filepath.Join(t.TempDir(), "jobs.db"), sqlite.Options{Publisher: opts.Publisher, ErrorHistory: opts.ErrorHistory})
	})
}

// open opens the store at path and closes it when the test ends.
func open(t testing.TB, path string, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestOpenCreatesFileAndDirectories(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "a", "b c?#%", "jobs.db")
	s := open(t, path, sqlite.Options{})
	if _, err := s.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("database file: %v, %v", fi, err)
	}
	if _, err := sqlite.Open(context.Background(), "", sqlite.Options{}); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("open with no path: %v, want ErrInvalid", err)
	}
}

// What a store wrote is there after a clean Close and Open: jobs in every
// status with their error history, idempotency keys, leases; and Seq goes
// on increasing, also past deleted jobs.
func TestDurableAcrossReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Minute) // claims run after every job below is due
	lease := now.Add(time.Hour)
	claim := func(owner string) *domain.Job {
		t.Helper()
		got, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: lease})
		if err != nil || len(got) != 1 {
			t.Fatalf("claim = %v, %v", got, err)
		}
		return got[0]
	}
	create := func(nj domain.NewJob) *domain.Job {
		t.Helper()
		j, err := s.Create(ctx, nj)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}

	failed := create(domain.NewJob{Type: "f", MaxAttempts: 2, Payload: json.RawMessage(`{"a": [1, 2]}`)})
	c := claim("w")
	if _, err := s.Fail(ctx, store.LeaseOf(c, "w"), "boom 1", now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	c = claim("w")
	if _, err := s.Fail(ctx, store.LeaseOf(c, "w"), "boom 2", time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := create(domain.NewJob{Type: "d", IdempotencyKey: "key-1", Timeout: 3 * time.Second})
	c = claim("w")
	if _, err := s.Progress(ctx, store.LeaseOf(c, "w"), 70); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Complete(ctx, store.LeaseOf(c, "w"), json.RawMessage(`{"ok" : true}`)); err != nil {
		t.Fatal(err)
	}
	running := create(domain.NewJob{Type: "r", Priority: 5})
	claim("holder")
	if _, err := s.Cancel(ctx, running.ID); err != nil {
		t.Fatal(err)
	}
	pending := create(domain.NewJob{Type: "p", RunAt: now.Add(time.Hour)})
	newest := create(domain.NewJob{Type: "n"})
	if _, err := s.Cancel(ctx, newest.ID); err != nil {
		t.Fatal(err)
	}
	ids := []string{failed.ID, done.ID, running.ID, pending.ID, newest.ID}
	before := make(map[string]*domain.Job)
	for _, id := range ids {
		if before[id], err = s.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path, sqlite.Options{})
	for _, id := range ids {
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, before[id]) {
			t.Errorf("after reopening:\n got %+v\nwant %+v", got, before[id])
		}
	}
	if f := before[failed.ID]; f.Status != domain.StatusFailed || len(f.Errors) != 2 || f.Errors[1].Message != "boom 2" {
		t.Fatalf("failed job = %+v, want two failures", f)
	}
	if d := before[done.ID]; string(d.Result) != `{"ok" : true}` || *d.Progress != 70 || d.Timeout != 3*time.Second {
		t.Fatalf("completed job = %+v", d)
	}
	// The idempotency key still names its job.
	if again, err := s.Create(ctx, domain.NewJob{Type: "d", IdempotencyKey: "key-1"}); err != nil || again.ID != done.ID {
		t.Fatalf("create with a stored key = %+v, %v; want the stored job", again, err)
	}
	// The lease is still held, until the same expiry: renewed by its
	// owner, refused to others.
	if got, err := s.RescueExpired(ctx, lease.Add(-time.Second), 10); err != nil || len(got) != 0 {
		t.Fatalf("rescue before the lease expires = %v, %v; want none", got, err)
	}
	if n, err := s.Heartbeat(ctx, "holder", []string{running.ID}, lease.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("heartbeat after reopening = %d, %v; want the held lease", n, err)
	}
	r := before[running.ID]
	if _, err := s.Complete(ctx, store.LeaseOf(r, "other"), nil); !errors.Is(err, domain.ErrLeaseLost) {
		t.Fatalf("complete by another owner: %v, want ErrLeaseLost", err)
	}
	if got, err := s.Finish(ctx, store.LeaseOf(r, "holder"), domain.StatusCancelled, ""); err != nil || got.Status != domain.StatusCancelled {
		t.Fatalf("finish by the holder = %+v, %v", got, err)
	}
	// Seq goes on from where it was, even though the newest job is gone.
	if n, err := s.DeleteFinished(ctx, time.Now().Add(time.Hour), 100); err != nil || n != 4 {
		t.Fatalf("delete finished = %d, %v; want 4", n, err)
	}
	if j := mustCreate(t, s); j.Seq <= newest.Seq {
		t.Fatalf("seq after reopening = %d, want more than %d", j.Seq, newest.Seq)
	}
}

func mustCreate(t *testing.T, s *sqlite.Store) *domain.Job {
	t.Helper()
	j, err := s.Create(context.Background(), domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A job left processing by a store that went away without finishing it is
// rescued once its lease expired, not before.
func TestCrashedWorkerIsRescuedAfterReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, crash := range []struct {
		name string
		// stop ends the first store and returns the file to reopen.
		stop func(t *testing.T, s *sqlite.Store, path string) string
	}{
		{"closed", func(t *testing.T, s *sqlite.Store, path string) string {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return path
		}},
		{"killed", func(t *testing.T, s *sqlite.Store, path string) string {
			// A copy of the files while the store runs is what a killed
			// process leaves: commits in the WAL, no checkpoint.
			dir := t.TempDir()
			for _, suffix := range []string{"", "-wal"} {
				b, err := os.ReadFile(path + suffix)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "jobs.db"+suffix), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "jobs.db")
		}},
	} {
		t.Run(crash.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "jobs.db")
			s, err := sqlite.Open(ctx, path, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			j, err := s.Create(ctx, domain.NewJob{Type: "t", MaxAttempts: 3})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			until := now.Add(time.Minute)
			if got, err := s.Claim(ctx, store.ClaimRequest{Owner: "dead", Limit: 1, Now: now, LeaseUntil: until}); err != nil || len(got) != 1 {
				t.Fatalf("claim = %v, %v", got, err)
			}
			path = crash.stop(t, s, path)

			var events []*domain.Job // the publisher runs on the writer goroutine, before the write returns
			s = open(t, path, sqlite.Options{Publisher: store.PublisherFunc(func(j *domain.Job) { events = append(events, j) })})
			if got, err := s.RescueExpired(ctx, until.Add(-time.Second), 10); err != nil || len(got) != 0 {
				t.Fatalf("rescue before the lease expired = %v, %v; want none", got, err)
			}
			got, err := s.RescueExpired(ctx, until.Add(time.Second), 10)
			if err != nil || len(got) != 1 {
				t.Fatalf("rescue after the lease expired = %v, %v; want the job", got, err)
			}
			r := got[0]
			if r.ID != j.ID || r.Status != domain.StatusPending || r.Attempts != 1 || len(r.Errors) != 1 || r.Errors[0].Message != store.WorkerLost || r.Version != 3 {
				t.Fatalf("rescued = %+v", r)
			}
			if len(events) != 1 || events[0] != r {
				t.Fatalf("events = %v, want the rescue", events)
			}
			if again, err := s.Claim(ctx, store.ClaimRequest{Owner: "alive", Limit: 1, Now: time.Now(), LeaseUntil: time.Now().Add(time.Minute)}); err != nil || len(again) != 1 || again[0].Attempts != 2 {
				t.Fatalf("claim after the rescue = %v, %v; want the job's second attempt", again, err)
			}
		})
	}
}

func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	const (
		goroutines = 32
		each       = 50
	)
	s := open(t, filepath.Join(t.TempDir(), "jobs.db"), sqlite.Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.Create(ctx, domain.NewJob{Type: fmt.Sprintf("g%d", g), Payload: json.RawMessage(fmt.Sprint(i))}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("create: %v", err)
	}
	if st, err := s.Stats(ctx, store.StatsQuery{}); err != nil || st.Pending != goroutines*each {
		t.Fatalf("stats = %+v, %v; want %d pending", st, err, goroutines*each)
	}
}

// When the file stays locked past the busy timeout, calls fail with an
// error that is both SQLITE_BUSY and domain.ErrUnavailable; the store
// works again once the lock is gone.
func TestBusyIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	s := open(t, path, sqlite.Options{BusyTimeout: 50 * time.Millisecond})

	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Create(ctx, domain.NewJob{Type: "t"})
	var cause *sqlitedriver.Error
	if !errors.Is(err, domain.ErrUnavailable) || !errors.As(err, &cause) || cause.Code()&0xff != sqlite3.SQLITE_BUSY {
		t.Fatalf("create while locked: %v, want ErrUnavailable and SQLITE_BUSY", err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, domain.NewJob{Type: "t"}); err != nil {
		t.Fatalf("create once unlocked: %v", err)
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "jobs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := s.Create(ctx, domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Create(ctx, domain.NewJob{Type: "t"}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("create after close: %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(ctx, j.ID); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("get after close: %v, want ErrUnavailable", err)
	}
}

// The store's clock sets every time it records, at microsecond precision.
func TestClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	at := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC)
	s := open(t, filepath.Join(t.TempDir(), "jobs.db"), sqlite.Options{Now: func() time.Time { return at }})
	j, err := s.Create(ctx, domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	want := at.Truncate(time.Microsecond)
	if !j.CreatedAt.Equal(want) || !j.RunAt.Equal(want) {
		t.Fatalf("created at %v, run at %v; want %v", j.CreatedAt, j.RunAt, want)
	}
	got, err := s.Get(ctx, j.ID)
	if err != nil || !reflect.DeepEqual(got, j) {
		t.Fatalf("get = %+v, %v; want what create returned, %+v", got, err, j)
	}
}

// Claim walks the runnable jobs one priority at a time: jobs scheduled for
// later, however many and whatever their priority, neither get claimed nor
// push runnable ones out of a batch; NextRunAt finds the earliest of them
// across priorities.
func TestClaimSkipsScheduledJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "jobs.db"), sqlite.Options{})
	at := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond) // the claims' now
	create := func(prio int, runAt time.Time) *domain.Job {
		t.Helper()
		j, err := s.Create(ctx, domain.NewJob{Type: "t", Priority: prio, RunAt: runAt})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	for i := range 300 {
		create(domain.MaxPriority-i%3, at.Add(time.Hour+time.Duration(i)*time.Second))
	}
	low := create(-5, time.Time{})
	midLate := create(0, at.Add(-time.Second))
	midEarly := create(0, at.Add(-2*time.Second))
	midNow := create(0, at) // due exactly at the claim's now
	highLate := create(5, at.Add(-time.Second))
	highEarly := create(5, at.Add(-3*time.Second))
	soonest := create(-50, at.Add(30*time.Minute))
	create(5, at.Add(time.Hour))

	if next, err := s.NextRunAt(ctx, at); err != nil || !next.Equal(soonest.RunAt) {
		t.Fatalf("next = %v, %v; want the earliest scheduled job's %v, whatever its priority", next, err, soonest.RunAt)
	}
	var got []*domain.Job
	for _, limit := range []int{1, 2, 10} {
		jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: limit, Now: at, LeaseUntil: at.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, jobs...)
	}
	want := []*domain.Job{highEarly, highLate, midEarly, midLate, midNow, low}
	if len(got) != len(want) {
		t.Fatalf("claimed %d jobs, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID {
			t.Fatalf("claim %d = seq %d (priority %d, runAt %v), want seq %d", i, got[i].Seq, got[i].Priority, got[i].RunAt, want[i].Seq)
		}
	}
	if next, err := s.NextRunAt(ctx, at); err != nil || !next.Equal(soonest.RunAt) {
		t.Fatalf("next after the claims = %v, %v; want %v", next, err, soonest.RunAt)
	}
}
