package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Options configure an Authenticator.
type Options struct {
	// Mode says which credentials are accepted.
	Mode Mode
	// Tokens are the static tokens (LoadTokens reads them from a file);
	// at least one when Mode.Token.
	Tokens []TokenEntry
	// JWT configures JWTs; used when Mode.JWT.
	JWT JWTOptions
	// Logger receives JWKS fetch failures (nothing else, and never a
	// credential). Default: discarded.
	Logger *slog.Logger
}

// Authenticator turns the value of an Authorization header into an
// Identity. It is safe for concurrent use. With a JWKS, its Run refreshes
// the keys periodically; Authenticate works whether Run runs or not.
type Authenticator struct {
	mode   Mode
	tokens *tokenSet    // nil unless mode.Token
	jwt    *jwtVerifier // nil unless mode.JWT
}

// New checks opts and returns an Authenticator. With a JWKS URL it fetches
// the keys first, within ctx (at most 10 s); a fetch that fails is logged
// and tried again later, so that a provider that is down does not keep
// the server from starting. ctx is not kept.
func New(ctx context.Context, opts Options) (*Authenticator, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{mode: opts.Mode}
	if opts.Mode.Token {
		if len(opts.Tokens) == 0 {
			return nil, errors.New("token authentication needs at least one token")
		}
		s, err := newTokenSet(opts.Tokens)
		if err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
		a.tokens = s
	}
	if opts.Mode.JWT {
		v, err := newJWTVerifier(ctx, opts.JWT, log)
		if err != nil {
			return nil, fmt.Errorf("jwt: %w", err)
		}
		a.jwt = v
	}
	return a, nil
}

// Mode is the mode the Authenticator was built with. When it is not
// Enabled, callers let every request through without an identity.
func (a *Authenticator) Mode() Mode { return a.mode }

// Authenticate reads header, the value of an Authorization header (or the
// same value from a websocket's connection_init), as "Bearer <credential>"
// with the scheme in any case. It returns the caller's identity and the
// time from which the credential will be refused (a JWT's exp plus
// Leeway; zero for a static token, which does not expire).
//
// Errors wrap ErrMissingCredential (header empty, or "Bearer" with
// nothing after it, as clients send when they have no token yet) or
// ErrInvalidCredential (anything else refused), and never contain the
// credential. A credential shaped like a JWT (three dot-separated parts)
// is checked as one when JWTs are accepted; anything else as a static
// token.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Identity, time.Time, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return Identity{}, time.Time{}, ErrMissingCredential
	}
	scheme, credential, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Identity{}, time.Time{}, fmt.Errorf("%w: want the Bearer scheme", ErrInvalidCredential)
	}
	credential = strings.TrimSpace(credential)
	if credential == "" {
		return Identity{}, time.Time{}, ErrMissingCredential
	}
	looksJWT := strings.Count(credential, ".") == 2
	switch {
	case a.jwt != nil && (looksJWT || a.tokens == nil):
		id, expires, err := a.jwt.verify(ctx, credential)
		if err != nil {
			return Identity{}, time.Time{}, err
		}
		// A job's owner is an identity's name, whatever kind of
		// credential it came from: a JWT must not pass for a token's
		// holder and get its jobs.
		if a.tokens != nil && a.tokens.has(id.Name) {
			return Identity{}, time.Time{}, fmt.Errorf("%w: jwt: sub %q is the name of a static token", ErrInvalidCredential, id.Name)
		}
		return id, expires, nil
	case a.tokens != nil:
		if id, ok := a.tokens.match(credential); ok {
			return id, time.Time{}, nil
		}
		return Identity{}, time.Time{}, fmt.Errorf("%w: no token in the tokens file has this hash", ErrInvalidCredential)
	}
	return Identity{}, time.Time{}, fmt.Errorf("%w: authentication is off", ErrInvalidCredential)
}

// Run refreshes the JWKS (when there is one) every JWTOptions.JWKSRefresh
// until ctx is done, then returns nil. It is the only goroutine the
// Authenticator needs; key fetches caused by Authenticate happen in the
// caller's goroutine.
func (a *Authenticator) Run(ctx context.Context) error {
	if a.jwt != nil && a.jwt.jwks != nil {
		a.jwt.jwks.run(ctx)
		return nil
	}
	<-ctx.Done()
	return nil
}
