package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
)

func TestParseDatabaseURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, backend, target string }{
		{"memory:", backendMemory, ""},
		{"sqlite:./data/jobs.db", backendSQLite, "./data/jobs.db"},
		{"sqlite:///var/lib/jobs.db", backendSQLite, "/var/lib/jobs.db"},
		{"postgres://u:secret@db:5432/jobs?sslmode=disable", backendPostgres, "postgres://u:secret@db:5432/jobs?sslmode=disable"},
		{"postgresql://db/jobs", backendPostgres, "postgresql://db/jobs"},
	} {
		backend, target, err := parseDatabaseURL(c.in)
		if err != nil || backend != c.backend || target != c.target {
			t.Errorf("parseDatabaseURL(%q) = %q, %q, %v; want %q, %q", c.in, backend, target, err, c.backend, c.target)
		}
	}
	for _, bad := range []string{"", "sqlite:", "mysql://u:secret@db/jobs", "jobs.db"} {
		_, _, err := parseDatabaseURL(bad)
		if err == nil {
			t.Errorf("parseDatabaseURL(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("parseDatabaseURL(%q) error %q shows the password", bad, err)
		}
	}
	if got := redactURL("postgres://u:secret@db/jobs"); strings.Contains(got, "secret") {
		t.Errorf("redactURL shows the password: %s", got)
	}
}

// A server on SQLite keeps its jobs across a restart.
func TestRunOnSQLiteKeepsJobsAcrossRestarts(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PROCESSING_TIME": "0", "DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "sub", "jobs.db")}
	s := start(t, env)
	id := s.createJob(t, `{"type":"email"}`)
	s.waitStatus(t, id, "COMPLETED")
	s.stop()
	if err := <-s.done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	s.done <- nil // for start's cleanup

	s = start(t, env)
	if got := s.status(t, id); got != "completed" {
		t.Fatalf("after a restart the job is %q, want completed", got)
	}
}

func TestBadDatabaseURLIsAConfigurationError(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, func(k string) string { return map[string]string{"DATABASE_URL": "mysql://x"}[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("run with DATABASE_URL=mysql://x: %v; want a configuration error naming DATABASE_URL", err)
	}
}

func TestLeaseDurationHasAFloor(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0", "10ms"} {
		_, err := parseConfig(nil, func(k string) string { return map[string]string{"LEASE_DURATION": v}[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "LEASE_DURATION") {
			t.Errorf("LEASE_DURATION=%s: %v; want an error naming it", v, err)
		}
	}
}

func TestErrorHistorySetting(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]int{"": domain.DefaultErrorHistory, "1": 1, "1000": 1000} {
		c, err := parseConfig(nil, func(k string) string { return map[string]string{"ERROR_HISTORY": v}[k] }, io.Discard)
		if err != nil || c.ErrorHistory != want {
			t.Errorf("ERROR_HISTORY=%q: %d, %v; want %d", v, c.ErrorHistory, err, want)
		}
	}
	for _, v := range []string{"0", "-1", "1001", "many"} {
		_, err := parseConfig(nil, func(k string) string { return map[string]string{"ERROR_HISTORY": v}[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "ERROR_HISTORY") {
			t.Errorf("ERROR_HISTORY=%s: %v; want an error naming it", v, err)
		}
	}
}

// ERROR_HISTORY reaches the store of every backend the server opens: a job
// that failed three times keeps the last two failures.
func TestErrorHistoryReachesTheStore(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"memory:", "sqlite:" + filepath.Join(t.TempDir(), "jobs.db")} {
		t.Run(url[:strings.Index(url, ":")], func(t *testing.T) {
			t.Parallel()
			s := start(t, map[string]string{"DATABASE_URL": url, "ERROR_HISTORY": "2", "MAX_ATTEMPTS": "3",
				"PROCESSING_TIME": "0", "RETRY_BACKOFF": "1ms", "RETRY_BACKOFF_MAX": "1ms"})
			id := s.createJob(t, `{"type":"t","payload":{"fail":true}}`)
			s.waitStatus(t, id, "FAILED")
			resp, err := s.client.Post(s.url+"/query", "application/json", strings.NewReader(`{"query":"{ job(id: \"`+id+`\") { attempts errors { attempt } } }"}`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := `{"attempts":3,"errors":[{"attempt":2},{"attempt":3}]}`; !strings.Contains(string(body), want) {
				t.Fatalf("job: %s; want %s", body, want)
			}
		})
	}
}
