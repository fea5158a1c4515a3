package graph_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
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
// Tests wait on channels, messages or the store's and the broker's
// signals; they never sleep or poll.
const waitBound = 10 * time.Second

// gatedType is the job type served by the test's gate handler; every other
// type runs on the simulated handler (which finishes at once unless the
// payload asks otherwise).
const gatedType = "gated"

// gate is a handler whose jobs run until the test releases them, so a test
// can hold a job in PROCESSING (and the single worker busy) for as long as
// it needs.
type gate struct {
	mu   sync.Mutex
	jobs map[string]*gatedJob
}

type gatedJob struct {
	started chan struct{}
	result  chan error
}

func newGate() *gate { return &gate{jobs: map[string]*gatedJob{}} }

func (g *gate) job(id string) *gatedJob {
	g.mu.Lock()
	defer g.mu.Unlock()
	j := g.jobs[id]
	if j == nil {
		j = &gatedJob{started: make(chan struct{}), result: make(chan error, 1)}
		g.jobs[id] = j
	}
	return j
}

func (g *gate) Handle(ctx context.Context, job *domain.Job) error {
	j := g.job(job.ID)
	close(j.started)
	select {
	case err := <-j.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitStarted waits until the job's handler runs: the job is PROCESSING.
func (g *gate) waitStarted(t *testing.T, id string) {
	t.Helper()
	select {
	case <-g.job(id).started:
	case <-time.After(waitBound):
		t.Fatalf("gated job %s did not start within %v", id, waitBound)
	}
}

// release lets the job's handler return err.
func (g *gate) release(id string, err error) { g.job(id).result <- err }

type options struct {
	maxPayload  int
	maxSubs     int
	brokerOpts  broker.Options
	complexity  int
	limits      graph.Limits
	log         *slog.Logger
	readLimit   int64
	initTimeout time.Duration
	keepAlive   time.Duration
	startPool   bool
	maxResponse int64
	maxInFlight int64
}

type bundle struct {
	store   *memory.Store
	watch   *jobwatch.Watcher // every change the store published
	broker  *broker.Broker
	gate    *gate
	handler http.Handler
	client  *client.Client
}

// setup wires a store, broker, pool and GraphQL handler the way
// cmd/server/run.go does, with one worker.
func setup(t testing.TB, mods ...func(*options)) *bundle {
	t.Helper()
	o := options{
		maxPayload:  64 << 10,
		complexity:  25000,
		readLimit:   64 << 10,
		initTimeout: 5 * time.Second,
		keepAlive:   10 * time.Second,
		startPool:   true,
		log:         slog.New(slog.DiscardHandler),
	}
	for _, m := range mods {
		m(&o)
	}
	events := brokertest.New(t, o.brokerOpts)
	inbox := worker.NewInbox()
	watch := jobwatch.New()
	jobs := memory.New(store.Publishers{events, inbox, watch})
	g := newGate()
	if o.startPool {
		pool := worker.New(jobs, inbox, worker.Options{
			Workers:  1,
			Handlers: map[string]worker.Handler{gatedType: g},
			Default:  simulate.Handler{},
			// Gated jobs still running when the test ends are interrupted
			// at once rather than waited for.
			ShutdownGrace: time.Millisecond,
		})
		stopPool := runtest.Start(t, pool)
		t.Cleanup(func() {
			if err := stopPool(); err != nil && !errors.Is(err, worker.ErrInterrupted) {
				t.Errorf("pool: %v", err)
			}
		})
	}
	ws := wstransport.New(wstransport.Options{
		KeepAlive:        o.keepAlive,
		InitTimeout:      o.initTimeout,
		ReadLimit:        o.readLimit,
		MaxSubscriptions: o.maxSubs,
	})
	runtest.Start(t, ws)
	h := graph.NewHandler(&graph.Resolver{
		Service: jobsvc.New(jobs, events, jobsvc.Options{MaxPayloadBytes: o.maxPayload}),
		Logger:  o.log,
	}, graph.ServerOptions{
		Websocket:                ws,
		ComplexityLimit:          o.complexity,
		MaxResponseBytes:         o.maxResponse,
		MaxInFlightResponseBytes: o.maxInFlight,
		Limits:                   o.limits,
	})
	return &bundle{store: jobs, watch: watch, broker: events, gate: g, handler: h, client: client.New(h)}
}

// jobJSON is a Job as the API shows it (all fields selected by jobFields).
type jobJSON struct {
	ID         string  `json:"id"`
	Type       string  `json:"type"`
	Payload    any     `json:"payload"`
	Status     string  `json:"status"`
	Attempts   int     `json:"attempts"`
	Error      *string `json:"error"`
	CreatedAt  string  `json:"createdAt"`
	UpdatedAt  string  `json:"updatedAt"`
	StartedAt  *string `json:"startedAt"`
	FinishedAt *string `json:"finishedAt"`
	Version    int     `json:"version"`
}

const jobFields = `id type payload status attempts error createdAt updatedAt startedAt finishedAt version`

const createJobMutation = `mutation($input: CreateJobInput!) { createJob(input: $input) { ` + jobFields + ` } }`

const jobUpdatedSubscription = `subscription($id: ID, $type: String) { jobUpdated(id: $id, type: $type) { ` + jobFields + ` } }`

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) code() string { s, _ := e.Extensions["code"].(string); return s }

// errorsOf extracts the GraphQL errors from an error returned by the gqlgen
// test client: a RawJsonError (errors next to data) or an "http NNN: body"
// error (a request rejected before execution).
func errorsOf(t *testing.T, err error) []gqlError {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want GraphQL errors")
	}
	var raw []byte
	var rje client.RawJsonError
	switch {
	case errors.As(err, &rje):
		raw = rje.RawMessage
	case strings.HasPrefix(err.Error(), "http "):
		_, body, _ := strings.Cut(err.Error(), ": ")
		var resp struct {
			Errors json.RawMessage `json:"errors"`
		}
		if jerr := json.Unmarshal([]byte(body), &resp); jerr != nil {
			t.Fatalf("error %q: body is not a GraphQL response: %v", err, jerr)
		}
		raw = resp.Errors
	default:
		// Errors from the websocket client: the payload of an error
		// message, or something else entirely.
		raw = []byte(err.Error())
	}
	var errs []gqlError
	if jerr := json.Unmarshal(raw, &errs); jerr != nil {
		t.Fatalf("error %q is not a list of GraphQL errors: %v", err, jerr)
	}
	if len(errs) == 0 {
		t.Fatalf("error %q holds no GraphQL error", err)
	}
	return errs
}

// wantError checks that err holds exactly one GraphQL error with the code
// and a message containing msg.
func wantError(t *testing.T, err error, code, msg string) gqlError {
	t.Helper()
	errs := errorsOf(t, err)
	if len(errs) != 1 || errs[0].code() != code || !strings.Contains(errs[0].Message, msg) {
		t.Fatalf("got errors %+v, want one with extensions.code %s and a message containing %q", errs, code, msg)
	}
	return errs[0]
}

func (b *bundle) create(t *testing.T, typ string, payload any) jobJSON {
	t.Helper()
	var resp struct {
		CreateJob jobJSON `json:"createJob"`
	}
	input := map[string]any{"type": typ}
	if payload != nil {
		input["payload"] = payload
	}
	if err := b.client.Post(createJobMutation, &resp, client.Var("input", input)); err != nil {
		t.Fatalf("createJob(%s): %v", typ, err)
	}
	return resp.CreateJob
}

// storeCreate adds jobs straight to the store, for tests that need many.
func (b *bundle) storeCreate(t *testing.T, typ string, n int) {
	t.Helper()
	for range n {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: typ}); err != nil {
			t.Fatal(err)
		}
	}
}

// --- queries and mutations ---

func TestCreateJob(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	payload := map[string]any{"to": "user@example.com", "n": 1.5, "tags": []any{"a", true, nil}, "nested": map[string]any{"x": "y"}}
	j := b.create(t, "send.mail:v2_x-y", payload)
	if j.ID == "" || j.Type != "send.mail:v2_x-y" || j.Status != "PENDING" || j.Version != 1 || j.Attempts != 0 {
		t.Fatalf("created %+v, want a PENDING job of version 1 with 0 attempts", j)
	}
	if !reflect.DeepEqual(j.Payload, payload) {
		t.Fatalf("payload = %#v, want %#v", j.Payload, payload)
	}
	if j.CreatedAt == "" || j.CreatedAt != j.UpdatedAt {
		t.Fatalf("createdAt %q, updatedAt %q: want equal and set", j.CreatedAt, j.UpdatedAt)
	}
	if _, err := time.Parse(time.RFC3339Nano, j.CreatedAt); err != nil {
		t.Fatalf("createdAt %q is not RFC 3339: %v", j.CreatedAt, err)
	}
	if j.StartedAt != nil || j.FinishedAt != nil || j.Error != nil {
		t.Fatalf("startedAt %v finishedAt %v error %v, want all null", j.StartedAt, j.FinishedAt, j.Error)
	}
	stored, err := b.store.Get(context.Background(), j.ID)
	if err != nil || stored.Status != domain.StatusPending || stored.Version != 1 {
		t.Fatalf("stored job %+v, %v; want it pending at version 1", stored, err)
	}

	// Scalar payloads and a payload given as a literal in the query.
	for _, p := range []any{"text", 42.0, false, []any{1.0, 2.0}} {
		if got := b.create(t, "scalar", p); !reflect.DeepEqual(got.Payload, p) {
			t.Fatalf("payload %#v came back as %#v", p, got.Payload)
		}
	}
	var resp struct {
		CreateJob struct {
			Payload any `json:"payload"`
		} `json:"createJob"`
	}
	b.client.MustPost(`mutation { createJob(input: {type: "lit", payload: {a: [1, "b"], c: null}}) { payload } }`, &resp)
	if want := map[string]any{"a": []any{1.0, "b"}, "c": nil}; !reflect.DeepEqual(resp.CreateJob.Payload, want) {
		t.Fatalf("literal payload came back as %#v, want %#v", resp.CreateJob.Payload, want)
	}
}

func TestCreateJobValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.maxPayload = 100; o.startPool = false })
	for _, typ := range []string{"", "bad type", strings.Repeat("x", 129), "ümlaut", "semi;colon"} {
		var resp struct {
			CreateJob *jobJSON `json:"createJob"`
		}
		err := b.client.Post(createJobMutation, &resp, client.Var("input", map[string]any{"type": typ}))
		e := wantError(t, err, graph.CodeBadUserInput, "type")
		if resp.CreateJob != nil {
			t.Fatalf("type %q: createJob = %+v, want null", typ, resp.CreateJob)
		}
		if len(e.Path) != 1 || e.Path[0] != "createJob" {
			t.Fatalf("type %q: error path %v, want [createJob]", typ, e.Path)
		}
	}

	big := map[string]any{"s": strings.Repeat("x", 100)}
	err := b.client.Post(createJobMutation, &struct{ CreateJob *jobJSON }{}, client.Var("input", map[string]any{"type": "ok", "payload": big}))
	wantError(t, err, graph.CodeBadUserInput, "payload")

	// Nothing invalid was stored.
	page, err := b.store.List(context.Background(), store.ListQuery{Limit: 10})
	if err != nil || page.Total != 0 {
		t.Fatalf("store holds %d jobs after invalid creates (%v), want 0", page.Total, err)
	}

	// 128 allowed characters, and a payload just within the limit.
	long := strings.Repeat("aZ9._:-", 18) + "ab" // 7*18+2 = 128
	if len(long) != domain.MaxTypeLength {
		t.Fatalf("test bug: type of %d chars", len(long))
	}
	fits := strings.Repeat("y", 100-len(`{"s":""}`))
	if j := b.create(t, long, map[string]any{"s": fits}); j.Type != long || j.Payload.(map[string]any)["s"] != fits {
		t.Fatalf("128-char type with a 100-byte payload: got %+v", j)
	}

	// A null payload is no payload.
	if j := b.create(t, "nullpayload", nil); j.Payload != nil {
		t.Fatalf("absent payload came back as %#v", j.Payload)
	}
	var resp struct {
		CreateJob jobJSON `json:"createJob"`
	}
	b.client.MustPost(createJobMutation, &resp, client.Var("input", map[string]any{"type": "explicitnull", "payload": nil}))
	if resp.CreateJob.Payload != nil {
		t.Fatalf("null payload came back as %#v", resp.CreateJob.Payload)
	}
	if j, err := b.store.Get(context.Background(), resp.CreateJob.ID); err != nil || j.Payload != nil {
		t.Fatalf("null payload stored as %q (%v), want none", j.Payload, err)
	}
}

// TestPayloadNumbersKeptExactly sends a raw request: the test client would
// turn numbers into float64 on the way back.
func TestPayloadNumbersKeptExactly(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	body := `{"query":"mutation($input: CreateJobInput!) { createJob(input: $input) { id payload } }",` +
		`"variables":{"input":{"type":"num","payload":{"big":9007199254740993,"neg":-12345678901234567890,"dec":0.1}}}}`
	req := httptest.NewRequest(http.MethodPost, "/query", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	var resp struct {
		Data struct {
			CreateJob struct {
				ID      string          `json:"id"`
				Payload json.RawMessage `json:"payload"`
			} `json:"createJob"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.Errors != nil || rec.Code != http.StatusOK {
		t.Fatalf("createJob: %d %s (%v)", rec.Code, rec.Body, err)
	}
	for _, n := range []string{"9007199254740993", "-12345678901234567890", "0.1"} {
		if !bytes.Contains(resp.Data.CreateJob.Payload, []byte(n)) {
			t.Fatalf("payload came back as %s, want the number %s unchanged", resp.Data.CreateJob.Payload, n)
		}
	}
	stored, err := b.store.Get(context.Background(), resp.Data.CreateJob.ID)
	if err != nil || !bytes.Contains(stored.Payload, []byte("9007199254740993")) {
		t.Fatalf("stored payload %s (%v), want the number kept exactly", stored.Payload, err)
	}
}

func TestJobByID(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	created := b.create(t, "email", map[string]any{"to": "x"})
	var resp struct {
		Job *jobJSON `json:"job"`
	}
	b.client.MustPost(`query($id: ID!) { job(id: $id) { `+jobFields+` } }`, &resp, client.Var("id", created.ID))
	if resp.Job == nil || !reflect.DeepEqual(*resp.Job, created) {
		t.Fatalf("job(id) = %+v, want %+v", resp.Job, created)
	}

	raw, err := b.client.RawPost(`query($id: ID!) { job(id: $id) { id } }`, client.Var("id", "no-such-job"))
	if err != nil {
		t.Fatal(err)
	}
	if raw.Errors != nil {
		t.Fatalf("unknown id: errors %s, want none", raw.Errors)
	}
	if data, ok := raw.Data.(map[string]any); !ok || len(data) != 1 || data["job"] != nil {
		t.Fatalf("unknown id: data %#v, want {job: null}", raw.Data)
	}
	if _, present := raw.Data.(map[string]any)["job"]; !present {
		t.Fatalf("unknown id: data %#v lacks job", raw.Data)
	}
}

type pageJSON struct {
	Edges []struct {
		Cursor string  `json:"cursor"`
		Node   jobJSON `json:"node"`
	} `json:"edges"`
	Nodes    []jobJSON `json:"nodes"`
	PageInfo struct {
		HasNextPage bool    `json:"hasNextPage"`
		EndCursor   *string `json:"endCursor"`
	} `json:"pageInfo"`
	TotalCount int `json:"totalCount"`
}

const jobsQuery = `query($status: JobStatus, $type: String, $first: Int, $after: String) {
	jobs(status: $status, type: $type, first: $first, after: $after) {
		edges { cursor node { ` + jobFields + ` } }
		nodes { ` + jobFields + ` }
		pageInfo { hasNextPage endCursor }
		totalCount
	}
}`

// jobs runs jobsQuery with the non-nil variables.
func (b *bundle) jobs(vars map[string]any) (pageJSON, error) {
	var resp struct {
		Jobs pageJSON `json:"jobs"`
	}
	var opts []client.Option
	for k, v := range vars {
		opts = append(opts, client.Var(k, v))
	}
	err := b.client.Post(jobsQuery, &resp, opts...)
	return resp.Jobs, err
}

func (b *bundle) mustJobs(t *testing.T, vars map[string]any) pageJSON {
	t.Helper()
	p, err := b.jobs(vars)
	if err != nil {
		t.Fatalf("jobs(%v): %v", vars, err)
	}
	if len(p.Nodes) != len(p.Edges) {
		t.Fatalf("jobs(%v): %d nodes but %d edges", vars, len(p.Nodes), len(p.Edges))
	}
	for i := range p.Edges {
		if !reflect.DeepEqual(p.Edges[i].Node, p.Nodes[i]) {
			t.Fatalf("jobs(%v): edge %d node %+v differs from nodes[%d] %+v", vars, i, p.Edges[i].Node, i, p.Nodes[i])
		}
	}
	return p
}

func ids(p pageJSON) []string {
	out := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		out[i] = n.ID
	}
	return out
}

func TestJobsNewestFirstAndPagination(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	var want []string // newest first
	for i := range 7 {
		j := b.create(t, fmt.Sprintf("t%d", i), nil)
		want = append([]string{j.ID}, want...)
	}

	all := b.mustJobs(t, nil)
	if got := ids(all); !reflect.DeepEqual(got, want) {
		t.Fatalf("jobs = %v, want newest first %v", got, want)
	}
	if all.TotalCount != 7 || all.PageInfo.HasNextPage || all.PageInfo.EndCursor == nil || *all.PageInfo.EndCursor != all.Edges[6].Cursor {
		t.Fatalf("one page of all: totalCount %d hasNextPage %v endCursor %v", all.TotalCount, all.PageInfo.HasNextPage, all.PageInfo.EndCursor)
	}

	var walked []string
	var after any
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatalf("more than 3 pages of 3 for 7 jobs: %v", walked)
		}
		p := b.mustJobs(t, map[string]any{"first": 3, "after": after})
		if p.TotalCount != 7 {
			t.Fatalf("page %d: totalCount %d, want 7", pages, p.TotalCount)
		}
		wantLen := min(3, 7-len(walked))
		if len(p.Edges) != wantLen {
			t.Fatalf("page %d: %d edges, want %d", pages, len(p.Edges), wantLen)
		}
		walked = append(walked, ids(p)...)
		if p.PageInfo.EndCursor == nil || *p.PageInfo.EndCursor != p.Edges[len(p.Edges)-1].Cursor {
			t.Fatalf("page %d: endCursor %v, want the last edge's cursor", pages, p.PageInfo.EndCursor)
		}
		if wantMore := len(walked) < 7; p.PageInfo.HasNextPage != wantMore {
			t.Fatalf("page %d: hasNextPage %v, want %v", pages, p.PageInfo.HasNextPage, wantMore)
		}
		if !p.PageInfo.HasNextPage {
			break
		}
		after = *p.PageInfo.EndCursor
	}
	if !reflect.DeepEqual(walked, want) {
		t.Fatalf("walk with first: 3 = %v, want %v (no gaps, no duplicates)", walked, want)
	}

	// Any edge's cursor continues right after that edge.
	p := b.mustJobs(t, map[string]any{"first": 2, "after": all.Edges[1].Cursor})
	if got := ids(p); !reflect.DeepEqual(got, want[2:4]) {
		t.Fatalf("after the 2nd edge: %v, want %v", got, want[2:4])
	}
	// After the last job: an empty page.
	p = b.mustJobs(t, map[string]any{"after": all.Edges[6].Cursor})
	if len(p.Edges) != 0 || p.PageInfo.HasNextPage || p.PageInfo.EndCursor != nil || p.TotalCount != 7 {
		t.Fatalf("after the last job: %+v, want no edges, no next page, no endCursor, totalCount 7", p)
	}
	// An empty after is no cursor.
	if p := b.mustJobs(t, map[string]any{"after": ""}); len(p.Edges) != 7 {
		t.Fatalf("after: \"\" returned %d jobs, want 7", len(p.Edges))
	}

	// first: 0 answers the totals only.
	p = b.mustJobs(t, map[string]any{"first": 0})
	if len(p.Edges) != 0 || len(p.Nodes) != 0 || p.TotalCount != 7 || !p.PageInfo.HasNextPage || p.PageInfo.EndCursor != nil {
		t.Fatalf("first: 0 = %+v, want no edges, totalCount 7, hasNextPage true, no endCursor", p)
	}
	p = b.mustJobs(t, map[string]any{"first": 0, "after": all.Edges[6].Cursor})
	if len(p.Edges) != 0 || p.TotalCount != 7 || p.PageInfo.HasNextPage {
		t.Fatalf("first: 0 after the last job = %+v, want no edges, totalCount 7, hasNextPage false", p)
	}
}

func TestJobsArgumentErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	b.create(t, "a", nil)
	b.create(t, "b", nil)
	_, err := b.jobs(map[string]any{"first": -1})
	wantError(t, err, graph.CodeBadUserInput, "first")

	// A cursor of another kind, not base64, not a positive number.
	for _, bad := range []string{"garbage!!", "Zm9vOjE", "am9iOi0x", "am9iOmFiYw"} {
		_, err := b.jobs(map[string]any{"after": bad})
		wantError(t, err, graph.CodeBadUserInput, "after")
	}

	// A status that is not in the enum is the client's mistake too.
	_, err = b.jobs(map[string]any{"status": "BOGUS"})
	if errs := errorsOf(t, err); errs[0].code() == "" || errs[0].code() == graph.CodeInternal {
		t.Fatalf("unknown status: errors %+v, want a client error code", errs)
	}
}

func TestJobsFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g1 := b.create(t, gatedType, nil)
	b.gate.waitStarted(t, g1.ID) // the only worker is busy: later jobs stay PENDING
	g2 := b.create(t, gatedType, nil)
	e1 := b.create(t, "email", nil)
	e2 := b.create(t, "email", nil)

	for _, tc := range []struct {
		vars map[string]any
		want []string
	}{
		{map[string]any{"status": "PROCESSING"}, []string{g1.ID}},
		{map[string]any{"status": "PENDING"}, []string{e2.ID, e1.ID, g2.ID}},
		{map[string]any{"type": gatedType}, []string{g2.ID, g1.ID}},
		{map[string]any{"type": "email"}, []string{e2.ID, e1.ID}},
		{map[string]any{"status": "PENDING", "type": gatedType}, []string{g2.ID}},
		{map[string]any{"status": "PROCESSING", "type": gatedType}, []string{g1.ID}},
		{map[string]any{"status": "PROCESSING", "type": "email"}, nil},
		{map[string]any{"status": "COMPLETED"}, nil},
		{map[string]any{"type": "nope"}, nil},
		{map[string]any{"status": "PENDING", "first": 1}, []string{e2.ID}},
	} {
		p := b.mustJobs(t, tc.vars)
		if got := ids(p); !reflect.DeepEqual(got, append([]string{}, tc.want...)) {
			t.Fatalf("jobs(%v) = %v, want %v", tc.vars, got, tc.want)
		}
		wantTotal := len(tc.want)
		if tc.vars["first"] == 1 {
			wantTotal = 3
		}
		if p.TotalCount != wantTotal {
			t.Fatalf("jobs(%v): totalCount %d, want %d", tc.vars, p.TotalCount, wantTotal)
		}
		for _, n := range p.Nodes {
			if s, ok := tc.vars["status"]; ok && n.Status != s {
				t.Fatalf("jobs(%v) returned a %s job", tc.vars, n.Status)
			}
		}
	}

	// Paging within a filter: the cursor keeps the filter's order.
	p := b.mustJobs(t, map[string]any{"status": "PENDING", "first": 2})
	if !p.PageInfo.HasNextPage {
		t.Fatal("PENDING first: 2 of 3: hasNextPage false")
	}
	p = b.mustJobs(t, map[string]any{"status": "PENDING", "first": 2, "after": *p.PageInfo.EndCursor})
	if got := ids(p); !reflect.DeepEqual(got, []string{g2.ID}) || p.PageInfo.HasNextPage || p.TotalCount != 3 {
		t.Fatalf("PENDING second page = %v (next %v, total %d), want [%s], no next page, total 3", got, p.PageInfo.HasNextPage, p.TotalCount, g2.ID)
	}
}

func TestJobsPageSizeCap(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	b.storeCreate(t, "bulk", 520)
	var resp struct {
		Big struct {
			Edges      []struct{ Cursor string } `json:"edges"`
			TotalCount int                       `json:"totalCount"`
			PageInfo   struct {
				HasNextPage bool `json:"hasNextPage"`
			} `json:"pageInfo"`
		} `json:"big"`
		Default struct {
			Edges []struct{ Cursor string } `json:"edges"`
		} `json:"default"`
	}
	b.client.MustPost(`{
		big: jobs(first: 1000) { edges { cursor } totalCount pageInfo { hasNextPage } }
		default: jobs { edges { cursor } }
	}`, &resp)
	if n := len(resp.Big.Edges); n != graph.MaxPageSize {
		t.Fatalf("first: 1000 returned %d jobs, want the cap %d", n, graph.MaxPageSize)
	}
	if resp.Big.TotalCount != 520 || !resp.Big.PageInfo.HasNextPage {
		t.Fatalf("first: 1000: totalCount %d hasNextPage %v, want 520 and true", resp.Big.TotalCount, resp.Big.PageInfo.HasNextPage)
	}
	if n := len(resp.Default.Edges); n != graph.DefaultPageSize {
		t.Fatalf("no first returned %d jobs, want the default %d", n, graph.DefaultPageSize)
	}
}

func TestComplexityLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	b.storeCreate(t, "c", 3)

	// jobs(first: 500) { nodes { id } } costs 1 + 500*2 = 1001: 24 of them
	// fit in 25000, 25 do not.
	field := func(n int) string {
		var q strings.Builder
		q.WriteString("{")
		for i := range n {
			fmt.Fprintf(&q, " a%d: jobs(first: 500) { nodes { id } }", i)
		}
		q.WriteString(" }")
		return q.String()
	}
	var ok map[string]any
	if err := b.client.Post(field(24), &ok); err != nil {
		t.Fatalf("complexity 24024: %v", err)
	}
	var resp map[string]any
	err := b.client.Post(field(25), &resp)
	e := wantError(t, err, "COMPLEXITY_LIMIT_EXCEEDED", "complexity")
	if !strings.Contains(e.Message, "25025") || !strings.Contains(e.Message, "25000") {
		t.Fatalf("message %q, want it to name the complexity 25025 and the limit 25000", e.Message)
	}
	if resp != nil {
		t.Fatalf("rejected query returned data %v", resp)
	}
	// first given as a variable costs the same.
	var vq strings.Builder
	vq.WriteString("query($n: Int) {")
	for i := range 25 {
		fmt.Fprintf(&vq, " a%d: jobs(first: $n) { nodes { id } }", i)
	}
	vq.WriteString(" }")
	err = b.client.Post(vq.String(), &resp, client.Var("n", 500))
	wantError(t, err, "COMPLEXITY_LIMIT_EXCEEDED", "25025")
	if err := b.client.Post(vq.String(), &ok, client.Var("n", 10)); err != nil {
		t.Fatalf("25 times first: 10: %v", err)
	}
	// first above the cap costs as the cap.
	if err := b.client.Post(`{ jobs(first: 100000) { nodes { id } } }`, &ok); err != nil {
		t.Fatalf("first: 100000 costs as first: 500: %v", err)
	}

	// A mutation over the limit is not executed: no job is created.
	low := setup(t, func(o *options) { o.complexity = 10; o.startPool = false })
	var m strings.Builder
	m.WriteString("mutation {")
	for i := range 5 {
		fmt.Fprintf(&m, ` c%d: createJob(input: {type: "x"}) { id type status }`, i)
	}
	m.WriteString(" }")
	err = low.client.Post(m.String(), &resp)
	wantError(t, err, "COMPLEXITY_LIMIT_EXCEEDED", "exceeds the limit of 10")
	page, lerr := low.store.List(context.Background(), store.ListQuery{Limit: 10})
	if lerr != nil || page.Total != 0 {
		t.Fatalf("rejected mutation created %d jobs (%v), want 0", page.Total, lerr)
	}
}

// TestHTTPStatuses covers the GraphQL-over-HTTP statuses of the endpoint.
func TestHTTPStatuses(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	serve := func(method, target, body, accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		rec := httptest.NewRecorder()
		b.handler.ServeHTTP(rec, req)
		return rec
	}
	bodyOf := func(rec *httptest.ResponseRecorder) map[string]json.RawMessage {
		t.Helper()
		var m map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("body %s: %v", rec.Body, err)
		}
		return m
	}

	// A mutation over GET is refused and not executed.
	mutation := "/query?query=" + url.QueryEscape(`mutation { createJob(input: {type: "get"}) { id } }`)
	for _, accept := range []string{"", "application/graphql-response+json"} {
		rec := serve(http.MethodGet, mutation, "", accept)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
			t.Fatalf("GET mutation (Accept %q): %d Allow %q, want 405 Allow: POST", accept, rec.Code, rec.Header().Get("Allow"))
		}
	}
	if page, err := b.store.List(context.Background(), store.ListQuery{Limit: 1}); err != nil || page.Total != 0 {
		t.Fatalf("GET mutations created %d jobs (%v), want 0", page.Total, err)
	}
	// GET runs queries.
	if rec := serve(http.MethodGet, "/query?query="+url.QueryEscape(`{ jobs { totalCount } }`), "", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"totalCount":0`) {
		t.Fatalf("GET query: %d %s", rec.Code, rec.Body)
	}

	// A request error: 200 as application/json; a 4xx without data as
	// application/graphql-response+json.
	for _, doc := range []string{`{ nope }`, `{ jobs { totalCount `} {
		body := `{"query":` + strconv.Quote(doc) + `}`
		rec := serve(http.MethodPost, "/query", body, "")
		if m := bodyOf(rec); rec.Code != http.StatusOK || m["errors"] == nil {
			t.Fatalf("%s as application/json: %d %s, want 200 with errors", doc, rec.Code, rec.Body)
		}
		rec = serve(http.MethodPost, "/query", body, "application/graphql-response+json")
		m := bodyOf(rec)
		if rec.Code < 400 || rec.Code >= 500 || m["errors"] == nil {
			t.Fatalf("%s as graphql-response+json: %d %s, want a 4xx with errors", doc, rec.Code, rec.Body)
		}
		if _, ok := m["data"]; ok {
			t.Fatalf("%s as graphql-response+json: body %s has a data entry", doc, rec.Body)
		}
	}
	// A field error is a 200 with data, in both media types.
	for _, accept := range []string{"", "application/graphql-response+json"} {
		rec := serve(http.MethodPost, "/query", `{"query":"{ jobs(first: -1) { totalCount } }"}`, accept)
		if m := bodyOf(rec); rec.Code != http.StatusOK || string(m["data"]) != "null" || m["errors"] == nil {
			t.Fatalf("field error (Accept %q): %d %s, want 200 with data null and errors", accept, rec.Code, rec.Body)
		}
	}
}

// --- subscriptions through gqlgen's websocket client ---

type updateResp struct {
	JobUpdated jobJSON `json:"jobUpdated"`
}

// subscribe opens a jobUpdated subscription through gqlgen's client (which
// speaks the graphql-ws protocol over coder/websocket to our gorilla
// server). It is closed at cleanup.
func (b *bundle) subscribe(t *testing.T, vars map[string]any) *client.Subscription {
	t.Helper()
	var opts []client.Option
	for k, v := range vars {
		opts = append(opts, client.Var(k, v))
	}
	sub := b.client.Websocket(jobUpdatedSubscription, opts...)
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// next reads the subscription's next message with a deadline: the job it
// carries, or the error Next returned.
func next(t *testing.T, sub *client.Subscription) (jobJSON, error) {
	t.Helper()
	type result struct {
		job jobJSON
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r updateResp
		err := sub.Next(&r)
		ch <- result{r.JobUpdated, err}
	}()
	select {
	case r := <-ch:
		return r.job, r.err
	case <-time.After(waitBound):
		_ = sub.Close() // unblocks the reader
		t.Fatalf("no subscription message within %v", waitBound)
		return jobJSON{}, nil
	}
}

func mustNext(t *testing.T, sub *client.Subscription) jobJSON {
	t.Helper()
	j, err := next(t, sub)
	if err != nil {
		t.Fatalf("subscription: %v, want a job", err)
	}
	return j
}

// isComplete reports whether err is gqlgen's client meeting the server's
// "complete" message: its Next fails with "expected data message, got
// ...Type:"complete"}".
func isComplete(err error) bool {
	return err != nil && strings.Contains(err.Error(), `Type:"complete"`)
}

func wantComplete(t *testing.T, sub *client.Subscription) {
	t.Helper()
	j, err := next(t, sub)
	if !isComplete(err) {
		t.Fatalf("got job %+v, err %v; want the subscription to complete", j, err)
	}
}

// checkSteps checks that a job's states follow each other one version at a
// time and that updatedAt moves forward.
func checkSteps(t *testing.T, states []jobJSON) {
	t.Helper()
	for i := 1; i < len(states); i++ {
		if states[i].Version != states[i-1].Version+1 {
			t.Fatalf("states %v: version %d after %d, want +1", summary(states), states[i].Version, states[i-1].Version)
		}
		if states[i].ID != states[0].ID {
			t.Fatalf("states %v mix jobs", summary(states))
		}
		prev, _ := time.Parse(time.RFC3339Nano, states[i-1].UpdatedAt)
		cur, _ := time.Parse(time.RFC3339Nano, states[i].UpdatedAt)
		if cur.Before(prev) {
			t.Fatalf("states %v: updatedAt goes back", summary(states))
		}
	}
}

func summary(states []jobJSON) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = fmt.Sprintf("%s:v%d:%s", s.Type, s.Version, s.Status)
	}
	return out
}

func TestJobUpdatedStreamsToCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	blocker := b.create(t, gatedType, nil)
	b.gate.waitStarted(t, blocker.ID)
	payload := map[string]any{"durationMs": 0.0, "to": "x"}
	created := b.create(t, "email", payload) // waits behind the blocker

	sub := b.subscribe(t, map[string]any{"id": created.ID})
	first := mustNext(t, sub)
	if !reflect.DeepEqual(first, created) {
		t.Fatalf("first message %+v, want the current state %+v", first, created)
	}
	// A second subscriber with the same document and variables sees the
	// same stream.
	twin := b.subscribe(t, map[string]any{"id": created.ID})
	if j := mustNext(t, twin); !reflect.DeepEqual(j, created) {
		t.Fatalf("second subscriber's first message %+v, want %+v", j, created)
	}
	b.gate.release(blocker.ID, nil)

	states := []jobJSON{first}
	for states[len(states)-1].Status != "COMPLETED" {
		if len(states) > 3 {
			t.Fatalf("states %v: no COMPLETED", summary(states))
		}
		states = append(states, mustNext(t, sub))
	}
	wantComplete(t, sub)
	for _, want := range states[1:] {
		if j := mustNext(t, twin); !reflect.DeepEqual(j, want) {
			t.Fatalf("second subscriber got %+v, want %+v", j, want)
		}
	}
	wantComplete(t, twin)
	checkSteps(t, states)
	if got := summary(states); !reflect.DeepEqual(got, []string{"email:v1:PENDING", "email:v2:PROCESSING", "email:v3:COMPLETED"}) {
		t.Fatalf("states %v, want PENDING, PROCESSING, COMPLETED", got)
	}
	processing, last := states[1], states[2]
	if processing.Attempts != 1 || processing.StartedAt == nil || processing.FinishedAt != nil {
		t.Fatalf("PROCESSING state %+v, want attempts 1, startedAt set, finishedAt null", processing)
	}
	if last.Attempts != 1 || last.Error != nil || last.StartedAt == nil || last.FinishedAt == nil ||
		*last.StartedAt != *processing.StartedAt || last.CreatedAt != created.CreatedAt || !reflect.DeepEqual(last.Payload, payload) {
		t.Fatalf("COMPLETED state %+v, want attempts 1, no error, startedAt kept, finishedAt set, payload kept", last)
	}
	stored, _ := b.store.Get(context.Background(), created.ID)
	if int(stored.Version) != last.Version {
		t.Fatalf("last streamed version %d, stored version %d", last.Version, stored.Version)
	}
	brokertest.WaitSubscribers(t, b.broker, 0, "the completed subscription to leave the broker")
}

func TestJobUpdatedFailedJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	blocker := b.create(t, gatedType, nil)
	b.gate.waitStarted(t, blocker.ID)
	created := b.create(t, "email", map[string]any{"fail": true, "durationMs": 0})
	sub := b.subscribe(t, map[string]any{"id": created.ID, "type": "email"})
	states := []jobJSON{mustNext(t, sub)}
	b.gate.release(blocker.ID, nil)
	for states[len(states)-1].Status == "PENDING" || states[len(states)-1].Status == "PROCESSING" {
		if len(states) > 3 {
			t.Fatalf("states %v: no final state", summary(states))
		}
		states = append(states, mustNext(t, sub))
	}
	wantComplete(t, sub)
	checkSteps(t, states)
	last := states[len(states)-1]
	if got := summary(states); !reflect.DeepEqual(got, []string{"email:v1:PENDING", "email:v2:PROCESSING", "email:v3:FAILED"}) {
		t.Fatalf("states %v, want PENDING, PROCESSING, FAILED", got)
	}
	if last.Error == nil || *last.Error != simulate.ErrSimulatedFailure.Error() || last.FinishedAt == nil || last.Attempts != 1 {
		t.Fatalf("FAILED state %+v, want error %q, finishedAt set, attempts 1", last, simulate.ErrSimulatedFailure)
	}
	if states[1].Error != nil {
		t.Fatalf("PROCESSING state has error %q", *states[1].Error)
	}
}

func TestJobUpdatedLateSubscriberGetsFinalStateOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.create(t, "email", map[string]any{"durationMs": 0})
	b.watch.WaitStatus(t, created.ID, domain.StatusCompleted)
	failed := b.create(t, "email", map[string]any{"durationMs": 0, "fail": true})
	b.watch.WaitStatus(t, failed.ID, domain.StatusFailed)

	for _, tc := range []struct {
		id, status string
	}{{created.ID, "COMPLETED"}, {failed.ID, "FAILED"}} {
		sub := b.subscribe(t, map[string]any{"id": tc.id})
		j := mustNext(t, sub)
		if j.ID != tc.id || j.Status != tc.status || j.Version != 3 || j.FinishedAt == nil {
			t.Fatalf("late subscriber got %+v, want the final %s state at version 3", j, tc.status)
		}
		wantComplete(t, sub)
	}
	brokertest.WaitSubscribers(t, b.broker, 0, "late subscriptions to leave the broker")
}

func TestJobUpdatedNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	created := b.create(t, "email", nil)
	for _, vars := range []map[string]any{
		{"id": "no-such-job"},
		{"id": "no-such-job", "type": "email"},
		{"id": created.ID, "type": "sms"},
	} {
		sub := b.subscribe(t, vars)
		j, err := next(t, sub)
		if err == nil {
			t.Fatalf("jobUpdated(%v) sent job %+v, want NOT_FOUND", vars, j)
		}
		wantError(t, err, graph.CodeNotFound, "no job")
		// The protocol's error message ends the operation: no complete
		// follows it.
		_ = sub.Close()
	}
	// The subscription that matches is fine.
	sub := b.subscribe(t, map[string]any{"id": created.ID, "type": "email"})
	if j := mustNext(t, sub); j.ID != created.ID || j.Status != "PENDING" {
		t.Fatalf("matching type: got %+v", j)
	}
	_ = sub.Close()
	brokertest.WaitSubscribers(t, b.broker, 0, "subscriptions to leave the broker")
}

func TestJobUpdatedAllJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A job finished before subscribing is not replayed.
	old := b.create(t, "a", map[string]any{"durationMs": 0})
	b.watch.WaitStatus(t, old.ID, domain.StatusCompleted)

	all := b.subscribe(t, nil)
	onlyA := b.subscribe(t, map[string]any{"type": "a"})
	// Both subscriptions are registered only once the broker counts them.
	brokertest.WaitSubscribers(t, b.broker, 2, "two subscribers")

	// One worker runs jobs in creation order, so every change of b1 is
	// published before a2 completes: a b1 change reaching onlyA would show
	// up before a2's last state.
	a1 := b.create(t, "a", map[string]any{"durationMs": 0})
	b1 := b.create(t, "b", map[string]any{"durationMs": 0})
	a2 := b.create(t, "a", map[string]any{"durationMs": 0, "fail": true})

	collect := func(sub *client.Subscription, n int) map[string][]jobJSON {
		t.Helper()
		got := map[string][]jobJSON{}
		for range n {
			j := mustNext(t, sub)
			got[j.ID] = append(got[j.ID], j)
		}
		return got
	}
	wantWalk := func(label string, got map[string][]jobJSON, jobs ...jobJSON) {
		t.Helper()
		if len(got) != len(jobs) {
			t.Fatalf("%s: changes of %d jobs, want %d: %v", label, len(got), len(jobs), got)
		}
		for _, j := range jobs {
			states := got[j.ID]
			final := "COMPLETED"
			if j.ID == a2.ID {
				final = "FAILED"
			}
			want := []string{j.Type + ":v1:PENDING", j.Type + ":v2:PROCESSING", j.Type + ":v3:" + final}
			if s := summary(states); !reflect.DeepEqual(s, want) {
				t.Fatalf("%s: job %s states %v, want %v", label, j.ID, s, want)
			}
			checkSteps(t, states)
		}
	}
	wantWalk("all jobs", collect(all, 9), a1, b1, a2)
	wantWalk("type a", collect(onlyA, 6), a1, a2)

	// Subscriptions without id never complete by themselves; closing the
	// client ends them.
	_ = all.Close()
	_ = onlyA.Close()
	brokertest.WaitSubscribers(t, b.broker, 0, "closed subscriptions to leave the broker")
}

// --- raw websocket clients ---

func (b *bundle) server(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(b.handler)
	t.Cleanup(srv.Close)
	return srv
}

// dialWS opens a raw websocket to srv's GraphQL endpoint.
func dialWS(t *testing.T, srv *httptest.Server, subprotocol string) *wstest.Client {
	t.Helper()
	return wstest.Dial(t, srv.URL+"/query", subprotocol)
}

// jobOf decodes the job of a next/data message.
func jobOf(t *testing.T, m wstest.Msg) jobJSON {
	t.Helper()
	var r struct {
		Data   *updateResp     `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || r.Data == nil || r.Errors != nil {
		t.Fatalf("message %s %s: %s (%v), want data.jobUpdated", m.Type, m.ID, m.Payload, err)
	}
	return r.Data.JobUpdated
}

// subscriptionError decodes the errors of an error message (a list), or of
// a next/data message carrying errors.
func subscriptionError(t *testing.T, m wstest.Msg) []gqlError {
	t.Helper()
	var errs []gqlError
	if m.Type == "error" {
		if err := json.Unmarshal(m.Payload, &errs); err != nil {
			t.Fatalf("error message %s: %v", m.Payload, err)
		}
		return errs
	}
	var r struct {
		Errors []gqlError `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("message %s %s: %v", m.Type, m.Payload, err)
	}
	return r.Errors
}

func TestMaxSubscriptionsPerConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.maxSubs = 2 })
	held := b.create(t, gatedType, nil) // stays PROCESSING: its subscriptions stay open
	b.gate.waitStarted(t, held.ID)
	srv := b.server(t)
	w := dialWS(t, srv, "graphql-transport-ws")
	w.Init()
	sub := func(id string) {
		w.Send(wstest.Subscribe(id, jobUpdatedSubscription, map[string]any{"id": held.ID}))
	}

	// One at a time: the resolvers of concurrent subscribes race for the
	// slots.
	for _, id := range []string{"1", "2"} {
		sub(id)
		if j := jobOf(t, w.Expect("next", id)); j.ID != held.ID || j.Status != "PROCESSING" {
			t.Fatalf("subscription %s: first state %+v", id, j)
		}
	}
	sub("3")
	m, err := w.Read()
	if err != nil || m.ID != "3" || m.Type != "error" {
		t.Fatalf("third subscription: got %+v, %v; want an error message for it", m, err)
	}
	errs := subscriptionError(t, m)
	if len(errs) != 1 || errs[0].code() != graph.CodeTooManySubscriptions || !strings.Contains(errs[0].Message, "2") {
		t.Fatalf("third subscription: errors %+v, want TOO_MANY_SUBSCRIPTIONS naming the limit 2", errs)
	}
	if n := b.broker.Subscribers(); n != 2 {
		t.Fatalf("broker has %d subscribers, want 2", n)
	}

	// Completing one frees its slot before the server's complete is sent:
	// a subscribe that follows it is accepted.
	w.Send(wstest.Msg{ID: "1", Type: "complete"})
	w.Expect("complete", "1")
	const accepted = "4"
	sub(accepted)
	if j := jobOf(t, w.Expect("next", accepted)); j.ID != held.ID || j.Status != "PROCESSING" {
		t.Fatalf("subscription %s after a slot was freed: first state %+v", accepted, j)
	}

	// The two open subscriptions still work: the job's end reaches both.
	b.gate.release(held.ID, nil)
	got := map[string]bool{}
	for len(got) < 4 {
		m, err := w.Read()
		if err != nil {
			t.Fatalf("waiting for the final states: %v", err)
		}
		switch {
		case (m.ID == "2" || m.ID == accepted) && m.Type == "next":
			if j := jobOf(t, m); j.Status != "COMPLETED" {
				t.Fatalf("subscription %s: %+v, want COMPLETED", m.ID, j)
			}
			got[m.ID+"next"] = true
		case (m.ID == "2" || m.ID == accepted) && m.Type == "complete":
			if !got[m.ID+"next"] {
				t.Fatalf("subscription %s completed before the final state", m.ID)
			}
			got[m.ID+"complete"] = true
		default:
			t.Fatalf("unexpected message %s %s %s", m.Type, m.ID, m.Payload)
		}
	}
}

func TestWebsocketReadLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.readLimit = 512; o.startPool = false })
	created := b.create(t, "email", nil)
	srv := b.server(t)
	w := dialWS(t, srv, "graphql-transport-ws")
	w.Init()

	// A message within the limit works.
	w.Send(wstest.Subscribe("ok", `subscription($id: ID) { jobUpdated(id: $id) { id } }`, map[string]any{"id": created.ID}))
	if j := jobOf(t, w.Expect("next", "ok")); j.ID != created.ID {
		t.Fatalf("small subscribe: got %+v", j)
	}
	// One over it closes the connection with 1009 (message too big).
	padding := strings.Repeat(" ", 600)
	w.Send(wstest.Subscribe("big", `subscription($id: ID) {`+padding+`jobUpdated(id: $id) { id } }`, map[string]any{"id": created.ID}))
	for {
		m, err := w.Read()
		if err == nil {
			if m.ID == "big" {
				t.Fatalf("oversized message was processed: %s %s", m.Type, m.Payload)
			}
			continue // e.g. the end of subscription "ok"
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("after an oversized message: read error %v, want a close frame with code 1009", err)
		}
		break
	}
	brokertest.WaitSubscribers(t, b.broker, 0, "the closed connection's subscription to leave the broker")
}

func TestWebsocketInitTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.initTimeout = 200 * time.Millisecond; o.startPool = false })
	srv := b.server(t)
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		start := time.Now()
		w := dialWS(t, srv, proto)
		// Send nothing: the server must hang up on its own.
		_, err := w.Read()
		elapsed := time.Since(start)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: silent client got read error %v, want a close frame", proto, err)
		}
		if ce.Code != wstransport.CloseInitTimeout || !strings.Contains(ce.Text, "timeout") {
			t.Fatalf("%s: close %d %q, want 4408 naming the initialisation timeout", proto, ce.Code, ce.Text)
		}
		if elapsed < 200*time.Millisecond {
			t.Fatalf("%s: closed after %v, before the 200ms init timeout", proto, elapsed)
		}
	}
}

func TestLegacyGraphQLWSProtocol(t *testing.T) {
	t.Parallel()
	b := setup(t)
	blocker := b.create(t, gatedType, nil)
	b.gate.waitStarted(t, blocker.ID)
	created := b.create(t, "legacy", map[string]any{"durationMs": 0})
	srv := b.server(t)
	w := dialWS(t, srv, "graphql-ws")
	w.Init()
	w.Send(wstest.Msg{ID: "1", Type: "start", Payload: wstest.Payload(jobUpdatedSubscription, map[string]any{"id": created.ID})})
	states := []jobJSON{jobOf(t, w.Expect("data", "1"))}
	b.gate.release(blocker.ID, nil)
	for {
		m, err := w.Read()
		if err != nil {
			t.Fatalf("after %v: %v", summary(states), err)
		}
		if m.Type == "complete" && m.ID == "1" {
			break
		}
		if m.Type != "data" || m.ID != "1" {
			t.Fatalf("got %s %s %s, want data or complete", m.Type, m.ID, m.Payload)
		}
		states = append(states, jobOf(t, m))
	}
	checkSteps(t, states)
	if got := summary(states); !reflect.DeepEqual(got, []string{"legacy:v1:PENDING", "legacy:v2:PROCESSING", "legacy:v3:COMPLETED"}) {
		t.Fatalf("states %v, want PENDING, PROCESSING, COMPLETED", got)
	}

	// stop ends a live subscription.
	w.Send(wstest.Msg{ID: "2", Type: "start", Payload: wstest.Payload(jobUpdatedSubscription, nil)})
	brokertest.WaitSubscribers(t, b.broker, 1, "the live subscription")
	w.Send(wstest.Msg{ID: "2", Type: "stop"})
	w.Expect("complete", "2")
	brokertest.WaitSubscribers(t, b.broker, 0, "the stopped subscription to leave the broker")
}

type sseEvent struct {
	event string
	data  string
}

// readSSE reads a whole text/event-stream body into its events.
func readSSE(t *testing.T, body io.Reader) []sseEvent {
	t.Helper()
	var events []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != (sseEvent{}) {
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"): // comment
		case strings.HasPrefix(line, "event: "):
			cur.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data += strings.TrimPrefix(line, "data: ")
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the event stream: %v", err)
	}
	if cur != (sseEvent{}) {
		events = append(events, cur)
	}
	return events
}

func TestSSESubscription(t *testing.T) {
	t.Parallel()
	b := setup(t)
	blocker := b.create(t, gatedType, nil)
	b.gate.waitStarted(t, blocker.ID)
	created := b.create(t, "sse", map[string]any{"durationMs": 0})
	srv := b.server(t)

	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	body := wstest.Payload(jobUpdatedSubscription, map[string]any{"id": created.ID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/query", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, Content-Type %q; want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The response headers are flushed once the operation is set up; the
	// subscription is then registered, holding the job's current state.
	brokertest.WaitSubscribers(t, b.broker, 1, "the SSE subscription")
	b.gate.release(blocker.ID, nil)

	events := readSSE(t, resp.Body)
	if len(events) == 0 || events[len(events)-1].event != "complete" {
		t.Fatalf("events %+v, want them to end with complete", events)
	}
	var states []jobJSON
	for _, e := range events[:len(events)-1] {
		if e.event != "next" {
			t.Fatalf("event %q (%s), want next", e.event, e.data)
		}
		states = append(states, jobOf(t, wstest.Msg{Type: "next", Payload: json.RawMessage(e.data)}))
	}
	checkSteps(t, states)
	if got := summary(states); !reflect.DeepEqual(got, []string{"sse:v1:PENDING", "sse:v2:PROCESSING", "sse:v3:COMPLETED"}) {
		t.Fatalf("states %v, want PENDING, PROCESSING, COMPLETED", got)
	}
}

// blockingSSEWriter is an http.ResponseWriter and http.Flusher whose first
// SSE event write blocks until released: a client that stops reading.
type blockingSSEWriter struct {
	header  http.Header
	blocked chan struct{} // closed when the first event write arrives
	release chan struct{}
	once    sync.Once

	mu  sync.Mutex
	buf bytes.Buffer
}

func newBlockingSSEWriter() *blockingSSEWriter {
	return &blockingSSEWriter{header: http.Header{}, blocked: make(chan struct{}), release: make(chan struct{})}
}

func (w *blockingSSEWriter) Header() http.Header { return w.header }
func (w *blockingSSEWriter) WriteHeader(int)     {}
func (w *blockingSSEWriter) Flush()              {}

func (w *blockingSSEWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("event: next")) {
		w.once.Do(func() {
			close(w.blocked)
			<-w.release
		})
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *blockingSSEWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// slowSSESubscriber lets an SSE subscriber fall behind until the broker
// ends it with ErrSlowSubscriber. The server must survive that: the stream
// ends, other requests keep working.
func slowSSESubscriber(t *testing.T) {
	b := setup(t, func(o *options) {
		o.startPool = false
		o.brokerOpts = broker.Options{Buffer: 1, CoalesceAfter: 1, MaxBacklog: 1}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	body := wstest.Payload(`subscription { jobUpdated { id version } }`, nil)
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/query", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	w := newBlockingSSEWriter()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.handler.ServeHTTP(w, req)
	}()
	defer func() {
		select {
		case <-w.release:
		default:
			close(w.release)
		}
		<-done
	}()
	brokertest.WaitSubscribers(t, b.broker, 1, "the SSE subscription")
	b.storeCreate(t, "slow", 1)
	select {
	case <-w.blocked:
	case <-time.After(waitBound):
		t.Fatal("the first event was not written")
	}
	// The writer is stuck on the first change: one more fills the
	// subscription's channel, one its backlog, the next overflows it.
	b.storeCreate(t, "slow", 3)
	brokertest.WaitSubscribers(t, b.broker, 0, "the slow subscriber to be dropped")
	close(w.release)
	select {
	case <-done:
	case <-time.After(waitBound):
		t.Fatal("the SSE response did not end after its subscription was dropped")
	}
	// The client sees the changes already handed on, then why the stream
	// ends: an error SLOW_SUBSCRIBER, then complete.
	events := readSSE(t, strings.NewReader(w.String()))
	if len(events) < 3 || len(events) > 4 || events[len(events)-1].event != "complete" {
		t.Fatalf("SSE events %+v, want 1 or 2 changes, an error, then complete", events)
	}
	for i, e := range events[:len(events)-2] {
		if j := jobOf(t, wstest.Msg{Type: e.event, Payload: json.RawMessage(e.data)}); e.event != "next" || j.ID == "" {
			t.Fatalf("SSE event %d: %+v, want a change", i, e)
		}
	}
	var last struct {
		Errors []gqlError `json:"errors"`
	}
	e := events[len(events)-2]
	if err := json.Unmarshal([]byte(e.data), &last); err != nil || e.event != "next" || len(last.Errors) != 1 || last.Errors[0].code() != graph.CodeSlowSubscriber {
		t.Fatalf("SSE event %+v (%v), want an error with extensions.code SLOW_SUBSCRIBER", e, err)
	}
	// The server still serves.
	b.create(t, "after", nil)
}

const sseChildEnv = "GRAPH_TEST_SLOW_SSE_CHILD"

// TestSSESlowSubscriber runs slowSSESubscriber in a child process: if the
// server panics outside a request goroutine, that kills the process, and
// this test reports it instead of taking the whole test binary down.
func TestSSESlowSubscriber(t *testing.T) {
	if os.Getenv(sseChildEnv) != "" {
		slowSSESubscriber(t)
		return
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSSESlowSubscriber$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), sseChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 6000 {
			out = append(out[:6000], "\n[...]"...)
		}
		t.Fatalf("an SSE subscriber that falls behind: the server process failed (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestSSESlowSubscriber") {
		t.Fatalf("the child process did not run the scenario:\n%s", out)
	}
}

// stallingHandler serves h, except that the first socket write of an
// upgraded connection carrying a "next" message blocks until released: a
// client that stops reading.
type stallingHandler struct {
	h       http.Handler
	blocked chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *stallingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.h.ServeHTTP(&stallingWriter{ResponseWriter: w, s: s}, r)
}

type stallingWriter struct {
	http.ResponseWriter
	s *stallingHandler
}

func (w *stallingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	return &stallingConn{Conn: c, s: w.s}, brw, err
}

type stallingConn struct {
	net.Conn
	s *stallingHandler
}

func (c *stallingConn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"type":"next"`)) {
		c.s.once.Do(func() {
			close(c.s.blocked)
			<-c.s.release
		})
	}
	return c.Conn.Write(p)
}

// setupSlowSubscriber wires a bundle without workers, whose broker drops a
// subscriber as soon as one change waits behind a full channel, and a
// server whose first websocket "next" write stalls until the returned
// function is called (at most once; cleanup does it if the test did not).
func setupSlowSubscriber(t *testing.T) (*bundle, *httptest.Server, *stallingHandler, func()) {
	t.Helper()
	b := setup(t, func(o *options) {
		o.startPool = false
		o.brokerOpts = broker.Options{Buffer: 1, CoalesceAfter: 1, MaxBacklog: 1}
	})
	stall := &stallingHandler{h: b.handler, blocked: make(chan struct{}), release: make(chan struct{})}
	var once sync.Once
	unblock := func() { once.Do(func() { close(stall.release) }) }
	t.Cleanup(unblock)
	srv := httptest.NewServer(stall)
	t.Cleanup(srv.Close)
	return b, srv, stall, unblock
}

func TestWebsocketSlowSubscriber(t *testing.T) {
	t.Parallel()
	b, srv, stall, release := setupSlowSubscriber(t)
	w := dialWS(t, srv, "graphql-transport-ws")
	w.Init()
	w.Send(wstest.Subscribe("s", `subscription { jobUpdated { id version } }`, nil))
	brokertest.WaitSubscribers(t, b.broker, 1, "the subscription")
	b.storeCreate(t, "slow", 1)
	select {
	case <-stall.blocked:
	case <-time.After(waitBound):
		t.Fatal("the first change was not written")
	}
	// The writer is stuck on the first change: one more fills the
	// subscription's channel, one its backlog, the next overflows it.
	b.storeCreate(t, "slow", 3)
	brokertest.WaitSubscribers(t, b.broker, 0, "the slow subscriber to be dropped")
	release()

	// The client sees the changes already handed to gqlgen, then the
	// protocol's error message with SLOW_SUBSCRIBER.
	nexts := 0
	for {
		m, err := w.Read()
		if err != nil {
			t.Fatalf("after %d changes: %v, want a SLOW_SUBSCRIBER error", nexts, err)
		}
		if m.ID != "s" {
			t.Fatalf("unexpected message %s %s %s", m.Type, m.ID, m.Payload)
		}
		if m.Type == "next" && !bytes.Contains(m.Payload, []byte(`"errors"`)) {
			if j := jobOf(t, m); j.ID == "" || j.Version != 1 {
				t.Fatalf("got %+v, want a new job", j)
			}
			nexts++
			if nexts > 2 {
				t.Fatalf("%d changes delivered, want at most the one in flight and the buffered one", nexts)
			}
			continue
		}
		if m.Type != "error" {
			t.Fatalf("got %s %s, want a SLOW_SUBSCRIBER error message", m.Type, m.Payload)
		}
		errs := subscriptionError(t, m)
		if len(errs) != 1 || errs[0].code() != graph.CodeSlowSubscriber || !strings.Contains(errs[0].Message, "too slow") {
			t.Fatalf("errors %+v, want one SLOW_SUBSCRIBER", errs)
		}
		break
	}
	if nexts == 0 {
		t.Fatal("the change in flight was not delivered")
	}
	// The connection stays usable: a new subscription works.
	created := b.create(t, "after", nil)
	w.Send(wstest.Subscribe("again", `subscription($id: ID) { jobUpdated(id: $id) { id } }`, map[string]any{"id": created.ID}))
	if j := jobOf(t, w.Expect("next", "again")); j.ID != created.ID {
		t.Fatalf("resubscribed: got %+v", j)
	}
}
