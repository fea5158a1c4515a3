package playground_test

import (
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/jobqueue/jobqueue/internal/playground"
)

// server serves the playground as routes.go does.
func server(t *testing.T, authenticated bool) *httptest.Server {
	t.Helper()
	p, err := playground.New(playground.Config{Endpoint: "/query", AssetPath: "/playground/", Authenticated: authenticated})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", p.Page())
	mux.Handle("GET /playground/", p.Assets())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   string
}

// plainClient sends Accept-Encoding only when a test does, and never
// decompresses: what it reads is what the server sent.
var plainClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

func get(t *testing.T, url string, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	res, err := plainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{res.StatusCode, res.Header, string(body)}
}

var (
	tagRE  = regexp.MustCompile(`<(script|link)\b[^>]*>`)
	attrRE = regexp.MustCompile(`\b(src|href|integrity|rel|type|id)="([^"]*)"`)
)

// ref is a file the page loads.
type ref struct {
	tag, url, integrity string
}

// refs lists the page's script and link tags; it fails on an inline
// script other than the JSON configuration.
func refs(t *testing.T, page string) []ref {
	t.Helper()
	var out []ref
	for _, tag := range tagRE.FindAllStringSubmatch(page, -1) {
		attrs := map[string]string{}
		for _, a := range attrRE.FindAllStringSubmatch(tag[0], -1) {
			attrs[a[1]] = html.UnescapeString(a[2])
		}
		switch {
		case tag[1] == "script" && attrs["type"] == "application/json" && attrs["id"] == "playground-config":
			continue // data, not code
		case tag[1] == "script":
			if attrs["src"] == "" {
				t.Errorf("an inline script: %s", tag[0])
			}
			out = append(out, ref{"script", attrs["src"], attrs["integrity"]})
		case attrs["rel"] == "icon":
			if attrs["href"] != "data:," {
				t.Errorf("the icon is fetched: %s", tag[0])
			}
		default:
			out = append(out, ref{"link", attrs["href"], attrs["integrity"]})
		}
	}
	return out
}

// The page loads only files of this server, each served with the hash
// the page names and cacheable for good; no request leaves for another
// host.
func TestPageLoadsOnlyLocalFilesWithTheirHashes(t *testing.T) {
	t.Parallel()
	srv := server(t, false)
	page := get(t, srv.URL+"/", nil)
	if page.status != http.StatusOK || page.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", page.status, page.header.Get("Content-Type"))
	}
	csp := page.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(page.body, "://") {
		t.Errorf("the page names an absolute URL:\n%s", page.body)
	}
	files := refs(t, page.body)
	var scripts, styles int
	for _, f := range files {
		if !strings.HasPrefix(f.url, "/playground/") {
			t.Errorf("%s loads %q: not a file of this server", f.tag, f.url)
			continue
		}
		a := get(t, srv.URL+f.url, nil)
		if a.status != http.StatusOK {
			t.Errorf("GET %s: %d", f.url, a.status)
			continue
		}
		sum := sha512.Sum384([]byte(a.body))
		if want := "sha384-" + base64.StdEncoding.EncodeToString(sum[:]); f.integrity != want {
			t.Errorf("%s: the page says integrity %q, the file served hashes to %q", f.url, f.integrity, want)
		}
		wantType := map[string]string{"script": "text/javascript; charset=utf-8", "link": "text/css; charset=utf-8"}[f.tag]
		if ct := a.header.Get("Content-Type"); ct != wantType {
			t.Errorf("%s: Content-Type %q, want %q", f.url, ct, wantType)
		}
		if cc := a.header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", f.url, cc)
		}
		if a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", f.url)
		}
		switch f.tag {
		case "script":
			scripts++
		case "link":
			styles++
		}
	}
	// React, ReactDOM, GraphiQL, the explorer and start.js; GraphiQL's,
	// the explorer's and the page's stylesheets.
	if scripts != 5 || styles != 3 {
		t.Errorf("the page loads %d scripts and %d stylesheets, want 5 and 3: %v", scripts, styles, files)
	}
}

// A file's URL is one version of it: another hash, or no file of that
// name, is 404; a browser revalidating gets 304.
func TestAssetURLs(t *testing.T) {
	t.Parallel()
	srv := server(t, false)
	files := refs(t, get(t, srv.URL+"/", nil).body)
	if len(files) == 0 {
		t.Fatal("the page loads no file")
	}
	url := files[0].url
	dir, name := url[:strings.LastIndex(url, "/")], url[strings.LastIndex(url, "/")+1:]
	for _, bad := range []string{"/playground/0000000000000000/" + name, dir + "/nope.js", "/playground/" + name, dir + "/../" + name} {
		if a := get(t, srv.URL+bad, nil); a.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", bad, a.status)
		}
	}
	first := get(t, srv.URL+url, nil)
	again := get(t, srv.URL+url, http.Header{"If-None-Match": {first.header.Get("ETag")}})
	if first.header.Get("ETag") == "" || again.status != http.StatusNotModified {
		t.Errorf("revalidation with ETag %q: %d, want 304", first.header.Get("ETag"), again.status)
	}
}

// A client that accepts gzip gets the large files compressed (its own
// ETag, Vary: Accept-Encoding); one that refuses it, or says nothing, gets
// them as they are. Both decode to the bytes the page's hash names.
func TestAssetsCompressed(t *testing.T) {
	t.Parallel()
	srv := server(t, false)
	var js ref
	for _, f := range refs(t, get(t, srv.URL+"/", nil).body) {
		if strings.HasSuffix(f.url, "/graphiql.min.js") {
			js = f
		}
	}
	if js.url == "" {
		t.Fatal("the page does not load graphiql.min.js")
	}
	plain := get(t, srv.URL+js.url, http.Header{"Accept-Encoding": {"identity"}})
	for _, accept := range []string{"gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.8", "*"} {
		a := get(t, srv.URL+js.url, http.Header{"Accept-Encoding": {accept}})
		if a.header.Get("Content-Encoding") != "gzip" || a.header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q, Vary %q", accept, a.header.Get("Content-Encoding"), a.header.Get("Vary"))
		}
		zr, err := gzip.NewReader(strings.NewReader(a.body))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if string(body) != plain.body || len(a.body) > len(plain.body)/2 {
			t.Fatalf("Accept-Encoding %q: %d bytes decoding to %d, want %d decoding to the same", accept, len(a.body), len(body), len(plain.body))
		}
		if a.header.Get("ETag") == plain.header.Get("ETag") {
			t.Errorf("the compressed and plain answers share the ETag %s", a.header.Get("ETag"))
		}
	}
	for _, accept := range []string{"", "identity", "gzip;q=0", "deflate, gzip;q=0.0"} {
		a := get(t, srv.URL+js.url, http.Header{"Accept-Encoding": {accept}})
		if a.header.Get("Content-Encoding") != "" || a.body != plain.body {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, %d bytes", accept, a.header.Get("Content-Encoding"), len(a.body))
		}
	}
	sum := sha512.Sum384([]byte(plain.body))
	if want := "sha384-" + base64.StdEncoding.EncodeToString(sum[:]); js.integrity != want {
		t.Errorf("integrity %q, the file hashes to %q", js.integrity, want)
	}
}

// config reads the JSON start.js reads.
func config(t *testing.T, page string) map[string]string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<script id="playground-config" type="application/json">(.*?)</script>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no #playground-config in\n%s", page)
	}
	var c map[string]string
	if err := json.Unmarshal([]byte(m[1]), &c); err != nil {
		t.Fatalf("#playground-config: %v\n%s", err, m[1])
	}
	return c
}

// The page opens with the example, whose operations are valid against
// the schema; with authentication on, the Headers tab offers the
// Authorization header to fill in.
func TestPageConfig(t *testing.T) {
	t.Parallel()
	example, err := os.ReadFile("example.graphql")
	if err != nil {
		t.Fatal(err)
	}
	open := config(t, get(t, server(t, false).URL+"/", nil).body)
	if open["endpoint"] != "/query" || open["example"] != string(example) || open["headers"] != "" {
		t.Errorf("AUTH=none config: %q", open)
	}
	authed := config(t, get(t, server(t, true).URL+"/", nil).body)
	var headers map[string]string
	if err := json.Unmarshal([]byte(authed["headers"]), &headers); err != nil || !strings.HasPrefix(headers["Authorization"], "Bearer ") {
		t.Errorf("with authentication the Headers tab holds %q (%v), want an Authorization header", authed["headers"], err)
	}

	schemaText, err := os.ReadFile("../../schema.graphqls")
	if err != nil {
		t.Fatal(err)
	}
	schema, gerr := gqlparser.LoadSchema(&ast.Source{Name: "schema.graphqls", Input: string(schemaText)})
	if gerr != nil {
		t.Fatal(gerr)
	}
	doc, errs := gqlparser.LoadQuery(schema, string(example))
	if len(errs) > 0 {
		t.Fatalf("example.graphql does not validate against schema.graphqls: %v", errs)
	}
	var ops []string
	for _, op := range doc.Operations {
		ops = append(ops, string(op.Operation)+" "+op.Name)
	}
	if want := []string{"mutation CreateJob", "subscription WatchJobs"}; !slices.Equal(ops, want) {
		t.Errorf("example operations %v, want %v", ops, want)
	}
}

// npm/ holds exactly the files npm.json names (make web writes them; make
// check-generated proves they are the packages' own bytes).
func TestNpmFolderMatchesManifest(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("npm.json")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Packages []struct {
			Files map[string]string `json:"files"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range m.Packages {
		for _, name := range p.Files {
			want = append(want, name)
		}
	}
	entries, err := os.ReadDir("npm")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("npm/ holds %v; npm.json names %v (run make web)", got, want)
	}
}
