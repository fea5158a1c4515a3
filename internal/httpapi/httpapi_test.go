package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	jobsvc "github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/simulate"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/jobwatch"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/worker"
	"github.com/jobqueue/jobqueue/internal/wstransport"
	"github.com/jobqueue/jobqueue/internal/wstransport/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitBound bounds every wait for something that should happen promptly.
const waitBound = 10 * time.Second

const (
	maxBodyBytes    = 1024
	maxPayloadBytes = 200
	listMax         = 3
)

type bundle struct {
	store  *memory.Store
	watch  *jobwatch.Watcher // every change the store published
	broker *broker.Broker
	srv    *httptest.Server
	// closeWebsockets and endStreams stop the websocket transport and the
	// SSE streams: shutdown's way of ending them. Each returns its Run's
	// error once Run has returned.
	closeWebsockets func() error
	endStreams      func() error
}

// setup wires the whole HTTP surface the way cmd/server/run.go does, over
// a memory store, a broker and a one-worker pool running the simulated
// handler (started only when startPool).
func setup(t *testing.T, startPool bool) *bundle {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	events := brokertest.New(t, broker.Options{})
	inbox := worker.NewInbox()
	watch := jobwatch.New()
	jobs := memory.New(store.Publishers{events, inbox, watch})
	if startPool {
		runtest.Start(t, worker.New(jobs, inbox, worker.Options{Workers: 1, Default: simulate.Handler{}, Logger: log}))
	}
	ws := wstransport.New(wstransport.Options{
		KeepAlive:        10 * time.Second,
		InitTimeout:      5 * time.Second,
		ReadLimit:        64 << 10,
		MaxSubscriptions: 100,
	})
	closeWebsockets := runtest.Start(t, ws)
	// One service behind both APIs, as run wires it.
	svc := jobsvc.New(jobs, events, jobsvc.Options{MaxPayloadBytes: maxPayloadBytes, RESTListMax: listMax})
	gql := graph.NewHandler(&graph.Resolver{
		Service: svc,
		Logger:  log,
	}, graph.ServerOptions{
		Websocket:       ws,
		ComplexityLimit: 25000,
	})
	streams := httpapi.NewStreams()
	srv := httptest.NewServer(withTestIdentity(httpapi.NewHandler(httpapi.Deps{
		Jobs:         svc,
		GraphQL:      gql,
		Logger:       log,
		Streams:      streams,
		MaxBodyBytes: maxBodyBytes,
	})))
	t.Cleanup(srv.Close)
	// Stopped before the server closes (cleanups run last first): its SSE
	// requests end first.
	endStreams := runtest.Start(t, streams)
	return &bundle{store: jobs, watch: watch, broker: events, srv: srv, closeWebsockets: closeWebsockets, endStreams: endStreams}
}

// jobJSON is a job as the REST API shows it.
type jobJSON struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Payload    json.RawMessage `json:"payload"`
	Status     string          `json:"status"`
	Attempts   int             `json:"attempts"`
	Error      *string         `json:"error"`
	CreatedAt  *time.Time      `json:"createdAt"`
	UpdatedAt  *time.Time      `json:"updatedAt"`
	StartedAt  *time.Time      `json:"startedAt"`
	FinishedAt *time.Time      `json:"finishedAt"`
	Version    int             `json:"version"`
	Tags       []string        `json:"tags"`
}

type response struct {
	status      int
	contentType string
	body        []byte
}

func (r response) String() string { return string(r.body) }

// do sends a request with a deadline and reads the whole response.
func (b *bundle) do(t *testing.T, method, path string, body io.Reader, contentLength int64, header http.Header) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.ContentLength = contentLength
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: data}
}

func (b *bundle) get(t *testing.T, path string) response {
	t.Helper()
	return b.do(t, http.MethodGet, path, nil, 0, nil)
}

func (b *bundle) postJSON(t *testing.T, path, body string) response {
	t.Helper()
	return b.do(t, http.MethodPost, path, strings.NewReader(body), int64(len(body)), http.Header{"Content-Type": {"application/json"}})
}

// wantJSONError checks a JSON error response {"error": "..."} with the
// status and a message containing msg.
func wantJSONError(t *testing.T, what string, r response, status int, msg string) {
	t.Helper()
	if r.status != status || r.contentType != "application/json" {
		t.Fatalf("%s: %d %q %s, want %d application/json", what, r.status, r.contentType, r, status)
	}
	var e map[string]string
	if err := json.Unmarshal(r.body, &e); err != nil || len(e) != 1 || e["error"] == "" {
		t.Fatalf("%s: body %s (%v), want {\"error\": ...}", what, r, err)
	}
	if !strings.Contains(e["error"], msg) {
		t.Fatalf("%s: error %q, want it to mention %q", what, e["error"], msg)
	}
}

func (b *bundle) createJob(t *testing.T, body string) jobJSON {
	t.Helper()
	r := b.postJSON(t, "/jobs", body)
	if r.status != http.StatusCreated || r.contentType != "application/json" {
		t.Fatalf("POST /jobs %s: %d %q %s, want 201 application/json", body, r.status, r.contentType, r)
	}
	var j jobJSON
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatalf("POST /jobs: %v in %s", err, r)
	}
	return j
}

func (b *bundle) listJobs(t *testing.T, query string) []jobJSON {
	t.Helper()
	r := b.get(t, "/jobs"+query)
	if r.status != http.StatusOK || r.contentType != "application/json" {
		t.Fatalf("GET /jobs%s: %d %q %s, want 200 application/json", query, r.status, r.contentType, r)
	}
	var jobs []jobJSON
	if err := json.Unmarshal(r.body, &jobs); err != nil || jobs == nil {
		t.Fatalf("GET /jobs%s: %s (%v), want a JSON array", query, r, err)
	}
	return jobs
}

func jobIDs(jobs []jobJSON) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func TestHealth(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	r := b.get(t, "/health")
	if r.status != http.StatusOK || r.contentType != "application/json" {
		t.Fatalf("GET /health: %d %q", r.status, r.contentType)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil || !reflect.DeepEqual(body, map[string]any{"status": "ok"}) {
		t.Fatalf("GET /health body %s (%v), want {\"status\":\"ok\"}", r, err)
	}
}

func TestCreateAndListJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	j := b.createJob(t, `{"type":"email","payload":{"to":"user@example.com"}}`)
	if j.ID == "" || j.Type != "email" || j.Status != "pending" || j.Version != 1 || j.Attempts != 0 {
		t.Fatalf("created %+v, want a pending email job at version 1", j)
	}
	if string(j.Payload) != `{"to":"user@example.com"}` {
		t.Fatalf("payload %s, want it echoed", j.Payload)
	}
	if j.CreatedAt == nil || j.UpdatedAt == nil || !j.CreatedAt.Equal(*j.UpdatedAt) || j.StartedAt != nil || j.FinishedAt != nil || j.Error != nil {
		t.Fatalf("created %+v: want createdAt == updatedAt, no startedAt/finishedAt/error", j)
	}
	// The raw response uses exactly the REST field names, nulls included.
	r := b.get(t, "/jobs")
	var raw []map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil || len(raw) != 1 {
		t.Fatalf("GET /jobs: %s (%v)", r, err)
	}
	for _, k := range []string{"id", "type", "payload", "status", "attempts", "error", "createdAt", "updatedAt", "startedAt", "finishedAt", "version"} {
		if _, ok := raw[0][k]; !ok {
			t.Fatalf("job JSON %v lacks %q", raw[0], k)
		}
	}
	if got := b.listJobs(t, ""); len(got) != 1 || !reflect.DeepEqual(got[0], j) {
		t.Fatalf("GET /jobs = %+v, want [%+v]", got, j)
	}

	// Whitespace in the payload is compacted; a null payload is none.
	spaced := b.createJob(t, `{"type":"sms", "payload": { "a" : [1, 2] }}`)
	if string(spaced.Payload) != `{"a":[1,2]}` {
		t.Fatalf("payload %s, want compact JSON", spaced.Payload)
	}
	// The size limit applies to the compacted payload.
	padded := b.createJob(t, `{"type":"sms","payload":{"a":`+strings.Repeat(" ", maxPayloadBytes)+`1}}`)
	if string(padded.Payload) != `{"a":1}` {
		t.Fatalf("payload %s, want {\"a\":1}", padded.Payload)
	}
	null := b.createJob(t, `{"type":"sms","payload":null}`)
	none := b.createJob(t, `{"type":"email"}`)
	for _, x := range []jobJSON{null, none} {
		if string(x.Payload) != "null" {
			t.Fatalf("job without payload shows payload %s, want null", x.Payload)
		}
	}

	want := []string{none.ID, null.ID, padded.ID, spaced.ID, j.ID} // newest first
	if got := jobIDs(b.listJobs(t, "")); !reflect.DeepEqual(got, want[:listMax]) {
		t.Fatalf("GET /jobs = %v, want the newest %d of %v", got, listMax, want)
	}
	if got := jobIDs(b.listJobs(t, "?limit=1")); !reflect.DeepEqual(got, want[:1]) {
		t.Fatalf("?limit=1 = %v, want %v", got, want[:1])
	}
	if got := jobIDs(b.listJobs(t, "?limit=2")); !reflect.DeepEqual(got, want[:2]) {
		t.Fatalf("?limit=2 = %v, want %v", got, want[:2])
	}
	if got := jobIDs(b.listJobs(t, "?limit=1000")); !reflect.DeepEqual(got, want[:listMax]) {
		t.Fatalf("?limit=1000 = %v, want it capped at %d: %v", got, listMax, want[:listMax])
	}
	if got := jobIDs(b.listJobs(t, "?type=email")); !reflect.DeepEqual(got, []string{none.ID, j.ID}) {
		t.Fatalf("?type=email = %v", got)
	}
	if got := jobIDs(b.listJobs(t, "?status=pending&type=sms")); !reflect.DeepEqual(got, []string{null.ID, padded.ID, spaced.ID}) {
		t.Fatalf("?status=pending&type=sms = %v", got)
	}
	if got := b.listJobs(t, "?status=completed"); len(got) != 0 {
		t.Fatalf("?status=completed = %v, want []", jobIDs(got))
	}
	if got := b.listJobs(t, "?type=nope"); len(got) != 0 {
		t.Fatalf("?type=nope = %v, want []", jobIDs(got))
	}

	for _, q := range []string{"?limit=abc", "?limit=0", "?limit=-1", "?limit=1.5"} {
		wantJSONError(t, "GET /jobs"+q, b.get(t, "/jobs"+q), http.StatusBadRequest, "limit")
	}
	for _, q := range []string{"?status=bogus", "?status=done"} {
		wantJSONError(t, "GET /jobs"+q, b.get(t, "/jobs"+q), http.StatusBadRequest, "status")
	}

	// The REST job is the GraphQL job.
	q := b.postJSON(t, "/query", `{"query":"query($id: ID!) { job(id: $id) { id type status version payload } }","variables":{"id":"`+j.ID+`"}}`)
	var gql struct {
		Data struct {
			Job map[string]any `json:"job"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(q.body, &gql); err != nil || q.status != http.StatusOK || gql.Errors != nil {
		t.Fatalf("POST /query: %d %s (%v)", q.status, q, err)
	}
	wantJob := map[string]any{"id": j.ID, "type": "email", "status": "PENDING", "version": 1.0, "payload": map[string]any{"to": "user@example.com"}}
	if !reflect.DeepEqual(gql.Data.Job, wantJob) {
		t.Fatalf("GraphQL job %v, want %v", gql.Data.Job, wantJob)
	}
}

// POST /jobs takes tags (sorted, duplicates collapsed, the service's
// rules as 400s); a job shows "tags" only when it has some; GET /jobs?tag=
// lists the jobs carrying the tag.
func TestTags(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	red := b.createJob(t, `{"type":"email","tags":["urgent","red","urgent"]}`)
	if want := []string{"red", "urgent"}; !reflect.DeepEqual(red.Tags, want) {
		t.Fatalf("created tags %q, want %q", red.Tags, want)
	}
	plain := b.postJSON(t, "/jobs", `{"type":"email","tags":[]}`)
	var raw map[string]any
	if err := json.Unmarshal(plain.body, &raw); err != nil || plain.status != http.StatusCreated {
		t.Fatalf("POST /jobs with no tags: %d %s (%v)", plain.status, plain, err)
	}
	if _, ok := raw["tags"]; ok {
		t.Fatalf("a job without tags shows them: %s", plain)
	}
	blue := b.createJob(t, `{"type":"sms","tags":["blue"]}`)
	if got := jobIDs(b.listJobs(t, "?tag=red")); !reflect.DeepEqual(got, []string{red.ID}) {
		t.Fatalf("?tag=red = %v, want [%s]", got, red.ID)
	}
	if got := jobIDs(b.listJobs(t, "?tag=blue&type=sms&status=pending")); !reflect.DeepEqual(got, []string{blue.ID}) {
		t.Fatalf("?tag=blue&type=sms&status=pending = %v, want [%s]", got, blue.ID)
	}
	for _, q := range []string{"?tag=blue&type=email", "?tag=green", "?tag=bad%20tag"} {
		if got := b.listJobs(t, q); len(got) != 0 {
			t.Fatalf("%s = %v, want []", q, jobIDs(got))
		}
	}
	for _, tc := range []struct{ name, body, msg string }{
		{"11 tags", `{"type":"a","tags":["a","b","c","d","e","f","g","h","i","j","k"]}`, "tags: must be at most 10"},
		{"bad tag", `{"type":"a","tags":["ok","bad tag"]}`, "tags[1]: may contain only"},
		{"tags not a list", `{"type":"a","tags":"red"}`, "JSON"},
		{"null tag", `{"type":"a","tags":[null]}`, "tags[0]: must not be empty"},
	} {
		wantJSONError(t, tc.name, b.postJSON(t, "/jobs", tc.body), http.StatusBadRequest, tc.msg)
	}
}

func TestCreateJobErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	for _, tc := range []struct {
		name, body, msg string
	}{
		{"bad JSON", `{"type":`, "JSON"},
		{"not an object", `[1,2]`, "JSON"},
		{"empty body", ``, "JSON"},
		{"missing type", `{"payload":{"a":1}}`, "type"},
		{"null type", `{"type":null}`, "type"},
		{"empty type", `{"type":""}`, "type"},
		{"type with a space", `{"type":"bad type"}`, "type"},
		{"type too long", `{"type":"` + strings.Repeat("x", 129) + `"}`, "type"},
		{"type not a string", `{"type":5}`, "JSON"},
		{"two JSON values", `{"type":"a"}{"type":"b"}`, "JSON"},
		{"trailing garbage", `{"type":"a"} x`, "JSON"},
		{"payload too large", `{"type":"a","payload":"` + strings.Repeat("x", maxPayloadBytes) + `"}`, "payload"},
	} {
		wantJSONError(t, tc.name, b.postJSON(t, "/jobs", tc.body), http.StatusBadRequest, tc.msg)
	}
	if got := b.listJobs(t, ""); len(got) != 0 {
		t.Fatalf("invalid requests created jobs %v", jobIDs(got))
	}
	// A payload exactly at the limit is accepted.
	fits := `"` + strings.Repeat("x", maxPayloadBytes-2) + `"`
	if j := b.createJob(t, `{"type":"a","payload":`+fits+`}`); string(j.Payload) != fits {
		t.Fatalf("payload of %d bytes came back as %s", maxPayloadBytes, j.Payload)
	}
}

// chunked is a body reader whose length the client cannot know, so it is
// sent with Transfer-Encoding: chunked.
func chunked(s string) io.Reader {
	return io.MultiReader(strings.NewReader(s[:len(s)/2]), strings.NewReader(s[len(s)/2:]))
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	tooBig := map[string]string{
		"/jobs":  `{"type":"a","payload":"` + strings.Repeat("x", maxBodyBytes) + `"}`,
		"/query": `{"query":"{ jobs { totalCount } }","variables":{"pad":"` + strings.Repeat("x", maxBodyBytes) + `"}}`,
	}
	for path, body := range tooBig {
		r := b.do(t, http.MethodPost, path, strings.NewReader(body), int64(len(body)), jsonHeader)
		wantJSONError(t, path+" with Content-Length", r, http.StatusRequestEntityTooLarge, "limit")
		r = b.do(t, http.MethodPost, path, chunked(body), -1, jsonHeader)
		wantJSONError(t, path+" chunked", r, http.StatusRequestEntityTooLarge, "limit")
	}
	// A body of exactly the limit gets through, chunked or not.
	if got := b.listJobs(t, ""); len(got) != 0 {
		t.Fatalf("oversized requests created jobs %v", jobIDs(got))
	}
	exact := `{"type":"exact"}` + strings.Repeat(" ", maxBodyBytes-len(`{"type":"exact"}`))
	for _, body := range []io.Reader{strings.NewReader(exact), chunked(exact)} {
		length := int64(len(exact))
		if _, ok := body.(*strings.Reader); !ok {
			length = -1
		}
		r := b.do(t, http.MethodPost, "/jobs", body, length, jsonHeader)
		if r.status != http.StatusCreated {
			t.Fatalf("POST /jobs of exactly %d bytes (length %d): %d %s, want 201", maxBodyBytes, length, r.status, r)
		}
	}
	query := `{"query":"{ jobs { totalCount } }"}`
	r := b.do(t, http.MethodPost, "/query", chunked(query), -1, jsonHeader)
	if r.status != http.StatusOK || !strings.Contains(r.String(), `"totalCount":2`) {
		t.Fatalf("chunked POST /query: %d %s, want 200 with totalCount 2", r.status, r)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	for _, path := range []string{"/nope", "/jobs/123", "/health/x"} {
		wantJSONError(t, "GET "+path, b.get(t, path), http.StatusNotFound, path)
	}
	r := b.get(t, "/")
	if r.status != http.StatusOK || !strings.HasPrefix(r.contentType, "text/html") || !strings.Contains(strings.ToLower(r.String()), "graphiql") {
		t.Fatalf("GET /: %d %q, want 200 HTML with GraphiQL", r.status, r.contentType)
	}
	if !strings.Contains(r.String(), "/query") {
		t.Fatal("the playground does not point at /query")
	}
	// The dashboard, also at its deep links; /ui redirects to it.
	for _, path := range []string{"/ui", "/ui/", "/ui/jobs/123"} {
		r = b.get(t, path)
		if r.status != http.StatusOK || !strings.HasPrefix(r.contentType, "text/html") || !strings.Contains(r.String(), "/ui/app.js") {
			t.Fatalf("GET %s: %d %q, want the dashboard's page", path, r.status, r.contentType)
		}
	}
	// GET on /query runs queries.
	r = b.get(t, "/query?query=%7B%20jobs%20%7B%20totalCount%20%7D%20%7D")
	if r.status != http.StatusOK || !strings.Contains(r.String(), `"totalCount":0`) {
		t.Fatalf("GET /query: %d %s", r.status, r)
	}
}

func TestRESTJobIsProcessed(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	created := b.createJob(t, `{"type":"email","payload":{"durationMs":0}}`)
	b.watch.WaitFinal(t, created.ID)
	jobs := b.listJobs(t, "")
	if len(jobs) != 1 || jobs[0].ID != created.ID {
		t.Fatalf("GET /jobs = %v, want only %s", jobIDs(jobs), created.ID)
	}
	done := jobs[0]
	if done.Status != "completed" {
		t.Fatalf("job is %s once final, want completed", done.Status)
	}
	if done.Attempts != 1 || done.StartedAt == nil || done.FinishedAt == nil || done.Error != nil || done.Version != 3 {
		t.Fatalf("completed job %+v, want attempts 1, startedAt and finishedAt set, no error, version 3", done)
	}
	if done.FinishedAt.Before(*done.StartedAt) || done.StartedAt.Before(*done.CreatedAt) || !done.UpdatedAt.Equal(*done.FinishedAt) {
		t.Fatalf("completed job times out of order: %+v", done)
	}
	if got := jobIDs(b.listJobs(t, "?status=completed")); !reflect.DeepEqual(got, []string{created.ID}) {
		t.Fatalf("?status=completed = %v", got)
	}

	failed := b.createJob(t, `{"type":"email","payload":{"durationMs":0,"fail":true}}`)
	b.watch.WaitFinal(t, failed.ID)
	jobs = b.listJobs(t, "?status=failed")
	if len(jobs) != 1 || jobs[0].ID != failed.ID || jobs[0].Error == nil || *jobs[0].Error != simulate.ErrSimulatedFailure.Error() || jobs[0].Attempts != 1 {
		t.Fatalf("?status=failed = %+v, want only %s, failed on its first attempt with the simulated error", jobs, failed.ID)
	}
}

func TestShutdownEndsStreamsAndWebsockets(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	c := wstest.Dial(t, b.srv.URL+"/query", "graphql-transport-ws")
	c.Init()
	c.Send(wstest.Subscribe("1", "subscription { jobUpdated { id } }", nil))

	// An SSE stream too.
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+"/query", strings.NewReader(`{"query":"subscription { jobUpdated { id } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Both subscriptions are live: a change reaches them.
	brokertest.WaitSubscribers(t, b.broker, 2, "both subscriptions")
	job, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if next := c.Expect("next", "1"); !bytes.Contains(next.Payload, []byte(job.ID)) {
		t.Fatalf("websocket got %s, want the new job", next.Payload)
	}
	sse := bufio.NewReader(resp.Body)
	for {
		line, err := sse.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE before the shutdown: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, job.ID) {
				t.Fatalf("SSE got %q, want the new job", line)
			}
			break
		}
	}

	// Shutdown ends SSE streams (Streams.Run's ctx) and websockets (their
	// transport's).
	if err := b.endStreams(); err != nil {
		t.Fatalf("SSE streams: %v", err)
	}
	if err := b.closeWebsockets(); err != nil {
		t.Fatalf("websocket transport: %v", err)
	}
	if ce := c.Closed(); ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("after the shutdown the websocket closed with %v, want code 1000", ce)
	}
	rest, err := io.ReadAll(sse)
	if err != nil {
		t.Fatalf("SSE after the shutdown: %v, want the stream to end", err)
	}
	if !strings.Contains(string(rest), "event: complete") {
		t.Fatalf("SSE ended with %q, want event: complete", rest)
	}
	brokertest.WaitSubscribers(t, b.broker, 0, "the subscriptions to leave the broker")

	// Streams opened later end at once; a stopped websocket
	// transport refuses new connections.
	lateReq, err := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+"/query", strings.NewReader(`{"query":"subscription { jobUpdated { id } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	lateReq.Header.Set("Content-Type", "application/json")
	lateReq.Header.Set("Accept", "text/event-stream")
	lateResp, err := b.srv.Client().Do(lateReq)
	if err != nil {
		t.Fatal(err)
	}
	if lateRest, err := io.ReadAll(lateResp.Body); err != nil || !strings.Contains(string(lateRest), "event: complete") {
		t.Fatalf("an SSE stream opened after the shutdown: %q, %v; want it to end at once", lateRest, err)
	}
	_ = lateResp.Body.Close()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: waitBound}
	if late, resp, err := d.Dial("ws"+strings.TrimPrefix(b.srv.URL, "http")+"/query", nil); err == nil {
		_ = late.Close()
		t.Fatal("a websocket was accepted after its transport stopped")
	} else if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a websocket after its transport stopped: %v, want 503", err)
	}
	// Plain requests are not streams and still work.
	if r := b.get(t, "/health"); r.status != http.StatusOK {
		t.Fatalf("GET /health after the shutdown: %d", r.status)
	}
}
