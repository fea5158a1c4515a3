// Package dashboard serves the web dashboard at /ui/: a single-page app,
// built by scripts/web-dashboard.sh from web/dashboard into dist/ and
// embedded in the binary, that uses only the public GraphQL API.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// ContentSecurityPolicy lets the dashboard load its own script and style
// and talk to its own origin (fetch and the websocket at /query), and
// nothing else: no inline script or style, no other host, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the dashboard's files under Prefix. Any other path under
// it that does not name a file (no dot in its last segment: /ui/jobs/ID)
// gets the app's index.html, whose router shows that view, so deep links
// and reloads work; a missing file gets 404. Every answer carries the
// dashboard's security headers. The files are read once; Handler is safe
// for concurrent use.
func Handler() http.Handler {
	assets := map[string]asset{}
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
	}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := types[path.Ext(p)]
		if ct == "" {
			ct = http.DetectContentType(body)
		}
		assets[strings.TrimPrefix(p, "dist/")] = asset{body: body, contentType: ct, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		panic("dashboard: embedded files unreadable: " + err.Error()) // the build embeds them: cannot happen
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		a, ok := assets[name]
		if !ok {
			if i := strings.LastIndexByte(name, '/'); strings.Contains(name[i+1:], ".") {
				http.Error(w, "no file "+r.URL.Path, http.StatusNotFound)
				return
			}
			a = assets["index.html"]
		}
		h.Set("Content-Type", a.contentType)
		// Revalidated on every load (the ETag makes that a 304), so a new
		// binary's dashboard is picked up at once.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
