package httpapi_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/httpapi"
)

// With authentication on, the playground's page and files need no
// credential (the page is where a user types one), and its Headers tab
// offers the Authorization header; without it, the tab starts empty.
func TestPlaygroundThroughAccess(t *testing.T) {
	t.Parallel()
	files := regexp.MustCompile(`(?:src|href)="(/playground/[^"]+)"`)
	tokens, _ := tokenAccess(t, httpapi.Access{})
	for _, c := range []struct {
		name    string
		access  httpapi.Access
		headers bool
	}{{"token", tokens, true}, {"none", httpapi.Access{}, false}} {
		srv, _ := accessServer(t, c.access)
		page := send(t, http.MethodGet, srv.URL+"/", nil, "")
		if page.status != http.StatusOK || page.header.Get("Content-Security-Policy") == "" {
			t.Fatalf("AUTH=%s: GET /: %d, CSP %q", c.name, page.status, page.header.Get("Content-Security-Policy"))
		}
		if got := strings.Contains(page.body, `"headers":`); got != c.headers {
			t.Errorf("AUTH=%s: the page configures the Headers tab: %v, want %v", c.name, got, c.headers)
		}
		urls := files.FindAllStringSubmatch(page.body, -1)
		if len(urls) != 8 {
			t.Fatalf("AUTH=%s: the page loads %d files from /playground/, want 8", c.name, len(urls))
		}
		for _, u := range urls {
			// (Uncompressed: compressing is slow under -race, and the
			// playground's own tests cover it.)
			identity := http.Header{"Accept-Encoding": {"identity"}}
			if a := send(t, http.MethodGet, srv.URL+u[1], identity, ""); a.status != http.StatusOK {
				t.Errorf("AUTH=%s: GET %s without a credential: %d", c.name, u[1], a.status)
			}
		}
	}
}
