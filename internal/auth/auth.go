// Package auth turns a bearer credential into an Identity: a static API
// token listed by its SHA-256 hash in a tokens file, or a JWT signed by an
// identity provider (keys from a JWKS URL) or with a shared HS256 secret.
//
// It decides who the caller is, never what they may do: that is for the
// application service, from Identity.Role.
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Role is what an identity may do, as the application service reads it.
type Role string

// The roles. No other value is ever produced by this package.
const (
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
	// RoleViewer reads and subscribes to every job and changes none.
	RoleViewer Role = "viewer"
	// RoleUser creates jobs it owns and sees and acts on only those.
	RoleUser Role = "user"
)

// ParseRole returns the role named s (exactly, lowercase), or an error for
// anything else: an identity with a role we do not know is refused rather
// than given a guess.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleViewer, RoleUser:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want admin, viewer or user)", s)
}

// Identity is an authenticated caller.
type Identity struct {
	// Name is the token's name from the tokens file, or the JWT's sub: what
	// a job's owner records and what logs show.
	Name string
	Role Role
}

type identityKey struct{}

// WithIdentity returns a copy of ctx that carries id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity WithIdentity put in ctx; false when
// there is none (authentication is off, or the caller did not set it).
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Errors of Authenticate. Every error it returns wraps exactly one of them,
// and none ever contains the credential.
var (
	// ErrMissingCredential: the request carried no Authorization value.
	ErrMissingCredential = errors.New("missing credential")
	// ErrInvalidCredential: a credential was presented and refused (wrong
	// scheme, unknown token, bad JWT, expired, missing role...).
	ErrInvalidCredential = errors.New("invalid credential")
)

// Mode is the set of credential kinds a server accepts. The zero Mode
// (AUTH=none) accepts none, and the server does not ask for one.
type Mode struct {
	Token bool // static tokens from the tokens file
	JWT   bool // JWTs
}

// ParseMode reads AUTH's value: none, token, jwt, or both as token,jwt (in
// either order).
func ParseMode(s string) (Mode, error) {
	var m Mode
	if strings.TrimSpace(s) == "none" {
		return m, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		switch strings.TrimSpace(part) {
		case "token":
			if m.Token {
				return Mode{}, fmt.Errorf("token is listed twice in %q", s)
			}
			m.Token = true
		case "jwt":
			if m.JWT {
				return Mode{}, fmt.Errorf("jwt is listed twice in %q", s)
			}
			m.JWT = true
		default:
			return Mode{}, fmt.Errorf("want none, token, jwt or token,jwt, got %q", s)
		}
	}
	return m, nil
}

// Enabled reports whether callers must present a credential.
func (m Mode) Enabled() bool { return m.Token || m.JWT }

// String is the mode as AUTH writes it.
func (m Mode) String() string {
	switch {
	case m.Token && m.JWT:
		return "token,jwt"
	case m.Token:
		return "token"
	case m.JWT:
		return "jwt"
	}
	return "none"
}
