package graph_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

const createJobsMutation = `mutation($inputs: [CreateJobInput!]!) { createJobs(inputs: $inputs) { id type status owner priority } }`

type createdJob struct {
	ID       string  `json:"id"`
	Type     string  `json:"type"`
	Status   string  `json:"status"`
	Owner    *string `json:"owner"`
	Priority int     `json:"priority"`
}

// total is how many jobs the bundle's store holds.
func (b *bundle) total(t *testing.T) int {
	t.Helper()
	page, err := b.store.List(context.Background(), store.ListQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	return page.Total
}

// postVars posts doc with variables to h.
func postVars(h http.Handler, doc string, vars map[string]any) *httptest.ResponseRecorder {
	return postRequest(h, map[string]any{"query": doc, "variables": vars})
}

// inputs is n inputs of type t.
func inputs(n int) []any {
	in := make([]any, n)
	for i := range in {
		in[i] = map[string]any{"type": "t"}
	}
	return in
}

// createJobs creates jobs in input order, owned by the caller, with an
// idempotency key given twice answered by one job.
func TestCreateJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	alice := b.as(&auth.Identity{Name: "alice", Role: auth.RoleUser})
	var resp struct{ CreateJobs []createdJob }
	err := alice.Post(createJobsMutation, &resp, client.Var("inputs", []map[string]any{
		{"type": "a", "priority": 1},
		{"type": "b", "priority": 2, "idempotencyKey": "k"},
		{"type": "c", "priority": 3, "idempotencyKey": "k"},
		{"type": "d", "priority": 4},
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := resp.CreateJobs
	if len(got) != 4 {
		t.Fatalf("createJobs returned %d jobs, want 4", len(got))
	}
	for i, want := range []string{"a", "b", "b", "d"} {
		if got[i].Type != want || got[i].Status != "PENDING" || got[i].Owner == nil || *got[i].Owner != "alice" {
			t.Errorf("job %d = %+v, want a PENDING %s of alice's", i, got[i], want)
		}
	}
	if got[1].ID != got[2].ID {
		t.Errorf("a key given twice made jobs %s and %s, want one", got[1].ID, got[2].ID)
	}
	if got[0].Priority != 1 || got[3].Priority != 4 {
		t.Errorf("priorities %d and %d, want the inputs' 1 and 4", got[0].Priority, got[3].Priority)
	}
	if n := b.total(t); n != 3 {
		t.Errorf("store holds %d jobs, want 3", n)
	}
	// A key taken before the call gives the job that has it.
	resp.CreateJobs = nil
	if err := alice.Post(createJobsMutation, &resp, client.Var("inputs", []map[string]any{{"type": "x", "idempotencyKey": "k"}})); err != nil {
		t.Fatal(err)
	}
	if len(resp.CreateJobs) != 1 || resp.CreateJobs[0].ID != got[1].ID {
		t.Errorf("a taken key gave %+v, want job %s", resp.CreateJobs, got[1].ID)
	}
	// A viewer may not create.
	viewer := b.as(&auth.Identity{Name: "eve", Role: auth.RoleViewer})
	wantError(t, viewer.Post(createJobsMutation, &resp, client.Var("inputs", inputs(2))), graph.CodeForbidden, "create")
	if n := b.total(t); n != 3 {
		t.Errorf("store holds %d jobs after the viewer's call, want 3", n)
	}
}

// One bad input refuses the whole call, naming the input's field.
func TestCreateJobsAllOrNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	for _, c := range []struct {
		bad   map[string]any
		field string
	}{
		{map[string]any{"type": "bad type!"}, "inputs[2].type"},
		{map[string]any{"type": "t", "maxAttempts": 0}, "inputs[2].maxAttempts"},
		{map[string]any{"type": "t", "idempotencyKey": ""}, "inputs[2].idempotencyKey"},
	} {
		in := inputs(4)
		in[2] = c.bad
		var resp struct{ CreateJobs []createdJob }
		e := wantError(t, b.client.Post(createJobsMutation, &resp, client.Var("inputs", in)), graph.CodeBadUserInput, c.field+":")
		if len(e.Path) != 1 || e.Path[0] != "createJobs" {
			t.Errorf("error path %v, want [createJobs]", e.Path)
		}
		if n := b.total(t); n != 0 {
			t.Fatalf("%s: a refused call created %d jobs", c.field, n)
		}
	}
}

// createJobs's inputs count toward MAX_JOBS_PER_REQUEST with createJob
// fields, however they are given, before any job is created.
func TestCreateJobsTooMany(t *testing.T) {
	t.Parallel()
	b := setup(t, withServerLimits)
	wantOK(t, postVars(b.handler, createJobsMutation, map[string]any{"inputs": inputs(100)}), "100 inputs")
	if n := b.total(t); n != 100 {
		t.Fatalf("100 inputs created %d jobs", n)
	}
	literal := "[" + strings.Repeat(`{type: "t"} `, 101) + "]"
	// One list too long is a bad argument, named.
	for _, c := range []struct {
		name, doc string
		vars      map[string]any
	}{
		{"101 inputs in a variable", createJobsMutation, map[string]any{"inputs": inputs(101)}},
		{"101 inputs in a literal", `mutation { createJobs(inputs: ` + literal + `) { id } }`, nil},
		{"a variable's default", `mutation($in: [CreateJobInput!]! = ` + literal + `) { createJobs(inputs: $in) { id } }`, nil},
	} {
		// A request error of the client's input, in application/json: 200.
		e := wantRefusedWith(t, postVars(b.handler, c.doc, c.vars), graph.CodeBadUserInput, http.StatusOK)
		if !strings.HasPrefix(e.Message, "inputs: ") || !strings.Contains(e.Message, "100") || !strings.Contains(e.Message, "101") {
			t.Errorf("%s: message %q does not name inputs, the limit and the count", c.name, e.Message)
		}
	}
	// Jobs of several fields over the limit: the request asks too much.
	for _, c := range []struct {
		name, doc string
		vars      map[string]any
	}{
		{"two calls of 51", `mutation($in: [CreateJobInput!]!) { a: createJobs(inputs: $in) { id } b: createJobs(inputs: $in) { id } }`, map[string]any{"in": inputs(51)}},
		{"with createJob fields", `mutation($in: [CreateJobInput!]!) { createJobs(inputs: $in) { id } ` + numbered(2, `c%d: createJob(input: {type: "x"}) { id }`) + `}`, map[string]any{"in": inputs(99)}},
		{"through a fragment", `mutation($in: [CreateJobInput!]!) { ...M ...M } fragment M on Mutation { createJobs(inputs: $in) { id } }`, map[string]any{"in": inputs(51)}},
	} {
		e := wantRefused(t, postVars(b.handler, c.doc, c.vars), graph.CodeTooManyJobs)
		if !strings.Contains(e.Message, "100") || !strings.Contains(e.Message, "10") {
			t.Errorf("%s: message %q does not name the limit", c.name, e.Message)
		}
	}
	if n := b.total(t); n != 100 {
		t.Fatalf("refused calls created %d jobs", n-100)
	}
}

// deleteJob deletes a finished job only, of the caller's own, and sends
// no event.
func TestDeleteJob(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	ctx := context.Background()
	alice := b.as(&auth.Identity{Name: "alice", Role: auth.RoleUser})
	bob := b.as(&auth.Identity{Name: "bob", Role: auth.RoleUser})
	viewer := b.as(&auth.Identity{Name: "eve", Role: auth.RoleViewer})
	const del = `mutation($id: ID!) { deleteJob(id: $id) }`
	var resp struct{ DeleteJob bool }

	j, err := b.store.Create(ctx, domain.NewJob{Type: "t", Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, alice.Post(del, &resp, client.Var("id", j.ID)), graph.CodeConflict, "it is PENDING")
	now := time.Now()
	claimed, err := b.store.Claim(ctx, store.ClaimRequest{Owner: "w", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	wantError(t, alice.Post(del, &resp, client.Var("id", j.ID)), graph.CodeConflict, "it is PROCESSING")
	if _, err := b.store.Complete(ctx, store.LeaseOf(claimed[0], "w"), nil); err != nil {
		t.Fatal(err)
	}
	wantError(t, viewer.Post(del, &resp, client.Var("id", j.ID)), graph.CodeForbidden, "delete")
	wantError(t, bob.Post(del, &resp, client.Var("id", j.ID)), graph.CodeNotFound, j.ID)
	if _, err := b.store.Get(ctx, j.ID); err != nil {
		t.Fatalf("refused deletes lost the job: %v", err)
	}

	events := b.watch.Events()
	if err := alice.Post(del, &resp, client.Var("id", j.ID)); err != nil || !resp.DeleteJob {
		t.Fatalf("deleteJob = %v, %v; want true", resp.DeleteJob, err)
	}
	if _, err := b.store.Get(ctx, j.ID); err == nil {
		t.Fatal("deleted job is still stored")
	}
	if got := b.watch.Events(); got != events {
		t.Errorf("deleteJob published %d events, want none", got-events)
	}
	wantError(t, alice.Post(del, &resp, client.Var("id", j.ID)), graph.CodeNotFound, j.ID)
	wantError(t, b.client.Post(del, &resp, client.Var("id", "no-such-job")), graph.CodeNotFound, "no-such-job")
}
