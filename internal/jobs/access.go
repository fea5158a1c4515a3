package jobs

import (
	"context"
	"fmt"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/domain"
)

// access is what a caller may do, decided once per request from its
// identity by accessOf.
type access struct {
	// read allows Get, List, Stats and Watch.
	read bool
	// write allows Create, CreateMany, Cancel, Retry and Delete.
	write bool
	// operate allows the operator's controls: defining and deleting
	// periodic jobs; pausing, resuming and limiting job types.
	operate bool
	// scope, when not empty, is the only owner whose jobs the caller sees
	// and acts on: another owner's job is not found, listings, stats and
	// watches hold only the scope's jobs.
	scope string
	// owner is the Owner of the jobs the caller creates ("" for none).
	owner string
	// role names the caller's role in a refusal.
	role auth.Role
}

// accessOf is the authorization rules, all of them:
//
//	identity         reads         writes        sees         owns what it creates   operates
//	none (auth off)  yes           yes           every job    no (Owner "")          yes
//	admin            yes           yes           every job    yes                    yes
//	viewer           yes           no            every job    -                      no
//	user             yes           yes           its own      yes                    no
//	anything else    no            no            -            -                      no
//
// Operating is the controls that act on every owner's jobs: periodic jobs
// and the controls of job types (pause, resume, limits).
//
// "Its own" is the jobs whose Owner is the identity's Name. A user without
// a name could tell its jobs from no one's, so it may do nothing either
// (authentication never makes one). Operating is the operator's controls
// (periodic jobs); reading them takes reading every job (allowPeriodic).
func accessOf(ctx context.Context) access {
	id, ok := auth.IdentityFrom(ctx)
	if !ok {
		return access{read: true, write: true, operate: true}
	}
	switch id.Role {
	case auth.RoleAdmin:
		return access{read: true, write: true, operate: true, owner: id.Name, role: id.Role}
	case auth.RoleViewer:
		return access{read: true, role: id.Role}
	case auth.RoleUser:
		if id.Name != "" {
			return access{read: true, write: true, scope: id.Name, owner: id.Name, role: id.Role}
		}
	}
	return access{role: id.Role}
}

// allow returns a *ForbiddenError unless the caller may do op, a write
// (Create, CreateMany, Cancel, Retry, Delete) or a read.
func (a access) allow(op string, write bool) error {
	if write && !a.write || !write && !a.read {
		return &ForbiddenError{Op: op, Role: a.role}
	}
	return nil
}

// allowOperate returns a *ForbiddenError unless the caller may change
// the controls of job types (op names the change).
func (a access) allowOperate(op string) error {
	if !a.operate {
		return &ForbiddenError{Op: op, Role: a.role, What: "job types"}
	}
	return nil
}

// allowPeriodic returns a *ForbiddenError unless the caller may do op to
// periodic jobs: change them (write) takes operating, reading them takes
// seeing every job (their jobs belong to no user, and their templates are
// the operator's).
func (a access) allowPeriodic(op string, write bool) error {
	if write && !a.operate || !write && (!a.read || a.scope != "") {
		return &ForbiddenError{Op: op, Role: a.role, What: "periodic jobs"}
	}
	return nil
}

// sees reports whether the caller may see j at all.
func (a access) sees(j *domain.Job) bool { return a.scope == "" || j.Owner == a.scope }

// ForbiddenError reports that the caller's role does not allow an
// operation on any job. It wraps domain.ErrForbidden. (A job the caller
// may not see is not found instead, exactly as one that does not exist.)
type ForbiddenError struct {
	// Op is the refused operation, as a verb: "create", "read", "list",
	// "count", "cancel", "retry", "delete" or "watch".
	Op string
	// Role is the caller's role.
	Role auth.Role
	// What names the objects of Op: "jobs" when empty.
	What string
}

func (e *ForbiddenError) Error() string {
	what := e.What
	if what == "" {
		what = "jobs"
	}
	return fmt.Sprintf("the role %q may not %s %s", e.Role, e.Op, what)
}

// Unwrap makes errors.Is(err, domain.ErrForbidden) true.
func (e *ForbiddenError) Unwrap() error { return domain.ErrForbidden }
