package graph_test

import (
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"

	"github.com/jobqueue/jobqueue/internal/auth"
)

type jobTypeJSON struct {
	Name          string   `json:"name"`
	Paused        bool     `json:"paused"`
	Concurrency   *int     `json:"concurrency"`
	RatePerSecond *float64 `json:"ratePerSecond"`
	RateBurst     *int     `json:"rateBurst"`
	Stats         struct {
		Pending int `json:"pending"`
	} `json:"stats"`
}

const jobTypeFields = `name paused concurrency ratePerSecond rateBurst stats { pending }`

// pauseJobType, resumeJobType, setJobTypeLimits, jobTypes and jobType:
// what they return, a user's view, the operators' rule and bad input.
func TestJobTypes(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false }) // jobs stay PENDING
	alice := b.as(&auth.Identity{Name: "alice", Role: auth.RoleUser})
	viewer := b.as(&auth.Identity{Name: "eve", Role: auth.RoleViewer})
	admin := b.as(&auth.Identity{Name: "root", Role: auth.RoleAdmin})
	for _, c := range []*client.Client{alice, admin, admin} {
		if err := c.Post(`mutation { createJob(input: {type: "mail", runAt: "2100-01-01T00:00:00Z"}) { id } }`, &map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}

	var paused struct{ PauseJobType jobTypeJSON }
	if err := admin.Post(`mutation { pauseJobType(name: "mail") { `+jobTypeFields+` } }`, &paused); err != nil {
		t.Fatal(err)
	}
	if p := paused.PauseJobType; p.Name != "mail" || !p.Paused || p.Stats.Pending != 3 || p.Concurrency != nil || p.RatePerSecond != nil {
		t.Fatalf("pauseJobType = %+v", p)
	}
	var limited struct{ SetJobTypeLimits jobTypeJSON }
	if err := admin.Post(`mutation { setJobTypeLimits(name: "api", concurrency: 3, ratePerSecond: 2.5) { `+jobTypeFields+` } }`, &limited); err != nil {
		t.Fatal(err)
	}
	if l := limited.SetJobTypeLimits; l.Paused || *l.Concurrency != 3 || *l.RatePerSecond != 2.5 || *l.RateBurst != 3 {
		t.Fatalf("setJobTypeLimits = %+v, want concurrency 3, rate 2.5, burst 3 (the rate rounded up)", l)
	}

	var list struct{ JobTypes []jobTypeJSON }
	if err := viewer.Post(`{ jobTypes { `+jobTypeFields+` } }`, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.JobTypes) != 2 || list.JobTypes[0].Name != "api" || list.JobTypes[1].Name != "mail" || list.JobTypes[1].Stats.Pending != 3 {
		t.Fatalf("viewer's jobTypes = %+v, want api (limited, no jobs) and mail (3 jobs)", list.JobTypes)
	}
	if err := alice.Post(`{ jobTypes { `+jobTypeFields+` } }`, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.JobTypes) != 1 || list.JobTypes[0].Name != "mail" || !list.JobTypes[0].Paused || list.JobTypes[0].Stats.Pending != 1 {
		t.Fatalf("user's jobTypes = %+v, want mail only, paused, with its own job", list.JobTypes)
	}
	var one struct{ JobType *jobTypeJSON }
	if err := viewer.Post(`{ jobType(name: "nothing") { name } }`, &one); err != nil || one.JobType != nil {
		t.Fatalf("jobType of a type without jobs or controls = %+v, %v; want null", one.JobType, err)
	}
	// A user sees only the types it has jobs of, in jobType as in jobTypes.
	if err := alice.Post(`{ jobType(name: "api") { name } }`, &one); err != nil || one.JobType != nil {
		t.Fatalf("user's jobType of a limited type it has no jobs of = %+v, %v; want null", one.JobType, err)
	}
	if err := viewer.Post(`{ jobType(name: "api") { name } }`, &one); err != nil || one.JobType == nil {
		t.Fatalf("viewer's jobType of a limited type = %+v, %v; want it", one.JobType, err)
	}
	if err := alice.Post(`{ jobType(name: "mail") { `+jobTypeFields+` } }`, &one); err != nil || one.JobType == nil || !one.JobType.Paused || one.JobType.Stats.Pending != 1 {
		t.Fatalf("user's jobType of its jobs' type = %+v, %v; want paused, with its one job", one.JobType, err)
	}

	var resumed struct{ ResumeJobType jobTypeJSON }
	if err := admin.Post(`mutation { resumeJobType(name: "mail") { `+jobTypeFields+` } }`, &resumed); err != nil || resumed.ResumeJobType.Paused {
		t.Fatalf("resumeJobType = %+v, %v", resumed.ResumeJobType, err)
	}
	if err := admin.Post(`mutation { setJobTypeLimits(name: "api") { concurrency } }`, &limited); err != nil || limited.SetJobTypeLimits.Concurrency != nil {
		t.Fatalf("setJobTypeLimits with nulls = %+v, %v; want cleared", limited.SetJobTypeLimits, err)
	}

	for _, c := range []*client.Client{viewer, alice} {
		wantError(t, c.Post(`mutation { pauseJobType(name: "mail") { name } }`, &paused), "FORBIDDEN", "job types")
		wantError(t, c.Post(`mutation { setJobTypeLimits(name: "mail", concurrency: 1) { name } }`, &paused), "FORBIDDEN", "job types")
	}
	for q, field := range map[string]string{
		`mutation { setJobTypeLimits(name: "api", concurrency: 0) { name } }`:                 "concurrency",
		`mutation { setJobTypeLimits(name: "api", concurrency: -1) { name } }`:                "concurrency",
		`mutation { setJobTypeLimits(name: "api", ratePerSecond: 0) { name } }`:               "ratePerSecond",
		`mutation { setJobTypeLimits(name: "api", ratePerSecond: -2.5) { name } }`:            "ratePerSecond",
		`mutation { setJobTypeLimits(name: "api", ratePerSecond: 1e-12) { name } }`:           "ratePerSecond",
		`mutation { setJobTypeLimits(name: "api", ratePerSecond: 1, rateBurst: 0) { name } }`: "rateBurst",
		`mutation { setJobTypeLimits(name: "api", rateBurst: 5) { name } }`:                   "rateBurst",
		`mutation { pauseJobType(name: "no spaces") { name } }`:                               "name",
		`{ jobType(name: "") { name } }`:                                                      "name",
	} {
		wantError(t, admin.Post(q, &map[string]any{}), "BAD_USER_INPUT", field)
	}
}

// jobTypeUpdated streams each pause, resume and change of limits.
func TestJobTypeUpdated(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	sub := b.client.Websocket(`subscription { jobTypeUpdated { ` + jobTypeFields + ` } }`)
	t.Cleanup(func() { _ = sub.Close() })
	if err := b.broker.WaitTypeSubscribers(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	nextType := func() jobTypeJSON {
		t.Helper()
		ch := make(chan jobTypeJSON, 1)
		errs := make(chan error, 1)
		go func() {
			var r struct{ JobTypeUpdated jobTypeJSON }
			if err := sub.Next(&r); err != nil {
				errs <- err
				return
			}
			ch <- r.JobTypeUpdated
		}()
		select {
		case got := <-ch:
			return got
		case err := <-errs:
			t.Fatalf("jobTypeUpdated: %v", err)
		case <-time.After(waitBound):
			_ = sub.Close()
			t.Fatalf("no jobTypeUpdated within %v", waitBound)
		}
		return jobTypeJSON{}
	}
	if err := b.client.Post(`mutation { pauseJobType(name: "mail") { name } }`, &map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if got := nextType(); got.Name != "mail" || !got.Paused {
		t.Fatalf("first change = %+v, want mail paused", got)
	}
	if err := b.client.Post(`mutation { setJobTypeLimits(name: "mail", concurrency: 2) { name } }`, &map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if got := nextType(); !got.Paused || got.Concurrency == nil || *got.Concurrency != 2 {
		t.Fatalf("after setJobTypeLimits = %+v", got)
	}
	if err := b.client.Post(`mutation { resumeJobType(name: "mail") { name } }`, &map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if got := nextType(); got.Paused || got.Concurrency == nil {
		t.Fatalf("after resumeJobType = %+v", got)
	}
}

// A user's jobTypeUpdated sends only the changes of the types it has jobs
// of, with its own counts.
func TestJobTypeUpdatedForAUser(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	alice := b.as(&auth.Identity{Name: "alice", Role: auth.RoleUser})
	admin := b.as(&auth.Identity{Name: "root", Role: auth.RoleAdmin})
	if err := alice.Post(`mutation { createJob(input: {type: "mail", runAt: "2100-01-01T00:00:00Z"}) { id } }`, &map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Post(`mutation { createJob(input: {type: "report", runAt: "2100-01-01T00:00:00Z"}) { id } }`, &map[string]any{}); err != nil {
		t.Fatal(err)
	}
	sub := alice.Websocket(`subscription { jobTypeUpdated { ` + jobTypeFields + ` } }`)
	t.Cleanup(func() { _ = sub.Close() })
	if err := b.broker.WaitTypeSubscribers(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"report", "api", "mail"} {
		if err := admin.Post(`mutation { pauseJobType(name: "`+typ+`") { name } }`, &map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan jobTypeJSON, 1)
	errs := make(chan error, 1)
	go func() {
		var r struct{ JobTypeUpdated jobTypeJSON }
		if err := sub.Next(&r); err != nil {
			errs <- err
			return
		}
		got <- r.JobTypeUpdated
	}()
	select {
	case first := <-got:
		if first.Name != "mail" || !first.Paused || first.Stats.Pending != 1 {
			t.Fatalf("user's first jobTypeUpdated = %+v, want mail paused with its one job (report and api left out)", first)
		}
	case err := <-errs:
		t.Fatalf("jobTypeUpdated: %v", err)
	case <-time.After(waitBound):
		_ = sub.Close()
		t.Fatalf("no jobTypeUpdated within %v", waitBound)
	}
}
