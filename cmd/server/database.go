package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/store/postgres"
	"github.com/jobqueue/jobqueue/internal/store/sqlite"
)

// Backends DATABASE_URL can name.
const (
	backendMemory   = "memory"
	backendSQLite   = "sqlite"
	backendPostgres = "postgres"
)

// parseDatabaseURL splits DATABASE_URL into its backend and what the
// backend opens (a file path, a connection URL).
func parseDatabaseURL(v string) (backend, target string, err error) {
	switch {
	case v == "memory:" || v == "memory":
		return backendMemory, "", nil
	case strings.HasPrefix(v, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(v, "sqlite:"), "//")
		if path == "" {
			return "", "", fmt.Errorf("sqlite: needs a file path, e.g. sqlite:./data/jobs.db")
		}
		return backendSQLite, path, nil
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		if _, err := url.Parse(v); err != nil {
			return "", "", fmt.Errorf("not a valid URL: %v", err)
		}
		return backendPostgres, v, nil
	}
	return "", "", fmt.Errorf("want memory:, sqlite:PATH or postgres://…, got %q", redactURL(v))
}

// redactURL hides a password in a connection URL for logs and errors.
func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return v
	}
	return u.Redacted()
}

// defaultInstanceID names this process in leases: unique enough that two
// processes, even on one host, never share it.
func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomSuffix())
}

// openedStore is the store the server runs on, the parts that run beside
// it, and how to close it.
type openedStore struct {
	store.Store
	backend string
	// parts run beside the store until their ctx is done (PostgreSQL's
	// Listener and CountsUpkeep); they are stopped before close.
	parts []storePart
	close func()
	// PostgreSQL's store and listener, for their metrics; nil on the
	// other backends.
	pg       *postgres.Store
	listener *postgres.Listener
}

// registerMetrics registers the backend's own metrics: on PostgreSQL the
// pgx pool's statistics and the listener's reconnects and re-syncs.
func (o *openedStore) registerMetrics(m *metrics.Metrics) {
	if m == nil || o.pg == nil {
		return
	}
	pg, l := o.pg, o.listener
	stat := func(f func(s *pgxpool.Stat) float64) func() float64 {
		return func() float64 { return f(pg.PoolStat()) }
	}
	m.GaugeFunc("pgx_pool_acquired_connections", "PostgreSQL pool connections in use.", stat(func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }))
	m.GaugeFunc("pgx_pool_idle_connections", "PostgreSQL pool connections idle.", stat(func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }))
	m.GaugeFunc("pgx_pool_total_connections", "PostgreSQL pool connections open (in use, idle and being opened).", stat(func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }))
	m.GaugeFunc("pgx_pool_max_connections", "PostgreSQL pool size bound.", stat(func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }))
	m.CounterFunc("pgx_pool_acquires_total", "PostgreSQL pool connections acquired.", stat(func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }))
	m.CounterFunc("pgx_pool_empty_acquires_total", "PostgreSQL pool acquires that had to wait for a connection.", stat(func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }))
	m.CounterFunc("pgx_pool_acquire_wait_seconds_total", "Time spent waiting for PostgreSQL pool connections.", stat(func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }))
	m.CounterFunc("pgx_pool_canceled_acquires_total", "PostgreSQL pool acquires cancelled by their context.", stat(func(s *pgxpool.Stat) float64 { return float64(s.CanceledAcquireCount()) }))
	m.CounterFunc("postgres_listener_reconnects_total", "Times the connection that listens for other instances' changes was lost and opened again.", func() float64 { return float64(l.Reconnects()) })
	m.CounterFunc("postgres_listener_resyncs_total", "Re-syncs of the jobs changed while the listener was not listening.", func() float64 { return float64(l.Resyncs()) })
}

// storePart is a named part of a store.
type storePart struct {
	name string
	runner
}

// openStore opens the backend DATABASE_URL names, reporting every change to
// pub. Durable backends apply their migrations first.
func openStore(ctx context.Context, cfg config, pub store.Publisher, log *slog.Logger) (*openedStore, error) {
	backend, target, err := parseDatabaseURL(cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	switch backend {
	case backendSQLite:
		st, err := sqlite.Open(ctx, target, sqlite.Options{Publisher: pub, Logger: log, ErrorHistory: cfg.ErrorHistory})
		if err != nil {
			return nil, fmt.Errorf("open sqlite database %s: %w", target, err)
		}
		return &openedStore{Store: st, backend: backend, close: func() { _ = st.Close() }}, nil
	case backendPostgres:
		st, err := postgres.Open(ctx, target, postgres.Options{Publisher: pub, Logger: log, InstanceID: cfg.InstanceID, ErrorHistory: cfg.ErrorHistory})
		if err != nil {
			return nil, fmt.Errorf("open postgres database %s: %w", redactURL(target), err)
		}
		listener, err := st.Listen(ctx)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("open postgres database %s: %w", redactURL(target), err)
		}
		return &openedStore{Store: st, backend: backend, parts: []storePart{{"postgres listener", listener}, {"postgres counts upkeep", st.CountsUpkeep()}}, close: st.Close, pg: st, listener: listener}, nil
	}
	st, err := memory.NewWithOptions(memory.Options{Publisher: pub, ErrorHistory: cfg.ErrorHistory})
	if err != nil {
		return nil, err
	}
	return &openedStore{Store: st, backend: backendMemory, close: func() {}}, nil
}

// Tuning is the opened backend's store.Tuning (the embedded interface
// does not carry the backend's optional methods).
func (o *openedStore) Tuning() store.Tuning { return store.TuningOf(o.Store) }

func randomSuffix() string { return strings.ToLower(rand.Text()[:8]) }
