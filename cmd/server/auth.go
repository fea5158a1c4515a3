package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jobqueue/jobqueue/internal/auth"
)

// newAuthenticator builds the Authenticator AUTH asks for: it reads
// API_TOKENS_FILE, and with JWT_JWKS_URL fetches the provider's keys
// (a provider that does not answer is logged, not fatal). Its Run is a
// part of the server: it refreshes the JWKS until it is stopped.
func newAuthenticator(ctx context.Context, cfg config, log *slog.Logger) (*auth.Authenticator, error) {
	opts := auth.Options{
		Mode: cfg.Auth,
		JWT: auth.JWTOptions{
			JWKSURL:   cfg.JWTJWKSURL,
			Secret:    []byte(cfg.JWTSecret),
			Issuer:    cfg.JWTIssuer,
			Audience:  cfg.JWTAudience,
			RoleClaim: cfg.JWTRoleClaim,
		},
		Logger: log,
	}
	if cfg.Auth.Token {
		tokens, err := auth.LoadTokens(cfg.APITokensFile)
		if err != nil {
			return nil, fmt.Errorf("API_TOKENS_FILE: %w", err)
		}
		opts.Tokens = tokens
	}
	a, err := auth.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("AUTH=%s: %w", cfg.Auth, err)
	}
	return a, nil
}
