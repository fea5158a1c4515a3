// Command burndown measures a store backend under the worker pool: how fast
// single jobs are created from many goroutines, and how fast a backlog of
// pending no-op jobs is burned down to COMPLETED.
//
//  1. insert: -jobs jobs are created one Create call at a time from -c
//     goroutines (each call its own transaction on the SQL backends);
//     reports jobs/s.
//  2. burn-down: a worker.Pool with -workers workers and a handler that does
//     nothing is started on the backlog; the clock runs from Start until the
//     last job's COMPLETED event; reports jobs/s. On PostgreSQL the table is
//     first VACUUM ANALYZEd (untimed; -vacuum=false leaves it as the
//     inserts did), as bench/river does before its burn-down, so that both
//     start from the same state whether or not autovacuum has come by.
//
// -db is memory:, sqlite:PATH (a fresh file; default a temporary one) or a
// postgres:// URL; on PostgreSQL the tool works in a fresh schema that it
// drops at the end, so it can run beside anything else.
//
// -type-limit and -type-rate give the jobs' type a concurrency limit or a
// rate before the burn-down: with values it never reaches, they measure
// what checking a limit in every claim costs.
//
// Output: one JSON line on stdout, a human line per measure on stderr (with,
// for the burn-down, the claims made, the CPU time spent per job by this
// process and, when the database runs on this machine, by its server
// processes, and on PostgreSQL the WAL written meanwhile); exit
// status 1 when a job is lost or a call fails.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/store/postgres"
	"github.com/jobqueue/jobqueue/internal/store/sqlite"
	"github.com/jobqueue/jobqueue/internal/worker"
)

type result struct {
	Backend        string  `json:"backend"`
	Jobs           int     `json:"jobs"`
	Concurrency    int     `json:"concurrency"`
	Workers        int     `json:"workers"`
	InsertSeconds  float64 `json:"insert_seconds"`
	InsertPerSec   float64 `json:"insert_jobs_per_sec"`
	BurnSeconds    float64 `json:"burndown_seconds"`
	BurnPerSec     float64 `json:"burndown_jobs_per_sec"`
	CompletedCount int64   `json:"completed"`
	Claims         int64   `json:"claims"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "burndown:", err)
		os.Exit(1)
	}
}

func run() error {
	db := flag.String("db", "memory:", "memory:, sqlite:PATH (empty path: a temporary file) or postgres://…")
	jobs := flag.Int("jobs", 50000, "jobs to create and burn down")
	conc := flag.Int("c", 16, "goroutines creating jobs one at a time")
	workers := flag.Int("workers", 100, "workers of the pool")
	batch := flag.Int("batch", 100, "most jobs one claim takes (worker QueueCapacity)")
	cooldown := flag.Duration("cooldown", -1, "worker ClaimCooldown: negative for the store's own (store.Tuning), 0 for none")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the burn-down to this file")
	vacuum := flag.Bool("vacuum", true, "PostgreSQL: VACUUM ANALYZE the table before the burn-down, as bench/river does")
	typeLimit := flag.Int("type-limit", 0, "when positive, the jobs' type gets this concurrency limit before the burn-down (the cost of a limit not reached: give more than -workers)")
	typeRate := flag.Float64("type-rate", 0, "when positive, the jobs' type gets this rate (per second, burst the same) before the burn-down")
	withMetrics := flag.Bool("metrics", false, "record Prometheus metrics as the server does with METRICS=on (the store wrapped, the pool recording)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var completed atomic.Int64
	allDone := make(chan struct{})
	target := int64(*jobs)
	inbox := worker.NewInbox()
	pub := store.Publishers{inbox, store.PublisherFunc(func(j *domain.Job) {
		if j.Status == domain.StatusCompleted && completed.Add(1) == target {
			close(allDone)
		}
	})}
	b, err := open(ctx, *db, pub)
	if err != nil {
		return err
	}
	defer b.close()
	var m *metrics.Metrics // nil: off
	if *withMetrics {
		m = metrics.New(metrics.Options{Backend: b.name})
	}
	st := m.Store(b.store)

	// 1. Single creates from many goroutines.
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, *conc)
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= target {
				if _, err := st.Create(ctx, domain.NewJob{Type: "noop", Payload: json.RawMessage(`{"n":1}`)}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return fmt.Errorf("create: %w", err)
	}
	insert := time.Since(start)
	fmt.Fprintf(os.Stderr, "%s insert: %d jobs from %d goroutines in %.2fs = %.0f jobs/s\n", b.name, *jobs, *conc, insert.Seconds(), float64(*jobs)/insert.Seconds())

	// 2. Burn-down of the backlog.
	if b.prepare != nil && *vacuum {
		if err := b.prepare(ctx); err != nil {
			return err
		}
	}
	if *typeLimit > 0 || *typeRate > 0 {
		l := domain.TypeLimits{Concurrency: *typeLimit, RatePerSecond: *typeRate, RateBurst: int(*typeRate)}
		if _, err := st.SetTypeControl(ctx, "noop", domain.TypeChange{Limits: &l}); err != nil {
			return fmt.Errorf("limit the type: %w", err)
		}
		fmt.Fprintf(os.Stderr, "%s burn-down: type limited to concurrency %d, rate %g/s\n", b.name, *typeLimit, *typeRate)
	}
	claimCooldown := *cooldown // worker.Options.ClaimCooldown: 0 is the store's, negative none
	switch {
	case *cooldown < 0:
		claimCooldown = 0
		*cooldown = store.TuningOf(st).ClaimCooldown
	case *cooldown == 0:
		claimCooldown = -1
	}
	counted := &countingStore{Store: st}
	p := worker.New(counted, inbox, worker.Options{
		Workers:       *workers,
		QueueCapacity: *batch,
		ClaimCooldown: claimCooldown,
		ShutdownGrace: 30 * time.Second,
		Default:       worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil }),
		Metrics:       m,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	before := b.usage(ctx)
	start = time.Now()
	// The pool outlives ctx (the run's timeout): it is stopped below, once
	// the burn-down is measured.
	poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPool()
	poolDone := make(chan error, 1)
	go func() { poolDone <- p.Run(poolCtx) }()
	var burnErr error
	select {
	case <-allDone:
	case <-ctx.Done():
		burnErr = fmt.Errorf("burn-down: %d of %d jobs completed before the timeout", completed.Load(), target)
	}
	burn := time.Since(start)
	after := b.usage(ctx)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	stopPool()
	if err := <-poolDone; err != nil {
		return errors.Join(burnErr, err)
	}
	if burnErr != nil {
		return burnErr
	}
	stats, err := st.Stats(context.Background(), store.StatsQuery{})
	if err != nil {
		return err
	}
	if stats.Completed != *jobs || stats.Pending+stats.Processing+stats.Failed+stats.Cancelled != 0 {
		return fmt.Errorf("after the burn-down: %+v, want all %d completed", stats, *jobs)
	}
	claims, claimed := counted.claims.Load(), counted.claimed.Load()
	fmt.Fprintf(os.Stderr, "%s burn-down: %d jobs with %d workers in %.2fs = %.0f jobs/s\n", b.name, *jobs, *workers, burn.Seconds(), float64(*jobs)/burn.Seconds())
	fmt.Fprintf(os.Stderr, "%s burn-down: %d claims (%.1f jobs each, cooldown %s); CPU per job: this process %.0f µs", b.name, claims, float64(claimed)/float64(max(claims, 1)), *cooldown, after.sub(before, "cpu")/float64(*jobs)/1e3)
	if after.has("server cpu") && before.has("server cpu") {
		fmt.Fprintf(os.Stderr, ", database server %.0f µs", after.sub(before, "server cpu")/float64(*jobs)/1e3)
	}
	if after.has("wal") && before.has("wal") {
		fmt.Fprintf(os.Stderr, "; %.1f MB of WAL", after.sub(before, "wal")/1e6)
	}
	fmt.Fprintln(os.Stderr)
	return json.NewEncoder(os.Stdout).Encode(result{
		Backend: b.name, Jobs: *jobs, Concurrency: *conc, Workers: *workers,
		InsertSeconds: insert.Seconds(), InsertPerSec: float64(*jobs) / insert.Seconds(),
		BurnSeconds: burn.Seconds(), BurnPerSec: float64(*jobs) / burn.Seconds(),
		CompletedCount: completed.Load(), Claims: claims,
	})
}

// countingStore counts the claims that found jobs and the jobs they took.
type countingStore struct {
	store.Store
	claims, claimed atomic.Int64
}

// Tuning forwards the store's (embedding the interface does not).
func (c *countingStore) Tuning() store.Tuning { return store.TuningOf(c.Store) }

func (c *countingStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	jobs, err := c.Store.Claim(ctx, req)
	if len(jobs) > 0 {
		c.claims.Add(1)
		c.claimed.Add(int64(len(jobs)))
	}
	return jobs, err
}

// backend is a fresh, empty store and what the tool does around it.
type backend struct {
	store store.Store
	name  string
	close func()
	// prepare runs between the inserts and the burn-down (nil for nothing).
	prepare func(ctx context.Context) error
	// usage reads counters whose growth during the burn-down is reported.
	usage func(ctx context.Context) counters
}

// counters are named readings: "cpu" (ns of this process), "server cpu"
// (ns of the database's server processes serving this tool, when they run
// on this machine) and "wal" (bytes written, by the whole server;
// PostgreSQL only). A counter that could not be read is missing.
type counters map[string]float64

func (c counters) has(name string) bool { _, ok := c[name]; return ok }

func (c counters) sub(before counters, name string) float64 { return c[name] - before[name] }

// ownCPU reads this process's CPU time into c.
func ownCPU(c counters) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c["cpu"] = float64(ru.Utime.Nano() + ru.Stime.Nano())
	}
}

// open opens a fresh, empty store of the backend db names.
func open(ctx context.Context, db string, pub store.Publisher) (*backend, error) {
	usage := func(context.Context) counters {
		c := counters{}
		ownCPU(c)
		return c
	}
	switch {
	case db == "memory:":
		return &backend{store: memory.New(pub), name: "memory", close: func() {}, usage: usage}, nil
	case strings.HasPrefix(db, "sqlite:"):
		path := strings.TrimPrefix(db, "sqlite:")
		cleanup := func() {}
		if path == "" {
			dir, err := os.MkdirTemp("", "burndown")
			if err != nil {
				return nil, err
			}
			path = filepath.Join(dir, "jobs.db")
			cleanup = func() { _ = os.RemoveAll(dir) }
		}
		st, err := sqlite.Open(ctx, path, sqlite.Options{Publisher: pub})
		if err != nil {
			cleanup()
			return nil, err
		}
		return &backend{store: st, name: "sqlite", close: func() { _ = st.Close(); cleanup() }, usage: usage}, nil
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		return openPostgres(ctx, db, pub)
	}
	return nil, fmt.Errorf("-db: want memory:, sqlite:PATH or postgres://…, got %q", db)
}

// openPostgres opens a store in a fresh schema. Its pool's connections are
// named after the schema, so that their server processes can be found.
func openPostgres(ctx context.Context, db string, pub store.Publisher) (*backend, error) {
	schema := "burndown_" + strings.ToLower(rand.Text()[:10])
	u, err := url.Parse(db)
	if err != nil {
		return nil, fmt.Errorf("-db: %w", err)
	}
	q := u.Query()
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	opened := time.Now()
	st, err := postgres.Open(ctx, u.String(), postgres.Options{Publisher: pub, Schema: schema})
	if err != nil {
		return nil, err
	}
	admin, err := pgx.Connect(ctx, db)
	if err != nil {
		st.Close()
		return nil, err
	}
	table := pgx.Identifier{schema, "jobs"}.Sanitize()
	return &backend{
		store: st,
		name:  "postgres",
		close: func() {
			st.Close()
			_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = admin.Close(context.Background())
		},
		prepare: func(ctx context.Context) error {
			if _, err := admin.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
				return fmt.Errorf("vacuum: %w", err)
			}
			return nil
		},
		usage: func(ctx context.Context) counters {
			c := counters{}
			ownCPU(c)
			// The store's pool, and its listener (named by the store)
			// started since.
			rows, err := admin.Query(ctx, `SELECT pid FROM pg_stat_activity
				WHERE application_name = $1 OR application_name = 'jobqueue listener' AND backend_start >= $2`, schema, opened)
			if err == nil {
				if pids, err := pgx.CollectRows(rows, pgx.RowTo[int32]); err == nil {
					if ns, ok := processesCPU(pids); ok {
						c["server cpu"] = ns
					}
				}
			}
			var wal float64
			if admin.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8`).Scan(&wal) == nil {
				c["wal"] = wal
			}
			return c
		},
	}, nil
}

// processesCPU sums the CPU time (ns) of processes of this machine, false
// when one cannot be read (the database runs elsewhere).
func processesCPU(pids []int32) (float64, bool) {
	var ns float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, false
		}
		// Fields after the command (in parentheses): utime and stime are
		// the 12th and 13th, in clock ticks (100 per second on Linux).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			return 0, false
		}
		var utime, stime float64
		if _, err := fmt.Sscan(f[11], &utime); err != nil {
			return 0, false
		}
		if _, err := fmt.Sscan(f[12], &stime); err != nil {
			return 0, false
		}
		ns += (utime + stime) * 1e7
	}
	return ns, len(pids) > 0
}
