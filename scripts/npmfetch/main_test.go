package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// tgz builds a package tarball: files under "package/", as npm packs them.
func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "package/" + name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func integrity(b []byte) string {
	sum := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

// registry serves tarballs by path and counts the requests.
func registry(t *testing.T, tarballs map[string][]byte) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := tarballs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func writeManifest(t *testing.T, dir string, m manifest) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "npm.json")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func list(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// The output folder gets exactly the named files, byte for byte; a second
// run reads the cache, not the registry; a scoped package is found at its
// registry path.
func TestFetch(t *testing.T) {
	t.Parallel()
	plain := tgz(t, map[string]string{"umd/lib.min.js": "lib();", "LICENSE": "MIT", "README.md": "not wanted"})
	scoped := tgz(t, map[string]string{"dist/index.umd.js": "plugin();"})
	srv, hits := registry(t, map[string][]byte{
		"/lib/-/lib-1.2.3.tgz":              plain,
		"/@scope/plugin/-/plugin-4.0.0.tgz": scoped,
	})
	dir, cache := t.TempDir(), t.TempDir()
	out := filepath.Join(dir, "out")
	m := writeManifest(t, dir, manifest{Packages: []pkg{
		{Name: "lib", Version: "1.2.3", Integrity: integrity(plain), Files: map[string]string{"umd/lib.min.js": "lib.min.js", "LICENSE": "lib-LICENSE.txt"}},
		{Name: "@scope/plugin", Version: "4.0.0", Integrity: integrity(scoped), Files: map[string]string{"dist/index.umd.js": "plugin.js"}},
	}})
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "stale.js"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(m, out, srv.URL, cache); err != nil {
		t.Fatal(err)
	}
	if got, want := list(t, out), []string{"lib-LICENSE.txt", "lib.min.js", "plugin.js"}; !slices.Equal(got, want) {
		t.Fatalf("out holds %v, want %v", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "plugin.js")); string(b) != "plugin();" {
		t.Fatalf("plugin.js holds %q", b)
	}
	if hits.Load() != 2 {
		t.Fatalf("%d registry requests, want 2", hits.Load())
	}
	if err := run(m, out, srv.URL, cache); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 2 {
		t.Fatalf("the second run asked the registry again (%d requests)", hits.Load())
	}
}

// A tarball that does not match its pinned integrity is refused and
// writes nothing; so is a manifest naming a file the package lacks.
func TestFetchRefuses(t *testing.T) {
	t.Parallel()
	good := tgz(t, map[string]string{"lib.js": "lib();"})
	tampered := tgz(t, map[string]string{"lib.js": "evil();"})
	srv, _ := registry(t, map[string][]byte{"/lib/-/lib-1.0.0.tgz": tampered, "/other/-/other-1.0.0.tgz": good})
	for _, c := range []struct {
		name string
		pkg  pkg
		want string
	}{
		{"tampered", pkg{Name: "lib", Version: "1.0.0", Integrity: integrity(good), Files: map[string]string{"lib.js": "lib.js"}}, "does not match the pinned integrity"},
		{"missing file", pkg{Name: "other", Version: "1.0.0", Integrity: integrity(good), Files: map[string]string{"umd/lib.js": "lib.js"}}, "not in the package: umd/lib.js"},
		{"bad integrity", pkg{Name: "other", Version: "1.0.0", Integrity: "sha1-abc", Files: map[string]string{"lib.js": "lib.js"}}, "want the registry's sha512"},
		{"not a plain name", pkg{Name: "other", Version: "1.0.0", Integrity: integrity(good), Files: map[string]string{"lib.js": "../lib.js"}}, "not a plain file name"},
	} {
		dir := t.TempDir()
		out := filepath.Join(dir, "out")
		err := run(writeManifest(t, dir, manifest{Packages: []pkg{c.pkg}}), out, srv.URL, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
		if names := list(t, out); len(names) != 0 {
			t.Errorf("%s: wrote %v", c.name, names)
		}
	}
}
