package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// insertBacklog inserts n pending jobs of typ with priority in one
// statement (the counts triggers count them).
func insertBacklog(t testing.TB, s *Store, typ string, n, priority int) {
	t.Helper()
	now := s.now()
	_, err := s.pool.Exec(context.Background(), `
		INSERT INTO jobs (id, type, status, max_attempts, run_at, priority, created_at, updated_at)
		SELECT gen_random_uuid(), $1, 'pending', 1, $2, $3, $2, $2 FROM generate_series(1, $4)`, typ, now, priority, n)
	if err != nil {
		t.Fatalf("insert %d jobs of %s: %v", n, typ, err)
	}
}

// schemaConn connects to the database with schema as its search path.
func schemaConn(t testing.TB, schema string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `SET search_path = `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return conn
}

// claimRowsRead runs the claim under type controls of up to limit jobs
// on conn in a transaction it rolls back, and returns how many jobs it
// claimed and how many rows of jobs it read (heap rows fetched through
// indexes and by sequential scans, as the transaction's statistics count
// them: the statements inside the function included).
func claimRowsRead(t testing.TB, conn *pgx.Conn, limit int) (claimed, read int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	now := time.Now()
	if _, err := tx.Exec(ctx, claimPlanning); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM claim_controlled(0, $1, $2, $1, 'probe', $3)`, now, limit, now.Add(time.Hour)).Scan(&claimed); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) FROM pg_stat_xact_user_tables WHERE relid = 'jobs'::regclass`).Scan(&read); err != nil {
		t.Fatal(err)
	}
	return claimed, read
}

// A large backlog of a paused type, or of a type at its concurrency, ahead
// of other jobs in dispatch order is not walked by the claim: it reads
// about as many rows as it claims (a walk of jobs_claim would read the
// 50,000 of the backlog), and it claims the other types' jobs.
func TestClaimSkipsClosedBacklog(t *testing.T) {
	t.Parallel()
	const backlog = 50_000
	for _, tc := range []struct {
		name   string
		closed func(t *testing.T, s *Store)
	}{
		{"paused", func(t *testing.T, s *Store) {
			setTypeControl(t, s, "held", domain.TypeChange{Paused: ptr(true)})
		}},
		{"full", func(t *testing.T, s *Store) {
			setTypeControl(t, s, "held", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 1}})
			now := time.Now()
			// The type's first job, claimed: the type is at its limit.
			if jobs, err := s.Claim(context.Background(), store.ClaimRequest{Owner: "a", Limit: 1, Now: now, LeaseUntil: now.Add(time.Hour)}); err != nil || len(jobs) != 1 || jobs[0].Type != "held" {
				t.Fatalf("claim of the limited type's first job = %v, %v", jobs, err)
			}
		}},
		// Open at the start, closed once the claim took its quota: the
		// rest of its backlog is not walked either.
		{"open concurrency", func(t *testing.T, s *Store) {
			setTypeControl(t, s, "held", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 1}})
		}},
		{"open rate", func(t *testing.T, s *Store) {
			setTypeControl(t, s, "held", domain.TypeChange{Limits: &domain.TypeLimits{RatePerSecond: 10, RateBurst: 1}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			schema := newSchema(t)
			s := openStore(t, schema, Options{})
			ctx := context.Background()
			insertBacklog(t, s, "held", backlog, 5)
			tc.closed(t, s)
			for _, typ := range []string{"mail", "sms", "mail", "push"} {
				mustCreatePG(t, s, typ)
			}
			if _, err := s.pool.Exec(ctx, `ANALYZE jobs`); err != nil {
				t.Fatal(err)
			}
			open := strings.HasPrefix(tc.name, "open")
			claimed, read := claimRowsRead(t, schemaConn(t, schema), 10)
			if open {
				claimed-- // the limited type's one job
			}
			if claimed != 4 {
				t.Fatalf("the claim took %d jobs besides the limited type's, want the 4 of the open types", claimed)
			}
			if read > 200 {
				t.Fatalf("the claim read %d rows of jobs to claim 4 behind a closed backlog of %d", read, backlog)
			}
			now := time.Now()
			jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "b", Limit: 10, Now: now, LeaseUntil: now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			n := countTypesPG(jobs)
			if open && n["held"] == 1 {
				delete(n, "held")
				jobs = jobs[1:]
			}
			if len(jobs) != 4 || len(n) != 3 || n["mail"] != 2 || n["sms"] != 1 || n["push"] != 1 {
				t.Fatalf("claimed %v, want 2 mail, 1 sms and 1 push (and one of the limited type when it was open)", n)
			}
		})
	}
}

func mustCreatePG(t testing.TB, s *Store, typ string) *domain.Job {
	t.Helper()
	j, err := s.Create(context.Background(), domain.NewJob{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func countTypesPG(jobs []*domain.Job) map[string]int {
	n := make(map[string]int)
	for _, j := range jobs {
		n[j.Type]++
	}
	return n
}

// holdControl locks the control row of typ in a transaction of its own,
// as a claim of that type does while it runs, until the test ends or the
// returned function commits it.
func holdControl(t *testing.T, schema, typ string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := schemaConn(t, schema).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	if err := tx.QueryRow(ctx, `SELECT name FROM job_type_controls WHERE name = $1 FOR UPDATE`, typ).Scan(&name); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Commit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// A claim of other types does not wait for a claim that holds a limited
// type's control row: it claims while that transaction stays open (were
// it waiting, it would wait for as long, and its deadline end it).
func TestClaimDoesNotWaitForOtherLimitedType(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, Options{})
	ctx := context.Background()
	setTypeControl(t, s, "capped", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 5}})
	setTypeControl(t, s, "slow", domain.TypeChange{Limits: &domain.TypeLimits{RatePerSecond: 1}})
	for range 3 {
		mustCreatePG(t, s, "free")
	}
	// Behind the free jobs in dispatch order: not among the candidates.
	if _, err := s.Create(ctx, domain.NewJob{Type: "capped", Priority: -1}); err != nil {
		t.Fatal(err)
	}
	holdControl(t, schema, "capped")
	holdControl(t, schema, "slow")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	now := time.Now()
	jobs, err := s.Claim(cctx, store.ClaimRequest{Owner: "a", Limit: 3, Now: now, LeaseUntil: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("claim of free jobs while limited types' controls are held: %v", err)
	}
	if n := countTypesPG(jobs); n["free"] != 3 {
		t.Fatalf("claimed %v, want the 3 free jobs", n)
	}
}

// A claim that holds the control row of one limited type skips, without
// waiting, a limited type whose row sorts before it and which another
// claim holds (waiting for it could deadlock with a claim that holds it
// and waits for the first); it takes what it can, and NextRunAt asks for
// another claim soon, which takes the skipped type's job once free.
func TestClaimSkipsHeldTypeItMayNotWaitFor(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, Options{})
	ctx := context.Background()
	setTypeControl(t, s, "alpha", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 10}})
	setTypeControl(t, s, "mu", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 1}})
	// mu's two jobs come first: the first round takes one and finds mu
	// full; the second round finds alpha's job.
	for range 2 {
		if _, err := s.Create(ctx, domain.NewJob{Type: "mu", Priority: 1}); err != nil {
			t.Fatal(err)
		}
	}
	mustCreatePG(t, s, "alpha")
	release := holdControl(t, schema, "alpha")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	now := time.Now()
	jobs, err := s.Claim(cctx, store.ClaimRequest{Owner: "a", Limit: 2, Now: now, LeaseUntil: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("claim with alpha held: %v", err)
	}
	if n := countTypesPG(jobs); len(jobs) != 1 || n["mu"] != 1 {
		t.Fatalf("claimed %v, want one mu job", n)
	}
	next, err := s.NextRunAt(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if next.IsZero() || next.After(now.Add(contendedRetry)) {
		t.Fatalf("next run time after a claim that skipped a held type = %v, want within %v of %v", next, contendedRetry, now)
	}
	release()
	jobs, err = s.Claim(ctx, store.ClaimRequest{Owner: "a", Limit: 2, Now: now, LeaseUntil: now.Add(time.Hour)})
	if n := countTypesPG(jobs); err != nil || len(jobs) != 1 || n["alpha"] != 1 {
		t.Fatalf("claim once alpha is free = %v, %v; want the alpha job", n, err)
	}
	if next, err := s.NextRunAt(ctx, now); err != nil || !next.IsZero() {
		t.Fatalf("next run time after a claim that skipped nothing = %v, %v; want none", next, err)
	}
}

// Claimers on many connections, each claim's candidates spanning several
// limited types in different orders, never take more of a type than its
// concurrency, take every job the limits allow, and do not deadlock.
func TestTypeLimitsConcurrentClaimers(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, Options{})
	ctx := context.Background()
	types := []string{"a", "b", "c", "d"}
	limit := map[string]int{"a": 3, "b": 5, "c": 2, "d": 4}
	for _, typ := range types {
		setTypeControl(t, s, typ, domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: limit[typ]}})
	}
	var njs []domain.NewJob
	for i := range 30 {
		for k, typ := range types {
			// Each type's jobs lead in turn.
			njs = append(njs, domain.NewJob{Type: typ, Priority: (i + k) % len(types)})
		}
		njs = append(njs, domain.NewJob{Type: "free"})
	}
	if _, err := s.CreateMany(ctx, njs); err != nil {
		t.Fatal(err)
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = make(map[string]int)
	)
	now := time.Now()
	for i := range 8 {
		wg.Go(func() {
			for range 10 {
				jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "w" + string(rune('a'+i)), Limit: 3, Now: now, LeaseUntil: now.Add(time.Hour)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, j := range jobs {
					got[j.Type]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Whatever the contention skipped, a last claim takes.
	for {
		jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: "last", Limit: 100, Now: now, LeaseUntil: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 {
			break
		}
		for _, j := range jobs {
			got[j.Type]++
		}
	}
	for _, typ := range types {
		if got[typ] != limit[typ] {
			t.Errorf("claimed %d jobs of %s, limited to %d", got[typ], typ, limit[typ])
		}
	}
	if got["free"] != 30 {
		t.Errorf("claimed %d of the 30 free jobs", got["free"])
	}
	var processing map[string]int
	if stats, err := s.TypeStats(ctx, ""); err != nil {
		t.Fatal(err)
	} else {
		processing = make(map[string]int)
		for typ, st := range stats {
			processing[typ] = st.Processing
		}
	}
	for _, typ := range types {
		if processing[typ] != limit[typ] {
			t.Errorf("%d jobs of %s processing, limited to %d", processing[typ], typ, limit[typ])
		}
	}
}

// A claim that closes one type per round (each limited to one job, their
// backlogs one after another in dispatch order) stops after 64 rounds;
// the jobs it left are then claimed soon, not at the next poll: NextRunAt
// answers at once, as after a skipped control row.
func TestClaimStoppedAfterItsRoundsIsRetriedSoon(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, schema, Options{})
	ctx := context.Background()
	const types = 80
	for i := range types {
		typ := fmt.Sprintf("t%03d", i)
		setTypeControl(t, s, typ, domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 1}})
		insertBacklog(t, s, typ, types, 1000-i) // type i's jobs all ahead of type i+1's
	}
	now := time.Now()
	first, err := s.Claim(ctx, store.ClaimRequest{Owner: "a", Limit: types, Now: now, LeaseUntil: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) < types {
		next, err := s.NextRunAt(ctx, now)
		if err != nil || next.IsZero() || next.After(time.Now().Add(time.Second)) {
			t.Fatalf("a claim took %d of %d runnable jobs, and NextRunAt = %v, %v; want a time within a second", len(first), types, next, err)
		}
	}
	second, err := s.Claim(ctx, store.ClaimRequest{Owner: "a", Limit: types, Now: now, LeaseUntil: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if n := countTypesPG(append(first, second...)); len(first)+len(second) != types || len(n) != types {
		t.Fatalf("two claims took %d jobs of %d types, want one of each of the %d", len(first)+len(second), len(n), types)
	}
}
