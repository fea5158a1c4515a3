package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PAUSED_TYPES pauses types at start, and the pause is stored: after a
// restart without the setting the type is still paused.
func TestPausedTypesAtStartSurviveARestart(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "jobs.db")
	s := start(t, map[string]string{"PROCESSING_TIME": "0", "DATABASE_URL": db, "PAUSED_TYPES": "mail, report"})
	held := s.createJob(t, `{"type":"mail"}`)
	s.waitStatus(t, s.createJob(t, `{"type":"sms"}`), "COMPLETED")
	if got := s.status(t, held); got != "pending" {
		t.Fatalf("job of a type in PAUSED_TYPES = %s, want pending", got)
	}
	s.stop()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup, which waits for it too
		if err != nil {
			t.Fatalf("server: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop")
	}

	again := start(t, map[string]string{"PROCESSING_TIME": "0", "DATABASE_URL": db})
	resp, err := again.client.Post(again.url+"/query", "application/json", strings.NewReader(`{"query":"{ jobTypes { name paused } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			JobTypes []struct {
				Name   string
				Paused bool
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("jobTypes: %d %v", resp.StatusCode, err)
	}
	paused := map[string]bool{}
	for _, jt := range body.Data.JobTypes {
		paused[jt.Name] = jt.Paused
	}
	if !paused["mail"] || !paused["report"] || paused["sms"] {
		t.Fatalf("after a restart without PAUSED_TYPES: %+v, want mail and report paused, sms not", body.Data.JobTypes)
	}
}

func TestPausedTypesRefusesABadType(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PAUSED_TYPES": "mail,has space"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PAUSED_TYPES") {
		t.Fatalf("run with a bad PAUSED_TYPES = %v, want an error naming it", err)
	}
}

// PAUSED_TYPES pauses only types the store does not know yet: after an
// operator resumed a listed type that has jobs, a restart with the same
// setting (or a new instance) leaves it resumed, and warns.
func TestPausedTypesDoNotPauseAgainAfterAResume(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "jobs.db")
	env := func() map[string]string {
		return map[string]string{"PROCESSING_TIME": "0", "DATABASE_URL": db, "PAUSED_TYPES": "mail"}
	}
	s := start(t, env())
	held := s.createJob(t, `{"type":"mail"}`)
	if got := s.status(t, held); got != "pending" {
		t.Fatalf("job of a type in PAUSED_TYPES = %s, want pending", got)
	}
	if r := s.query(t, false, `mutation { resumeJobType(name: "mail") { paused } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("resumeJobType: %s", r.raw)
	}
	s.waitStatus(t, held, "COMPLETED")
	s.shutdown(t)

	again := start(t, env())
	r := again.query(t, false, `{ jobType(name: "mail") { paused } }`, nil)
	if len(r.Errors) > 0 || !strings.Contains(r.raw, `"paused":false`) {
		t.Fatalf("after a restart with PAUSED_TYPES, the resumed type: %s, want paused false", r.raw)
	}
	// The operator who listed it learns that it runs.
	if n := again.logs.Count("job type in PAUSED_TYPES left running: the store already knows it (it has jobs or stored controls), and only pauseJobType pauses a known type"); n != 1 {
		t.Fatalf("%d warnings that the listed type is left running; want 1:\n%s", n, again.logs)
	}
	again.waitStatus(t, again.createJob(t, `{"type":"mail"}`), "COMPLETED")
}
