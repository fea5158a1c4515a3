package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/cors"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/ratelimit"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// Access says who may call the API, and from which web pages.
//
// The checks run in this order, each before any work: the Host (DNS
// rebinding, only when authentication is off), CORS and the request's
// Origin, the content type of a POST (CSRF), then the credential. /health
// passes them all.
type Access struct {
	// Authenticator checks the bearer credential of /query and /jobs
	// requests. nil, or a mode that accepts nothing: no authentication
	// (every request acts with no identity).
	Authenticator *auth.Authenticator
	// Origins are the web origins whose pages may call the API.
	Origins Origins
	// Hosts are the Host values accepted when authentication is off (a
	// page on an attacker's domain resolving to this server's address
	// must not reach it). The zero Hosts accepts IP literals, localhost
	// and the machine's host name only.
	Hosts Hosts
	// Mutations limits the mutations per identity, or per client address
	// when there is none: nil, no limit. The HTTP surface charges POST
	// /jobs to it; the GraphQL handler charges mutations itself, with the
	// key set here (ratelimit.WithKey).
	Mutations *ratelimit.Limiter
}

func (a Access) authenticating() bool {
	return a.Authenticator != nil && a.Authenticator.Mode().Enabled()
}

// Origins are the web origins allowed to call the API across origins: a
// list, or any. A request from the page's own origin (its Origin names the
// Host it is sent to) and a request with no Origin (not from a browser
// page, or a same-origin navigation) are always allowed.
type Origins struct {
	any  bool
	list []string // lowercased, no trailing slash
}

// AnyOrigin allows every origin.
func AnyOrigin() Origins { return Origins{any: true} }

// ParseOrigins reads CORS_ALLOWED_ORIGINS: "*", "none", or a
// comma-separated list of origins (scheme://host[:port], as browsers send
// them; "null" for sandboxed pages). An empty value or "none" allows no
// other origin.
func ParseOrigins(s string) (Origins, error) {
	var o Origins
	if strings.TrimSpace(s) == "none" {
		return o, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
			continue
		case part == "*":
			o.any = true
			continue
		case part == "null":
			o.list = append(o.list, part)
			continue
		}
		u, err := url.Parse(part)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return Origins{}, fmt.Errorf("%q is not an origin: want scheme://host[:port], like http://localhost:5173", part)
		}
		o.list = append(o.list, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	if o.any && len(o.list) > 0 {
		return Origins{}, errors.New(`"*" allows every origin: list no other`)
	}
	return o, nil
}

// Any reports whether every origin is allowed.
func (o Origins) Any() bool { return o.any }

// String lists the origins as ParseOrigins reads them.
func (o Origins) String() string {
	if o.any {
		return "*"
	}
	return strings.Join(o.list, ",")
}

// Allowed reports whether r may be served given its Origin.
func (o Origins) Allowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o.any {
		return true
	}
	if u, err := url.Parse(origin); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return o.listed(origin)
}

func (o Origins) listed(origin string) bool {
	origin = strings.ToLower(strings.TrimSuffix(origin, "/"))
	for _, allowed := range o.list {
		if origin == allowed {
			return true
		}
	}
	return false
}

// Hosts are the Host header values accepted when authentication is off.
type Hosts struct {
	any      bool
	list     []string // lowercased names, no port
	hostname string   // the machine's, lowercased
}

// ParseHosts reads ALLOWED_HOSTS: "*" (no check: behind a proxy that
// sets its own Host), or a comma-separated list of host names accepted
// besides IP literals, localhost and hostname (the machine's name).
func ParseHosts(s, hostname string) (Hosts, error) {
	h := Hosts{hostname: strings.ToLower(hostname)}
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		switch {
		case part == "":
		case part == "*":
			h.any = true
		case strings.ContainsAny(part, "/:@ "):
			return Hosts{}, fmt.Errorf("%q is not a host name (no scheme, port or path: jobs.example.com)", part)
		default:
			h.list = append(h.list, strings.TrimSuffix(part, "."))
		}
	}
	return h, nil
}

// Allowed reports whether host (a Host header, maybe with a port) names
// this server.
func (h Hosts) Allowed(host string) bool {
	if h.any {
		return true
	}
	name := host
	if n, _, err := net.SplitHostPort(host); err == nil {
		name = n
	}
	name = strings.TrimSuffix(strings.ToLower(strings.Trim(name, "[]")), ".")
	if name == "" {
		return false
	}
	if net.ParseIP(name) != nil || name == "localhost" || strings.HasSuffix(name, ".localhost") || (h.hostname != "" && name == h.hostname) {
		return true
	}
	for _, allowed := range h.list {
		if name == allowed {
			return true
		}
	}
	return false
}

// corsMaxAge is how long browsers may cache a preflight's answer (Chrome
// caps it at two hours).
const corsMaxAge = 2 * time.Hour

// guard runs the access checks before next (see Access).
func (a Access) guard(log *slog.Logger, m *metrics.Metrics, next http.Handler) http.Handler {
	refuse := func(w http.ResponseWriter, r *http.Request, reason string, status int, code, msg string) {
		m.Refused(reason)
		log.WarnContext(r.Context(), "http request refused", "status", status, "reason", msg, "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr)
		writeProblem(w, r, status, code, msg)
	}
	checked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Origins.Allowed(r) {
			refuse(w, r, metrics.RefusedOrigin, http.StatusForbidden, "FORBIDDEN", "requests from origin "+strconv.Quote(truncateString(r.Header.Get("Origin"), 100))+" are not allowed (CORS_ALLOWED_ORIGINS)")
			return
		}
		if r.Method == http.MethodPost && !jsonContent(r.Header.Get("Content-Type")) {
			refuse(w, r, metrics.RefusedContentType, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "a POST must have Content-Type: application/json")
			return
		}
		a.authenticate(log, m, next).ServeHTTP(w, r)
	})
	// With no origin listed rs/cors would allow any: a function decides.
	origins := cors.Options{AllowedOrigins: []string{"*"}}
	if !a.Origins.any {
		origins = cors.Options{AllowOriginFunc: a.Origins.listed}
	}
	c := cors.New(cors.Options{
		AllowedOrigins:  origins.AllowedOrigins,
		AllowOriginFunc: origins.AllowOriginFunc,
		AllowedMethods:  []string{http.MethodGet, http.MethodPost},
		AllowedHeaders:  []string{"Authorization", "Content-Type", "Accept"},
		ExposedHeaders:  []string{"Retry-After", "WWW-Authenticate"},
		MaxAge:          int(corsMaxAge / time.Second),
	})
	withCORS := c.Handler(checked)
	authOff := !a.authenticating()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" || r.URL.Path == "/ready" {
			next.ServeHTTP(w, r)
			return
		}
		if authOff && !a.Hosts.Allowed(r.Host) {
			refuse(w, r, metrics.RefusedHost, http.StatusForbidden, "FORBIDDEN", "host "+strconv.Quote(truncateString(r.Host, 100))+" is not allowed (ALLOWED_HOSTS)")
			return
		}
		withCORS.ServeHTTP(w, r)
	})
}

// jsonContent reports whether a POST's Content-Type is one a browser page
// can send only after a CORS preflight: JSON. Form and text bodies, which
// any page can post across sites, are refused.
func jsonContent(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || mt == "application/graphql-response+json")
}

// authenticate puts the caller's identity in the context of /query and
// /jobs requests (401 when the credential is missing or refused), and the
// key its mutations are limited by. A websocket upgrade without an
// Authorization header passes: its connection_init carries the
// credential.
func (a Access) authenticate(log *slog.Logger, m *metrics.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		protected := r.URL.Path == "/query" || r.URL.Path == "/jobs" || r.URL.Path == "/metrics"
		if !a.authenticating() || !protected {
			next.ServeHTTP(w, r.WithContext(ratelimit.WithKey(ctx, ClientKey(r.RemoteAddr))))
			return
		}
		header := r.Header.Get("Authorization")
		if header == "" && r.Method == http.MethodGet && r.URL.Path == "/query" && wstransport.IsUpgrade(r) {
			// Only the websocket transport serves a GET with these headers
			// (a handshake it cannot complete gets 400), and it
			// authenticates at connection_init.
			next.ServeHTTP(w, r.WithContext(ratelimit.WithKey(ctx, ClientKey(r.RemoteAddr))))
			return
		}
		id, expires, err := a.Authenticator.Authenticate(ctx, header)
		if err != nil {
			m.Refused(metrics.RefusedUnauthenticated)
			log.WarnContext(ctx, "http request refused", "status", http.StatusUnauthorized, "reason", err.Error(), "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr)
			challenge := `Bearer realm="jobqueue"`
			if !errors.Is(err, auth.ErrMissingCredential) {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			writeProblem(w, r, http.StatusUnauthorized, "UNAUTHENTICATED", unauthenticatedMessage(err))
			return
		}
		ctx = ratelimit.WithKey(auth.WithIdentity(ctx, id), IdentityKey(id))
		switch {
		case expires.IsZero():
		case wstransport.IsUpgrade(r):
			// A websocket closes (4403) when its credential expires.
			ctx = wstransport.WithExpiry(ctx, expires)
		default:
			// A stream (SSE) ends when its credential does.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, expires)
			defer cancel()
		}
		log.DebugContext(ctx, "http request", "method", r.Method, "path", r.URL.Path, "identity", id.Name, "role", id.Role, "client", r.RemoteAddr)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// unauthenticatedMessage is what a refused caller is told: whether a
// credential was missing or refused, never why a given token failed
// (that is logged).
func unauthenticatedMessage(err error) string {
	if errors.Is(err, auth.ErrMissingCredential) {
		return "authentication required: send Authorization: Bearer <token>"
	}
	return "invalid credential"
}

// ClientKey is the rate-limit key of a caller with no identity: its IPv4
// address, or the /64 of its IPv6 address (one host's share: whoever holds
// a /64 could otherwise take a fresh bucket per address). Behind a proxy
// every client shares the proxy's key: forwarded-for headers are not
// trusted.
func ClientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return "ip6:" + ip.Mask(net.CIDRMask(64, 128)).String()
	}
	return "ip:" + host
}

// IdentityKey is the rate-limit key of an identity.
func IdentityKey(id auth.Identity) string { return "id:" + id.Name }

// writeProblem answers a refused request with a JSON error: GraphQL's
// shape on /query (with extensions.code when code is set), the REST
// shape elsewhere.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if r.Body != nil && r.Body != http.NoBody {
		// The body is left unread: net/http would otherwise wait for it
		// (maybe forever) before it answers. The connection closes.
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now()) // not supported by test recorders
	}
	if r.URL.Path != "/query" {
		writeError(w, status, msg)
		return
	}
	e := map[string]any{"message": msg}
	if code != "" {
		e["extensions"] = map[string]any{"code": code}
	}
	writeJSON(w, status, map[string]any{"errors": []any{e}})
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// WebsocketInit authenticates a websocket connection from its
// connection_init payload (wstransport.Options.InitFunc): the credential
// as graphql-ws clients send it, {"Authorization": "Bearer …"}, or in the
// shapes other clients use ({"headers": {"Authorization": …}} from
// GraphiQL and Apollo Sandbox; {"authToken": …}, {"token": …} or
// {"accessToken": …} with or without "Bearer "). With none, the
// handshake's own Authorization header counts (non-browser clients). A
// connection refused is closed with 4403; one accepted closes with 4403
// when its JWT expires. nil when authentication is off.
func (a Access) WebsocketInit(log *slog.Logger) func(ctx context.Context, payload map[string]any) (context.Context, error) {
	if !a.authenticating() {
		return nil
	}
	return func(ctx context.Context, payload map[string]any) (context.Context, error) {
		header, found := credentialFrom(payload)
		if !found {
			if _, ok := auth.IdentityFrom(ctx); ok {
				return ctx, nil // authenticated at the handshake
			}
		}
		id, expires, err := a.Authenticator.Authenticate(ctx, header)
		if err != nil {
			log.WarnContext(ctx, "websocket refused", "code", wstransport.CloseForbidden, "reason", err.Error())
			return nil, errors.New(unauthenticatedMessage(err))
		}
		// The expiry is this credential's (zero: none), not the handshake's.
		ctx = wstransport.WithExpiry(ratelimit.WithKey(auth.WithIdentity(ctx, id), IdentityKey(id)), expires)
		log.DebugContext(ctx, "websocket authenticated", "identity", id.Name, "role", id.Role)
		return ctx, nil
	}
}

// credentialFrom finds the Authorization value in a connection_init
// payload (see WebsocketInit); keys match in any case. An empty value
// counts as none: clients send one before they have a token.
func credentialFrom(payload map[string]any) (string, bool) {
	var bare string
	for k, v := range payload {
		s, isString := v.(string)
		switch strings.ToLower(k) {
		case "authorization":
			if isString && s != "" {
				return s, true
			}
		case "headers":
			if h, ok := v.(map[string]any); ok {
				for hk, hv := range h {
					if s, ok := hv.(string); ok && s != "" && strings.EqualFold(hk, "authorization") {
						return s, true
					}
				}
			}
		case "authtoken", "token", "accesstoken", "access_token":
			if isString && s != "" {
				bare = s
			}
		}
	}
	if bare == "" {
		return "", false
	}
	if len(bare) > 7 && strings.EqualFold(bare[:7], "bearer ") {
		return bare, true
	}
	return "Bearer " + bare, true
}
