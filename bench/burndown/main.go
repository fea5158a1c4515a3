// Command burndown measures a store backend under the worker pool: how fast
// single jobs are created from many goroutines, and how fast a backlog of
// pending no-op jobs is burned down to COMPLETED.
//
//  1. insert: -jobs jobs are created one Create call at a time from -c
//     goroutines (each call its own transaction on the SQL backends);
//     reports jobs/s.
//  2. burn-down: a worker.Pool with -workers workers and a handler that does
//     nothing is started on the backlog; the clock runs from Start until the
//     last job's COMPLETED event; reports jobs/s.
//
// -db is memory:, sqlite:PATH (a fresh file; default a temporary one) or a
// postgres:// URL; on PostgreSQL the tool works in a fresh schema that it
// drops at the end, so it can run beside anything else.
//
// Output: one JSON line on stdout, a human line per measure on stderr; exit
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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobqueue/jobqueue/internal/domain"
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
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var completed atomic.Int64
	allDone := make(chan struct{})
	target := int64(*jobs)
	var pool atomic.Pointer[worker.Pool]
	pub := store.PublisherFunc(func(j *domain.Job) {
		if p := pool.Load(); p != nil {
			p.Publish(j)
		}
		if j.Status == domain.StatusCompleted && completed.Add(1) == target {
			close(allDone)
		}
	})
	st, backend, closeStore, err := open(ctx, *db, pub)
	if err != nil {
		return err
	}
	defer closeStore()

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
	fmt.Fprintf(os.Stderr, "%s insert: %d jobs from %d goroutines in %.2fs = %.0f jobs/s\n", backend, *jobs, *conc, insert.Seconds(), float64(*jobs)/insert.Seconds())

	// 2. Burn-down of the backlog.
	p := worker.New(st, worker.Options{
		Workers:       *workers,
		QueueCapacity: *batch,
		Default:       worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil }),
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	pool.Store(p)
	start = time.Now()
	p.Start(ctx)
	var burnErr error
	select {
	case <-allDone:
	case <-ctx.Done():
		burnErr = fmt.Errorf("burn-down: %d of %d jobs completed before the timeout", completed.Load(), target)
	}
	burn := time.Since(start)
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelShutdown()
	if err := p.Shutdown(shutdownCtx); err != nil {
		return errors.Join(burnErr, err)
	}
	if burnErr != nil {
		return burnErr
	}
	stats, err := st.Stats(context.Background(), "")
	if err != nil {
		return err
	}
	if stats.Completed != *jobs || stats.Pending+stats.Processing+stats.Failed+stats.Cancelled != 0 {
		return fmt.Errorf("after the burn-down: %+v, want all %d completed", stats, *jobs)
	}
	fmt.Fprintf(os.Stderr, "%s burn-down: %d jobs with %d workers in %.2fs = %.0f jobs/s\n", backend, *jobs, *workers, burn.Seconds(), float64(*jobs)/burn.Seconds())
	return json.NewEncoder(os.Stdout).Encode(result{
		Backend: backend, Jobs: *jobs, Concurrency: *conc, Workers: *workers,
		InsertSeconds: insert.Seconds(), InsertPerSec: float64(*jobs) / insert.Seconds(),
		BurnSeconds: burn.Seconds(), BurnPerSec: float64(*jobs) / burn.Seconds(),
		CompletedCount: completed.Load(),
	})
}

// open opens a fresh, empty store of the backend db names.
func open(ctx context.Context, db string, pub store.Publisher) (store.Store, string, func(), error) {
	switch {
	case db == "memory:":
		return memory.New(pub), "memory", func() {}, nil
	case strings.HasPrefix(db, "sqlite:"):
		path := strings.TrimPrefix(db, "sqlite:")
		cleanup := func() {}
		if path == "" {
			dir, err := os.MkdirTemp("", "burndown")
			if err != nil {
				return nil, "", nil, err
			}
			path = filepath.Join(dir, "jobs.db")
			cleanup = func() { _ = os.RemoveAll(dir) }
		}
		st, err := sqlite.Open(ctx, path, sqlite.Options{Publisher: pub})
		if err != nil {
			cleanup()
			return nil, "", nil, err
		}
		return st, "sqlite", func() { _ = st.Close(); cleanup() }, nil
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		schema := "burndown_" + strings.ToLower(rand.Text()[:10])
		st, err := postgres.Open(ctx, db, postgres.Options{Publisher: pub, Schema: schema})
		if err != nil {
			return nil, "", nil, err
		}
		return st, "postgres", func() {
			st.Close()
			if conn, err := pgx.Connect(context.Background(), db); err == nil {
				_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
				_ = conn.Close(context.Background())
			}
		}, nil
	}
	return nil, "", nil, fmt.Errorf("-db: want memory:, sqlite:PATH or postgres://…, got %q", db)
}
