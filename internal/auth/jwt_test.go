package auth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/logtest"
)

const (
	issuer   = "https://idp.example/"
	audience = "jobqueue"
)

// testKeys are generated once: RSA keys take long to make under -race.
var testKeys = sync.OnceValue(func() struct {
	rsa, rsa2, rsaEnc *rsa.PrivateKey
	ec                *ecdsa.PrivateKey
	ed                ed25519.PrivateKey
} {
	var k struct {
		rsa, rsa2, rsaEnc *rsa.PrivateKey
		ec                *ecdsa.PrivateKey
		ed                ed25519.PrivateKey
	}
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.rsa2, &k.rsaEnc} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

// publicKey is one entry of a served JWKS.
type publicKey struct {
	kid string
	key any // a public key
	alg jwkset.ALG
	use jwkset.USE
}

func jwksJSON(t testing.TB, keys ...publicKey) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: k.alg, USE: k.use}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves a JWKS the test can change, and counts the fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches int
}

func newJWKSServer(t testing.TB, keys ...publicKey) *jwksServer {
	t.Helper()
	s := &jwksServer{body: jwksJSON(t, keys...), status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fetches++
		w.WriteHeader(s.status)
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(t *testing.T, keys ...publicKey) {
	body := jwksJSON(t, keys...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.status = body, http.StatusOK
}

func (s *jwksServer) fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

func (s *jwksServer) fetched() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

func (s *jwksServer) options(mod func(*auth.JWTOptions)) auth.JWTOptions {
	o := auth.JWTOptions{
		JWKSURL:    s.URL,
		HTTPClient: s.Client(),
		Issuer:     issuer,
		Audience:   audience,
		// Only the first unknown kid is fetched for in a test, unless it
		// says otherwise.
		UnknownKIDInterval: time.Hour,
	}
	if mod != nil {
		mod(&o)
	}
	return o
}

// claims are valid claims for alice, a user, changed by mod.
func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub":  "alice",
		"role": "user",
		"iss":  issuer,
		"aud":  audience,
		"iat":  now.Unix(),
		"exp":  now.Add(5 * time.Minute).Unix(),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forge builds a token with any header and no valid signature.
func forge(t *testing.T, header map[string]any, c jwt.MapClaims, signature string) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "." + enc([]byte(signature))
}

func rsaPublicPEM(t *testing.T, k *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

type jwtCase struct {
	name    string
	token   string
	want    auth.Identity
	exp     time.Time // the token's exp, when it is accepted
	wantErr error     // besides ErrInvalidCredential, when refused
	errText string    // in the error, when refused
}

func checkJWTCases(t *testing.T, a *auth.Authenticator, cases []jwtCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			id, expires, err := a.Authenticate(context.Background(), "Bearer "+tt.token)
			if tt.wantErr == nil && tt.errText == "" {
				if err != nil || id != tt.want {
					t.Fatalf("Authenticate = %+v, %v; want %+v", id, err, tt.want)
				}
				if want := tt.exp.Add(auth.Leeway); !expires.Equal(want) {
					t.Errorf("expires = %v; want exp plus leeway, %v", expires, want)
				}
				return
			}
			if !errors.Is(err, auth.ErrInvalidCredential) {
				t.Fatalf("Authenticate = %+v, %v; want ErrInvalidCredential", id, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q; want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q; want it to contain %q", err, tt.errText)
			}
			// The error goes to logs: it must hold no part of the token
			// but its header, which is not secret.
			parts := strings.SplitN(tt.token, ".", 3)
			for _, p := range parts[1:] {
				if len(p) >= 8 && strings.Contains(err.Error(), p) {
					t.Errorf("error %q contains part of the token", err)
				}
			}
		})
	}
}

func TestJWTWithJWKS(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t,
		publicKey{kid: "rsa", key: &k.rsa.PublicKey, alg: jwkset.AlgRS256, use: jwkset.UseSig},
		publicKey{kid: "ec", key: &k.ec.PublicKey, alg: jwkset.AlgES256},
		publicKey{kid: "ed", key: k.ed.Public()},
		publicKey{kid: "enc", key: &k.rsaEnc.PublicKey, use: jwkset.UseEnc},
	)
	a := newAuthenticator(t, auth.Options{Mode: auth.Mode{JWT: true}, JWT: srv.options(nil)})
	now := time.Now()
	exp := func(c jwt.MapClaims) time.Time { return time.Unix(c["exp"].(int64), 0) }
	valid := claims(nil)
	alice := auth.Identity{Name: "alice", Role: auth.RoleUser}
	expired := claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-auth.Leeway - 15*time.Second).Unix() })
	withinLeeway := claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-auth.Leeway + 15*time.Second).Unix() })
	notYet := claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(auth.Leeway + time.Minute).Unix() })
	nbfWithinLeeway := claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(auth.Leeway - 15*time.Second).Unix() })
	audList := claims(func(c jwt.MapClaims) { c["aud"] = []string{"other", audience} })
	noKid := sign(t, jwt.SigningMethodRS256, k.rsa, "", valid)
	viewerInArray := claims(func(c jwt.MapClaims) { c["role"] = []any{"offline_access", "viewer"} })
	adminInArray := claims(func(c jwt.MapClaims) { c["role"] = []any{"user", "admin", 3} })

	checkJWTCases(t, a, []jwtCase{
		{name: "valid RS256", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", valid), want: alice, exp: exp(valid)},
		{name: "valid ES256", token: sign(t, jwt.SigningMethodES256, k.ec, "ec", valid), want: alice, exp: exp(valid)},
		{name: "valid EdDSA", token: sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", valid), want: alice, exp: exp(valid)},
		{name: "valid without kid", token: noKid, want: alice, exp: exp(valid)},
		{name: "audience in a list", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", audList), want: alice, exp: exp(audList)},
		{name: "expired within leeway", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", withinLeeway), want: alice, exp: exp(withinLeeway)},
		{name: "expired beyond leeway", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", expired), wantErr: jwt.ErrTokenExpired},
		{name: "no exp", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { delete(c, "exp") })), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "not yet valid", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", notYet), wantErr: jwt.ErrTokenNotValidYet},
		{name: "nbf within leeway", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", nbfWithinLeeway), want: alice, exp: exp(nbfWithinLeeway)},
		{name: "wrong issuer", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" })), wantErr: jwt.ErrTokenInvalidIssuer},
		{name: "no issuer", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { delete(c, "iss") })), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "wrong audience", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { c["aud"] = "other" })), wantErr: jwt.ErrTokenInvalidAudience},
		{name: "bad signature: another key under the same kid", token: sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa", valid), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "bad signature: payload changed", token: tamper(t, sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", valid)), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "kid of an encryption key", token: sign(t, jwt.SigningMethodRS256, k.rsaEnc, "enc", valid), wantErr: jwt.ErrTokenUnverifiable},
		{name: "alg none", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa", valid), errText: "signing method none is invalid"},
		{name: "alg none, unsigned", token: forge(t, map[string]any{"alg": "none", "typ": "JWT"}, valid, ""), errText: "signing method none is invalid"},
		{name: "HS256 signed with the RSA public key (PEM)", token: sign(t, jwt.SigningMethodHS256, rsaPublicPEM(t, &k.rsa.PublicKey), "rsa", valid), errText: "signing method HS256 is invalid"},
		{name: "HS256 signed with the RSA modulus", token: sign(t, jwt.SigningMethodHS256, k.rsa.PublicKey.N.Bytes(), "rsa", valid), errText: "signing method HS256 is invalid"},
		{name: "unknown algorithm", token: forge(t, map[string]any{"alg": "XS256", "kid": "rsa"}, valid, "sig"), wantErr: jwt.ErrTokenUnverifiable},
		{name: "RS256 under an ES256 key's kid", token: sign(t, jwt.SigningMethodRS256, k.rsa, "ec", valid), wantErr: jwt.ErrTokenUnverifiable},
		{name: "garbage", token: "not.a.jwt", wantErr: jwt.ErrTokenMalformed},
		{name: "no sub", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { delete(c, "sub") })), errText: "no sub claim"},
		{name: "empty sub", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { c["sub"] = "" })), errText: "no sub claim"},
		{name: "no role", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { delete(c, "role") })), errText: `no "role" claim`},
		{name: "unknown role", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { c["role"] = "root" })), errText: `claim "role": unknown role "root"`},
		{name: "role of another case", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { c["role"] = "Admin" })), errText: `unknown role "Admin"`},
		{name: "role a number", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { c["role"] = 1 })), errText: "is a number; want a string or an array of strings"},
		{name: "role in an array", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", viewerInArray), want: auth.Identity{Name: "alice", Role: auth.RoleViewer}, exp: exp(viewerInArray)},
		{name: "admin wins in an array", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", adminInArray), want: auth.Identity{Name: "alice", Role: auth.RoleAdmin}, exp: exp(adminInArray)},
		{name: "viewer and user in an array", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { c["role"] = []any{"viewer", "user"} })), errText: "names both viewer and user"},
		{name: "no role of ours in an array", token: sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims(func(c jwt.MapClaims) { c["role"] = []any{"offline_access"} })), errText: "names none of admin, viewer or user"},
	})
	if n := srv.fetched(); n > 2 {
		t.Errorf("the JWKS was fetched %d times; want the first fetch and at most one for the unknown kid", n)
	}
}

// tamper changes a claim of a signed token without signing it again.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload = []byte(strings.Replace(string(payload), `"user"`, `"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestJWTRoleClaim(t *testing.T) {
	t.Parallel()
	secret := []byte(strings.Repeat("k", 32))
	tests := []struct {
		claim  string
		claims jwt.MapClaims
		want   auth.Role
	}{
		{claim: "app_metadata.role", claims: jwt.MapClaims{"app_metadata": map[string]any{"role": "admin"}, "role": "user"}, want: auth.RoleAdmin},
		{claim: "realm_access.roles", claims: jwt.MapClaims{"realm_access": map[string]any{"roles": []any{"default-roles-x", "viewer"}}}, want: auth.RoleViewer},
		{claim: "https://jobqueue.example/role", claims: jwt.MapClaims{"https://jobqueue.example/role": "viewer"}, want: auth.RoleViewer},
		{claim: "https://hasura.io/jwt/claims.x-hasura-default-role", claims: jwt.MapClaims{"https://hasura.io/jwt/claims": map[string]any{"x-hasura-default-role": "user"}}, want: auth.RoleUser},
		// The longest name is tried first, then shorter ones.
		{claim: "a.b.c", claims: jwt.MapClaims{"a.b": map[string]any{"x": "admin"}, "a": map[string]any{"b": map[string]any{"c": "viewer"}}}, want: auth.RoleViewer},
		{claim: "app_metadata.role", claims: jwt.MapClaims{"app_metadata": map[string]any{"roles": "admin"}, "role": "admin"}},
		{claim: "app_metadata.role", claims: jwt.MapClaims{"app_metadata": "admin"}},
		{claim: "app_metadata.role", claims: jwt.MapClaims{"app_metadata": map[string]any{"role": map[string]any{"name": "admin"}}}},
	}
	for _, tt := range tests {
		a := newAuthenticator(t, auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{Secret: secret, RoleClaim: tt.claim}})
		c := claims(nil)
		delete(c, "role")
		for k, v := range tt.claims {
			c[k] = v
		}
		id, _, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodHS256, secret, "", c))
		if tt.want == "" {
			if !errors.Is(err, auth.ErrInvalidCredential) || !strings.Contains(err.Error(), tt.claim) {
				t.Errorf("claim %s in %v: %+v, %v; want an error naming the claim", tt.claim, tt.claims, id, err)
			}
			continue
		}
		if err != nil || id.Role != tt.want {
			t.Errorf("claim %s in %v: %+v, %v; want role %s", tt.claim, tt.claims, id, err, tt.want)
		}
	}
}

func TestJWTWithSecret(t *testing.T) {
	t.Parallel()
	k := testKeys()
	secret := []byte("a secret of at least thirty-two bytes")
	a := newAuthenticator(t, auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{Secret: secret, Issuer: issuer, Audience: audience}})
	valid := claims(nil)
	checkJWTCases(t, a, []jwtCase{
		{name: "valid HS256", token: sign(t, jwt.SigningMethodHS256, secret, "", valid), want: auth.Identity{Name: "alice", Role: auth.RoleUser}, exp: time.Unix(valid["exp"].(int64), 0)},
		{name: "another secret", token: sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!"), "", valid), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "HS384", token: sign(t, jwt.SigningMethodHS384, secret, "", valid), errText: "signing method HS384 is invalid"},
		{name: "RS256", token: sign(t, jwt.SigningMethodRS256, k.rsa, "", valid), errText: "signing method RS256 is invalid"},
		{name: "alg none", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", valid), errText: "signing method none is invalid"},
		{name: "expired", token: sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), wantErr: jwt.ErrTokenExpired},
	})
}

// TestJWKSKeyRotation: a token signed with a key the cached JWKS does not
// have makes the server fetch the JWKS again, once; keys the provider no
// longer publishes stop being accepted.
func TestJWKSKeyRotation(t *testing.T) {
	t.Parallel()
	k := testKeys()
	old := publicKey{kid: "2024", key: &k.rsa.PublicKey, alg: jwkset.AlgRS256, use: jwkset.UseSig}
	next := publicKey{kid: "2025", key: &k.rsa2.PublicKey, alg: jwkset.AlgRS256, use: jwkset.UseSig}
	srv := newJWKSServer(t, old)
	a := newAuthenticator(t, auth.Options{Mode: auth.Mode{JWT: true}, JWT: srv.options(nil)})
	if n := srv.fetched(); n != 1 {
		t.Fatalf("New fetched the JWKS %d times; want 1", n)
	}
	authenticate := func(key *rsa.PrivateKey, kid string) error {
		_, _, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodRS256, key, kid, claims(nil)))
		return err
	}
	if err := authenticate(k.rsa, "2024"); err != nil {
		t.Fatalf("token of the first key: %v", err)
	}
	if n := srv.fetched(); n != 1 {
		t.Fatalf("a known kid fetched the JWKS again (%d fetches)", n)
	}

	srv.serve(t, next)
	if err := authenticate(k.rsa2, "2025"); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if n := srv.fetched(); n != 2 {
		t.Fatalf("the unknown kid caused %d fetches in all; want 2", n)
	}
	// The refetch replaced the cached set: the withdrawn key is unknown
	// now, and the rate limit keeps it (and made-up kids) from causing
	// another fetch.
	if err := authenticate(k.rsa, "2024"); !errors.Is(err, auth.ErrInvalidCredential) {
		t.Fatalf("token of the withdrawn key: %v; want it refused", err)
	}
	if err := authenticate(k.rsa2, "made-up"); !errors.Is(err, auth.ErrInvalidCredential) {
		t.Fatalf("token with a made-up kid: %v; want it refused", err)
	}
	if n := srv.fetched(); n != 2 {
		t.Fatalf("unknown kids within the rate limit caused %d fetches in all; want 2", n)
	}
	if err := authenticate(k.rsa2, "2025"); err != nil {
		t.Fatalf("token of the rotated key, again: %v", err)
	}
}

// TestJWKSDownAtStart: a provider that does not answer when the server
// starts does not keep it from starting; its keys are fetched when the
// first token comes.
func TestJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	k := testKeys()
	key := publicKey{kid: "k", key: &k.ec.PublicKey, alg: jwkset.AlgES256}
	srv := newJWKSServer(t, key)
	srv.fail(http.StatusServiceUnavailable)
	log, logs := logtest.Logger()
	a, err := auth.New(context.Background(), auth.Options{Mode: auth.Mode{JWT: true}, JWT: srv.options(nil), Logger: log})
	if err != nil {
		t.Fatalf("New with the JWKS down: %v", err)
	}
	if !strings.Contains(logs.String(), "jwks fetch failed") || !strings.Contains(logs.String(), srv.URL) {
		t.Errorf("the failed fetch was not logged with its URL: %s", logs)
	}
	srv.serve(t, key)
	if _, _, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodES256, k.ec, "k", claims(nil))); err != nil {
		t.Fatalf("first token once the JWKS is up: %v", err)
	}
}

// TestTokenAndJWT: with both kinds on, each credential goes to its own
// check, and a JWT cannot take a static token's name.
func TestTokenAndJWT(t *testing.T) {
	t.Parallel()
	secret := []byte(strings.Repeat("s", 32))
	token, entry := newToken(t, "ci", auth.RoleAdmin)
	both := newAuthenticator(t, auth.Options{Mode: auth.Mode{Token: true, JWT: true}, Tokens: []auth.TokenEntry{entry}, JWT: auth.JWTOptions{Secret: secret}})
	onlyTokens := newAuthenticator(t, auth.Options{Mode: auth.Mode{Token: true}, Tokens: []auth.TokenEntry{entry}})
	onlyJWT := newAuthenticator(t, auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{Secret: secret}})
	jwtAlice := sign(t, jwt.SigningMethodHS256, secret, "", claims(nil))
	jwtCI := sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { c["sub"] = "ci" }))

	tests := []struct {
		name       string
		a          *auth.Authenticator
		credential string
		want       auth.Identity
		errText    string
	}{
		{name: "both: token", a: both, credential: token, want: auth.Identity{Name: "ci", Role: auth.RoleAdmin}},
		{name: "both: jwt", a: both, credential: jwtAlice, want: auth.Identity{Name: "alice", Role: auth.RoleUser}},
		{name: "both: jwt named like a token", a: both, credential: jwtCI, errText: `sub "ci" is the name of a static token`},
		{name: "both: unknown token", a: both, credential: "jq_unknown", errText: "no token in the tokens file"},
		{name: "tokens only: jwt", a: onlyTokens, credential: jwtAlice, errText: "no token in the tokens file"},
		{name: "jwt only: token", a: onlyJWT, credential: token, errText: "token is malformed"},
		{name: "jwt only: jwt named like a token", a: onlyJWT, credential: jwtCI, want: auth.Identity{Name: "ci", Role: auth.RoleUser}},
	}
	for _, tt := range tests {
		id, _, err := tt.a.Authenticate(context.Background(), "Bearer "+tt.credential)
		if tt.errText != "" {
			if !errors.Is(err, auth.ErrInvalidCredential) || !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("%s: %+v, %v; want an invalid credential error containing %q", tt.name, id, err, tt.errText)
			}
			continue
		}
		if err != nil || id != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.name, id, err, tt.want)
		}
	}
}

// roundTripFunc answers HTTP requests in memory, so that a synctest
// bubble holds the whole exchange.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestJWKSRefreshedByRun: Run fetches the JWKS every JWKSRefresh, so a key
// the provider withdrew is refused even though its kid is known, and a
// new key is there before any token asks for it. Run returns when its
// context ends.
func TestJWKSRefreshedByRun(t *testing.T) {
	t.Parallel()
	k := testKeys()
	old := publicKey{kid: "2024", key: &k.rsa.PublicKey, alg: jwkset.AlgRS256}
	next := publicKey{kid: "2025", key: &k.rsa2.PublicKey, alg: jwkset.AlgRS256}
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		body, fetches := jwksJSON(t, old), 0
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			fetches++
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
		})}
		fetched := func() int {
			mu.Lock()
			defer mu.Unlock()
			return fetches
		}
		a := newAuthenticator(t, auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{
			JWKSURL:            "https://idp.example/jwks.json",
			HTTPClient:         client,
			JWKSRefresh:        time.Minute,
			UnknownKIDInterval: time.Hour,
		}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		authenticate := func(key *rsa.PrivateKey, kid string) error {
			_, _, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodRS256, key, kid, claims(nil)))
			return err
		}
		if err := authenticate(k.rsa, "2024"); err != nil {
			t.Fatalf("token of the first key: %v", err)
		}

		mu.Lock()
		body = jwksJSON(t, next)
		mu.Unlock()
		time.Sleep(time.Minute + time.Second)
		synctest.Wait() // Run is back to waiting for its ticker: the refresh is done.
		if n := fetched(); n != 2 {
			t.Fatalf("after one refresh interval: %d fetches; want 2", n)
		}
		if err := authenticate(k.rsa2, "2025"); err != nil {
			t.Fatalf("token of the new key: %v", err)
		}
		if n := fetched(); n != 2 {
			t.Fatalf("the new key's kid was fetched for (%d fetches): Run had not refreshed", n)
		}
		if err := authenticate(k.rsa, "2024"); !errors.Is(err, auth.ErrInvalidCredential) {
			t.Fatalf("token of the withdrawn key: %v; want it refused", err)
		}

		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestRunWithoutJWKS(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a := newAuthenticator(t, auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{Secret: []byte(strings.Repeat("s", 32))}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Run returned before its context ended: %v", err)
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}
