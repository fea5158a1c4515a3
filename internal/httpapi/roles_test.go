package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/auth"
)

// testIdentity is the header whose "name:role" value withTestIdentity
// turns into the request's identity, standing in for the authentication
// middleware.
const testIdentity = "X-Test-Identity"

// withTestIdentity puts the identity named by the testIdentity header, if
// any, into the request's context, as authentication does.
func withTestIdentity(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get(testIdentity); v != "" {
			name, role, _ := strings.Cut(v, ":")
			r = r.WithContext(auth.WithIdentity(r.Context(), auth.Identity{Name: name, Role: auth.Role(role)}))
		}
		next.ServeHTTP(w, r)
	})
}

// REST under authorization: jobs show their owner (and no owner key at all
// when they have none, as before); a viewer's POST /jobs is 403 with the
// JSON error body; a user lists only its own jobs.
func TestRESTAuthorization(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	post := func(identity, body string) response {
		t.Helper()
		h := http.Header{"Content-Type": {"application/json"}}
		if identity != "" {
			h.Set(testIdentity, identity)
		}
		return b.do(t, http.MethodPost, "/jobs", strings.NewReader(body), int64(len(body)), h)
	}
	list := func(identity string) []map[string]any {
		t.Helper()
		r := b.do(t, http.MethodGet, "/jobs", nil, 0, http.Header{testIdentity: {identity}})
		var jobs []map[string]any
		if r.status != http.StatusOK || json.Unmarshal(r.body, &jobs) != nil {
			t.Fatalf("GET /jobs as %q: %d %s", identity, r.status, r)
		}
		return jobs
	}

	wantJSONError(t, "a viewer's POST /jobs", post("eve:viewer", `{"type":"t"}`), http.StatusForbidden, `the role "viewer" may not create jobs`)
	wantJSONError(t, "an unknown role's GET /jobs", b.do(t, http.MethodGet, "/jobs", nil, 0, http.Header{testIdentity: {"m:root"}}), http.StatusForbidden, "may not list jobs")
	if jobs := list(""); len(jobs) != 0 {
		t.Fatalf("after the viewer's POST: %d jobs, want none", len(jobs))
	}

	for _, identity := range []string{"alice:user", "bob:user", ""} {
		if r := post(identity, `{"type":"t"}`); r.status != http.StatusCreated {
			t.Fatalf("POST /jobs as %q: %d %s", identity, r.status, r)
		}
	}
	mine := list("alice:user")
	if len(mine) != 1 || mine[0]["owner"] != "alice" {
		t.Fatalf("alice's GET /jobs = %v; want her one job, owner alice", mine)
	}
	all := list("eve:viewer")
	owners := map[any]int{}
	for _, j := range all {
		o, has := j["owner"]
		if has && (o == "" || o == nil) {
			t.Fatalf("job %v: owner shown without a value; want no owner key", j)
		}
		owners[o]++
	}
	if len(all) != 3 || owners["alice"] != 1 || owners["bob"] != 1 || owners[nil] != 1 {
		t.Fatalf("the viewer's GET /jobs = %v; want alice's, bob's and one without an owner key", all)
	}
}
