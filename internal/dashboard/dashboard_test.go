package dashboard_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/dashboard"
)

func get(t *testing.T, h http.Handler, path string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestServesTheEmbeddedApp(t *testing.T) {
	t.Parallel()
	h := dashboard.Handler()
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/ui/", "text/html; charset=utf-8", `<script type="module" src="/ui/app.js">`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "jobUpdated"},
		{"/ui/app.css", "text/css; charset=utf-8", ".badge"},
		// Deep links: the app's router shows the view.
		{"/ui/jobs", "text/html; charset=utf-8", `<div id="app">`},
		{"/ui/jobs/0b7c7c1e-9c1f-4d0e-8a43-3c1a1d5f0b11", "text/html; charset=utf-8", `<div id="app">`},
		{"/ui/create", "text/html; charset=utf-8", `<div id="app">`},
	} {
		w := get(t, h, tc.path, nil)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", tc.path, w.Code, w.Body)
		}
		if got := w.Header().Get("Content-Type"); got != tc.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.contentType)
		}
		if !strings.Contains(w.Body.String(), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		if got := w.Header().Get("Content-Security-Policy"); got != dashboard.ContentSecurityPolicy {
			t.Errorf("GET %s: CSP %q", tc.path, got)
		}
		if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", tc.path, got)
		}
	}
}

func TestMissingFileIs404(t *testing.T) {
	t.Parallel()
	w := get(t, dashboard.Handler(), "/ui/nothing.js", nil)
	if w.Code != http.StatusNotFound {
		t.Fatalf("GET /ui/nothing.js: %d, want 404", w.Code)
	}
}

func TestRevalidatesWithETag(t *testing.T) {
	t.Parallel()
	h := dashboard.Handler()
	first := get(t, h, "/ui/app.js", nil)
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, first.Header().Get("Cache-Control"))
	}
	again := get(t, h, "/ui/app.js", http.Header{"If-None-Match": {etag}})
	if again.Code != http.StatusNotModified {
		t.Fatalf("GET with If-None-Match: %d, want 304", again.Code)
	}
}

// The policy stays strict: the dashboard needs no inline code and no
// other host.
func TestPolicyIsStrict(t *testing.T) {
	t.Parallel()
	csp := dashboard.ContentSecurityPolicy
	for _, banned := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:"} {
		if strings.Contains(csp, banned) {
			t.Errorf("CSP allows %q: %s", banned, csp)
		}
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP lacks %q: %s", want, csp)
		}
	}
}
