package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
)

// outcome is what an operation on a job gives a caller.
type outcome string

const (
	// allowed: the operation is done; for listings, stats and the
	// firehose, the job is in what the caller gets.
	allowed outcome = "allowed"
	// notFound: an error wrapping domain.ErrNotFound, as for a job that
	// does not exist; for listings, stats and the firehose, the job is
	// left out.
	notFound outcome = "NOT_FOUND"
	// forbidden: a *jobs.ForbiddenError, and nothing done.
	forbidden outcome = "FORBIDDEN"
)

// The callers of the table: no identity (authentication off), one of each
// role, and a role the service does not know.
var callers = map[string]*auth.Identity{
	"none":    nil,
	"admin":   {Name: "root", Role: auth.RoleAdmin},
	"viewer":  {Name: "eve", Role: auth.RoleViewer},
	"user":    {Name: "alice", Role: auth.RoleUser},
	"unknown": {Name: "mallory", Role: "superuser"},
}

// as returns ctx carrying the caller's identity (none for nil).
func as(ctx context.Context, id *auth.Identity) context.Context {
	if id == nil {
		return ctx
	}
	return auth.WithIdentity(ctx, *id)
}

// ownerOf is the Owner of the jobs a caller owns: its name ("" for none).
func ownerOf(id *auth.Identity) string {
	if id == nil {
		return ""
	}
	return id.Name
}

// Every operation × every caller × its own job and another owner's (bob's,
// a user): what the caller gets. A caller's own job is one whose Owner is
// its name (for no identity, a job without owner). A user never learns of
// another's job, not even that it exists; a viewer reads everything and
// changes nothing.
func TestAuthorization(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		caller, op string
		own, other outcome
	}{
		{"none", "create", allowed, allowed},
		{"none", "get", allowed, allowed},
		{"none", "list", allowed, allowed},
		{"none", "stats", allowed, allowed},
		{"none", "cancel", allowed, allowed},
		{"none", "retry", allowed, allowed},
		{"none", "create many", allowed, allowed},
		{"none", "delete", allowed, allowed},
		{"none", "watch", allowed, allowed},
		{"none", "watch id", allowed, allowed},

		{"admin", "create", allowed, allowed},
		{"admin", "get", allowed, allowed},
		{"admin", "list", allowed, allowed},
		{"admin", "stats", allowed, allowed},
		{"admin", "cancel", allowed, allowed},
		{"admin", "retry", allowed, allowed},
		{"admin", "create many", allowed, allowed},
		{"admin", "delete", allowed, allowed},
		{"admin", "watch", allowed, allowed},
		{"admin", "watch id", allowed, allowed},

		{"viewer", "create", forbidden, forbidden},
		{"viewer", "get", allowed, allowed},
		{"viewer", "list", allowed, allowed},
		{"viewer", "stats", allowed, allowed},
		{"viewer", "cancel", forbidden, forbidden},
		{"viewer", "retry", forbidden, forbidden},
		{"viewer", "create many", forbidden, forbidden},
		{"viewer", "delete", forbidden, forbidden},
		{"viewer", "watch", allowed, allowed},
		{"viewer", "watch id", allowed, allowed},

		{"user", "create", allowed, allowed},
		{"user", "get", allowed, notFound},
		{"user", "list", allowed, notFound},
		{"user", "stats", allowed, notFound},
		{"user", "cancel", allowed, notFound},
		{"user", "retry", allowed, notFound},
		{"user", "create many", allowed, allowed},
		{"user", "delete", allowed, notFound},
		{"user", "watch", allowed, notFound},
		{"user", "watch id", allowed, notFound},

		{"unknown", "create", forbidden, forbidden},
		{"unknown", "get", forbidden, forbidden},
		{"unknown", "list", forbidden, forbidden},
		{"unknown", "stats", forbidden, forbidden},
		{"unknown", "cancel", forbidden, forbidden},
		{"unknown", "retry", forbidden, forbidden},
		{"unknown", "create many", forbidden, forbidden},
		{"unknown", "delete", forbidden, forbidden},
		{"unknown", "watch", forbidden, forbidden},
		{"unknown", "watch id", forbidden, forbidden},
	} {
		for _, whose := range []string{"own", "other"} {
			want := tc.own
			if whose == "other" {
				want = tc.other
			}
			t.Run(fmt.Sprintf("%s %s %s", tc.caller, tc.op, whose), func(t *testing.T) {
				t.Parallel()
				checkAccess(t, callers[tc.caller], tc.op, whose, want)
			})
		}
	}
}

// checkAccess does op as caller on its own job or on bob's (whose), and
// fails unless the caller gets want.
func checkAccess(t *testing.T, caller *auth.Identity, op, whose string, want outcome) {
	t.Helper()
	b := setup(t, jobs.Options{})
	base := t.Context()
	ctx := as(base, caller)
	// Jobs put straight into the store: type a for the caller's own, b
	// for bob's, so that stats tell them apart.
	store := func(typ, owner string) *domain.Job {
		t.Helper()
		j, err := b.store.Create(base, domain.NewJob{Type: typ, Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	own := store("a", ownerOf(caller))
	other := store("b", "bob")
	target := own
	if whose == "other" {
		target = other
	}

	var (
		err     error
		visible bool // for listings, stats and the firehose: target is in them
	)
	switch op {
	case "create":
		var j *domain.Job
		j, err = b.svc.Create(ctx, jobs.CreateRequest{Type: ptr("c")})
		if err == nil && j.Owner != ownerOf(caller) {
			t.Fatalf("created job's owner %q, want %q", j.Owner, ownerOf(caller))
		}
		visible = err == nil
	case "create many":
		var created []*domain.Job
		created, err = b.svc.CreateMany(ctx, []jobs.CreateRequest{{Type: ptr("c")}, {Type: ptr("c")}})
		for _, j := range created {
			if j.Owner != ownerOf(caller) {
				t.Fatalf("created job's owner %q, want %q", j.Owner, ownerOf(caller))
			}
		}
		if err == nil && len(created) != 2 {
			t.Fatalf("created %d jobs, want 2", len(created))
		}
	case "delete":
		if _, err := b.svc.Cancel(base, target.ID); err != nil {
			t.Fatal(err)
		}
		err = b.svc.Delete(ctx, target.ID)
		if _, gerr := b.store.Get(base, target.ID); (err == nil) != errors.Is(gerr, domain.ErrNotFound) {
			t.Fatalf("delete = %v, but the job's get = %v", err, gerr)
		}
	case "get":
		var j *domain.Job
		j, err = b.svc.Get(ctx, target.ID)
		if err == nil && j.ID != target.ID {
			t.Fatalf("get %s returned job %s", target.ID, j.ID)
		}
	case "list":
		page, lerr := b.svc.List(ctx, jobs.ListRequest{})
		err = lerr
		for _, j := range page.Jobs {
			if j.ID == target.ID {
				visible = true
			}
		}
		if err == nil {
			// Whatever the filters, a user's listing holds its own
			// jobs only; the others' hold both.
			filtered, ferr := b.svc.List(ctx, jobs.ListRequest{Type: other.Type, Status: domain.StatusPending})
			if ferr != nil {
				t.Fatal(ferr)
			}
			if sawOther := len(filtered.Jobs) == 1 && filtered.Total == 1; sawOther != (caller == nil || caller.Role != auth.RoleUser) {
				t.Fatalf("listing bob's type as %v gave %d jobs of %d", caller, len(filtered.Jobs), filtered.Total)
			}
		}
	case "stats":
		var st domain.Stats
		st, err = b.svc.Stats(ctx, target.Type)
		visible = st.Pending == 1
		if all, aerr := b.svc.Stats(ctx, ""); err == nil && (aerr != nil || all.Pending != len(pendingSeen(t, b, ctx))) {
			t.Fatalf("stats of every type = %+v, %v; the caller lists %d pending jobs", all, aerr, len(pendingSeen(t, b, ctx)))
		}
	case "cancel":
		var j *domain.Job
		j, err = b.svc.Cancel(ctx, target.ID)
		if err == nil && j.Status != domain.StatusCancelled {
			t.Fatalf("cancelled job is %s", j.Status)
		}
	case "retry":
		if _, err := b.svc.Cancel(base, target.ID); err != nil {
			t.Fatal(err)
		}
		var j *domain.Job
		j, err = b.svc.Retry(ctx, target.ID)
		if err == nil && j.Status != domain.StatusPending {
			t.Fatalf("retried job is %s", j.Status)
		}
	case "watch":
		// The target changes, then a job the caller certainly sees:
		// changes arrive in order, so the first one tells whether the
		// target's reached the caller.
		marker := store("a", ownerOf(caller))
		if err := b.events.Flush(base); err != nil { // the creations went by
			t.Fatal(err)
		}
		sub, werr := b.svc.Watch(ctx, jobs.WatchRequest{})
		err = werr
		if err == nil {
			defer sub.Close()
			if _, err := b.svc.Cancel(base, target.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := b.svc.Cancel(base, marker.ID); err != nil {
				t.Fatal(err)
			}
			first := next(t, sub)
			visible = first.ID == target.ID
			if !visible && first.ID != marker.ID {
				t.Fatalf("the firehose gave job %s first, neither the target nor the marker", first.ID)
			}
		}
	case "watch id":
		sub, werr := b.svc.Watch(ctx, jobs.WatchRequest{ID: target.ID})
		err = werr
		if err == nil {
			defer sub.Close()
			if got := next(t, sub); got.ID != target.ID || got.Version != 1 {
				t.Fatalf("watch of %s began with %+v", target.ID, got)
			}
		} else if sub != nil {
			t.Fatal("a refused watch returned a subscription")
		}
	default:
		t.Fatalf("unknown operation %q", op)
	}

	var fe *jobs.ForbiddenError
	got := allowed
	switch {
	case errors.As(err, &fe) && errors.Is(err, domain.ErrForbidden) && !errors.Is(err, domain.ErrNotFound):
		got = forbidden
	case errors.Is(err, domain.ErrNotFound) && !errors.Is(err, domain.ErrForbidden):
		got = notFound
	case err != nil:
		t.Fatalf("%s: unexpected error %v", op, err)
	case (op == "list" || op == "stats" || op == "watch") && !visible:
		got = notFound
	}
	if got != want {
		t.Fatalf("%s by %v on the %s job: %s (err %v), want %s", op, caller, whose, got, err, want)
	}
	if got == forbidden {
		// Refused before anything was done.
		if n := len(pendingSeen(t, b, base)); n != 2 && op != "retry" && op != "delete" && op != "watch" {
			t.Fatalf("%d pending jobs after a refused %s, want the 2 there were", n, op)
		}
		if n := b.events.Subscribers(); n != 0 {
			t.Fatalf("%d subscriptions after a refused %s", n, op)
		}
	}
}

// pendingSeen returns the pending jobs a listing as ctx's caller gives.
func pendingSeen(t *testing.T, b *bundle, ctx context.Context) []*domain.Job {
	t.Helper()
	page, err := b.svc.List(ctx, jobs.ListRequest{Status: domain.StatusPending})
	if err != nil {
		t.Fatal(err)
	}
	return page.Jobs
}

// A user's NOT_FOUND for another's job is the one it gets for a job that
// does not exist: the same error type, the same sentinel, no trace of
// authorization.
func TestOthersJobIsNotFoundLikeAMissingOne(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	bob, err := b.svc.Create(as(t.Context(), &auth.Identity{Name: "bob", Role: auth.RoleUser}), jobs.CreateRequest{Type: ptr("t")})
	if err != nil {
		t.Fatal(err)
	}
	alice := as(t.Context(), callers["user"])
	for _, op := range []struct {
		name string
		do   func(id string) error
	}{
		{"get", func(id string) error { _, err := b.svc.Get(alice, id); return err }},
		{"cancel", func(id string) error { _, err := b.svc.Cancel(alice, id); return err }},
		{"retry", func(id string) error { _, err := b.svc.Retry(alice, id); return err }},
		{"watch", func(id string) error { _, err := b.svc.Watch(alice, jobs.WatchRequest{ID: id}); return err }},
	} {
		theirs, missing := op.do(bob.ID), op.do("no-such-job")
		for _, err := range []error{theirs, missing} {
			var fe *jobs.ForbiddenError
			if !errors.Is(err, domain.ErrNotFound) || errors.As(err, &fe) || errors.Is(err, domain.ErrForbidden) {
				t.Fatalf("%s: %v; want not found and nothing else", op.name, err)
			}
		}
	}
	if j, err := b.svc.Get(t.Context(), bob.ID); err != nil || j.Status != domain.StatusPending || j.Version != 1 {
		t.Fatalf("bob's job after alice's tries = %+v, %v; want it untouched", j, err)
	}
}

// Idempotency keys are scoped per owner: a user never gets another
// owner's job back through a key, and gets its own back through its own.
func TestIdempotencyKeysPerOwner(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	create := func(id *auth.Identity) *domain.Job {
		t.Helper()
		j, err := b.svc.Create(as(t.Context(), id), jobs.CreateRequest{Type: ptr("t"), IdempotencyKey: ptr("order-42")})
		if err != nil {
			t.Fatal(err)
		}
		if j.Owner != ownerOf(id) {
			t.Fatalf("%v got job %s of %q through the key", id, j.ID, j.Owner)
		}
		return j
	}
	bob := &auth.Identity{Name: "bob", Role: auth.RoleUser}
	first := map[string]string{}
	for _, name := range []string{"none", "admin", "user"} {
		first[name] = create(callers[name]).ID
	}
	bobs := create(bob).ID
	if len(map[string]bool{first["none"]: true, first["admin"]: true, first["user"]: true, bobs: true}) != 4 {
		t.Fatalf("one key gave jobs %v and bob's %s; want one per owner", first, bobs)
	}
	for name, id := range first {
		if again := create(callers[name]); again.ID != id {
			t.Fatalf("%s's key again gave job %s, want its own %s", name, again.ID, id)
		}
	}
}

func TestForbiddenError(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	_, err := b.svc.Create(as(t.Context(), callers["viewer"]), jobs.CreateRequest{Type: ptr("t")})
	var fe *jobs.ForbiddenError
	if !errors.As(err, &fe) || *fe != (jobs.ForbiddenError{Op: "create", Role: auth.RoleViewer}) {
		t.Fatalf("err = %#v", err)
	}
	if got, want := err.Error(), `the role "viewer" may not create jobs`; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	// Authorization comes first: a viewer's invalid request is refused
	// for its role, not for its input.
	if _, err := b.svc.Create(as(t.Context(), callers["viewer"]), jobs.CreateRequest{}); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("viewer's invalid create: %v, want forbidden", err)
	}
}

// A user sees only the job types it has jobs of, with its own counts, in
// each of jobTypes, jobType and the watch of type changes; an operator
// sees every type with controls or jobs.
func TestUserSeesOnlyTypesOfItsJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	alice := as(t.Context(), callers["user"])
	bob := as(t.Context(), &auth.Identity{Name: "bob", Role: auth.RoleUser})
	admin := as(t.Context(), callers["admin"])
	if _, err := b.svc.Create(alice, jobs.CreateRequest{Type: ptr("mine")}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"mine", "theirs"} {
		if _, err := b.svc.Create(bob, jobs.CreateRequest{Type: ptr(typ)}); err != nil {
			t.Fatal(err)
		}
	}
	aliceWatch, err := b.svc.WatchTypes(alice)
	if err != nil {
		t.Fatal(err)
	}
	defer aliceWatch.Close()
	adminWatch, err := b.svc.WatchTypes(admin)
	if err != nil {
		t.Fatal(err)
	}
	defer adminWatch.Close()
	for _, typ := range []string{"theirs", "nojobs", "mine"} {
		if _, err := b.svc.PauseType(admin, typ, true); err != nil {
			t.Fatal(err)
		}
	}

	list, err := b.svc.JobTypes(alice)
	if err != nil || len(list) != 1 || list[0].Name != "mine" || !list[0].Paused || list[0].Stats.Pending != 1 {
		t.Fatalf("user's JobTypes = %+v, %v; want mine only, paused, with its one job", list, err)
	}
	for _, typ := range []string{"theirs", "nojobs"} {
		if got, err := b.svc.JobType(alice, typ); err != nil || got != nil {
			t.Fatalf("user's JobType(%s) = %+v, %v; want nil (it has no jobs of it)", typ, got, err)
		}
		if got, err := b.svc.JobType(admin, typ); err != nil || got == nil || !got.Paused {
			t.Fatalf("admin's JobType(%s) = %+v, %v; want it, paused", typ, got, err)
		}
	}
	if got, err := b.svc.JobType(alice, "mine"); err != nil || got == nil || !got.Paused || got.Stats.Pending != 1 {
		t.Fatalf("user's JobType(mine) = %+v, %v; want paused, with its one job", got, err)
	}

	// The user's first change is mine's: theirs and nojobs were left out.
	if got, err := aliceWatch.Next(t.Context()); err != nil || got.Name != "mine" || got.Stats.Pending != 1 {
		t.Fatalf("user's first type change = %+v, %v; want mine with its one job", got, err)
	}
	for _, want := range []string{"theirs", "nojobs", "mine"} {
		if got, err := adminWatch.Next(t.Context()); err != nil || got.Name != want {
			t.Fatalf("admin's type change = %+v, %v; want %s", got, err, want)
		}
	}
}
