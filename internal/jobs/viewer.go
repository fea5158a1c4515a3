package jobs

import (
	"context"

	"github.com/jobqueue/jobqueue/internal/auth"
)

// Viewer is who the service takes the caller for: what a client shows as
// "signed in as" and uses to offer only what the role may do.
type Viewer struct {
	// Name is the identity's name (token name or JWT sub); "" when
	// authentication is off.
	Name string
	// Role is the caller's role; RoleAdmin when authentication is off, as
	// accessOf lets such a caller do everything.
	Role auth.Role
	// Authenticated reports whether the caller presented a credential,
	// that is whether access control is on.
	Authenticated bool
}

// NameOrNil is Name, nil when empty.
func (v Viewer) NameOrNil() *string {
	if v.Name == "" {
		return nil
	}
	return &v.Name
}

// Viewer returns who the caller is. With authentication off it is an
// anonymous admin. An identity whose role the service does not know (that
// authentication never makes) may do nothing, this included: a
// *ForbiddenError.
func (s *Service) Viewer(ctx context.Context) (Viewer, error) {
	id, ok := auth.IdentityFrom(ctx)
	if !ok {
		return Viewer{Role: auth.RoleAdmin}, nil
	}
	if _, err := auth.ParseRole(string(id.Role)); err != nil {
		return Viewer{}, &ForbiddenError{Op: "read", Role: id.Role, What: "its identity"}
	}
	return Viewer{Name: id.Name, Role: id.Role, Authenticated: true}, nil
}
