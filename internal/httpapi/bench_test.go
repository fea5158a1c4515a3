package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/httpapi"
)

// BenchmarkCreateJobAccess is createJob over the whole HTTP surface, in
// process (no network), without access control and with a static token
// (an admin: its jobs get an owner), so that the cost of authentication
// and the access checks reads as the difference. Compare the two in one
// run: go test -run '^$' -bench CreateJobAccess -count 6 ./internal/httpapi
func BenchmarkCreateJobAccess(b *testing.B) {
	plain := httpapi.Access{}
	withToken, token := tokenAccess(b, httpapi.Access{})
	for _, c := range []struct {
		name   string
		access httpapi.Access
		header string
	}{
		{"auth=none", plain, ""},
		{"auth=token", withToken, "Bearer " + token},
	} {
		b.Run(c.name, func(b *testing.B) {
			srv, _ := accessServer(b, c.access)
			h := srv.Config.Handler
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodPost, "/query", strings.NewReader(createMutation))
					req.Host = "localhost" // httptest's example.com is not this server's name
					req.Header.Set("Content-Type", "application/json")
					if c.header != "" {
						req.Header.Set("Authorization", c.header)
					}
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "errors") {
						b.Fatalf("%d %s", w.Code, w.Body.String())
					}
				}
			})
		})
	}
}
