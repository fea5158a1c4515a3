package graph_test

import (
	"net/http"
	"testing"

	"github.com/99designs/gqlgen/client"

	"github.com/jobqueue/jobqueue/internal/auth"
)

// as returns a client of the bundle's handler whose every request (the
// websocket's too) carries the identity, as the authentication middleware
// puts it in the request's context; nil for none (authentication off).
func (b *bundle) as(id *auth.Identity) *client.Client {
	if id == nil {
		return client.New(b.handler)
	}
	return client.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.handler.ServeHTTP(w, r.WithContext(auth.WithIdentity(r.Context(), *id)))
	}))
}

type ownedJob struct {
	ID    string  `json:"id"`
	Owner *string `json:"owner"`
}

// What each role gets through GraphQL: a job's owner; a user sees its own
// jobs only, another's is null to job (as a missing one is) and NOT_FOUND
// to cancelJob, retryJob and jobUpdated; a viewer reads everything and
// createJob, cancelJob and retryJob are FORBIDDEN to it; a role the
// service does not know is FORBIDDEN everything.
func TestAuthorizationOverGraphQL(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false }) // jobs stay PENDING
	alice := b.as(&auth.Identity{Name: "alice", Role: auth.RoleUser})
	bob := b.as(&auth.Identity{Name: "bob", Role: auth.RoleUser})
	viewer := b.as(&auth.Identity{Name: "eve", Role: auth.RoleViewer})
	unknown := b.as(&auth.Identity{Name: "mallory", Role: "superuser"})
	anyone := b.as(nil)

	const create = `mutation { createJob(input: {type: "t"}) { id owner } }`
	createAs := func(c *client.Client) ownedJob {
		t.Helper()
		var resp struct{ CreateJob ownedJob }
		if err := c.Post(create, &resp); err != nil {
			t.Fatal(err)
		}
		return resp.CreateJob
	}
	mine, theirs, nobodys := createAs(alice), createAs(bob), createAs(anyone)
	if mine.Owner == nil || *mine.Owner != "alice" || theirs.Owner == nil || *theirs.Owner != "bob" || nobodys.Owner != nil {
		t.Fatalf("owners: alice's %v, bob's %v, with auth off %v; want alice, bob, null", mine.Owner, theirs.Owner, nobodys.Owner)
	}

	// A user: its own job; another's is null, as a missing one is.
	const get = `query($id: ID!) { job(id: $id) { id owner } }`
	for id, want := range map[string]string{mine.ID: mine.ID, theirs.ID: "", nobodys.ID: "", "no-such-job": ""} {
		var resp struct{ Job *ownedJob }
		if err := alice.Post(get, &resp, client.Var("id", id)); err != nil {
			t.Fatalf("alice's job(%s): %v", id, err)
		}
		if got := ""; resp.Job != nil {
			got = resp.Job.ID
			if got != want {
				t.Fatalf("alice's job(%s) = %s, want %q", id, got, want)
			}
		} else if want != "" {
			t.Fatalf("alice's job(%s) = null, want her job", id)
		}
	}
	// Listings and stats hold her jobs only.
	var list struct {
		Jobs struct {
			Nodes      []ownedJob
			TotalCount int
		}
		Stats struct{ Pending int }
	}
	if err := alice.Post(`{ jobs { nodes { id owner } totalCount } stats { pending } }`, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs.Nodes) != 1 || list.Jobs.Nodes[0].ID != mine.ID || list.Jobs.TotalCount != 1 || list.Stats.Pending != 1 {
		t.Fatalf("alice's jobs and stats = %+v; want her one job", list)
	}
	// Changing or watching another's job is NOT_FOUND, word for word as
	// for a missing one.
	for _, m := range []string{`mutation($id: ID!) { cancelJob(id: $id) { id } }`, `mutation($id: ID!) { retryJob(id: $id) { id } }`} {
		var resp map[string]any
		wantError(t, alice.Post(m, &resp, client.Var("id", theirs.ID)), "NOT_FOUND", `no job with id "`+theirs.ID+`"`)
	}
	sub := alice.Websocket(jobUpdatedSubscription, client.Var("id", theirs.ID))
	t.Cleanup(func() { _ = sub.Close() })
	_, err := next(t, sub)
	wantError(t, err, "NOT_FOUND", `no job with id "`+theirs.ID+`"`)

	// A viewer reads everything, changes nothing.
	var resp map[string]any
	wantError(t, viewer.Post(create, &resp), "FORBIDDEN", `the role "viewer" may not create jobs`)
	wantError(t, viewer.Post(`mutation($id: ID!) { cancelJob(id: $id) { id } }`, &resp, client.Var("id", theirs.ID)), "FORBIDDEN", `may not cancel jobs`)
	var seen struct{ Job *ownedJob }
	if err := viewer.Post(get, &seen, client.Var("id", theirs.ID)); err != nil || seen.Job == nil || *seen.Job.Owner != "bob" {
		t.Fatalf("viewer's job(bob's) = %+v, %v", seen.Job, err)
	}
	var all struct{ Jobs struct{ TotalCount int } }
	if err := viewer.Post(`{ jobs { totalCount } }`, &all); err != nil || all.Jobs.TotalCount != 3 {
		t.Fatalf("viewer's jobs = %+v, %v; want all 3", all, err)
	}

	// An unknown role: nothing, reads included.
	wantError(t, unknown.Post(`{ jobs { totalCount } }`, &resp), "FORBIDDEN", `the role "superuser" may not list jobs`)
	unknownSub := unknown.Websocket(jobUpdatedSubscription)
	t.Cleanup(func() { _ = unknownSub.Close() })
	_, err = next(t, unknownSub)
	wantError(t, err, "FORBIDDEN", `may not watch jobs`)

	// Nothing above changed bob's job.
	if err := anyone.Post(get, &seen, client.Var("id", theirs.ID)); err != nil || seen.Job == nil {
		t.Fatalf("bob's job: %+v, %v", seen.Job, err)
	}
	if j, err := b.store.Get(t.Context(), theirs.ID); err != nil || j.Version != 1 {
		t.Fatalf("bob's job after the others' tries = %+v, %v; want version 1", j, err)
	}
}
