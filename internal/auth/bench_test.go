package auth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/jobqueue/jobqueue/internal/auth"
)

// BenchmarkAuthenticate measures what one request pays to be
// authenticated, per kind of credential.
func BenchmarkAuthenticate(b *testing.B) {
	k := testKeys()
	var entries []auth.TokenEntry
	var token string
	for i := range 10 {
		tok, e, err := auth.NewToken(strings.NewReader(strings.Repeat(fmt.Sprint(i), 32)), fmt.Sprintf("t%d", i), auth.RoleUser)
		if err != nil {
			b.Fatal(err)
		}
		entries, token = append(entries, e), tok
	}
	secret := []byte(strings.Repeat("s", 32))
	srv := newJWKSServer(b,
		publicKey{kid: "rsa", key: &k.rsa.PublicKey, alg: jwkset.AlgRS256},
		publicKey{kid: "ec", key: &k.ec.PublicKey, alg: jwkset.AlgES256},
		publicKey{kid: "ed", key: k.ed.Public()},
	)
	jwks, err := auth.New(context.Background(), auth.Options{Mode: auth.Mode{JWT: true}, JWT: srv.options(nil)})
	if err != nil {
		b.Fatal(err)
	}
	hs, err := auth.New(context.Background(), auth.Options{Mode: auth.Mode{JWT: true}, JWT: auth.JWTOptions{Secret: secret}})
	if err != nil {
		b.Fatal(err)
	}
	tokens, err := auth.New(context.Background(), auth.Options{Mode: auth.Mode{Token: true}, Tokens: entries})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		a      *auth.Authenticator
		header string
	}{
		{"static token of 10", tokens, "Bearer " + token},
		{"jwt HS256", hs, "Bearer " + sign(b, jwt.SigningMethodHS256, secret, "", claims(nil))},
		{"jwt RS256", jwks, "Bearer " + sign(b, jwt.SigningMethodRS256, k.rsa, "rsa", claims(nil))},
		{"jwt ES256", jwks, "Bearer " + sign(b, jwt.SigningMethodES256, k.ec, "ec", claims(nil))},
		{"jwt EdDSA", jwks, "Bearer " + sign(b, jwt.SigningMethodEdDSA, k.ed, "ed", claims(nil))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := bc.a.Authenticate(context.Background(), bc.header); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
