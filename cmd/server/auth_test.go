package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/auth"
)

// TestTokenNew: the two lines "server token new" prints make a tokens file
// with which the server accepts the token, with its name and role.
func TestTokenNew(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := command(context.Background(), []string{"token", "new", "--name", "ci", "--role", "admin"}, func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("token new: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "jq_") || !strings.HasPrefix(lines[1], `{"name":"ci","role":"admin","sha256":"`) {
		t.Fatalf("stdout %q; want the token and the entry line", stdout.String())
	}
	if strings.Contains(stderr.String(), lines[0]) {
		t.Error("the token is printed twice")
	}
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, []byte(`{"tokens": [`+lines[1]+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(nil, env(map[string]string{"AUTH": "token", "API_TOKENS_FILE": path}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAuthenticator(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := a.Authenticate(context.Background(), "Bearer "+lines[0])
	if err != nil || id != (auth.Identity{Name: "ci", Role: auth.RoleAdmin}) {
		t.Fatalf("Authenticate(new token) = %+v, %v", id, err)
	}
}

func TestTokenNewUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"token"},
		{"token", "old"},
		{"token", "new"},
		{"token", "new", "--name", "ci"},
		{"token", "new", "--role", "admin"},
		{"token", "new", "--name", "ci", "--role", "root"},
		{"token", "new", "--name", "c i", "--role", "admin"},
		{"token", "new", "--name", "ci", "--role", "admin", "extra"},
		{"token", "new", "--nam", "ci", "--role", "admin"},
	} {
		var stdout, stderr bytes.Buffer
		err := command(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
		if err == nil || stdout.Len() > 0 || !strings.Contains(stderr.String(), "Usage: server token new --name NAME --role ROLE") {
			t.Errorf("%q: error %v, stdout %q, stderr %q; want an error, usage on stderr and nothing on stdout", args, err, stdout.String(), stderr.String())
		}
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestAuthConfig(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("s", 32)
	tests := []struct {
		env     map[string]string
		args    []string
		want    auth.Mode
		wantErr []string
	}{
		{env: map[string]string{}, want: auth.Mode{}},
		{env: map[string]string{"AUTH": "token", "API_TOKENS_FILE": "t.json"}, want: auth.Mode{Token: true}},
		{env: map[string]string{"AUTH": "jwt", "JWT_SECRET": secret, "JWT_ROLE_CLAIM": "app_metadata.role"}, want: auth.Mode{JWT: true}},
		{env: map[string]string{"AUTH": "token,jwt", "API_TOKENS_FILE": "t.json", "JWT_JWKS_URL": "https://idp.example/jwks"}, want: auth.Mode{Token: true, JWT: true}},
		{env: map[string]string{"AUTH": "jwt"}, args: []string{"-jwt-secret", secret}, want: auth.Mode{JWT: true}},
		{env: map[string]string{"AUTH": "tokens"}, wantErr: []string{"AUTH (-auth): want none, token, jwt or token,jwt"}},
		{env: map[string]string{"AUTH": "token"}, wantErr: []string{"AUTH=token needs API_TOKENS_FILE"}},
		{env: map[string]string{"API_TOKENS_FILE": "t.json"}, wantErr: []string{"API_TOKENS_FILE is set, but AUTH=none"}},
		{env: map[string]string{"AUTH": "jwt"}, wantErr: []string{"AUTH=jwt needs JWT_JWKS_URL"}},
		{env: map[string]string{"AUTH": "jwt", "JWT_SECRET": secret, "JWT_JWKS_URL": "https://idp.example/jwks"}, wantErr: []string{"not both"}},
		{env: map[string]string{"AUTH": "token", "API_TOKENS_FILE": "t.json", "JWT_ISSUER": "x", "JWT_ROLE_CLAIM": "r"}, wantErr: []string{"JWT_ISSUER is set, but AUTH=token accepts no JWT", "JWT_ROLE_CLAIM is set"}},
	}
	for _, tt := range tests {
		cfg, err := parseConfig(tt.args, env(tt.env), io.Discard)
		if tt.wantErr == nil {
			if err != nil || cfg.Auth != tt.want {
				t.Errorf("%v %v: %+v, %v; want %+v", tt.env, tt.args, cfg.Auth, err, tt.want)
			}
			continue
		}
		for _, want := range tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v: error %v; want it to contain %q", tt.env, err, want)
			}
		}
	}
}

// TestJWTSecretNeverShown: the secret is in neither -h nor the start-up
// log line.
func TestJWTSecretNeverShown(t *testing.T) {
	t.Parallel()
	secret := "do-not-print-this-secret-0123456789"
	getenv := env(map[string]string{"AUTH": "jwt", "JWT_SECRET": secret})
	var help bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, getenv, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(help.String(), "-jwt-secret") || strings.Contains(help.String(), secret) {
		t.Errorf("-h lists no -jwt-secret, or shows the secret:\n%s", help.String())
	}
	cfg, err := parseConfig(nil, getenv, io.Discard)
	if err != nil || cfg.JWTSecret != secret {
		t.Fatalf("JWT_SECRET from the environment: %q, %v", cfg.JWTSecret, err)
	}
	if attrs := fmt.Sprintln(cfg.logAttrs()...); strings.Contains(attrs, secret) || !strings.Contains(attrs, "jwt_secret_set true") {
		t.Errorf("log attributes show the secret, or not that it is set: %s", attrs)
	}
}

func TestNewAuthenticatorErrors(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, []byte(`{"tokens": [{"name": "ci", "role": "root", "sha256": "`+strings.Repeat("a", 64)+`"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"AUTH": "token", "API_TOKENS_FILE": path}, `API_TOKENS_FILE: tokens file ` + path + `: entry 1 (name "ci"): unknown role "root"`},
		{map[string]string{"AUTH": "token", "API_TOKENS_FILE": path + ".missing"}, "API_TOKENS_FILE: tokens file: open " + path + ".missing"},
		{map[string]string{"AUTH": "jwt", "JWT_SECRET": "short"}, "AUTH=jwt: jwt: secret is 5 bytes; HS256 needs at least 32"},
		{map[string]string{"AUTH": "jwt", "JWT_JWKS_URL": "idp.example/jwks"}, "want an http:// or https:// URL"},
	}
	for _, tt := range tests {
		cfg, err := parseConfig(nil, env(tt.env), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newAuthenticator(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v; want an error containing %q", tt.env, err, tt.want)
		}
	}
}

// With AUTH=token the server runs protected: /jobs and /query need a
// token, /health does not, and the start-up log says access control is on
// without naming a secret.
func TestServeWithTokens(t *testing.T) {
	t.Parallel()
	token, entry, err := auth.NewToken(rand.Reader, "ci", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"tokens": []auth.TokenEntry{entry}})
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, map[string]string{"AUTH": "token", "API_TOKENS_FILE": path})
	get := func(path, authorization string) int {
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/jobs", ""); got != http.StatusUnauthorized {
		t.Fatalf("GET /jobs without a token: %d, want 401", got)
	}
	if got := get("/jobs", "Bearer "+token); got != http.StatusOK {
		t.Fatalf("GET /jobs with the token: %d, want 200", got)
	}
	if got := get("/health", ""); got != http.StatusOK {
		t.Fatalf("GET /health without a token: %d, want 200", got)
	}
	var on bool
	for _, l := range s.logs.Lines() {
		if l["msg"] == "access control on" && l["auth"] == "token" && l["cors_allowed_origins"] == "*" {
			on = true
		}
		if strings.Contains(fmt.Sprint(l), token) {
			t.Fatalf("a log line holds the token: %v", l)
		}
	}
	if !on {
		t.Fatalf("no start-up line saying access control is on: %v", s.logs.Lines())
	}
}
