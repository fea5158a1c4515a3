package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// databaseURL is the server the tests use: TEST_DATABASE_URL, or a local
// default.
func databaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// connect opens a connection of its own to the test server (pool_*
// parameters of the URL are for the stores' pools).
func connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL())
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg.ConnConfig)
}

// newSchema returns the name of a fresh schema that is dropped when the
// test ends (after the stores opened later are closed). Without a
// reachable server the test is skipped, or fails when
// JOBQUEUE_REQUIRE_POSTGRES=1.
func newSchema(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := connect(ctx)
	if err != nil {
		if os.Getenv("JOBQUEUE_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL is required (JOBQUEUE_REQUIRE_POSTGRES=1) but unreachable at TEST_DATABASE_URL: %v", err)
		}
		t.Skipf("!!! SKIPPED: PostgreSQL unreachable (%v); set TEST_DATABASE_URL, and JOBQUEUE_REQUIRE_POSTGRES=1 to fail instead", err)
	}
	conn.Close(ctx)
	schema := "jobqueue_test_" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := connect(ctx)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// openStore opens a store on schema with its Listener running, as a
// server runs them; both stop when the test ends.
func openStore(t testing.TB, schema string, opts Options) *Store {
	t.Helper()
	s, _ := openListening(t, schema, opts)
	return s
}

// openListening is openStore that also returns the store's Listener.
func openListening(t testing.TB, schema string, opts Options) (*Store, *Listener) {
	t.Helper()
	opts.Schema = schema
	s, err := Open(context.Background(), databaseURL(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(s.Close)
	l, err := s.Listen(context.Background())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done }) // before the store closes
	return s, l
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts storetest.Options) store.Store {
		return openStore(t, newSchema(t), Options{Publisher: opts.Publisher, ErrorHistory: opts.ErrorHistory})
	})
}

// recorder keeps every published job, and tells waiters when a wanted
// version shows up.
type recorder struct {
	mu     sync.Mutex
	events []*domain.Job
	signal chan struct{} // closed and replaced on every event
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{})} }

func (r *recorder) Publish(j *domain.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, j)
	close(r.signal)
	r.signal = make(chan struct{})
}

func (r *recorder) all() []*domain.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*domain.Job(nil), r.events...)
}

// of returns the events of the job with the id.
func (r *recorder) of(id string) []*domain.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*domain.Job
	for _, j := range r.events {
		if j.ID == id {
			out = append(out, j)
		}
	}
	return out
}

// waitFor waits until ok holds for the recorded events, failing the test
// after a deadline.
func (r *recorder) waitFor(t *testing.T, what string, ok func(events []*domain.Job) bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		done, signal := ok(r.events), r.signal
		r.mu.Unlock()
		if done {
			return
		}
		select {
		case <-signal:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// hasVersion reports whether events hold version v of job id.
func hasVersion(id string, v int64) func([]*domain.Job) bool {
	return func(events []*domain.Job) bool {
		for _, j := range events {
			if j.ID == id && j.Version >= v {
				return true
			}
		}
		return false
	}
}

// assertIncreasing fails unless the events of each job have increasing
// versions.
func assertIncreasing(t *testing.T, name string, events []*domain.Job) {
	t.Helper()
	last := map[string]int64{}
	for _, j := range events {
		if j.Version <= last[j.ID] {
			t.Fatalf("%s: job %s published version %d after %d", name, j.ID, j.Version, last[j.ID])
		}
		last[j.ID] = j.Version
	}
}

func claimOne(t *testing.T, s *Store, owner string) *domain.Job {
	t.Helper()
	now := time.Now()
	jobs, err := s.Claim(context.Background(), store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim as %s = %d jobs, %v; want 1", owner, len(jobs), err)
	}
	return jobs[0]
}

// A claim that commits while the creation of its job is not published yet
// publishes after it: no version is left out.
func TestLocalEventsWaitForPriorVersion(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	created := make(chan string, 1)
	claimed := make(chan struct{})
	s := openStore(t, newSchema(t), Options{Publisher: rec, hooks: &testHooks{beforePublish: func(jobs []*domain.Job) {
		switch {
		case len(jobs) == 1 && jobs[0].Version == 1:
			created <- jobs[0].ID
			// Hold the creation's publication until the claim of the job
			// committed and is about to publish: it must wait for this.
			<-claimed
		case len(jobs) == 1 && jobs[0].Version == 2:
			close(claimed)
		}
	}}})
	ctx := context.Background()
	go func() {
		if _, err := s.Create(ctx, domain.NewJob{Type: "t"}); err != nil {
			t.Error(err)
		}
	}()
	id := <-created
	c := claimOne(t, s, "o")
	if c.ID != id {
		t.Fatalf("claimed %s, want %s", c.ID, id)
	}
	events := rec.of(id)
	if len(events) != 2 || events[0].Version != 1 || events[1].Version != 2 {
		var versions []int64
		for _, e := range events {
			versions = append(versions, e.Version)
		}
		t.Fatalf("published versions %v, want [1 2]", versions)
	}
}

// A job created on one instance, claimed, cancelled and completed through
// another reaches the publishers of both, in version order, up to its
// final state.
func TestEventsAcrossInstances(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	recA, recB := newRecorder(), newRecorder()
	a := openStore(t, schema, Options{Publisher: recA})
	// Instance ids of any length and characters work.
	b := openStore(t, schema, Options{Publisher: recB, InstanceID: `host'with"quotes\-` + strings.Repeat("x", 300)})
	if a.InstanceID() == b.InstanceID() {
		t.Fatalf("two stores share the instance id %q", a.InstanceID())
	}
	ctx := context.Background()

	j, err := a.Create(ctx, domain.NewJob{Type: "cross", Payload: []byte(`{"x": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	// The other instance hears of the new pending job (a dispatcher there
	// would wake up).
	recB.waitFor(t, "the creation on B", hasVersion(j.ID, 1))

	c := claimOne(t, b, "worker-b")
	if c.ID != j.ID {
		t.Fatalf("claimed %s, want %s", c.ID, j.ID)
	}
	// A cancellation asked on A reaches the worker's instance.
	if _, err := a.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	recB.waitFor(t, "the cancellation request on B", func(events []*domain.Job) bool {
		for _, e := range events {
			if e.ID == j.ID && e.Status == domain.StatusProcessing && e.CancelRequested {
				return true
			}
		}
		return false
	})
	done, err := b.Finish(ctx, store.LeaseOf(c, "worker-b"), domain.StatusCancelled, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]*recorder{"A": recA, "B": recB} {
		rec.waitFor(t, "the final state on "+name, hasVersion(j.ID, done.Version))
		events := rec.of(j.ID)
		assertIncreasing(t, name, events)
		last := events[len(events)-1]
		if last.Version != done.Version || last.Status != domain.StatusCancelled || string(last.Payload) != `{"x": 1}` {
			t.Fatalf("%s's last event = %+v, want the final state %+v", name, last, done)
		}
	}
	// The instance that made every change but the creation saw them all.
	if n := len(recB.of(j.ID)); n != int(done.Version) {
		t.Fatalf("B published %d versions, want %d", n, done.Version)
	}
}

// Two instances claiming from one table in batches claim each job exactly
// once.
func TestClaimsAcrossInstances(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	stores := []*Store{openStore(t, schema, Options{}), openStore(t, schema, Options{})}
	const jobs = 3000
	insertJobs(t, stores[0], jobs)

	var (
		mu     sync.Mutex
		wins   = map[string]int{}
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	for i, s := range stores {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprintf("store-%d-claimer-%d", i, g)
				for {
					now := time.Now()
					got, err := s.Claim(context.Background(), store.ClaimRequest{Owner: owner, Limit: 1 + 13*g, Now: now, LeaseUntil: now.Add(time.Minute)})
					if err != nil {
						t.Error(err)
						failed.Store(true)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, j := range got {
						wins[j.ID]++
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if failed.Load() {
		return
	}
	if len(wins) != jobs {
		t.Fatalf("%d jobs claimed, want %d", len(wins), jobs)
	}
	for id, n := range wins {
		if n != 1 {
			t.Fatalf("job %s claimed %d times", id, n)
		}
	}
}

// insertJobs inserts n pending jobs directly, with ids like Create's (much
// faster than Create).
func insertJobs(t testing.TB, s *Store, n int) {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	now := s.now()
	_, err := s.pool.Exec(context.Background(), `
		INSERT INTO jobs (id, type, status, max_attempts, run_at, created_at, updated_at)
		SELECT id, 'bulk', 'pending', 1, $2, $2, $2 FROM unnest($1::uuid[]) AS id`, ids, now)
	if err != nil {
		t.Fatalf("insert %d jobs: %v", n, err)
	}
}

// Changes made while an instance's listening connection is down reach its
// publisher once it reconnects.
func TestListenerResync(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	recB := newRecorder()
	var (
		lost    = make(chan struct{})
		proceed = make(chan struct{})
		once    sync.Once
	)
	a := openStore(t, schema, Options{})
	_, bl := openListening(t, schema, Options{Publisher: recB, hooks: &testHooks{beforeRelisten: func() {
		once.Do(func() {
			close(lost)
			<-proceed
		})
	}}})
	resume := sync.OnceFunc(func() { close(proceed) })
	t.Cleanup(resume) // before b closes, should the test stop early

	ctx := context.Background()
	var created []*domain.Job
	for range 5 {
		j, err := a.Create(ctx, domain.NewJob{Type: "resync"})
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, j)
	}
	for _, j := range created {
		recB.waitFor(t, "the creations on B", hasVersion(j.ID, 1))
	}

	// Kill B's listening connection; B waits in the hook, deaf, while A
	// runs every job to its end.
	var killed bool
	if err := a.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int(bl.pid.Load())).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate B's listener: %v, %v", killed, err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("B did not notice the loss of its listening connection")
	}
	final := map[string]int64{}
	for range created {
		c := claimOne(t, a, "worker-a")
		done, err := a.Complete(ctx, store.LeaseOf(c, "worker-a"), []byte(`"ok"`))
		if err != nil {
			t.Fatal(err)
		}
		final[done.ID] = done.Version
	}
	resume()

	for id, v := range final {
		recB.waitFor(t, "the final states on B", hasVersion(id, v))
		events := recB.of(id)
		if last := events[len(events)-1]; last.Status != domain.StatusCompleted || string(last.Result) != `"ok"` {
			t.Fatalf("B's last event of %s = %+v, want completed", id, last)
		}
	}
	assertIncreasing(t, "B", recB.all())
	if bl.resyncs.Load() == 0 {
		t.Fatal("B did not re-sync")
	}
}

// typeRecorder is a Publisher that keeps the type controls it hears.
type typeRecorder struct {
	mu     sync.Mutex
	last   map[string]domain.TypeControl
	signal chan struct{} // closed and replaced at each change
}

func newTypeRecorder() *typeRecorder {
	return &typeRecorder{last: make(map[string]domain.TypeControl), signal: make(chan struct{})}
}

func (r *typeRecorder) Publish(*domain.Job) {}

func (r *typeRecorder) PublishType(c domain.TypeControl) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[c.Name] = c
	close(r.signal)
	r.signal = make(chan struct{})
}

// waitFor waits until the last controls heard of name satisfy ok.
func (r *typeRecorder) waitFor(t *testing.T, what, name string, ok func(domain.TypeControl, bool) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		c, heard := r.last[name]
		signal := r.signal
		r.mu.Unlock()
		if ok(c, heard) {
			return
		}
		select {
		case <-signal:
		case <-deadline:
			t.Fatalf("%s: last heard of %s: %+v (heard: %v)", what, name, c, heard)
		}
	}
}

// Controls changed while an instance's listening connection is down reach
// its publisher once it reconnects, also those cleared meanwhile, whose
// row is gone.
func TestListenerResyncOfTypeControls(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	recB := newTypeRecorder()
	var (
		lost    = make(chan struct{})
		proceed = make(chan struct{})
		once    sync.Once
	)
	a := openStore(t, schema, Options{})
	_, bl := openListening(t, schema, Options{Publisher: recB, hooks: &testHooks{beforeRelisten: func() {
		once.Do(func() {
			close(lost)
			<-proceed
		})
	}}})
	resume := sync.OnceFunc(func() { close(proceed) })
	t.Cleanup(resume)

	yes, no := true, false
	paused := func(c domain.TypeControl, heard bool) bool { return heard && c.Paused }
	cleared := func(c domain.TypeControl, heard bool) bool { return heard && c.Empty() }
	setTypeControl(t, a, "mail", domain.TypeChange{Paused: &yes})
	recB.waitFor(t, "the pause on B", "mail", paused)

	var killed bool
	if err := a.pool.QueryRow(context.Background(), `SELECT pg_terminate_backend($1)`, int(bl.pid.Load())).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate B's listener: %v, %v", killed, err)
	}
	waitClosed(t, lost, 10*time.Second, "B notices the loss of its listening connection")
	setTypeControl(t, a, "mail", domain.TypeChange{Paused: &no}) // deletes mail's row
	setTypeControl(t, a, "sms", domain.TypeChange{Paused: &yes})
	resume()

	recB.waitFor(t, "the pause made during the outage on B", "sms", paused)
	recB.waitFor(t, "the resume made during the outage on B", "mail", cleared)
	if bl.resyncs.Load() == 0 {
		t.Fatal("B did not re-sync")
	}
}

// The listening connection, pinged while idle, keeps hearing changes.
func TestListenerIdlePing(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	rec := newRecorder()
	a := openStore(t, schema, Options{})
	pinged := make(chan struct{}, 1)
	_, bl := openListening(t, schema, Options{Publisher: rec, hooks: &testHooks{idlePing: 5 * time.Millisecond, afterPing: func() {
		select {
		case pinged <- struct{}{}:
		default:
		}
	}}})
	pid := bl.pid.Load()
	for range 3 {
		for range 2 { // idle: several pings
			select {
			case <-pinged:
			case <-time.After(10 * time.Second):
				t.Fatal("the idle listening connection was not pinged")
			}
		}
		j, err := a.Create(context.Background(), domain.NewJob{Type: "t"})
		if err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, "the creation on B", hasVersion(j.ID, 1))
	}
	if bl.pid.Load() != pid || bl.resyncs.Load() != 0 {
		t.Fatal("the listener reconnected; want the pinged connection kept")
	}
}

// Without a server, calls fail with errors that wrap ErrUnavailable; so do
// calls on a closed store.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Open(ctx, "postgres://postgres@"+closedPort+"/test?sslmode=disable&connect_timeout=5", Options{}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("open against a closed port: err = %v, want ErrUnavailable", err)
	}

	s := openStore(t, newSchema(t), Options{})
	j, err := s.Create(ctx, domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for name, call := range map[string]func() error{
		"create": func() error { _, err := s.Create(ctx, domain.NewJob{Type: "t"}); return err },
		"get":    func() error { _, err := s.Get(ctx, j.ID); return err },
		"list":   func() error { _, err := s.List(ctx, store.ListQuery{Limit: 1}); return err },
		"claim": func() error {
			_, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 1, Now: time.Now()})
			return err
		},
		"complete": func() error {
			_, err := s.Complete(ctx, store.Lease{JobID: j.ID, Owner: "o", Attempt: 1}, nil)
			return err
		},
		"cancel": func() error { _, err := s.Cancel(ctx, j.ID); return err },
		"stats":  func() error { _, err := s.Stats(ctx, store.StatsQuery{}); return err },
	} {
		if err := call(); !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("%s on a closed store: err = %v, want ErrUnavailable", name, err)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "22P02"}, false},
		{errors.New("dial tcp: connection refused"), true},
		{fmt.Errorf("query: %w", context.Canceled), false},
		{context.DeadlineExceeded, false},
	} {
		err := classify(tc.err)
		if errors.Is(err, domain.ErrUnavailable) != tc.unavailable || !errors.Is(err, tc.err) {
			t.Errorf("classify(%v) = %v; unavailable %v, want %v, and the cause kept", tc.err, err, errors.Is(err, domain.ErrUnavailable), tc.unavailable)
		}
	}
}

// Instances starting together on a fresh schema migrate it once.
func TestMigrationsRace(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	const instances = 4
	stores := make([]*Store, instances)
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), databaseURL(), Options{Schema: schema})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		t.Cleanup(stores[i].Close)
	}
	var applied int
	if err := stores[0].pool.QueryRow(context.Background(), `SELECT count(*) FROM `+versionTable+` WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(files) {
		t.Fatalf("%d migrations recorded, want each of the %d once", applied, len(files))
	}
	if _, err := stores[1].Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
		t.Fatal(err)
	}
}

// A Complete whose context is done does not wait for its batch.
func TestCompleteRespectsContext(t *testing.T) {
	t.Parallel()
	s := openStore(t, newSchema(t), Options{})
	j, err := s.Create(context.Background(), domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	c := claimOne(t, s, "o")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Complete(ctx, store.LeaseOf(c, "o"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("complete with a cancelled context: err = %v, want context.Canceled", err)
	}
	if got, err := s.Get(context.Background(), j.ID); err != nil || got.Status != domain.StatusProcessing {
		t.Fatalf("after a cancelled completion: %+v, %v; want still processing", got, err)
	}
}

// Values PostgreSQL cannot keep are refused as invalid, or made storable
// (error messages); one refused creation does not fail those coalesced
// with it.
func TestUnstorableValues(t *testing.T) {
	t.Parallel()
	s := openStore(t, newSchema(t), Options{})
	ctx := context.Background()
	for name, nj := range map[string]domain.NewJob{
		"NUL in key":   {Type: "t", IdempotencyKey: "a\x00b"},
		"invalid type": {Type: "\xff"},
		"priority":     {Type: "t", Priority: 1 << 20},
	} {
		if _, err := s.Create(ctx, nj); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("create with %s: err = %v, want ErrInvalid", name, err)
		}
	}

	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nj := domain.NewJob{Type: "t"}
			if i == 7 {
				nj.RunAt = time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC) // beyond timestamptz
			}
			_, errs[i] = s.Create(ctx, nj)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 7) || errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("creation %d: err = %v; want an error (not ErrUnavailable) for creation 7 only", i, err)
		}
	}

	put, err := s.Create(ctx, domain.NewJob{Type: "t", Priority: 100})
	if err != nil {
		t.Fatal(err)
	}
	c := claimOne(t, s, "o")
	if c.ID != put.ID {
		t.Fatalf("claimed %s, want %s", c.ID, put.ID)
	}
	f, err := s.Fail(ctx, store.LeaseOf(c, "o"), "bad \x00 bytes \xff", time.Time{})
	if err != nil || f.Error != "bad \uFFFD bytes \uFFFD" || f.Errors[0].Message != f.Error {
		t.Fatalf("fail with an unstorable message = %+v, %v", f, err)
	}
}

// Payloads and results come back byte for byte, which jsonb would not do.
func TestPayloadKeptExactly(t *testing.T) {
	t.Parallel()
	s := openStore(t, newSchema(t), Options{})
	ctx := context.Background()
	payload := []byte(`{ "b":1,  "a" : [1.50, "\u00e9"] }`)
	j, err := s.Create(ctx, domain.NewJob{Type: "t", Payload: payload})
	if err != nil || string(j.Payload) != string(payload) {
		t.Fatalf("create = %q, %v", j.Payload, err)
	}
	c := claimOne(t, s, "o")
	result := []byte(`{"z":0, "y" :1e3}`)
	done, err := s.Complete(ctx, store.LeaseOf(c, "o"), result)
	if err != nil || string(done.Result) != string(result) || string(done.Payload) != string(payload) {
		t.Fatalf("complete = %+v, %v", done, err)
	}
}

// canonicalID accepts exactly the ids the store makes: a UUID as
// uuid.UUID.String writes it.
func TestCanonicalID(t *testing.T) {
	t.Parallel()
	id := uuid.Must(uuid.NewV7()).String()
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{id, true},
		{"00000000-0000-0000-0000-000000000000", true},
		{strings.ToUpper(id), false},
		{"{" + id + "}", false},
		{"urn:uuid:" + id, false},
		{strings.ReplaceAll(id, "-", ""), false},
		{id[:35] + "g", false},
		{id[:8] + "0" + id[9:], false}, // a digit where a dash belongs
		{id[:36-1], false},
		{"", false},
	} {
		if got := canonicalID(tc.id); got != tc.want {
			t.Errorf("canonicalID(%q) = %v, want %v", tc.id, got, tc.want)
		}
		if u, err := uuid.Parse(tc.id); (err == nil && u.String() == tc.id) != tc.want {
			t.Errorf("the test's expectation for %q disagrees with uuid.Parse", tc.id)
		}
	}
}

// Two completions of one job in one batch, a stale attempt's first: the
// current attempt's completion applies, the stale one is refused.
func TestCompleteBatchSameJob(t *testing.T) {
	t.Parallel()
	s := openStore(t, newSchema(t), Options{})
	ctx := context.Background()
	if _, err := s.Create(ctx, domain.NewJob{Type: "t", MaxAttempts: 3}); err != nil {
		t.Fatal(err)
	}
	stale := claimOne(t, s, "o")
	if _, err := s.Release(ctx, store.LeaseOf(stale, "o")); err != nil {
		t.Fatal(err)
	}
	current := claimOne(t, s, "o")
	if current.ID != stale.ID || current.Attempts == stale.Attempts {
		t.Fatalf("second claim = %s attempt %d; want %s at a new attempt", current.ID, current.Attempts, stale.ID)
	}
	calls := []*call[completeArg]{
		{ctx: ctx, arg: completeArg{lease: store.LeaseOf(stale, "o")}, reply: make(chan callResult, 1)},
		{ctx: ctx, arg: completeArg{lease: store.LeaseOf(current, "o")}, reply: make(chan callResult, 1)},
	}
	if err := s.completeBatchOf(calls); err != nil {
		t.Fatal(err)
	}
	if r := <-calls[0].reply; !errors.Is(r.err, domain.ErrLeaseLost) {
		t.Errorf("stale completion: %+v, %v; want ErrLeaseLost", r.job, r.err)
	}
	if r := <-calls[1].reply; r.err != nil || r.job.Status != domain.StatusCompleted {
		t.Errorf("current completion: %+v, %v; want completed", r.job, r.err)
	}
}

// The counts behind totals and stats (job_counts, kept by triggers) match
// the table after two instances changed jobs concurrently in every way a
// job's status changes.
func TestCountsMatchTable(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	stores := []*Store{openStore(t, schema, Options{InstanceID: "a"}), openStore(t, schema, Options{InstanceID: "b"})}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i, s := range stores {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprintf("w%d-%d", i, g)
				for n := range 60 {
					typ := []string{"a", "b", "c"}[n%3]
					jobOwner := []string{"", "alice", "bob", "carol"}[(n/3+g)%4]
					j, err := s.Create(ctx, domain.NewJob{Type: typ, Owner: jobOwner, MaxAttempts: 2})
					if err != nil {
						errs <- err
						return
					}
					if n%7 == 0 {
						if _, err := s.Cancel(ctx, j.ID); err != nil && !errors.Is(err, domain.ErrConflict) {
							errs <- err
							return
						}
					}
					now := time.Now()
					claimed, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 2, Now: now, LeaseUntil: now.Add(time.Minute)})
					if err != nil {
						errs <- err
						return
					}
					for k, c := range claimed {
						l := store.LeaseOf(c, owner)
						switch (n + k) % 4 {
						case 0:
							_, err = s.Complete(ctx, l, nil)
						case 1:
							_, err = s.Fail(ctx, l, "boom", now)
						case 2:
							_, err = s.Finish(ctx, l, domain.StatusFailed, "final")
						case 3:
							_, err = s.Release(ctx, l)
						}
						if err != nil && !errors.Is(err, domain.ErrConflict) {
							errs <- err
							return
						}
						if (n+k)%4 == 2 && n%5 == 0 {
							if _, err := s.Retry(ctx, c.ID); err != nil && !errors.Is(err, domain.ErrConflict) {
								errs <- err
								return
							}
						}
					}
				}
			}()
		}
	}
	// Compactions run meanwhile, from both instances.
	writersDone := make(chan struct{})
	var compactions sync.WaitGroup
	for _, s := range stores {
		compactions.Go(func() {
			for {
				if _, err := s.compactCounts(ctx); err != nil {
					errs <- err
					return
				}
				select {
				case <-writersDone:
					return
				default:
				}
			}
		})
	}
	wg.Wait()
	close(writersDone)
	compactions.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := stores[0].DeleteFinished(ctx, time.Now().Add(time.Hour), 50); err != nil {
		t.Fatal(err)
	}

	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := pgx.Identifier{schema, "jobs"}.Sanitize()
	for _, q := range []store.StatsQuery{{}, {Type: "a"}, {Type: "b"}, {Type: "c"}, {Type: "none"},
		{Owner: "alice"}, {Owner: "bob"}, {Owner: "carol", Type: "c"}, {Owner: "nobody"}} {
		typ, jobOwner := q.Type, q.Owner
		var want domain.Stats
		rows, err := conn.Query(ctx, `SELECT status, count(*) FROM `+table+` WHERE ($1 = '' OR type = $1) AND ($2 = '' OR owner = $2) GROUP BY status`, typ, jobOwner)
		if err != nil {
			t.Fatal(err)
		}
		var (
			status string
			n      int
		)
		_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error {
			*map[string]*int{"pending": &want.Pending, "processing": &want.Processing, "completed": &want.Completed,
				"failed": &want.Failed, "cancelled": &want.Cancelled}[status] = n
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := stores[1].Stats(ctx, q)
		if err != nil || got != want {
			t.Errorf("stats of %+v = %+v, %v; the table has %+v", q, got, err, want)
		}
		for _, st := range []domain.Status{"", domain.StatusPending, domain.StatusFailed, domain.StatusCompleted} {
			page, err := stores[0].List(ctx, store.ListQuery{Type: typ, Owner: jobOwner, Status: st, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE ($1 = '' OR type = $1) AND ($2 = '' OR status = $2) AND ($3 = '' OR owner = $3)`,
				typ, string(st), jobOwner).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if page.Total != n {
				t.Errorf("list total of %+v, status %q = %d; the table has %d", q, st, page.Total, n)
			}
		}
	}
	st, err := stores[0].Stats(ctx, store.StatsQuery{})
	if err != nil || st.Pending == 0 || st.Completed == 0 || st.Failed == 0 || st.Cancelled == 0 {
		t.Fatalf("stats = %+v, %v; want jobs in every status but processing", st, err)
	}
}

// A change that committed while its reply was lost is still published by
// this instance (which skips its own notifications): a worker whose
// completion "failed" this way does not leave subscribers without the
// final state.
func TestLostReplyStillPublished(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	var lose atomic.Bool
	s := openStore(t, newSchema(t), Options{Publisher: rec, hooks: &testHooks{loseReply: func(sql string) error {
		if lose.Load() {
			return errors.New("read tcp: connection reset by peer")
		}
		return nil
	}}})
	ctx := context.Background()
	j, err := s.Create(ctx, domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	c := claimOne(t, s, "o")
	lose.Store(true)
	if _, err := s.Complete(ctx, store.LeaseOf(c, "o"), nil); err == nil {
		t.Fatal("complete with its reply lost: no error")
	}
	lose.Store(false)
	rec.waitFor(t, "the completed version", func(events []*domain.Job) bool {
		for _, e := range events {
			if e.ID == j.ID && e.Status == domain.StatusCompleted {
				return true
			}
		}
		return false
	})
	assertIncreasing(t, "events", rec.of(j.ID))

	// A statement the server refused changed nothing: nothing to fetch.
	if !outcomeUnknown(errors.New("connection reset")) || outcomeUnknown(&pgconn.PgError{Code: "23505"}) {
		t.Error("outcomeUnknown: a lost connection must count as unknown, a server's refusal as known")
	}
}

// Heartbeats racing batch completions of the same jobs (a pool's heartbeat
// lists the jobs whose outcome it is writing) never fail with a deadlock:
// the heartbeat skips held rows and gives up a wait long before the
// deadlock detector would step in.
func TestHeartbeatRacingCompletions(t *testing.T) {
	t.Parallel()
	s := openStore(t, newSchema(t), Options{})
	ctx := context.Background()
	for round := range 15 {
		insertJobs(t, s, 60)
		now := time.Now()
		jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 60, Now: now, LeaseUntil: now.Add(time.Minute)})
		if err != nil || len(jobs) != 60 {
			t.Fatalf("claim = %d jobs, %v", len(jobs), err)
		}
		// New versions of some rows land elsewhere in the table, so that
		// its order is no longer the ids' order.
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.ID
			if i%3 == 0 {
				if _, err := s.Progress(ctx, store.LeaseOf(j, "o"), 10+round); err != nil {
					t.Fatal(err)
				}
				jobs[i].Version++
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for range 4 {
			wg.Go(func() {
				for range 5 {
					if _, err := s.Heartbeat(ctx, "o", ids, time.Now().Add(time.Minute)); err != nil {
						errs <- fmt.Errorf("heartbeat: %w", err)
					}
				}
			})
		}
		for _, j := range jobs {
			wg.Go(func() {
				if _, err := s.Complete(ctx, store.LeaseOf(j, "o"), nil); err != nil {
					errs <- fmt.Errorf("complete: %w", err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// A job whose change may commit after its statement failed here (the
// server finishing it before it notices the lost connection) is fetched
// again until unsureFor passes: a commit later than the first fetch is
// still published.
func TestUnsureJobFetchedAgain(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	schema := newSchema(t)
	s := openStore(t, schema, Options{Publisher: rec})
	ctx := context.Background()
	j, err := s.Create(ctx, domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	c := claimOne(t, s, "o")
	s.unsure.add(time.Now(), j.ID)
	// The first fetch finds nothing new (the gate saw the claim).
	rec.waitFor(t, "the claim", hasVersion(j.ID, c.Version))
	// The "late commit": a change this instance is not notified of.
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE `+pgx.Identifier{schema, "jobs"}.Sanitize()+`
		SET status = 'completed', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL, version = version + 1
		WHERE id = $1`, j.ID); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the late completion", hasVersion(j.ID, c.Version+1))
}

func TestUnsureSchedule(t *testing.T) {
	u := newUnsure()
	t0 := time.Now()
	u.add(t0, "a")
	if ids, next := u.due(t0); len(ids) != 1 || !next.Equal(t0.Add(unsureRetry)) {
		t.Fatalf("at once: %v, next %v", ids, next)
	}
	if ids, _ := u.due(t0.Add(unsureRetry / 2)); len(ids) != 0 {
		t.Fatalf("before the retry: %v", ids)
	}
	if ids, _ := u.due(t0.Add(unsureRetry)); len(ids) != 1 {
		t.Fatalf("at the retry: %v", ids)
	}
	if ids, next := u.due(t0.Add(unsureFor + unsureRetry)); len(ids) != 1 || !next.IsZero() {
		t.Fatalf("last fetch: %v, next %v; want the job once more, then nothing", ids, next)
	}
	if ids, next := u.due(t0.Add(2 * unsureFor)); len(ids) != 0 || !next.IsZero() {
		t.Fatalf("after unsureFor: %v, next %v", ids, next)
	}
}

// Compacting job_counts and job_owner_counts changes no total and leaves
// one row per (type, status), and per (owner, type, status), that counts
// something; a TRUNCATE of jobs empties the counts.
func TestCountsCompaction(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, Options{})
	ctx := context.Background()
	for i := range 120 {
		// Owners: none for t0 and t1, alice for t2, bob for t3.
		if _, err := s.Create(ctx, domain.NewJob{Type: fmt.Sprintf("t%d", i%4), Owner: []string{"", "", "alice", "bob"}[i%4]}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	claimed, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 60, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range claimed {
		if _, err := s.Complete(ctx, store.LeaseOf(j, "o"), nil); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	counts := pgx.Identifier{schema, "job_counts"}.Sanitize()
	ownerCounts := pgx.Identifier{schema, "job_owner_counts"}.Sanitize()
	rows := func() (all, groups int) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT (type, status)) FROM `+counts).Scan(&all, &groups); err != nil {
			t.Fatal(err)
		}
		return all, groups
	}
	ownerRows := func() (all, groups int) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT (owner, type, status)) FROM `+ownerCounts).Scan(&all, &groups); err != nil {
			t.Fatal(err)
		}
		return all, groups
	}
	stats := func() map[store.StatsQuery]domain.Stats {
		t.Helper()
		out := map[store.StatsQuery]domain.Stats{}
		for _, typ := range []string{"", "t0", "t1", "t2", "t3"} {
			for _, owner := range []string{"", "alice", "bob"} {
				q := store.StatsQuery{Type: typ, Owner: owner}
				st, err := s.Stats(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				out[q] = st
			}
		}
		return out
	}
	before := stats()
	if before[store.StatsQuery{Owner: "alice"}] != before[store.StatsQuery{Type: "t2"}] || before[store.StatsQuery{Owner: "alice"}] == (domain.Stats{}) {
		t.Fatalf("alice's stats %+v, want those of type t2 %+v", before[store.StatsQuery{Owner: "alice"}], before[store.StatsQuery{Type: "t2"}])
	}
	if all, groups := rows(); all <= groups {
		t.Fatalf("before compaction: %d rows for %d groups; want shards to compact", all, groups)
	}
	if all, groups := ownerRows(); all <= groups {
		t.Fatalf("before compaction: %d owner count rows for %d groups; want shards to compact", all, groups)
	}
	if ok, err := s.compactCounts(ctx); err != nil || !ok {
		t.Fatalf("compact = %v, %v", ok, err)
	}
	if after := stats(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("stats changed by compaction: %v, were %v", after, before)
	}
	// Pending and completed for each of 4 types; the emptied processing
	// groups are gone.
	if all, groups := rows(); all != 8 || groups != 8 {
		t.Fatalf("after compaction: %d rows for %d groups, want 8 and 8", all, groups)
	}
	// The same for alice's t2 and bob's t3.
	if all, groups := ownerRows(); all != 4 || groups != 4 {
		t.Fatalf("after compaction: %d owner count rows for %d groups, want 4 and 4", all, groups)
	}
	if _, err := conn.Exec(ctx, `TRUNCATE `+pgx.Identifier{schema, "jobs"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.StatsQuery{{}, {Owner: "alice"}} {
		if st, err := s.Stats(ctx, q); err != nil || st != (domain.Stats{}) {
			t.Fatalf("stats of %+v after TRUNCATE = %+v, %v; want zeros", q, st, err)
		}
	}
	if all, _ := ownerRows(); all != 0 {
		t.Fatalf("%d owner count rows after TRUNCATE", all)
	}
}

// A heartbeat does not wait for a row another transaction holds: it renews
// the other leases and leaves that one to the next beat.
func TestHeartbeatSkipsHeldRows(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, Options{})
	ctx := context.Background()
	insertJobs(t, s, 2)
	now := time.Now()
	jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 2, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("claim = %d jobs, %v", len(jobs), err)
	}
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM `+pgx.Identifier{schema, "jobs"}.Sanitize()+` WHERE id = $1 FOR UPDATE`, jobs[0].ID); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := s.Heartbeat(hctx, "o", []string{jobs[0].ID, jobs[1].ID}, now.Add(2*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("heartbeat with one row held = %d, %v; want the other renewed at once", n, err)
	}
}

// An owner's listing walks jobs_owner_seq, in custom and in generic plans
// (what a prepared statement gets after a few runs), however many jobs
// others have: it reads the owner's jobs, not the table.
func TestOwnerListingUsesItsIndex(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, Options{})
	ctx := context.Background()
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET search_path TO `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	// 50,000 jobs, one in a thousand alice's.
	if _, err := conn.Exec(ctx, `
		INSERT INTO jobs (id, type, status, max_attempts, run_at, created_at, updated_at, finished_at, owner)
		SELECT gen_random_uuid(), 't' || (g % 3), 'completed', 1, now(), now(), now(), now(), CASE WHEN g % 1000 = 0 THEN 'alice' ELSE '' END
		FROM generate_series(1, 50000) g;
		ANALYZE jobs`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.ListQuery{
		{Owner: "alice"},
		{Owner: "alice", Type: "t1"},
		{Owner: "alice", Status: domain.StatusCompleted},
		{Owner: "alice", BeforeSeq: 30000},
	} {
		q.Limit = 50
		st, err := listStatements(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			if plan := explain(t, conn, mode, st.page, st.pageArgs); !strings.Contains(plan, "jobs_owner_seq") {
				t.Errorf("listing %+v, %s: the plan does not use jobs_owner_seq:\n%s", q, mode, plan)
			}
		}
		page, err := s.List(ctx, q)
		if err != nil || len(page.Jobs) == 0 || page.Jobs[0].Owner != "alice" {
			t.Fatalf("list %+v = %d jobs, %v", q, len(page.Jobs), err)
		}
	}
}

// explain returns the plan of statement sql prepared and run with args in
// plan_cache_mode mode: force_generic_plan shows what a prepared statement
// gets after a few runs.
func explain(t *testing.T, conn *pgx.Conn, mode, sql string, args []any) string {
	t.Helper()
	ctx := context.Background()
	literals := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			literals[i] = quote(v)
		default:
			literals[i] = fmt.Sprint(v)
		}
	}
	var plan strings.Builder
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = `+mode+`; PREPARE explained AS `+sql); err != nil {
			return err
		}
		execute := `EXPLAIN EXECUTE explained`
		if len(literals) > 0 {
			execute += `(` + strings.Join(literals, ", ") + `)`
		}
		rows, err := tx.Query(ctx, execute)
		if err != nil {
			return err
		}
		var line string
		if _, err := pgx.ForEachRow(rows, []any{&line}, func() error { plan.WriteString(line + "\n"); return nil }); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DEALLOCATE explained`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return plan.String()
}

// A tag's listing and its total find the tag's jobs through jobs_tags
// (migration 00010), in custom and in generic plans, however many jobs
// have other tags or none: they read the tag's jobs, not the table.
func TestTagListingUsesItsIndex(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, Options{})
	ctx := context.Background()
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET search_path TO `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	// 50,000 jobs: one in a thousand tagged rare, one in ten common
	// (with few jobs per tag, walking the jobs from the cursor down
	// looks cheap to a plan that does not know the tag).
	if _, err := conn.Exec(ctx, `
		INSERT INTO jobs (id, type, status, max_attempts, run_at, created_at, updated_at, finished_at, tags)
		SELECT gen_random_uuid(), 't' || (g % 3), 'completed', 1, now(), now(), now(), now(),
			CASE WHEN g % 1000 = 0 THEN ARRAY['rare', 'x'] WHEN g % 10 = 0 THEN ARRAY['common'] ELSE '{}' END
		FROM generate_series(1, 50000) g;
		ANALYZE jobs`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.ListQuery{
		{Tag: "rare"},
		{Tag: "rare", Type: "t1"},
		{Tag: "rare", Status: domain.StatusCompleted},
		{Tag: "rare", BeforeSeq: 30000},
	} {
		q.Limit = 50
		st, err := listStatements(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			if plan := explain(t, conn, mode, st.page, st.pageArgs); !strings.Contains(plan, "jobs_tags") {
				t.Errorf("listing %+v, %s: the plan does not use jobs_tags:\n%s", q, mode, plan)
			}
			if plan := explain(t, conn, mode, st.count, st.countArgs); !strings.Contains(plan, "jobs_tags") {
				t.Errorf("total of %+v, %s: the plan does not use jobs_tags:\n%s", q, mode, plan)
			}
		}
	}
	page, err := s.List(ctx, store.ListQuery{Tag: "rare", Limit: 10})
	if err != nil || len(page.Jobs) != 10 || page.Total != 50 || !page.HasMore || !page.Jobs[0].HasTag("rare") {
		t.Fatalf("list of rare = %d jobs of %d, more %v, %v; want 10 of 50", len(page.Jobs), page.Total, page.HasMore, err)
	}
}

// CreateMany inserts its jobs with one statement, however many there are
// and whichever keys are taken among them.
func TestCreateManyOneStatement(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		writes [][]*domain.Job
	)
	s := openStore(t, newSchema(t), Options{hooks: &testHooks{beforePublish: func(jobs []*domain.Job) {
		mu.Lock()
		writes = append(writes, jobs)
		mu.Unlock()
	}}})
	njs := make([]domain.NewJob, 100)
	for i := range njs {
		njs[i] = domain.NewJob{Type: "t", Owner: "alice"}
	}
	njs[10].IdempotencyKey, njs[20].IdempotencyKey = "k", "k"
	jobs, err := s.CreateMany(context.Background(), njs)
	if err != nil {
		t.Fatal(err)
	}
	if jobs[20].ID != jobs[10].ID {
		t.Fatalf("a key given twice made jobs %s and %s", jobs[10].ID, jobs[20].ID)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(writes) != 1 || len(writes[0]) != 99 {
		sizes := make([]int, len(writes))
		for i, w := range writes {
			sizes[i] = len(w)
		}
		t.Fatalf("statements wrote %v jobs, want one statement of 99", sizes)
	}
}

// OldestRunnable reads the first entry of jobs_next_run_at's range, in
// custom and in generic plans, however many jobs are finished.
func TestOldestRunnableUsesItsIndex(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	openStore(t, schema, Options{})
	ctx := context.Background()
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET search_path TO `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `
		INSERT INTO jobs (id, type, status, max_attempts, run_at, created_at, updated_at, finished_at)
		SELECT gen_random_uuid(), 't', CASE WHEN g % 1000 = 0 THEN 'pending' ELSE 'completed' END, 1, now(), now(), now(),
			CASE WHEN g % 1000 = 0 THEN NULL ELSE now() END
		FROM generate_series(1, 50000) g;
		ANALYZE jobs`); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if plan := explain(t, conn, mode, oldestRunnableSQL, []any{now}); !strings.Contains(plan, "jobs_next_run_at") {
			t.Errorf("%s: the plan does not use jobs_next_run_at:\n%s", mode, plan)
		}
	}
}
