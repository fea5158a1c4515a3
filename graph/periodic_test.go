package graph_test

import (
	"context"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

type periodicJSON struct {
	Name      string  `json:"name"`
	Schedule  string  `json:"schedule"`
	Timezone  string  `json:"timezone"`
	Paused    bool    `json:"paused"`
	NextRunAt *string `json:"nextRunAt"`
	LastRunAt *string `json:"lastRunAt"`
	LastJob   *struct {
		ID   string   `json:"id"`
		Tags []string `json:"tags"`
	} `json:"lastJob"`
	Source string `json:"source"`
	Job    struct {
		Type           string   `json:"type"`
		Payload        any      `json:"payload"`
		Priority       int      `json:"priority"`
		MaxAttempts    int      `json:"maxAttempts"`
		TimeoutSeconds *int     `json:"timeoutSeconds"`
		Tags           []string `json:"tags"`
	} `json:"job"`
}

const periodicFields = `name schedule timezone paused nextRunAt lastRunAt lastJob { id tags } source job { type payload priority maxAttempts timeoutSeconds tags }`

const upsertPeriodic = `mutation($input: PeriodicJobInput!) { upsertPeriodicJob(input: $input) { ` + periodicFields + ` } }`

func upsertAs(c *client.Client, input map[string]any) (periodicJSON, error) {
	var resp struct {
		UpsertPeriodicJob periodicJSON `json:"upsertPeriodicJob"`
	}
	err := c.Post(upsertPeriodic, &resp, client.Var("input", input))
	return resp.UpsertPeriodicJob, err
}

func listPeriodic(c *client.Client) ([]periodicJSON, error) {
	var resp struct {
		PeriodicJobs []periodicJSON `json:"periodicJobs"`
	}
	err := c.Post(`query { periodicJobs { `+periodicFields+` } }`, &resp)
	return resp.PeriodicJobs, err
}

// upsertPeriodicJob creates and replaces a definition with the template's
// defaults applied and its tag added, periodicJobs lists it with its last
// job, and deletePeriodicJob deletes it.
func TestPeriodicJobsCreateListDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	p, err := upsertAs(b.client, map[string]any{"name": "nightly", "schedule": "0 2 * * *", "timezone": "Europe/Paris",
		"job": map[string]any{"type": "report", "payload": map[string]any{"kind": "nightly"}, "tags": []string{"ops"}, "timeoutSeconds": 60}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "nightly" || p.Timezone != "Europe/Paris" || p.Paused || p.Source != "API" || p.NextRunAt == nil || p.LastRunAt != nil || p.LastJob != nil ||
		p.Job.Type != "report" || p.Job.MaxAttempts != 1 || p.Job.TimeoutSeconds == nil || *p.Job.TimeoutSeconds != 60 ||
		len(p.Job.Tags) != 2 || p.Job.Tags[0] != "ops" || p.Job.Tags[1] != "periodic:nightly" {
		t.Fatalf("upsert = %+v", p)
	}
	next, err := time.Parse(time.RFC3339Nano, *p.NextRunAt)
	if err != nil || next.In(mustLocation(t, "Europe/Paris")).Hour() != 2 {
		t.Fatalf("nextRunAt %s, %v; want 02:00 in Paris", *p.NextRunAt, err)
	}
	// A tick's job shows as lastJob.
	defs, _ := b.store.ListPeriodic(context.Background())
	j, err := b.store.EnqueuePeriodic(context.Background(), store.PeriodicTick{Name: "nightly", Revision: defs[0].Revision, At: time.Now(), Job: defs[0].Job.NewJob()})
	if err != nil || j == nil {
		t.Fatalf("enqueue = %v, %v", j, err)
	}
	list, err := listPeriodic(b.client)
	if err != nil || len(list) != 1 || list[0].LastJob == nil || list[0].LastJob.ID != j.ID || list[0].LastRunAt == nil {
		t.Fatalf("periodicJobs = %+v, %v; want nightly with its last job %s", list, err, j.ID)
	}
	p, err = upsertAs(b.client, map[string]any{"name": "nightly", "schedule": "@every 1h", "paused": true, "job": map[string]any{"type": "report"}})
	if err != nil || p.Schedule != "@every 1h" || p.Timezone != "UTC" || !p.Paused || p.NextRunAt != nil || p.LastJob == nil || p.LastJob.ID != j.ID {
		t.Fatalf("replace = %+v, %v; want paused @every 1h in UTC, no next run, the last job kept", p, err)
	}

	var del struct{ DeletePeriodicJob bool }
	if err := b.client.Post(`mutation { deletePeriodicJob(name: "nightly") }`, &del); err != nil || !del.DeletePeriodicJob {
		t.Fatalf("delete = %v, %v", del, err)
	}
	err = b.client.Post(`mutation { deletePeriodicJob(name: "nightly") }`, &del)
	wantError(t, err, "NOT_FOUND", `no periodic job named "nightly"`)
	if list, err := listPeriodic(b.client); err != nil || len(list) != 0 {
		t.Fatalf("periodicJobs after delete = %+v, %v", list, err)
	}
	if _, err := b.store.Get(context.Background(), j.ID); err != nil {
		t.Fatalf("the tick's job went with its periodic job: %v", err)
	}
}

func mustLocation(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// Bad input is BAD_USER_INPUT naming the field; a definition of the file
// is CONFLICT naming PERIODIC_FILE.
func TestPeriodicJobsBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	job := map[string]any{"type": "report"}
	tooManyTags := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, tc := range []struct {
		input map[string]any
		msg   string
	}{
		{map[string]any{"name": "x", "schedule": "every day", "job": job}, "schedule: "},
		{map[string]any{"name": "x", "schedule": "61 * * * *", "job": job}, "schedule: "},
		{map[string]any{"name": "x", "schedule": "@hourly", "timezone": "Mars/Base", "job": job}, "timezone: unknown time zone"},
		{map[string]any{"name": "", "schedule": "@hourly", "job": job}, "name: must not be empty"},
		{map[string]any{"name": "a b", "schedule": "@hourly", "job": job}, "name: may contain only"},
		{map[string]any{"name": "x", "schedule": "@hourly", "job": map[string]any{"type": "a b"}}, "job.type: "},
		{map[string]any{"name": "x", "schedule": "@hourly", "job": map[string]any{"type": "t", "maxAttempts": 0}}, "job.maxAttempts: "},
		{map[string]any{"name": "x", "schedule": "@hourly", "job": map[string]any{"type": "t", "idempotencyKey": "k"}}, "job.idempotencyKey: "},
		{map[string]any{"name": "x", "schedule": "@hourly", "job": map[string]any{"type": "t", "tags": tooManyTags}}, "job.tags: must be at most 10"},
	} {
		_, err := upsertAs(b.client, tc.input)
		wantError(t, err, "BAD_USER_INPUT", tc.msg)
	}
	if list, err := listPeriodic(b.client); err != nil || len(list) != 0 {
		t.Fatalf("bad inputs stored %+v, %v", list, err)
	}

	if _, err := b.store.PutPeriodic(context.Background(), domain.PeriodicJob{Name: "from-file", Schedule: "@hourly", Timezone: "UTC", Source: domain.PeriodicFromFile,
		Job: domain.JobTemplate{Type: "t", MaxAttempts: 1, Tags: []string{"periodic:from-file"}}}); err != nil {
		t.Fatal(err)
	}
	_, err := upsertAs(b.client, map[string]any{"name": "from-file", "schedule": "@daily", "job": job})
	wantError(t, err, "CONFLICT", "PERIODIC_FILE")
	var del struct{ DeletePeriodicJob bool }
	wantError(t, b.client.Post(`mutation { deletePeriodicJob(name: "from-file") }`, &del), "CONFLICT", "PERIODIC_FILE")
	list, err := listPeriodic(b.client)
	if err != nil || len(list) != 1 || list[0].Source != "FILE" || list[0].Schedule != "@hourly" {
		t.Fatalf("periodicJobs = %+v, %v; want the file's definition unchanged", list, err)
	}
}

// Admins define periodic jobs; viewers read them; users do neither.
func TestPeriodicJobsAccess(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	admin := b.as(&auth.Identity{Name: "root", Role: auth.RoleAdmin})
	viewer := b.as(&auth.Identity{Name: "eve", Role: auth.RoleViewer})
	user := b.as(&auth.Identity{Name: "alice", Role: auth.RoleUser})
	input := map[string]any{"name": "p", "schedule": "@hourly", "job": map[string]any{"type": "t"}}
	if _, err := upsertAs(admin, input); err != nil {
		t.Fatalf("admin's upsert: %v", err)
	}
	for _, c := range []*client.Client{viewer, user} {
		_, err := upsertAs(c, input)
		wantError(t, err, "FORBIDDEN", "may not define periodic jobs")
		var del struct{ DeletePeriodicJob bool }
		wantError(t, c.Post(`mutation { deletePeriodicJob(name: "p") }`, &del), "FORBIDDEN", "may not delete periodic jobs")
	}
	if list, err := listPeriodic(viewer); err != nil || len(list) != 1 {
		t.Fatalf("viewer's periodicJobs = %+v, %v", list, err)
	}
	_, err := listPeriodic(user)
	wantError(t, err, "FORBIDDEN", "may not list periodic jobs")
}
