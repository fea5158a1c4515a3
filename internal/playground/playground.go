// Package playground serves the GraphiQL playground from the binary: the
// page, and GraphiQL, React and the explorer plugin as files embedded at
// build time (npm/, copied from pinned npm packages by `make web`), so
// the page works without any network but the server's own.
//
// Why GraphiQL 4 and React 18: GraphiQL 4.1.2 is the last release with a
// browser build that loads from plain script tags (later ones ship ES
// modules, Monaco and web workers that need a bundler), and React 18.3.1
// is the last React with such builds.
package playground

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed npm page.html start.js playground.css example.graphql
var files embed.FS

// The order the page loads them in: each script needs the ones before it.
var (
	styles  = []string{"npm/graphiql.min.css", "npm/plugin-explorer.css", "playground.css"}
	scripts = []string{"npm/react.production.min.js", "npm/react-dom.production.min.js", "npm/graphiql.min.js", "npm/plugin-explorer.umd.js", "start.js"}
)

var contentTypes = map[string]string{
	".js":      "text/javascript; charset=utf-8",
	".css":     "text/css; charset=utf-8",
	".txt":     "text/plain; charset=utf-8", // the packages' licences
	".graphql": "text/plain; charset=utf-8",
}

// contentSecurityPolicy allows the page only this server: its scripts
// (no inline script, no eval), styles (GraphiQL sets inline styles),
// the fonts and images GraphiQL's stylesheet carries as data: URLs, and
// requests to the GraphQL endpoint (http and ws of the same host).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Config says what the page talks to.
type Config struct {
	// Endpoint is the path of the GraphQL endpoint, for HTTP and
	// websockets ("/query").
	Endpoint string
	// AssetPath is the path the files are served under, ending in a slash
	// ("/playground/"); Assets must be routed there.
	AssetPath string
	// Authenticated: the server wants a credential, so the page opens its
	// Headers tab with an Authorization header to fill in.
	Authenticated bool
}

// Playground holds the rendered page and the files it loads. It is safe
// for concurrent use.
type Playground struct {
	page      []byte
	assetPath string
	assets    map[string]asset // by name
}

type asset struct {
	body        []byte
	hash        string // hex, the start of the sha256: the URL's version
	sri         string // sha384-<base64>
	contentType string
	gzipped     func() []byte // body compressed, on first use; nil: sent as is
}

// link is a file as the page names it.
type link struct {
	URL string
	SRI string
}

// pageConfig is the JSON start.js reads.
type pageConfig struct {
	Endpoint string `json:"endpoint"`
	Example  string `json:"example"`
	Headers  string `json:"headers,omitempty"`
}

// New renders the page and indexes the embedded files.
func New(c Config) (*Playground, error) {
	p := &Playground{assetPath: c.AssetPath, assets: map[string]asset{}}
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || name == "page.html" {
			return err
		}
		body, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		sum256 := sha256.Sum256(body)
		sum384 := sha512.Sum384(body)
		ct, ok := contentTypes[path.Ext(name)]
		if !ok {
			return fmt.Errorf("%s: no content type for its extension", name)
		}
		a := asset{
			body:        body,
			hash:        hex.EncodeToString(sum256[:8]),
			sri:         "sha384-" + base64.StdEncoding.EncodeToString(sum384[:]),
			contentType: ct,
		}
		if len(body) > 1024 {
			// Compressed when first asked for, not at start: most
			// servers never serve the playground.
			a.gzipped = sync.OnceValue(func() []byte { return compress(body) })
		}
		p.assets[path.Base(name)] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the embedded playground files: %w", err)
	}
	example := p.assets["example.graphql"].body
	cfg := pageConfig{Endpoint: c.Endpoint, Example: string(example)}
	if c.Authenticated {
		cfg.Headers = "{\n  \"Authorization\": \"Bearer <token>\"\n}"
	}
	data := struct {
		Title           string
		Styles, Scripts []link
		Config          pageConfig
	}{Title: "Job queue · GraphQL playground", Config: cfg}
	for _, list := range []struct {
		names []string
		links *[]link
	}{{styles, &data.Styles}, {scripts, &data.Scripts}} {
		for _, name := range list.names {
			a, ok := p.assets[path.Base(name)]
			if !ok {
				return nil, fmt.Errorf("%s is not embedded: run make web", name)
			}
			*list.links = append(*list.links, link{URL: p.assetPath + a.hash + "/" + path.Base(name), SRI: a.sri})
		}
	}
	tmpl, err := template.ParseFS(files, "page.html")
	if err != nil {
		return nil, err
	}
	var page bytes.Buffer
	if err := tmpl.Execute(&page, data); err != nil {
		return nil, fmt.Errorf("render the playground page: %w", err)
	}
	p.page = page.Bytes()
	return p, nil
}

// Page serves the playground's HTML page, with a Content-Security-Policy
// that allows only this server.
func (p *Playground) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// The page names its files by content: revalidate it, so that a
		// new binary's files are picked up at once.
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(p.page))
	})
}

// Assets serves the page's files at AssetPath + "<hash>/<name>". A URL
// names one version of a file for good, so it may be cached for a year;
// a URL with another hash is 404.
func (p *Playground) Assets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, _ := strings.CutPrefix(r.URL.Path, p.assetPath)
		hash, name, _ := strings.Cut(rest, "/")
		a, ok := p.assets[name]
		if !ok || hash != a.hash {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("X-Content-Type-Options", "nosniff")
		body, etag := a.body, `"`+a.hash+`"`
		if a.gzipped != nil {
			h.Set("Vary", "Accept-Encoding")
			if acceptsGzip(r.Header.Values("Accept-Encoding")) {
				body, etag = a.gzipped(), `"`+a.hash+`-gzip"`
				h.Set("Content-Encoding", "gzip")
			}
		}
		h.Set("ETag", etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	})
}

func compress(body []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(body) // a bytes.Buffer does not fail
	_ = zw.Close()
	return buf.Bytes()
}

// acceptsGzip reads Accept-Encoding values: gzip (or *) listed without q=0.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "*" {
				continue
			}
			if q, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}
