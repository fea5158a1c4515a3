package httpapi_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	jobsvc "github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/ratelimit"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/wstransport"
	"github.com/jobqueue/jobqueue/internal/wstransport/wstest"
)

// accessServer wires the HTTP surface as run does, with access.
func accessServer(t testing.TB, access httpapi.Access) (*httptest.Server, *memory.Store) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st := memory.New(nil)
	events := brokertest.New(t, broker.Options{})
	ws := wstransport.New(wstransport.Options{
		InitTimeout: 5 * time.Second,
		InitFunc:    access.WebsocketInit(log),
		CheckOrigin: access.Origins.Allowed,
	})
	runtest.Start(t, ws)
	svc := jobsvc.New(st, events, jobsvc.Options{MaxPayloadBytes: maxPayloadBytes, RESTListMax: listMax})
	gql := graph.NewHandler(&graph.Resolver{Service: svc, Logger: log}, graph.ServerOptions{
		Websocket: ws, ComplexityLimit: 25000, Mutations: access.Mutations,
	})
	streams := httpapi.NewStreams()
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Deps{
		Jobs: svc, GraphQL: gql, Logger: log, Streams: streams, MaxBodyBytes: maxBodyBytes, Access: access,
	}))
	t.Cleanup(srv.Close)
	runtest.Start(t, streams)
	return srv, st
}

// tokenAccess is access with static tokens: it returns the token of an
// admin named "ci".
func tokenAccess(t testing.TB, access httpapi.Access) (httpapi.Access, string) {
	t.Helper()
	token, entry, err := auth.NewToken(rand.Reader, "ci", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(context.Background(), auth.Options{Mode: auth.Mode{Token: true}, Tokens: []auth.TokenEntry{entry}})
	if err != nil {
		t.Fatal(err)
	}
	access.Authenticator = a
	return access, token
}

type answer struct {
	status int
	header http.Header
	body   string
}

func send(t *testing.T, method, url string, header http.Header, body string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func jsonHeader(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const createBody = `{"type":"email","payload":{}}`
const createMutation = `{"query":"mutation { createJob(input: {type: \"email\"}) { id } }"}`

func jobCount(t *testing.T, st *memory.Store) int {
	t.Helper()
	s, err := st.Stats(context.Background(), store.StatsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Pending + s.Processing + s.Completed + s.Failed + s.Cancelled
}

// A POST that acts must be JSON: forms and text, which any page can send
// across sites without a preflight, are refused with 415 and do nothing.
func TestPostsMustBeJSON(t *testing.T) {
	t.Parallel()
	srv, st := accessServer(t, httpapi.Access{})
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/jsonx"} {
		for _, c := range []struct{ path, body string }{{"/jobs", createBody}, {"/query", createMutation}} {
			h := http.Header{}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
			a := send(t, http.MethodPost, srv.URL+c.path, h, c.body)
			if a.status != http.StatusUnsupportedMediaType || !json.Valid([]byte(a.body)) {
				t.Errorf("POST %s as %q: %d %s, want 415 with a JSON error", c.path, ct, a.status, a.body)
			}
		}
	}
	if n := jobCount(t, st); n != 0 {
		t.Fatalf("%d jobs created by refused requests", n)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "application/graphql-response+json"} {
		if a := send(t, http.MethodPost, srv.URL+"/jobs", http.Header{"Content-Type": {ct}}, createBody); a.status != http.StatusCreated {
			t.Errorf("POST /jobs as %q: %d %s, want 201", ct, a.status, a.body)
		}
	}
}

// With authentication off and no CORS_ALLOWED_ORIGINS, a page from another
// origin can neither call nor open a websocket; its own origin can.
func TestOtherOriginsRefusedByDefaultWithoutAuth(t *testing.T) {
	t.Parallel()
	srv, st := accessServer(t, httpapi.Access{})
	a := send(t, http.MethodPost, srv.URL+"/jobs", jsonHeader("Origin", "http://evil.example"), createBody)
	if a.status != http.StatusForbidden || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("cross-origin POST: %d %v %s, want 403 without CORS headers", a.status, a.header, a.body)
	}
	pre := send(t, http.MethodOptions, srv.URL+"/query", http.Header{"Origin": {"http://evil.example"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type"}}, "")
	if pre.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin allowed: %v", pre.header)
	}
	// The page's own origin (the playground) is always allowed.
	same := send(t, http.MethodPost, srv.URL+"/jobs", jsonHeader("Origin", srv.URL), createBody)
	if same.status != http.StatusCreated {
		t.Fatalf("same-origin POST: %d %s", same.status, same.body)
	}
	if n := jobCount(t, st); n != 1 {
		t.Fatalf("%d jobs, want only the same-origin one", n)
	}
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/query"
	_, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {"http://evil.example"}, "Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin websocket: %v %v, want a 403 handshake", err, resp)
	}
}

// Listed origins get CORS answers (the preflight allows Authorization and
// Content-Type, with a max-age) and may call; others may not.
func TestListedOrigins(t *testing.T) {
	t.Parallel()
	origins, err := httpapi.ParseOrigins("http://localhost:5173, https://app.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := accessServer(t, httpapi.Access{Origins: origins})
	pre := send(t, http.MethodOptions, srv.URL+"/query", http.Header{"Origin": {"http://localhost:5173"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization,content-type"}}, "")
	if pre.status/100 != 2 || pre.header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" ||
		!strings.Contains(strings.ToLower(pre.header.Get("Access-Control-Allow-Headers")), "authorization") || pre.header.Get("Access-Control-Max-Age") == "" {
		t.Fatalf("preflight: %d %v", pre.status, pre.header)
	}
	if pre.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatal("credentials allowed: auth is a bearer header, never a cookie")
	}
	a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader("Origin", "https://app.example.com"), createMutation)
	if a.status != http.StatusOK || a.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("listed origin: %d %v %s", a.status, a.header, a.body)
	}
	if a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader("Origin", "http://localhost:5174"), createMutation); a.status != http.StatusForbidden || !strings.Contains(a.body, `"FORBIDDEN"`) {
		t.Fatalf("unlisted origin: %d %s, want 403 FORBIDDEN", a.status, a.body)
	}
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/query"
	c, _, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {"http://localhost:5173"}, "Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	if err != nil {
		t.Fatalf("websocket from a listed origin: %v", err)
	}
	_ = c.Close()
}

func TestParseOrigins(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"localhost:5173", "ftp://x", "http://x/path", "*,http://x", "http://x?q=1", "http://u@x"} {
		if _, err := httpapi.ParseOrigins(bad); err == nil {
			t.Errorf("ParseOrigins(%q) accepted", bad)
		}
	}
	o, err := httpapi.ParseOrigins("*")
	if err != nil || !o.Any() {
		t.Fatalf("*: %v %v", o, err)
	}
	none, err := httpapi.ParseOrigins("none")
	if err != nil || none.Any() || none.String() != "" {
		t.Fatalf("none: %v %v", none, err)
	}
}

// With authentication off, a Host that is not this server's (a DNS
// rebinding page's domain) is refused; IP literals, localhost, the
// machine's name and ALLOWED_HOSTS pass; * turns the check off; /health
// always answers.
func TestHostCheckWithoutAuth(t *testing.T) {
	t.Parallel()
	hosts, err := httpapi.ParseHosts("jobs.example.com", "buildbox")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := accessServer(t, httpapi.Access{Hosts: hosts})
	for host, want := range map[string]int{
		"127.0.0.1:8080": 200, "[::1]:8080": 200, "localhost": 200, "app.localhost:8080": 200, "BuildBox:8080": 200,
		"jobs.example.com": 200, "jobs.example.com.": 200, "evil.example": 403, "attacker.com:8080": 403,
	} {
		a := send(t, http.MethodGet, srv.URL+"/jobs", http.Header{"Host": {host}}, "")
		if (a.status == http.StatusForbidden) != (want == 403) {
			t.Errorf("Host %q: %d %s, want %d", host, a.status, a.body, want)
		}
	}
	if a := send(t, http.MethodGet, srv.URL+"/health", http.Header{"Host": {"evil.example"}}, ""); a.status != http.StatusOK {
		t.Fatalf("/health with a foreign Host: %d", a.status)
	}
	anyHost, _ := httpapi.ParseHosts("*", "")
	open, _ := accessServer(t, httpapi.Access{Hosts: anyHost})
	if a := send(t, http.MethodGet, open.URL+"/jobs", http.Header{"Host": {"evil.example"}}, ""); a.status != http.StatusOK {
		t.Fatalf("ALLOWED_HOSTS=*: %d", a.status)
	}
	// With authentication on, the credential protects the server.
	access, token := tokenAccess(t, httpapi.Access{})
	authed, _ := accessServer(t, access)
	if a := send(t, http.MethodGet, authed.URL+"/jobs", http.Header{"Host": {"evil.example"}, "Authorization": {"Bearer " + token}}, ""); a.status != http.StatusOK {
		t.Fatalf("auth on, foreign Host: %d %s", a.status, a.body)
	}
}

// With authentication on, /query and /jobs need a bearer credential: 401
// with WWW-Authenticate and a JSON error otherwise; /health and the
// playground stay open.
func TestAuthenticationOverHTTP(t *testing.T) {
	t.Parallel()
	access, token := tokenAccess(t, httpapi.Access{Origins: httpapi.AnyOrigin()})
	srv, st := accessServer(t, access)
	for _, c := range []struct {
		name, header, challenge string
	}{
		{"missing", "", `Bearer realm="jobqueue"`},
		{"empty bearer", "Bearer ", `Bearer realm="jobqueue"`},
		{"wrong token", "Bearer jq_" + strings.Repeat("x", 43), `Bearer realm="jobqueue", error="invalid_token"`},
		{"wrong scheme", "Basic " + token, `Bearer realm="jobqueue", error="invalid_token"`},
	} {
		h := jsonHeader()
		if c.header != "" {
			h.Set("Authorization", c.header)
		}
		q := send(t, http.MethodPost, srv.URL+"/query", h, createMutation)
		if q.status != http.StatusUnauthorized || q.header.Get("WWW-Authenticate") != c.challenge || !strings.Contains(q.body, `"code":"UNAUTHENTICATED"`) {
			t.Errorf("%s, /query: %d %q %s", c.name, q.status, q.header.Get("WWW-Authenticate"), q.body)
		}
		r := send(t, http.MethodPost, srv.URL+"/jobs", h, createBody)
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != c.challenge || !strings.Contains(r.body, `"error"`) {
			t.Errorf("%s, /jobs: %d %q %s", c.name, r.status, r.header.Get("WWW-Authenticate"), r.body)
		}
		if strings.Contains(q.body+r.body, token) {
			t.Fatal("an answer echoes the token")
		}
	}
	// A token in the URL is never read.
	if a := send(t, http.MethodGet, srv.URL+"/jobs?access_token="+token, nil, ""); a.status != http.StatusUnauthorized {
		t.Fatalf("token in the URL: %d", a.status)
	}
	if n := jobCount(t, st); n != 0 {
		t.Fatalf("%d jobs created without a credential", n)
	}
	for _, path := range []string{"/health", "/"} {
		if a := send(t, http.MethodGet, srv.URL+path, nil, ""); a.status != http.StatusOK {
			t.Errorf("GET %s without a credential: %d", path, a.status)
		}
	}
	bearer := jsonHeader("Authorization", "Bearer "+token)
	if a := send(t, http.MethodPost, srv.URL+"/jobs", bearer, createBody); a.status != http.StatusCreated {
		t.Fatalf("POST /jobs with the token: %d %s", a.status, a.body)
	}
	if a := send(t, http.MethodPost, srv.URL+"/query", bearer, createMutation); a.status != http.StatusOK || strings.Contains(a.body, "errors") {
		t.Fatalf("createJob with the token: %d %s", a.status, a.body)
	}
	// The preflight needs no credential (browsers send none).
	pre := send(t, http.MethodOptions, srv.URL+"/query", http.Header{"Origin": {"http://app.example"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization,content-type"}}, "")
	if pre.status/100 != 2 || pre.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight with auth on: %d %v", pre.status, pre.header)
	}
}

// A websocket authenticates at connection_init, in every shape clients
// send, or at the handshake; without a credential, or with a bad one, it
// is closed with 4403 (legacy clients get connection_error first).
func TestAuthenticationOverWebsockets(t *testing.T) {
	t.Parallel()
	access, token := tokenAccess(t, httpapi.Access{})
	srv, _ := accessServer(t, access)
	httpURL := srv.URL + "/query"
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/query"
	init := func(c *wstest.Client, payload any) {
		b, _ := json.Marshal(payload)
		c.Send(wstest.Msg{Type: "connection_init", Payload: b})
	}
	for name, payload := range map[string]any{
		"Authorization":         map[string]any{"Authorization": "Bearer " + token},
		"lowercase":             map[string]any{"authorization": "Bearer " + token},
		"headers (GraphiQL)":    map[string]any{"headers": map[string]any{"Authorization": "Bearer " + token}},
		"authToken (Apollo)":    map[string]any{"authToken": token},
		"token with the scheme": map[string]any{"token": "Bearer " + token},
	} {
		c := wstest.Dial(t, httpURL, "graphql-transport-ws")
		init(c, payload)
		c.Expect("connection_ack", "")
		c.Send(wstest.Subscribe("1", `mutation { createJob(input: {type: "email"}) { id } }`, nil))
		if m := c.Expect("next", "1"); strings.Contains(string(m.Payload), "errors") {
			t.Errorf("%s: %s", name, m.Payload)
		}
	}
	for name, payload := range map[string]any{
		"none":       nil,
		"empty":      map[string]any{},
		"bad token":  map[string]any{"Authorization": "Bearer jq_nope"},
		"not string": map[string]any{"Authorization": 42},
	} {
		c := wstest.Dial(t, httpURL, "graphql-transport-ws")
		init(c, payload)
		if ce := c.Closed(); ce == nil || ce.Code != wstransport.CloseForbidden {
			t.Errorf("%s: closed with %v, want 4403", name, ce)
		}
	}
	legacy := wstest.Dial(t, httpURL, "graphql-ws")
	init(legacy, map[string]any{"Authorization": "Bearer nope"})
	if m := legacy.Expect("connection_error", ""); !strings.Contains(string(m.Payload), "invalid credential") {
		t.Fatalf("legacy connection_error: %s", m.Payload)
	}
	if ce := legacy.Closed(); ce == nil || ce.Code != wstransport.CloseForbidden {
		t.Fatalf("legacy: closed with %v, want 4403", ce)
	}
	// A non-browser client may authenticate at the handshake instead.
	conn, _, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Authorization": {"Bearer " + token}, "Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	hc := wstest.New(t, conn)
	init(hc, nil)
	hc.Expect("connection_ack", "")
	// A bad handshake credential is refused at once.
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Authorization": {"Bearer nope"}, "Sec-WebSocket-Protocol": {"graphql-transport-ws"}}); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad handshake credential: %v %v, want 401", err, resp)
	}
}

// RATE_LIMIT: each caller's mutations come from its own bucket; a GraphQL
// mutation costs one per field and is refused whole (RATE_LIMITED, 429,
// Retry-After), REST POST /jobs one (429, Retry-After).
func TestRateLimit(t *testing.T) {
	t.Parallel()
	limiter := ratelimit.New(ratelimit.Options{Rate: 0.001, Burst: 3})
	srv, st := accessServer(t, httpapi.Access{Mutations: limiter})
	two := `{"query":"mutation { a: createJob(input: {type: \"email\"}) { id } b: createJob(input: {type: \"email\"}) { id } }"}`
	if a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader(), two); a.status != http.StatusOK || strings.Contains(a.body, "errors") {
		t.Fatalf("first two: %d %s", a.status, a.body)
	}
	a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader(), two)
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, `"code":"RATE_LIMITED"`) || !strings.Contains(a.body, `"retryAfterSeconds":`) {
		t.Fatalf("over the limit: %d %v %s", a.status, a.header, a.body)
	}
	if n := jobCount(t, st); n != 2 {
		t.Fatalf("%d jobs: a refused mutation created some", n)
	}
	// Queries are not limited.
	if a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader(), `{"query":"{ stats { total } }"}`); a.status != http.StatusOK {
		t.Fatalf("query: %d %s", a.status, a.body)
	}
	if a := send(t, http.MethodPost, srv.URL+"/jobs", jsonHeader(), createBody); a.status != http.StatusCreated {
		t.Fatalf("the third: %d %s", a.status, a.body)
	}
	r := send(t, http.MethodPost, srv.URL+"/jobs", jsonHeader(), createBody)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !json.Valid([]byte(r.body)) {
		t.Fatalf("REST over the limit: %d %v %s", r.status, r.header, r.body)
	}
}

// A request refused before its body is read is answered at once, even if
// its body never arrives.
func TestRefusedBeforeTheBodyAnswersAtOnce(t *testing.T) {
	t.Parallel()
	access, _ := tokenAccess(t, httpapi.Access{})
	srv, _ := accessServer(t, access)
	open, _ := accessServer(t, httpapi.Access{})
	for name, request := range map[string]string{
		"no credential": "POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
		"not JSON":      "POST /query HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"que\r\n",
		"foreign Host":  "POST /jobs HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
	} {
		addr := srv.Listener.Addr().String()
		if name == "foreign Host" {
			addr = open.Listener.Addr().String() // no authentication: the Host is checked
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(waitBound))
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", name, err)
		}
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s: %d, want a 4xx", name, resp.StatusCode)
		}
		// The connection closes: it is not held for the body.
		_, _ = io.Copy(io.Discard, resp.Body)
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: connection not closed after the answer: %v", name, err)
		}
		_ = c.Close()
	}
}

// Upgrade headers do not skip authentication: only a websocket handshake
// (GET /query) defers it to connection_init, and anything else claiming
// an upgrade is authenticated like any request.
func TestUpgradeHeadersDoNotSkipAuthentication(t *testing.T) {
	t.Parallel()
	access, _ := tokenAccess(t, httpapi.Access{})
	srv, st := accessServer(t, access)
	upgrade := func(h http.Header) http.Header {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		return h
	}
	for _, c := range []struct {
		method, path string
		header       http.Header
		body         string
	}{
		{http.MethodGet, "/jobs", upgrade(http.Header{}), ""},
		{http.MethodPost, "/jobs", upgrade(jsonHeader()), createBody},
		{http.MethodPost, "/query", upgrade(jsonHeader("Accept", "text/event-stream")), createMutation},
		{http.MethodPost, "/query", upgrade(jsonHeader()), createMutation},
	} {
		if a := send(t, c.method, srv.URL+c.path, c.header, c.body); a.status != http.StatusUnauthorized {
			t.Errorf("%s %s with upgrade headers and no credential: %d %s, want 401", c.method, c.path, a.status, a.body)
		}
	}
	// A GET /query claiming an upgrade reaches only the websocket
	// handshake, which it fails.
	if a := send(t, http.MethodGet, srv.URL+"/query?query=%7Bstats%7Bpending%7D%7D", upgrade(http.Header{}), ""); a.status != http.StatusBadRequest || strings.Contains(a.body, "pending") {
		t.Errorf("GET /query with upgrade headers but no handshake: %d %s, want 400", a.status, a.body)
	}
	if n := jobCount(t, st); n != 0 {
		t.Fatalf("%d jobs created without a credential", n)
	}
}

// An empty credential in connection_init counts as none: the handshake's
// header then authenticates.
func TestEmptyInitCredentialFallsBackToTheHandshake(t *testing.T) {
	t.Parallel()
	access, token := tokenAccess(t, httpapi.Access{})
	srv, _ := accessServer(t, access)
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/query", http.Header{"Authorization": {"Bearer " + token}, "Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	c := wstest.New(t, conn)
	c.Send(wstest.Msg{Type: "connection_init", Payload: json.RawMessage(`{"Authorization": ""}`)})
	c.Expect("connection_ack", "")
}

// A mutation with more fields than the burst can never pass: 400, no
// Retry-After, so that clients do not retry it forever.
func TestMutationOverTheBurst(t *testing.T) {
	t.Parallel()
	srv, st := accessServer(t, httpapi.Access{Mutations: ratelimit.New(ratelimit.Options{Rate: 1, Burst: 1})})
	two := `{"query":"mutation { a: createJob(input: {type: \"email\"}) { id } b: createJob(input: {type: \"email\"}) { id } }"}`
	a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader(), two)
	if a.status != http.StatusBadRequest || a.header.Get("Retry-After") != "" || !strings.Contains(a.body, `"code":"RATE_LIMITED"`) || strings.Contains(a.body, "retryAfterSeconds") {
		t.Fatalf("%d %v %s", a.status, a.header, a.body)
	}
	if n := jobCount(t, st); n != 0 {
		t.Fatalf("%d jobs created", n)
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"192.0.2.1:5000":              "ip:192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:5000": "ip6:2001:db8:1:2::",
		"[2001:db8:1:2:ff::1]:1":      "ip6:2001:db8:1:2::",
		"[2001:db8:1:3::1]:1":         "ip6:2001:db8:1:3::",
	} {
		if got := httpapi.ClientKey(addr); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", addr, got, want)
		}
	}
}

// createJobs takes one token per input, written in the document or sent
// as a variable, so a list cannot create more jobs than the limit allows.
func TestRateLimitCountsCreateJobsInputs(t *testing.T) {
	t.Parallel()
	srv, st := accessServer(t, httpapi.Access{Mutations: ratelimit.New(ratelimit.Options{Rate: 0.001, Burst: 3})})
	literal := `{"query":"mutation { createJobs(inputs: [{type: \"a\"}, {type: \"b\"}]) { id } }"}`
	if a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader(), literal); a.status != http.StatusOK || strings.Contains(a.body, "errors") {
		t.Fatalf("two inputs: %d %s", a.status, a.body)
	}
	variable := `{"query":"mutation($in: [CreateJobInput!]!) { createJobs(inputs: $in) { id } }","variables":{"in":[{"type":"a"},{"type":"b"}]}}`
	if a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader(), variable); a.status != http.StatusTooManyRequests || !strings.Contains(a.body, "RATE_LIMITED") {
		t.Fatalf("two more with one token left: %d %s, want 429", a.status, a.body)
	}
	four := `{"query":"mutation($in: [CreateJobInput!]!) { createJobs(inputs: $in) { id } }","variables":{"in":[{"type":"a"},{"type":"b"},{"type":"c"},{"type":"d"}]}}`
	if a := send(t, http.MethodPost, srv.URL+"/query", jsonHeader(), four); a.status != http.StatusBadRequest || !strings.Contains(a.body, "RATE_LIMITED") {
		t.Fatalf("four inputs over a burst of 3: %d %s, want 400", a.status, a.body)
	}
	if n := jobCount(t, st); n != 2 {
		t.Fatalf("%d jobs, want the first call's 2", n)
	}
}
