package jobs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// writeFile writes a file in the test's directory and returns its path.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// PERIODIC_FILE in YAML or JSON gives the same definitions; an unknown
// field is an error.
func TestReadPeriodicFile(t *testing.T) {
	t.Parallel()
	yaml := writeFile(t, "p.yaml", `
periodic:
  - name: nightly
    schedule: "0 2 * * *"
    timezone: Europe/Paris
    job:
      type: report
      payload: {kind: nightly, n: 3}
      tags: [ops]
`)
	json := writeFile(t, "p.json", `{"periodic": [{"name": "nightly", "schedule": "0 2 * * *", "timezone": "Europe/Paris",
		"job": {"type": "report", "payload": {"kind": "nightly", "n": 3}, "tags": ["ops"]}}]}`)
	for _, path := range []string{yaml, json} {
		reqs, err := jobs.ReadPeriodicFile(path)
		if err != nil || len(reqs) != 1 {
			t.Fatalf("%s: %v, %v", path, reqs, err)
		}
		r := reqs[0]
		if r.Name != "nightly" || r.Schedule != "0 2 * * *" || r.Timezone == nil || *r.Timezone != "Europe/Paris" ||
			*r.Job.Type != "report" || string(r.Job.Payload) != `{"kind":"nightly","n":3}` || len(r.Job.Tags) != 1 {
			t.Fatalf("%s: read %+v", path, r)
		}
	}
	bad := writeFile(t, "bad.yaml", "periodic:\n  - name: x\n    cron: '@hourly'\n")
	if _, err := jobs.ReadPeriodicFile(bad); err == nil {
		t.Fatal("a file with an unknown field was read")
	}
}

// Applying the file stores its definitions as the file's, deletes those
// of the file it no longer holds, leaves the API's alone, and stores
// nothing when one definition breaks a rule (named by its place).
func TestApplyPeriodicFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New(nil)
	woken := 0
	svc := jobs.New(st, nil, jobs.Options{PeriodicFile: "/etc/periodic.yaml", PeriodicChanged: func() { woken++ }})
	typ := func(s string) *string { return &s }
	def := func(name, schedule string) jobs.PeriodicRequest {
		return jobs.PeriodicRequest{Name: name, Schedule: schedule, Job: jobs.CreateRequest{Type: typ("t")}}
	}
	if _, err := svc.PutPeriodic(ctx, def("api-one", "@daily")); err != nil {
		t.Fatal(err)
	}
	if err := svc.ApplyPeriodicFile(ctx, []jobs.PeriodicRequest{def("a", "@hourly"), def("b", "@hourly")}); err != nil {
		t.Fatal(err)
	}
	if err := svc.ApplyPeriodicFile(ctx, []jobs.PeriodicRequest{def("a", "@every 1m")}); err != nil {
		t.Fatal(err)
	}
	err := svc.ApplyPeriodicFile(ctx, []jobs.PeriodicRequest{def("c", "@hourly"), def("d", "every hour")})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "periodic[1].schedule" {
		t.Fatalf("a file with a bad schedule: %v; want a validation error on periodic[1].schedule", err)
	}
	list, err := svc.ListPeriodic(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[0].Schedule != "@every 1m" || list[0].Source != domain.PeriodicFromFile ||
		list[1].Name != "api-one" || list[1].Source != domain.PeriodicFromAPI {
		t.Fatalf("definitions = %+v, %v; want a from the file (its last version) and api-one from the API", list, err)
	}
	_, err = svc.PutPeriodic(ctx, def("a", "@daily"))
	var ce *jobs.PeriodicConflictError
	if !errors.As(err, &ce) || ce.Error() != `periodic job "a" is defined by PERIODIC_FILE /etc/periodic.yaml; change it there` {
		t.Fatalf("API change of the file's definition: %v; want a conflict naming the file", err)
	}
	if woken != 3 {
		t.Fatalf("the scheduler was woken %d times; want 3 (one put, two applied files)", woken)
	}
}

// Periodic jobs are the operator's: every caller × define, delete and
// list.
func TestPeriodicAuthorization(t *testing.T) {
	t.Parallel()
	typ := "t"
	for _, tc := range []struct {
		caller            string
		define, list, del outcome
	}{
		{"none", allowed, allowed, allowed},
		{"admin", allowed, allowed, allowed},
		{"viewer", forbidden, allowed, forbidden},
		{"user", forbidden, forbidden, forbidden},
		{"unknown", forbidden, forbidden, forbidden},
	} {
		ctx := as(context.Background(), callers[tc.caller])
		st := memory.New(nil)
		svc := jobs.New(st, nil, jobs.Options{})
		if _, err := svc.PutPeriodic(context.Background(), jobs.PeriodicRequest{Name: "p", Schedule: "@hourly", Job: jobs.CreateRequest{Type: &typ}}); err != nil {
			t.Fatal(err)
		}
		got := func(err error) outcome {
			var fe *jobs.ForbiddenError
			switch {
			case err == nil:
				return allowed
			case errors.As(err, &fe) && fe.What == "periodic jobs":
				return forbidden
			}
			t.Fatalf("%s: unexpected error %v", tc.caller, err)
			return ""
		}
		_, err := svc.PutPeriodic(ctx, jobs.PeriodicRequest{Name: "q", Schedule: "@daily", Job: jobs.CreateRequest{Type: &typ}})
		if o := got(err); o != tc.define {
			t.Errorf("%s defines: %s, want %s", tc.caller, o, tc.define)
		}
		_, err = svc.ListPeriodic(ctx)
		if o := got(err); o != tc.list {
			t.Errorf("%s lists: %s, want %s", tc.caller, o, tc.list)
		}
		if o := got(svc.DeletePeriodic(ctx, "p")); o != tc.del {
			t.Errorf("%s deletes: %s, want %s", tc.caller, o, tc.del)
		}
	}
}

// At most MaxPeriodicJobs periodic jobs: a new one past the bound is
// refused naming name, replacing one is allowed, and a file holding more
// is refused whole.
func TestPeriodicJobsAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memory.New(nil)
	svc := jobs.New(st, nil, jobs.Options{MaxPeriodicJobs: 2})
	typ := "t"
	def := func(name, schedule string) jobs.PeriodicRequest {
		return jobs.PeriodicRequest{Name: name, Schedule: schedule, Job: jobs.CreateRequest{Type: &typ}}
	}
	for _, name := range []string{"a", "b"} {
		if _, err := svc.PutPeriodic(ctx, def(name, "@hourly")); err != nil {
			t.Fatal(err)
		}
	}
	_, err := svc.PutPeriodic(ctx, def("c", "@hourly"))
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "name" || !strings.Contains(ve.Message, "MAX_PERIODIC_JOBS") {
		t.Fatalf("a third periodic job with a bound of 2: %v; want a validation error on name naming MAX_PERIODIC_JOBS", err)
	}
	if p, err := svc.PutPeriodic(ctx, def("b", "@daily")); err != nil || p.Schedule != "@daily" {
		t.Fatalf("replacing one at the bound: %+v, %v; want it replaced", p, err)
	}
	err = svc.ApplyPeriodicFile(ctx, []jobs.PeriodicRequest{def("x", "@hourly"), def("y", "@hourly"), def("z", "@hourly")})
	if !errors.As(err, &ve) || ve.Field != "periodic" {
		t.Fatalf("a file of 3 with a bound of 2: %v; want a validation error on periodic", err)
	}
	if list, err := svc.ListPeriodic(ctx); err != nil || len(list) != 2 {
		t.Fatalf("after the refusals: %d definitions, %v; want the 2 of before", len(list), err)
	}
}

// A PERIODIC_FILE larger than MaxPeriodicFileBytes is refused before it
// is parsed.
func TestReadPeriodicFileRefusesAHugeFile(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "huge.yaml", "periodic: []\n#"+strings.Repeat("x", jobs.MaxPeriodicFileBytes))
	if _, err := jobs.ReadPeriodicFile(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a file over the bound: %v; want it refused as too large", err)
	}
}
