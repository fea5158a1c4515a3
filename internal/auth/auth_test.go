package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseRole(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"admin", "viewer", "user"} {
		r, err := auth.ParseRole(s)
		if err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Admin", "root", "user ", "guest"} {
		if r, err := auth.ParseRole(s); err == nil || !strings.Contains(err.Error(), "want admin, viewer or user") {
			t.Errorf("ParseRole(%q) = %q, %v; want an error naming the roles", s, r, err)
		}
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    auth.Mode
		wantErr bool
	}{
		{in: "none", want: auth.Mode{}},
		{in: "token", want: auth.Mode{Token: true}},
		{in: "jwt", want: auth.Mode{JWT: true}},
		{in: "token,jwt", want: auth.Mode{Token: true, JWT: true}},
		{in: "jwt, token", want: auth.Mode{Token: true, JWT: true}},
		{in: "", wantErr: true},
		{in: "tokens", wantErr: true},
		{in: "token,token", wantErr: true},
		{in: "none,jwt", wantErr: true},
		{in: "token,", wantErr: true},
	}
	for _, tt := range tests {
		got, err := auth.ParseMode(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseMode(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			if again, _ := auth.ParseMode(got.String()); again != got {
				t.Errorf("ParseMode(%q).String() = %q does not parse back", tt.in, got.String())
			}
			if got.Enabled() != (tt.in != "none") {
				t.Errorf("ParseMode(%q).Enabled() = %v", tt.in, got.Enabled())
			}
		}
	}
}

func TestIdentityContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, ok := auth.IdentityFrom(ctx); ok {
		t.Fatal("IdentityFrom(empty context) reported an identity")
	}
	want := auth.Identity{Name: "ci", Role: auth.RoleAdmin}
	got, ok := auth.IdentityFrom(auth.WithIdentity(ctx, want))
	if !ok || got != want {
		t.Fatalf("IdentityFrom = %+v, %v; want %+v", got, ok, want)
	}
}

// TestAuthorizationHeader covers the parsing of the header's value, the
// same whatever kind of credential follows.
func TestAuthorizationHeader(t *testing.T) {
	t.Parallel()
	token, entry := newToken(t, "ci", auth.RoleAdmin)
	a := newAuthenticator(t, auth.Options{Mode: auth.Mode{Token: true}, Tokens: []auth.TokenEntry{entry}})
	tests := []struct {
		header  string
		wantErr error
	}{
		{header: "Bearer " + token},
		{header: "bearer " + token},
		{header: "BEARER " + token},
		{header: "  Bearer   " + token + "  "},
		{header: "", wantErr: auth.ErrMissingCredential},
		{header: "   ", wantErr: auth.ErrMissingCredential},
		{header: "Bearer", wantErr: auth.ErrMissingCredential},
		{header: "Bearer ", wantErr: auth.ErrMissingCredential},
		{header: token, wantErr: auth.ErrInvalidCredential},
		{header: "Basic " + token, wantErr: auth.ErrInvalidCredential},
		{header: "Bearer" + token, wantErr: auth.ErrInvalidCredential},
		{header: "Bearer " + token + "x", wantErr: auth.ErrInvalidCredential},
		{header: "Bearer " + token[:len(token)-1], wantErr: auth.ErrInvalidCredential},
	}
	for _, tt := range tests {
		id, expires, err := a.Authenticate(context.Background(), tt.header)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Authenticate(%q) error = %v; want %v", tt.header, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), token[len("jq_"):len("jq_")+8]) {
				t.Errorf("Authenticate(%q) error %q contains the token", tt.header, err)
			}
			continue
		}
		if err != nil || id != (auth.Identity{Name: "ci", Role: auth.RoleAdmin}) || !expires.IsZero() {
			t.Errorf("Authenticate(%q) = %+v, %v, %v; want ci/admin, no expiry", tt.header, id, expires, err)
		}
	}
}

func TestNewRefusesIncompleteOptions(t *testing.T) {
	t.Parallel()
	_, entry := newToken(t, "ci", auth.RoleAdmin)
	tests := []struct {
		name string
		opts auth.Options
		want string
	}{
		{"token mode without tokens", auth.Options{Mode: auth.Mode{Token: true}}, "at least one token"},
		{"duplicate tokens", auth.Options{Mode: auth.Mode{Token: true}, Tokens: []auth.TokenEntry{entry, entry}}, "same sha256 as entry 1"},
		{"jwt mode without keys", auth.Options{Mode: auth.Mode{JWT: true}}, "set a JWKS URL or a secret"},
		{"jwt with both keys", auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{JWKSURL: "https://idp.example/jwks.json", Secret: []byte(strings.Repeat("s", 32))}}, "not both"},
		{"short secret", auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{Secret: []byte("short")}}, "at least 32"},
		{"jwks url not http", auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{JWKSURL: "file:///etc/jwks.json"}}, "http:// or https://"},
		{"empty role claim segment", auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{Secret: []byte(strings.Repeat("s", 32)), RoleClaim: "app_metadata..role"}}, "empty name between dots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := auth.New(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestOffAcceptsNothing(t *testing.T) {
	t.Parallel()
	a := newAuthenticator(t, auth.Options{})
	if a.Mode().Enabled() {
		t.Fatal("the zero Options enable authentication")
	}
	if _, _, err := a.Authenticate(context.Background(), "Bearer anything"); !errors.Is(err, auth.ErrInvalidCredential) {
		t.Fatalf("Authenticate with authentication off: %v; want ErrInvalidCredential", err)
	}
}

func newAuthenticator(t *testing.T, opts auth.Options) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
