package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

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
		return &openedStore{Store: st, backend: backend, parts: []storePart{{"postgres listener", listener}, {"postgres counts upkeep", st.CountsUpkeep()}}, close: st.Close}, nil
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
