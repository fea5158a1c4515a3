package graph_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// postQuery posts body to the GraphQL handler and decodes its errors.
func (b *bundle) postRaw(t *testing.T, body string) (*httptest.ResponseRecorder, []gqlError) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/query", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	var out struct{ Errors []gqlError }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	return rec, out.Errors
}

// An answer never echoes the request body: gqlgen quotes it in the error
// for a body that is not a GraphQL request.
func TestUndecodableBodyNotEchoed(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	for _, body := range []string{
		`{"query": 12, "marker": "SECRET-MARKER"}`,
		`{"query": "{ __typename }" SECRET-MARKER`,
		`SECRET-MARKER`,
	} {
		rec, errs := b.postRaw(t, body)
		if rec.Code != http.StatusBadRequest || len(errs) != 1 || !strings.HasPrefix(errs[0].Message, "json request body could not be decoded") {
			t.Fatalf("%s: %d %s, want 400 and one error saying the body is not a request", body, rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "SECRET-MARKER") {
			t.Fatalf("%s: the answer echoes the request: %s", body, rec.Body)
		}
	}
}

// A response carries at most 20 errors, the last one counting those left
// out.
func TestErrorsPerResponseCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	for _, n := range []int{20, 21, 500} {
		var fields []string
		for i := range n {
			fields = append(fields, fmt.Sprintf("nope%d", i))
		}
		_, errs := b.postRaw(t, `{"query":"{ `+strings.Join(fields, " ")+` }"}`)
		if n <= 20 {
			if len(errs) != n || errs[n-1].code() == "TOO_MANY_ERRORS" {
				t.Fatalf("%d bad fields: %d errors, want all %d", n, len(errs), n)
			}
			continue
		}
		last := errs[len(errs)-1]
		if len(errs) != 20 || last.code() != "TOO_MANY_ERRORS" || last.Message != fmt.Sprintf("%d more errors left out", n-19) {
			t.Fatalf("%d bad fields: %d errors ending %+v, want 19 and one counting %d left out", n, len(errs), last, n-19)
		}
	}
}
