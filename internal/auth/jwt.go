package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Leeway is how far past exp (and before nbf) a JWT is still accepted:
// the clocks of the identity provider and of this server never agree
// exactly.
const Leeway = 30 * time.Second

// DefaultRoleClaim is the claim a JWT's role is read from unless
// JWTOptions.RoleClaim says otherwise.
const DefaultRoleClaim = "role"

// minSecretBytes is the shortest HS256 secret accepted: RFC 7518 (3.2)
// asks for a key at least as long as the hash, 256 bits.
const minSecretBytes = 32

// JWKS defaults, each overridable in JWTOptions.
const (
	defaultJWKSRefresh        = 15 * time.Minute
	defaultUnknownKIDInterval = 30 * time.Second
	jwksFetchTimeout          = 10 * time.Second
)

// validMethods are the algorithms accepted for a kind of key. The two
// lists never overlap, so a token cannot choose how its signature is
// checked: with a JWKS, an HS256 token "signed" with the provider's public
// key is refused before any key is looked up (the algorithm confusion
// attack), and with a secret, no asymmetric algorithm is accepted. "none"
// is in neither. Every asymmetric algorithm is listed, not only RS256,
// ES256 and EdDSA, because providers let their admins pick RS384 or PS256,
// and the key's type still has to fit the algorithm.
func validMethods(secret bool) []string {
	if secret {
		return []string{"HS256"}
	}
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// JWTOptions configure how JWTs are checked.
type JWTOptions struct {
	// JWKSURL is where the identity provider publishes its public keys
	// (RS*, PS*, ES*, EdDSA). Exactly one of JWKSURL and Secret is set.
	JWKSURL string
	// Secret is the HS256 key, at least 32 bytes, used as given.
	Secret []byte
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be one of the token's aud.
	Audience string
	// RoleClaim is the claim that holds the role (DefaultRoleClaim when
	// empty). Dots descend into nested objects: app_metadata.role. A claim
	// name that itself holds dots (https://example.com/role, as Auth0
	// requires for custom claims) is found too: at each level the longest
	// name that exists wins.
	RoleClaim string

	// HTTPClient fetches the JWKS (default: a client of its own).
	HTTPClient *http.Client
	// JWKSRefresh is how often Run fetches the JWKS again, so that a key
	// the provider withdrew stops being trusted (default 15 minutes).
	JWKSRefresh time.Duration
	// UnknownKIDInterval is the least time between two fetches caused by
	// tokens whose kid is not in the cached JWKS: a rotated key is picked
	// up at once, and made-up kids cannot make this server hammer the
	// provider (default 30 s).
	UnknownKIDInterval time.Duration
}

// jwtVerifier checks JWTs and reads their identity.
type jwtVerifier struct {
	parser    *jwt.Parser
	roleClaim string
	secret    []byte // or:
	jwks      *jwks
}

func newJWTVerifier(ctx context.Context, o JWTOptions, log *slog.Logger) (*jwtVerifier, error) {
	v := &jwtVerifier{roleClaim: o.RoleClaim}
	if v.roleClaim == "" {
		v.roleClaim = DefaultRoleClaim
	}
	if strings.HasPrefix(v.roleClaim, ".") || strings.HasSuffix(v.roleClaim, ".") || strings.Contains(v.roleClaim, "..") {
		return nil, fmt.Errorf("role claim %q: empty name between dots", v.roleClaim)
	}
	var secret bool
	switch {
	case o.JWKSURL != "" && len(o.Secret) > 0:
		// One verifier with both kinds of key is where algorithm confusion
		// hides; nobody needs both at once.
		return nil, errors.New("set a JWKS URL or a secret, not both")
	case o.JWKSURL != "":
		if err := checkJWKSURL(o.JWKSURL); err != nil {
			return nil, err
		}
		v.jwks = &jwks{
			url:        o.JWKSURL,
			client:     o.HTTPClient,
			refresh:    o.JWKSRefresh,
			unknownKID: rate.NewLimiter(rate.Every(cmpOr(o.UnknownKIDInterval, defaultUnknownKIDInterval)), 1),
			log:        log,
		}
		if v.jwks.client == nil {
			v.jwks.client = &http.Client{Timeout: jwksFetchTimeout}
		}
		if v.jwks.refresh <= 0 {
			v.jwks.refresh = defaultJWKSRefresh
		}
		// A provider that is down when the server starts must not keep
		// it from starting: the fetch is tried again on the first unknown
		// kid and at every refresh.
		kf, err := v.jwks.load(ctx, true)
		if err != nil {
			return nil, err
		}
		v.jwks.current.Store(&kf)
	case len(o.Secret) > 0:
		if len(o.Secret) < minSecretBytes {
			return nil, fmt.Errorf("secret is %d bytes; HS256 needs at least %d", len(o.Secret), minSecretBytes)
		}
		secret = true
		v.secret = o.Secret
	default:
		return nil, errors.New("set a JWKS URL or a secret")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(validMethods(secret)),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
	}
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		opts = append(opts, jwt.WithAudience(o.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("JWKS URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("JWKS URL %q: want an http:// or https:// URL", s)
	}
	return nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// verify checks raw and returns its identity and the time from which it is
// refused (exp plus the leeway).
func (v *jwtVerifier) verify(ctx context.Context, raw string) (Identity, time.Time, error) {
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(raw, claims, v.keyfunc(ctx)); err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: jwt: %w", ErrInvalidCredential, err)
	}
	sub, err := claims.GetSubject()
	if err != nil || sub == "" {
		return Identity{}, time.Time{}, fmt.Errorf("%w: jwt: no sub claim (it names the identity)", ErrInvalidCredential)
	}
	value, ok := lookupClaim(claims, v.roleClaim)
	if !ok {
		return Identity{}, time.Time{}, fmt.Errorf("%w: jwt: no %q claim (it holds the role)", ErrInvalidCredential, v.roleClaim)
	}
	role, err := roleFrom(value)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: jwt: claim %q: %w", ErrInvalidCredential, v.roleClaim, err)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // WithExpirationRequired refused these already
		return Identity{}, time.Time{}, fmt.Errorf("%w: jwt: no exp claim", ErrInvalidCredential)
	}
	return Identity{Name: sub, Role: role}, exp.Add(Leeway), nil
}

func (v *jwtVerifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	if v.jwks != nil {
		return (*v.jwks.current.Load()).KeyfuncCtx(ctx)
	}
	return func(*jwt.Token) (any, error) { return v.secret, nil }
}

// lookupClaim finds path in claims. Dots separate levels, but at each
// level the longest run of segments that names a claim is taken first, so
// that names holding dots (https://example.com/role) are found.
func lookupClaim(claims map[string]any, path string) (any, bool) {
	return lookupSegments(claims, strings.Split(path, "."))
}

func lookupSegments(m map[string]any, segs []string) (any, bool) {
	for n := len(segs); n >= 1; n-- {
		v, ok := m[strings.Join(segs[:n], ".")]
		if !ok {
			continue
		}
		if n == len(segs) {
			return v, true
		}
		if inner, isObject := v.(map[string]any); isObject {
			if found, ok := lookupSegments(inner, segs[n:]); ok {
				return found, true
			}
		}
	}
	return nil, false
}

// roleFrom reads a role claim's value: a string naming the role, or an
// array as Keycloak and others write roles (realm_access.roles). In an
// array, strings that are not roles of ours are ignored (providers put
// offline_access and the like there); admin wins, since it includes the
// others; otherwise exactly one of viewer and user must be named, since
// neither includes the other and guessing would grant too much or too
// little.
func roleFrom(v any) (Role, error) {
	switch v := v.(type) {
	case string:
		return ParseRole(v)
	case []any:
		named := map[Role]bool{}
		for _, e := range v {
			if s, ok := e.(string); ok {
				if r, err := ParseRole(s); err == nil {
					named[r] = true
				}
			}
		}
		switch {
		case named[RoleAdmin]:
			return RoleAdmin, nil
		case named[RoleViewer] && named[RoleUser]:
			return "", errors.New("names both viewer and user; give the identity one of them")
		case named[RoleViewer]:
			return RoleViewer, nil
		case named[RoleUser]:
			return RoleUser, nil
		}
		return "", errors.New("names none of admin, viewer or user")
	}
	return "", fmt.Errorf("is %s; want a string or an array of strings", jsonKind(v))
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// jwks keeps the identity provider's keys. keyfunc and jwkset fetch them
// and refetch on an unknown kid (rate-limited); the periodic refetch is
// done by the Authenticator's Run, so that no goroutine outlives it.
type jwks struct {
	url        string
	client     *http.Client
	refresh    time.Duration
	unknownKID *rate.Limiter // shared by every load, so a refresh does not reset it
	log        *slog.Logger
	current    atomic.Pointer[keyfunc.Keyfunc]
}

// load fetches the JWKS into a new key store. With tolerateFailure, a
// failed fetch is logged and an empty store returned, which fetches again
// on the first token.
func (k *jwks) load(ctx context.Context, tolerateFailure bool) (keyfunc.Keyfunc, error) {
	store, err := jwkset.NewStorageFromHTTP(k.url, jwkset.HTTPClientStorageOptions{
		Client:                    k.client,
		Ctx:                       ctx,
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: tolerateFailure,
		RefreshErrorHandler: func(_ context.Context, err error) {
			k.log.Warn("jwks fetch failed", "url", k.url, "err", err)
		},
		// Zero: no refresh goroutine of jwkset's own (Run refreshes).
		RefreshInterval: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", k.url, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{k.url: store},
		// Bounds both the wait for the rate limiter and the fetch: a
		// request with an unknown kid is answered within it.
		RateLimitWaitMax:  jwksFetchTimeout,
		RefreshUnknownKID: k.unknownKID,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", k.url, err)
	}
	// Keys published for encryption ("use": "enc") never verify a
	// signature; keys that do not say are taken as signing keys.
	kf, err := keyfunc.New(keyfunc.Options{Storage: client, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", k.url, err)
	}
	return kf, nil
}

// run fetches the JWKS every refresh interval until ctx is done; a failed
// fetch keeps the keys there were.
func (k *jwks) run(ctx context.Context) {
	t := time.NewTicker(k.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		kf, err := k.load(ctx, false)
		if err != nil {
			if ctx.Err() == nil {
				k.log.Warn("jwks refresh failed; keeping the keys fetched before", "err", err)
			}
			continue
		}
		k.current.Store(&kf)
	}
}
