package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/store/sqlite"
)

// hungStore never answers: a database that stopped responding.
type hungStore struct{}

func (hungStore) Stats(ctx context.Context, _ store.StatsQuery) (domain.Stats, error) {
	<-ctx.Done()
	return domain.Stats{}, ctx.Err()
}

func ready(t *testing.T, rd *httpapi.Readiness) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	rd.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ready", nil))
	var body struct {
		Ready  bool
		Reason string
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("/ready body %q: %v", w.Body, err)
	}
	if body.Ready != (w.Code == http.StatusOK) {
		t.Fatalf("/ready: %d with %s", w.Code, w.Body)
	}
	return w.Code, body.Reason
}

// /ready: 200 while the store answers in time, migrations are applied and
// the server is not draining; otherwise 503 naming the reason.
func TestReadiness(t *testing.T) {
	t.Parallel()
	rd := &httpapi.Readiness{Store: memory.New(nil)}
	if code, reason := ready(t, rd); code != http.StatusServiceUnavailable || reason != httpapi.NotReadyMigrations {
		t.Errorf("before migrations: %d %q", code, reason)
	}
	rd.Migrated()
	if code, reason := ready(t, rd); code != http.StatusOK || reason != "" {
		t.Errorf("ready: %d %q", code, reason)
	}
	rd.Drain()
	if code, reason := ready(t, rd); code != http.StatusServiceUnavailable || reason != httpapi.NotReadyShuttingDown {
		t.Errorf("draining: %d %q", code, reason)
	}

	// A store that fails (closed) or does not answer within the timeout.
	closed, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = closed.Close()
	down := &httpapi.Readiness{Store: closed}
	down.Migrated()
	if code, reason := ready(t, down); code != http.StatusServiceUnavailable || reason != httpapi.NotReadyStore {
		t.Errorf("closed store: %d %q", code, reason)
	}
	synctest.Test(t, func(t *testing.T) {
		hung := &httpapi.Readiness{Store: hungStore{}}
		hung.Migrated()
		start := time.Now()
		if code, reason := ready(t, hung); code != http.StatusServiceUnavailable || reason != httpapi.NotReadyStore {
			t.Errorf("hung store: %d %q", code, reason)
		}
		if took := time.Since(start); took != httpapi.DefaultReadyTimeout {
			t.Errorf("hung store answered after %s, want %s", took, httpapi.DefaultReadyTimeout)
		}
	})
}
