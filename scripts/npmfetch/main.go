// Command npmfetch copies files out of pinned npm packages into a folder
// that the server embeds, so the browser pages it serves need no CDN and
// no Node to build.
//
//	go run ./scripts/npmfetch -manifest internal/playground/npm.json -out internal/playground/npm
//
// The manifest pins each package by version and by the registry's
// integrity hash (dist.integrity, sha512); a tarball that does not match
// is refused. Tarballs are kept in a cache (NPMFETCH_CACHE, else the
// user's cache directory) under their hash, so a second run reads no
// network. The output folder ends up holding exactly the files the
// manifest names, byte for byte as the packages ship them: the same
// manifest always gives the same folder.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// manifest is the JSON file read by -manifest.
type manifest struct {
	Packages []pkg `json:"packages"`
}

// pkg is one pinned package and the files taken from it.
type pkg struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Integrity is the registry's dist.integrity: "sha512-<base64>".
	Integrity string `json:"integrity"`
	// Files maps a path inside the package ("umd/react.production.min.js")
	// to its name in the output folder.
	Files map[string]string `json:"files"`
}

func main() {
	manifestPath := flag.String("manifest", "", "the JSON manifest of packages and files")
	out := flag.String("out", "", "the folder to fill (files the manifest does not name are removed)")
	registry := flag.String("registry", envOr("NPM_REGISTRY", "https://registry.npmjs.org"), "the npm registry (NPM_REGISTRY)")
	flag.Parse()
	if *manifestPath == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: npmfetch -manifest FILE -out DIR")
		os.Exit(2)
	}
	cache, err := cacheDir()
	if err == nil {
		err = run(*manifestPath, *out, strings.TrimSuffix(*registry, "/"), cache)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "npmfetch:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func cacheDir() (string, error) {
	if dir := os.Getenv("NPMFETCH_CACHE"); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set NPMFETCH_CACHE): %w", err)
	}
	return filepath.Join(base, "jobqueue-npmfetch"), nil
}

func run(manifestPath, out, registry, cache string) error {
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("read %s: %w", manifestPath, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, p := range m.Packages {
		tgz, err := tarball(p, registry, cache)
		if err != nil {
			return err
		}
		files, err := extract(tgz, p.Files)
		if err != nil {
			return fmt.Errorf("%s@%s: %w", p.Name, p.Version, err)
		}
		for name, body := range files {
			if wanted[name] || name != path.Base(name) || strings.HasPrefix(name, ".") {
				return fmt.Errorf("%s@%s: output name %q is taken or not a plain file name", p.Name, p.Version, name)
			}
			wanted[name] = true
			if err := writeIfChanged(filepath.Join(out, name), body); err != nil {
				return err
			}
		}
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !wanted[e.Name()] {
			if err := os.RemoveAll(filepath.Join(out, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// tarball returns the package's tarball, from the cache or the registry,
// after checking it against the pinned integrity.
func tarball(p pkg, registry, cache string) ([]byte, error) {
	want, err := sha512Of(p.Integrity)
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", p.Name, p.Version, err)
	}
	cached := filepath.Join(cache, fmt.Sprintf("%x.tgz", want))
	if b, err := os.ReadFile(cached); err == nil && matches(b, want) {
		return b, nil
	}
	// Scoped packages: @scope/name/-/name-1.0.0.tgz.
	url := fmt.Sprintf("%s/%s/-/%s-%s.tgz", registry, p.Name, path.Base(p.Name), p.Version)
	client := &http.Client{Timeout: 2 * time.Minute}
	res, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 100<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if !matches(b, want) {
		return nil, fmt.Errorf("GET %s: the tarball does not match the pinned integrity %s", url, p.Integrity)
	}
	if err := os.MkdirAll(cache, 0o755); err == nil {
		_ = writeIfChanged(cached, b) // a cache that cannot be written costs a download next time
	}
	return b, nil
}

func sha512Of(integrity string) ([]byte, error) {
	b64, ok := strings.CutPrefix(integrity, "sha512-")
	if !ok {
		return nil, fmt.Errorf("integrity %q: want the registry's sha512-<base64>", integrity)
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sum) != sha512.Size {
		return nil, fmt.Errorf("integrity %q is not a sha512 hash", integrity)
	}
	return sum, nil
}

func matches(b, sum []byte) bool {
	got := sha512.Sum512(b)
	return bytes.Equal(got[:], sum)
}

// extract reads the files named in want (package paths) from a tarball,
// whose entries all sit under "package/"; it fails when one is missing.
func extract(tgz []byte, want map[string]string) (map[string][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	got := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		inner, ok := strings.CutPrefix(h.Name, "package/")
		name, wanted := want[inner]
		if !ok || !wanted || h.Typeflag != tar.TypeReg {
			continue
		}
		if got[name], err = io.ReadAll(tr); err != nil {
			return nil, err
		}
	}
	var missing []string
	for inner, name := range want {
		if _, ok := got[name]; !ok {
			missing = append(missing, inner)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("not in the package: %s", strings.Join(missing, ", "))
	}
	return got, nil
}

// writeIfChanged writes body to name through a temporary file, and not at
// all when the file already holds it (its time stamp stays).
func writeIfChanged(name string, body []byte) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, body) {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".npmfetch-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
