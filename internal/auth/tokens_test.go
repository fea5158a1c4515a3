package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/jobqueue/jobqueue/internal/auth"
)

// newToken makes a token and its entry with real randomness.
func newToken(t *testing.T, name string, role auth.Role) (string, auth.TokenEntry) {
	t.Helper()
	token, entry, err := auth.NewToken(rand.Reader, name, role)
	if err != nil {
		t.Fatal(err)
	}
	return token, entry
}

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	// 32 bytes of 0xff: base64url without padding is 42 "_" (six bits
	// set) and an "8" (four bits set, two of padding).
	token, entry, err := auth.NewToken(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32)), "ci", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if want := "jq_" + strings.Repeat("_", 42) + "8"; token != want {
		t.Errorf("token = %q; want %q", token, want)
	}
	sum := sha256.Sum256([]byte(token))
	if want := (auth.TokenEntry{Name: "ci", Role: auth.RoleAdmin, SHA256: hex.EncodeToString(sum[:])}); entry != want {
		t.Errorf("entry = %+v; want %+v", entry, want)
	}

	a, _ := newToken(t, "ci", auth.RoleAdmin)
	b, _ := newToken(t, "ci", auth.RoleAdmin)
	if a == b || !regexp.MustCompile(`^jq_[A-Za-z0-9_-]{43}$`).MatchString(a) {
		t.Errorf("two tokens: %q and %q; want different jq_ and 43 base64url characters", a, b)
	}

	if _, _, err := auth.NewToken(iotest.ErrReader(os.ErrClosed), "ci", auth.RoleAdmin); err == nil {
		t.Error("NewToken with a failing reader: no error")
	}
	if _, _, err := auth.NewToken(bytes.NewReader(make([]byte, 31)), "ci", auth.RoleAdmin); err == nil {
		t.Error("NewToken with 31 random bytes: no error")
	}
	if _, _, err := auth.NewToken(rand.Reader, "c i", auth.RoleAdmin); err == nil || !strings.Contains(err.Error(), "invalid name") {
		t.Errorf("NewToken with a space in the name: %v", err)
	}
	if _, _, err := auth.NewToken(rand.Reader, "ci", "root"); err == nil || !strings.Contains(err.Error(), "unknown role") {
		t.Errorf("NewToken with role root: %v", err)
	}
}

// TestTokenRoundTrip: the entry NewToken prints, put in a tokens file,
// lets its token in with its name and role.
func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	var entries []auth.TokenEntry
	tokens := map[string]auth.Identity{}
	for _, id := range []auth.Identity{{"ci", auth.RoleAdmin}, {"dashboard", auth.RoleViewer}, {"alice@example.com", auth.RoleUser}} {
		token, entry := newToken(t, id.Name, id.Role)
		line, err := json.Marshal(entry)
		if err != nil {
			t.Fatal(err)
		}
		var back auth.TokenEntry
		if err := json.Unmarshal(line, &back); err != nil || back != entry {
			t.Fatalf("entry line %s reads back as %+v, %v", line, back, err)
		}
		entries = append(entries, back)
		tokens[token] = id
	}
	data, err := json.MarshalIndent(map[string]any{"tokens": entries}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := auth.LoadTokens(writeFile(t, string(data)))
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthenticator(t, auth.Options{Mode: auth.Mode{Token: true}, Tokens: loaded})
	for token, want := range tokens {
		got, _, err := a.Authenticate(context.Background(), "Bearer "+token)
		if err != nil || got != want {
			t.Errorf("Authenticate(token of %s) = %+v, %v", want.Name, got, err)
		}
	}
	// Every entry is compared whichever matched: a token whose hash shares
	// its first bytes with an entry's is still refused.
	other, _ := newToken(t, "x", auth.RoleUser)
	if _, _, err := a.Authenticate(context.Background(), "Bearer "+other); err == nil {
		t.Error("a token not in the file was accepted")
	}
}

func TestLoadTokensErrors(t *testing.T) {
	t.Parallel()
	hash := strings.Repeat("ab", 32)
	other := strings.Repeat("cd", 32)
	entry := func(name, role, sum string) string {
		return `{"name": "` + name + `", "role": "` + role + `", "sha256": "` + sum + `"}`
	}
	tests := []struct {
		name    string
		content string
		want    []string // each in the error
	}{
		{"empty file", ``, []string{"empty or cut short"}},
		{"cut short", `{"tokens": [`, []string{"empty or cut short"}},
		{"syntax error", "{\"tokens\": [\n  {\"name\": \"ci\",, }]}", []string{"invalid JSON at line 2, column 17"}},
		{"bare array", `[` + entry("ci", "admin", hash) + `]`, []string{"invalid JSON at line 1", "cannot unmarshal array"}},
		{"misspelt field", `{"tokens": [{"name": "ci", "role": "admin", "sha265": "` + hash + `"}]}`, []string{`unknown field "sha265"`}},
		{"trailing data", `{"tokens": [` + entry("ci", "admin", hash) + `]} {}`, []string{"more data after the object"}},
		{"no tokens", `{"tokens": []}`, []string{"lists no tokens"}},
		{"no list", `{}`, []string{"lists no tokens"}},
		{"unknown role", `{"tokens": [` + entry("ci", "admin", hash) + `, ` + entry("ops", "root", other) + `]}`, []string{`entry 2 (name "ops"): unknown role "root"`}},
		{"short hash", `{"tokens": [` + entry("ci", "admin", hash[:63]) + `]}`, []string{`entry 1 (name "ci"): sha256 must be 64 hex digits, got 63 characters`}},
		{"not hex", `{"tokens": [` + entry("ci", "admin", strings.Repeat("zz", 32)) + `]}`, []string{`entry 1 (name "ci"): sha256 must be 64 hex digits`}},
		{"duplicate name", `{"tokens": [` + entry("ci", "admin", hash) + `, ` + entry("ci", "viewer", other) + `]}`, []string{`entry 2 (name "ci"): same name as entry 1`}},
		{"duplicate hash", `{"tokens": [` + entry("ci", "admin", hash) + `, ` + entry("ops", "viewer", strings.ToUpper(hash)) + `]}`, []string{`entry 2 (name "ops"): same sha256 as entry 1`}},
		{"bad name", `{"tokens": [` + entry("", "admin", hash) + `, ` + entry("a b", "user", other) + `]}`, []string{`entry 1 (name ""): invalid name`, `entry 2 (name "a b"): invalid name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, tt.content)
			_, err := auth.LoadTokens(path)
			if err == nil {
				t.Fatal("LoadTokens: no error")
			}
			for _, want := range append(tt.want, "tokens file "+path+": ") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}

	if _, err := auth.LoadTokens(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("LoadTokens(missing file) = %v; want an error naming it", err)
	}
}
