// Command river measures River (github.com/riverqueue/river) on the same
// PostgreSQL the product uses, so its numbers can be compared with ours.
//
// It lives in its own Go module so that the product's go.mod never depends on
// River. Every run works in a fresh schema (river_bench_<pid>_<unixmilli>):
// the pool's search_path and River's Schema option both point at it, River's
// migrations are applied there with rivermigrate, and the schema is dropped
// at the end, also when the run fails.
//
// Measures (-mode):
//
//	burndown  inserts -jobs no-op jobs up front with InsertManyFast (COPY, in
//	          batches of -batch-size), VACUUM ANALYZEs the table, then starts
//	          a river.Client (one queue, -workers MaxWorkers, FetchCooldown
//	          -fetch-cooldown, FetchPollInterval -fetch-poll-interval) and
//	          times from Start until the subscription has delivered a
//	          completed event for every job.
//	insert    starts no client; -concurrency goroutines call client.Insert
//	          (one job per call, each its own transaction) until -insert-jobs
//	          jobs are inserted. One untimed warm-up insert per goroutine
//	          opens the pool's connections and prepares the statements first.
//	both      burndown, then insert (the jobs table is truncated in between).
//
// Output: one line per measure on stdout, such as
//
//	river burndown jobs=50000 seconds=1.850 jobs_per_sec=27027 workers=100
//	river insert concurrency=16 jobs=20000 seconds=5.500 jobs_per_sec=3636
//
// or, with -json, one JSON object with a key per measure. The exit status is
// non-zero when anything fails, including a run longer than -timeout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"golang.org/x/sync/errgroup"
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// cleanupTimeout bounds what runs after the measurement context is gone:
// stopping a client and dropping the schema.
const cleanupTimeout = 30 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "river-bench: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	databaseURL       string
	mode              string
	jobs              int
	insertJobs        int
	concurrency       int
	workers           int
	batchSize         int
	maxConns          int
	fetchCooldown     time.Duration
	fetchPollInterval time.Duration
	timeout           time.Duration
	json              bool
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := getenv("TEST_DATABASE_URL")
	if dbURL == "" {
		dbURL = defaultDatabaseURL
	}
	fs.StringVar(&cfg.databaseURL, "database-url", dbURL, "PostgreSQL URL (default: $TEST_DATABASE_URL, else "+defaultDatabaseURL+")")
	fs.StringVar(&cfg.mode, "mode", "both", "burndown, insert or both")
	fs.IntVar(&cfg.jobs, "jobs", 50_000, "burndown: jobs inserted up front and then worked")
	fs.IntVar(&cfg.insertJobs, "insert-jobs", 20_000, "insert: jobs inserted one per call")
	fs.IntVar(&cfg.concurrency, "concurrency", 16, "insert: goroutines calling client.Insert")
	fs.IntVar(&cfg.workers, "workers", 100, "burndown: MaxWorkers of the River queue")
	fs.IntVar(&cfg.batchSize, "batch-size", 5_000, "burndown: jobs per InsertManyFast call when filling the queue (untimed)")
	fs.IntVar(&cfg.maxConns, "max-conns", 0, "pgxpool MaxConns (0: concurrency+4, at least 20)")
	fs.DurationVar(&cfg.fetchCooldown, "fetch-cooldown", time.Millisecond, "burndown: River FetchCooldown")
	fs.DurationVar(&cfg.fetchPollInterval, "fetch-poll-interval", 50*time.Millisecond, "burndown: River FetchPollInterval")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "overall deadline of the run")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object instead of text lines")
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch cfg.mode {
	case "burndown", "insert", "both":
	default:
		return cfg, fmt.Errorf("-mode must be burndown, insert or both, not %q", cfg.mode)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"jobs", cfg.jobs}, {"insert-jobs", cfg.insertJobs}, {"concurrency", cfg.concurrency}, {"workers", cfg.workers}, {"batch-size", cfg.batchSize}} {
		if f.v < 1 {
			return cfg, fmt.Errorf("-%s must be at least 1", f.name)
		}
	}
	if cfg.maxConns < 0 {
		return cfg, errors.New("-max-conns must not be negative")
	}
	if cfg.maxConns == 0 {
		cfg.maxConns = max(cfg.concurrency+4, 20)
	}
	if cfg.timeout <= 0 {
		return cfg, errors.New("-timeout must be positive")
	}
	return cfg, nil
}

// burndownResult is the outcome of one burndown measure.
type burndownResult struct {
	Jobs              int     `json:"jobs"`
	Seconds           float64 `json:"seconds"`
	JobsPerSec        float64 `json:"jobs_per_sec"`
	Workers           int     `json:"workers"`
	FetchCooldownMS   float64 `json:"fetch_cooldown_ms"`
	FetchPollInterval float64 `json:"fetch_poll_interval_ms"`
	InsertSeconds     float64 `json:"insert_seconds"`
}

// insertResult is the outcome of one single-insert measure.
type insertResult struct {
	Concurrency int     `json:"concurrency"`
	Jobs        int     `json:"jobs"`
	Seconds     float64 `json:"seconds"`
	JobsPerSec  float64 `json:"jobs_per_sec"`
}

// report is what -json prints; a measure that did not run is left out.
type report struct {
	System       string          `json:"system"`
	RiverVersion string          `json:"river_version"`
	MaxConns     int             `json:"max_conns"`
	Burndown     *burndownResult `json:"burndown,omitempty"`
	Insert       *insertResult   `json:"insert,omitempty"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseFlags(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	schema := fmt.Sprintf("river_bench_%d_%d", os.Getpid(), time.Now().UnixMilli())

	poolCfg, err := pgxpool.ParseConfig(cfg.databaseURL)
	if err != nil {
		return fmt.Errorf("parse -database-url: %w", err)
	}
	poolCfg.MaxConns = int32(cfg.maxConns)
	poolCfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("create pool: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to %s: %w", poolCfg.ConnConfig.Host, err)
	}

	quoted := pgx.Identifier{schema}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+quoted); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	defer func() {
		// The run's context may be cancelled or past its deadline by now.
		dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if _, dropErr := pool.Exec(dropCtx, "DROP SCHEMA "+quoted+" CASCADE"); dropErr != nil {
			err = errors.Join(err, fmt.Errorf("drop schema %s: %w", schema, dropErr))
		}
	}()

	driver := riverpgxv5.New(pool)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: logger, Schema: schema})
	if err != nil {
		return fmt.Errorf("create migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate schema %s: %w", schema, err)
	}

	b := &bench{cfg: cfg, pool: pool, driver: driver, logger: logger, schema: schema}
	rep := report{System: "river", RiverVersion: riverVersion(), MaxConns: cfg.maxConns}

	if cfg.mode == "burndown" || cfg.mode == "both" {
		res, err := b.burndown(ctx)
		if err != nil {
			return fmt.Errorf("burndown: %w", err)
		}
		rep.Burndown = &res
		if !cfg.json {
			fmt.Fprintf(stdout, "river burndown jobs=%d seconds=%.3f jobs_per_sec=%.0f workers=%d\n",
				res.Jobs, res.Seconds, res.JobsPerSec, res.Workers)
		}
	}
	if cfg.mode == "insert" || cfg.mode == "both" {
		if _, err := pool.Exec(ctx, "TRUNCATE river_job"); err != nil {
			return fmt.Errorf("truncate river_job: %w", err)
		}
		res, err := b.insert(ctx)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		rep.Insert = &res
		if !cfg.json {
			fmt.Fprintf(stdout, "river insert concurrency=%d jobs=%d seconds=%.3f jobs_per_sec=%.0f\n",
				res.Concurrency, res.Jobs, res.Seconds, res.JobsPerSec)
		}
	}

	if cfg.json {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
	}
	return nil
}

// riverVersion is the River module version this binary was built with.
func riverVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/riverqueue/river" {
			return dep.Version
		}
	}
	return "unknown"
}

// noopArgs are the arguments of the benchmark job; N only makes the payload
// look like a real one ({"n":1}).
type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "bench_noop" }

// noopWorker completes every job immediately.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// bench holds what both measures share.
type bench struct {
	cfg    config
	pool   *pgxpool.Pool
	driver *riverpgxv5.Driver
	logger *slog.Logger
	schema string
}

func (b *bench) workers() *river.Workers {
	w := river.NewWorkers()
	river.AddWorker(w, noopWorker{})
	return w
}

func (b *bench) countJobs(ctx context.Context, where string) (int, error) {
	var n int
	err := b.pool.QueryRow(ctx, "SELECT count(*) FROM river_job "+where).Scan(&n)
	return n, err
}

func (b *bench) burndown(ctx context.Context) (burndownResult, error) {
	cfg := b.cfg
	client, err := river.NewClient(b.driver, &river.Config{
		FetchCooldown:     cfg.fetchCooldown,
		FetchPollInterval: cfg.fetchPollInterval,
		Logger:            b.logger,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.workers}},
		Schema:            b.schema,
		Workers:           b.workers(),
	})
	if err != nil {
		return burndownResult{}, fmt.Errorf("create client: %w", err)
	}

	insertStart := time.Now()
	batch := make([]river.InsertManyParams, 0, cfg.batchSize)
	for inserted := 0; inserted < cfg.jobs; inserted += len(batch) {
		batch = batch[:0]
		for range min(cfg.batchSize, cfg.jobs-inserted) {
			batch = append(batch, river.InsertManyParams{Args: noopArgs{N: 1}})
		}
		n, err := client.InsertManyFast(ctx, batch)
		if err != nil {
			return burndownResult{}, fmt.Errorf("insert jobs %d-%d: %w", inserted, inserted+len(batch), err)
		}
		if n != len(batch) {
			return burndownResult{}, fmt.Errorf("insert jobs %d-%d: %d inserted", inserted, inserted+len(batch), n)
		}
	}
	insertSeconds := time.Since(insertStart).Seconds()
	// Fresh statistics and visibility map so the fetch query is planned as it
	// would be on a table in steady state, not on a just-filled one.
	if _, err := b.pool.Exec(ctx, "VACUUM ANALYZE river_job"); err != nil {
		return burndownResult{}, fmt.Errorf("vacuum river_job: %w", err)
	}

	// A buffer as large as the run means no event can be dropped (River drops
	// events a subscriber has no room for), so counting them is exact.
	events, unsubscribe := client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: cfg.jobs,
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled},
	})
	defer unsubscribe()

	start := time.Now()
	if err := client.Start(ctx); err != nil {
		return burndownResult{}, fmt.Errorf("start client: %w", err)
	}
	completed, waitErr := waitCompleted(ctx, events, cfg.jobs)
	elapsed := time.Since(start)

	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if waitErr != nil {
		stopErr := client.StopAndCancel(stopCtx)
		return burndownResult{}, errors.Join(
			fmt.Errorf("%d of %d jobs completed after %s: %w", completed, cfg.jobs, elapsed.Round(time.Millisecond), waitErr),
			stopErr)
	}
	if err := client.Stop(stopCtx); err != nil {
		return burndownResult{}, fmt.Errorf("stop client: %w", err)
	}

	n, err := b.countJobs(ctx, "WHERE state = 'completed'")
	if err != nil {
		return burndownResult{}, fmt.Errorf("count completed jobs: %w", err)
	}
	if n != cfg.jobs {
		return burndownResult{}, fmt.Errorf("%d completed events but %d completed jobs in river_job", cfg.jobs, n)
	}

	return burndownResult{
		Jobs:              cfg.jobs,
		Seconds:           elapsed.Seconds(),
		JobsPerSec:        float64(cfg.jobs) / elapsed.Seconds(),
		Workers:           cfg.workers,
		FetchCooldownMS:   float64(cfg.fetchCooldown) / float64(time.Millisecond),
		FetchPollInterval: float64(cfg.fetchPollInterval) / float64(time.Millisecond),
		InsertSeconds:     insertSeconds,
	}, nil
}

// waitCompleted counts completed events until want have arrived. A failed
// or cancelled job, a closed channel or the end of ctx is an error.
func waitCompleted(ctx context.Context, events <-chan *river.Event, want int) (int, error) {
	completed := 0
	for completed < want {
		select {
		case <-ctx.Done():
			return completed, ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return completed, errors.New("subscription closed")
			}
			if ev.Kind != river.EventKindJobCompleted {
				return completed, fmt.Errorf("job %d: unexpected event %s", ev.Job.ID, ev.Kind)
			}
			completed++
		}
	}
	return completed, nil
}

func (b *bench) insert(ctx context.Context) (insertResult, error) {
	cfg := b.cfg
	// No Queues: an insert-only client, nothing is worked.
	client, err := river.NewClient(b.driver, &river.Config{
		Logger:  b.logger,
		Schema:  b.schema,
		Workers: b.workers(),
	})
	if err != nil {
		return insertResult{}, fmt.Errorf("create client: %w", err)
	}

	// Warm-up, untimed: opens cfg.concurrency connections at once and lets
	// each prepare River's statements.
	warm, warmCtx := errgroup.WithContext(ctx)
	for range cfg.concurrency {
		warm.Go(func() error {
			_, err := client.Insert(warmCtx, noopArgs{N: 1}, nil)
			return err
		})
	}
	if err := warm.Wait(); err != nil {
		return insertResult{}, fmt.Errorf("warm-up insert: %w", err)
	}

	var next, done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range cfg.concurrency {
		g.Go(func() error {
			for next.Add(1) <= int64(cfg.insertJobs) {
				if _, err := client.Insert(gctx, noopArgs{N: 1}, nil); err != nil {
					return err
				}
				done.Add(1)
			}
			return nil
		})
	}
	err = g.Wait()
	elapsed := time.Since(start)
	if err != nil {
		return insertResult{}, fmt.Errorf("%d of %d jobs inserted after %s: %w", done.Load(), cfg.insertJobs, elapsed.Round(time.Millisecond), err)
	}

	n, err := b.countJobs(ctx, "")
	if err != nil {
		return insertResult{}, fmt.Errorf("count jobs: %w", err)
	}
	if want := cfg.insertJobs + cfg.concurrency; n != want {
		return insertResult{}, fmt.Errorf("%d jobs in river_job, want %d (%d measured + %d warm-up)", n, want, cfg.insertJobs, cfg.concurrency)
	}

	return insertResult{
		Concurrency: cfg.concurrency,
		Jobs:        cfg.insertJobs,
		Seconds:     elapsed.Seconds(),
		JobsPerSec:  float64(cfg.insertJobs) / elapsed.Seconds(),
	}, nil
}
