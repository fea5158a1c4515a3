package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	"github.com/jobqueue/jobqueue/internal/ratelimit"
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

// newAccess builds what decides who may call the API and from where:
// the authenticator AUTH asks for (nil with AUTH=none), the allowed web
// origins and hosts, and the mutation rate limit. With AUTH=none it warns
// that anyone who reaches the port acts on every job.
func newAccess(ctx context.Context, cfg config, log *slog.Logger) (httpapi.Access, *auth.Authenticator, error) {
	hostname, _ := os.Hostname()
	hosts, err := httpapi.ParseHosts(cfg.AllowedHosts, hostname)
	if err != nil {
		return httpapi.Access{}, nil, fmt.Errorf("ALLOWED_HOSTS: %w", err)
	}
	access := httpapi.Access{
		Origins:   cfg.origins(),
		Hosts:     hosts,
		Mutations: ratelimit.New(ratelimit.Options{Rate: cfg.RateLimit, Burst: cfg.RateBurst}),
	}
	if !cfg.Auth.Enabled() {
		log.Warn("access control is off (AUTH=none): anyone who reaches the port can create, read, cancel and retry every job")
		if access.Origins.Any() {
			log.Warn("CORS_ALLOWED_ORIGINS=* with AUTH=none: any web page a user opens can drive this server")
		}
		return access, nil, nil
	}
	authn, err := newAuthenticator(ctx, cfg, log)
	if err != nil {
		return httpapi.Access{}, nil, err
	}
	access.Authenticator = authn
	log.Info("access control on", "auth", cfg.Auth.String(), "cors_allowed_origins", access.Origins.String())
	return access, authn, nil
}
