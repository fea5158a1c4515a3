package httpapi

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Readiness answers GET /ready: 200 when the store answers within
// Timeout, its migrations are applied and the server is not shutting
// down; otherwise 503 with {"ready": false, "reason": "…"}. Load balancers
// take an instance that is not ready out of rotation; /health (the
// process is alive) stays 200 meanwhile. Safe for concurrent use.
type Readiness struct {
	// Store is asked for its counts (cheap on every backend); an error or
	// no answer within Timeout is "store unavailable".
	Store interface {
		Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error)
	}
	// Timeout bounds the store's answer. Default DefaultReadyTimeout.
	Timeout time.Duration

	migrated atomic.Bool
	draining atomic.Bool
}

// DefaultReadyTimeout is Readiness.Timeout's default.
const DefaultReadyTimeout = time.Second

// Migrated records that the store's migrations are applied (the server
// opens the store, migrating it, before it serves).
func (rd *Readiness) Migrated() { rd.migrated.Store(true) }

// Drain makes every later check answer 503 "shutting down": the server
// calls it as soon as it is asked to stop, while requests and jobs in
// flight finish.
func (rd *Readiness) Drain() { rd.draining.Store(true) }

// Reasons a server is not ready.
const (
	NotReadyShuttingDown = "shutting down"
	NotReadyMigrations   = "migrations not applied"
	NotReadyStore        = "store unavailable"
)

// Check returns why the server is not ready, or "" when it is.
func (rd *Readiness) Check(ctx context.Context) string {
	switch {
	case rd.draining.Load():
		return NotReadyShuttingDown
	case !rd.migrated.Load():
		return NotReadyMigrations
	}
	timeout := rd.Timeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := rd.Store.Stats(ctx, store.StatsQuery{}); err != nil {
		return NotReadyStore
	}
	if rd.draining.Load() {
		return NotReadyShuttingDown
	}
	return ""
}

// ServeHTTP answers GET /ready with Check's verdict, never cached.
func (rd *Readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if reason := rd.Check(r.Context()); reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}
