package graph_test

import (
	"testing"

	"github.com/jobqueue/jobqueue/internal/auth"
)

// viewer tells each caller who the server takes it for: its name and
// role with access control on, an anonymous admin with it off; a role the
// service does not know is FORBIDDEN even that.
func TestViewer(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	type viewer struct {
		Name          *string
		Role          string
		Authenticated bool
	}
	name := func(s string) *string { return &s }
	for _, tt := range []struct {
		id   *auth.Identity
		want viewer
	}{
		{id: nil, want: viewer{Name: nil, Role: "ADMIN", Authenticated: false}},
		{id: &auth.Identity{Name: "root", Role: auth.RoleAdmin}, want: viewer{Name: name("root"), Role: "ADMIN", Authenticated: true}},
		{id: &auth.Identity{Name: "eve", Role: auth.RoleViewer}, want: viewer{Name: name("eve"), Role: "VIEWER", Authenticated: true}},
		{id: &auth.Identity{Name: "alice", Role: auth.RoleUser}, want: viewer{Name: name("alice"), Role: "USER", Authenticated: true}},
	} {
		var resp struct{ Viewer viewer }
		if err := b.as(tt.id).Post(`{ viewer { name role authenticated } }`, &resp); err != nil {
			t.Fatalf("viewer as %+v: %v", tt.id, err)
		}
		got := resp.Viewer
		if got.Role != tt.want.Role || got.Authenticated != tt.want.Authenticated || (got.Name == nil) != (tt.want.Name == nil) || got.Name != nil && *got.Name != *tt.want.Name {
			t.Errorf("viewer as %+v = {%v %s %v}, want {%v %s %v}", tt.id, deref(got.Name), got.Role, got.Authenticated, deref(tt.want.Name), tt.want.Role, tt.want.Authenticated)
		}
	}

	var resp map[string]any
	unknown := b.as(&auth.Identity{Name: "mallory", Role: "superuser"})
	wantError(t, unknown.Post(`{ viewer { role } }`, &resp), "FORBIDDEN", `the role "superuser" may not read its identity`)

	// It costs one point per field: the whole of it fits a limit of 4.
	low := setup(t, func(o *options) { o.complexity = 4; o.startPool = false })
	if err := low.client.Post(`{ viewer { name role authenticated } }`, &resp); err != nil {
		t.Fatalf("viewer under a complexity limit of 4: %v", err)
	}
	wantError(t, low.client.Post(`{ viewer { name role authenticated } stats { pending } }`, &resp), "COMPLEXITY_LIMIT_EXCEEDED", "exceeds the limit of 4")
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
