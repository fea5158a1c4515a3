package postgres

import (
	"context"

	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/worker"
)

// typeWatch is a TypePublisher that signals each change it hears.
type typeWatch struct {
	ch chan domain.TypeControl
}

func (w *typeWatch) Publish(*domain.Job)              {}
func (w *typeWatch) PublishType(c domain.TypeControl) { w.ch <- c }

// instance opens a store on schema publishing to a worker pool of
// workers running h (and to extra), runs the pool, and returns the
// store. The pool polls only every hour: what it does sooner, it does on
// notifications.
func instance(t *testing.T, schema string, workers int, h worker.HandlerFunc, extra ...store.Publisher) *Store {
	t.Helper()
	inbox := worker.NewInbox()
	s := openStore(t, schema, Options{Publisher: append(store.Publishers{inbox}, extra...)})
	if workers > 0 {
		pool := worker.New(s, inbox, worker.Options{Workers: workers, Default: h, PollInterval: time.Hour, Owner: s.InstanceID()})
		stop := runtest.Start(t, pool)
		t.Cleanup(func() { _ = stop() }) // before the store closes
	}
	return s
}

func setTypeControl(t *testing.T, s *Store, name string, ch domain.TypeChange) {
	t.Helper()
	if _, err := s.SetTypeControl(context.Background(), name, ch); err != nil {
		t.Fatal(err)
	}
}

// waitClosed waits for done to be closed, failing the test after bound.
func waitClosed(t *testing.T, done <-chan struct{}, bound time.Duration, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(bound):
		t.Fatalf("%s: not within %v", what, bound)
	}
}

// Two instances of 8 workers each run 200 jobs of a type limited to 3:
// never more than 3 of them run at once (a handler runs only while its
// job is processing), and 3 do run at once; nor does the database see
// more than 3 processing after any statement.
func TestTypeConcurrencyAcrossInstances(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	const jobs = 200
	var (
		running, most atomic.Int32
		finished      atomic.Int32
		done          = make(chan struct{})
	)
	h := func(ctx context.Context, j *domain.Job) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(2 * time.Millisecond) // the job's work
		running.Add(-1)
		if finished.Add(1) == jobs {
			close(done)
		}
		return nil
	}
	a := instance(t, schema, 8, h)
	instance(t, schema, 8, h)
	// The database watches too: after every statement that changes jobs
	// (every claim among them), it notes how many of the type are
	// processing as that statement sees it: its own claims and those
	// committed before it. A claim holds the type's control row until it
	// commits, so no other claim commits in between, and completions only
	// lower the count: what it notes is at least what was processing when
	// the claim committed.
	ctx := context.Background()
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET search_path = `+pgx.Identifier{schema}.Sanitize()+`;
		CREATE TABLE seen_processing (n bigint NOT NULL);
		CREATE FUNCTION note_processing() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
		BEGIN
			INSERT INTO seen_processing SELECT count(*) FROM jobs WHERE type = 'capped' AND status = 'processing';
			RETURN NULL;
		END $$;
		CREATE TRIGGER note_processing AFTER UPDATE ON jobs FOR EACH STATEMENT EXECUTE FUNCTION note_processing();`); err != nil {
		t.Fatal(err)
	}
	setTypeControl(t, a, "capped", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 3}})
	njs := make([]domain.NewJob, jobs)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "capped"}
	}
	if _, err := a.CreateMany(ctx, njs); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, done, time.Minute, "200 jobs run")
	if m := most.Load(); m != 3 {
		t.Fatalf("at most %d jobs of a type limited to 3 ran at once, want 3", m)
	}
	var seen, notes int
	if err := conn.QueryRow(ctx, `SELECT max(n), count(*) FROM seen_processing`).Scan(&seen, &notes); err != nil {
		t.Fatal(err)
	}
	if seen != 3 {
		t.Fatalf("the database saw up to %d jobs of a type limited to 3 processing after a statement (%d statements), want 3", seen, notes)
	}
}

// Two instances share a rate of 5 jobs per second (burst 1): over 10
// seconds, 50 jobs start, within 10 %.
func TestTypeRateAcrossInstances(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	var (
		mu      sync.Mutex
		starts  []time.Time
		reached = make(chan struct{})
	)
	// The 56th start ends the watch: had the rate been exceeded by more
	// than 10 %, it would have come before 10 s were over.
	h := func(ctx context.Context, j *domain.Job) error {
		mu.Lock()
		starts = append(starts, time.Now())
		if len(starts) == 56 {
			close(reached)
		}
		mu.Unlock()
		return nil
	}
	a := instance(t, schema, 8, h)
	instance(t, schema, 8, h)
	setTypeControl(t, a, "api", domain.TypeChange{Limits: &domain.TypeLimits{RatePerSecond: 5, RateBurst: 1}})
	njs := make([]domain.NewJob, 80)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "api"}
	}
	if _, err := a.CreateMany(context.Background(), njs); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, reached, 30*time.Second, "56 starts at 5/s")
	mu.Lock()
	first := starts[0]
	in10 := 0
	for _, s := range starts {
		if s.Sub(first) < 10*time.Second {
			in10++
		}
	}
	last := starts[55]
	mu.Unlock()
	if in10 < 45 || in10 > 55 {
		t.Fatalf("%d jobs started in the first 10 s at 5/s, want 50 within 10 %%", in10)
	}
	t.Logf("%d jobs in the first 10 s; the 56th after %v", in10, last.Sub(first))
}

// A pause made on one instance stops the claims of the other within a
// second (its listener hears of it, and its claims read the pause from
// the table); the resume wakes it, without a poll.
func TestPauseAcrossInstances(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	ran := make(chan string, 10)
	h := func(ctx context.Context, j *domain.Job) error { ran <- j.Type; return nil }
	a := instance(t, schema, 0, nil)
	heard := &typeWatch{ch: make(chan domain.TypeControl, 10)}
	instance(t, schema, 4, h, heard)
	start := time.Now()
	setTypeControl(t, a, "mail", domain.TypeChange{Paused: ptr(true)})
	select {
	case c := <-heard.ch:
		if c.Name != "mail" || !c.Paused {
			t.Fatalf("the other instance heard %+v, want mail paused", c)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("the other instance heard of the pause after %v", d)
		}
	case <-time.After(time.Second):
		t.Fatal("the other instance did not hear of the pause within a second")
	}
	ctx := context.Background()
	held, err := a.Create(ctx, domain.NewJob{Type: "mail", Priority: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(ctx, domain.NewJob{Type: "sms"}); err != nil {
		t.Fatal(err)
	}
	// The sms job, behind the mail job in dispatch order, ran; the mail
	// job did not.
	if got := <-ran; got != "sms" {
		t.Fatalf("ran a %s job while mail is paused", got)
	}
	if j, err := a.Get(ctx, held.ID); err != nil || j.Status != domain.StatusPending {
		t.Fatalf("paused type's job = %v, %v; want pending", j.Status, err)
	}
	setTypeControl(t, a, "mail", domain.TypeChange{Paused: ptr(false)})
	select {
	case got := <-ran:
		if got != "mail" {
			t.Fatalf("ran %s after the resume, want the mail job", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the resume on one instance did not wake the other's workers (its poll is an hour)")
	}
}

func ptr[T any](v T) *T { return &v }
