package jobs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
)

// Viewer is the caller as the access rules see it: an anonymous admin
// without authentication, its identity otherwise; a role the service does
// not know is refused, as everything else is to it.
func TestViewer(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	want := map[string]jobs.Viewer{
		"none":   {Role: auth.RoleAdmin},
		"admin":  {Name: "root", Role: auth.RoleAdmin, Authenticated: true},
		"viewer": {Name: "eve", Role: auth.RoleViewer, Authenticated: true},
		"user":   {Name: "alice", Role: auth.RoleUser, Authenticated: true},
	}
	for name, id := range callers {
		got, err := b.svc.Viewer(as(context.Background(), id))
		if name == "unknown" {
			var fe *jobs.ForbiddenError
			if !errors.As(err, &fe) || !errors.Is(err, domain.ErrForbidden) || fe.Role != "superuser" {
				t.Errorf("Viewer(unknown role) = %+v, %v; want a *ForbiddenError", got, err)
			}
			continue
		}
		if err != nil || got != want[name] {
			t.Errorf("Viewer(%s) = %+v, %v; want %+v", name, got, err, want[name])
		}
		if (got.NameOrNil() == nil) != (want[name].Name == "") {
			t.Errorf("Viewer(%s).NameOrNil() = %v", name, got.NameOrNil())
		}
	}
}
