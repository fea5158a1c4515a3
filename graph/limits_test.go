package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/gqllimit"
	"github.com/jobqueue/jobqueue/internal/logtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/wstransport/wstest"
)

// serverLimits are the server's defaults (cmd/server/config.go).
var serverLimits = graph.Limits{
	Query:          gqllimit.Limits{Tokens: 15000, Depth: 25, Aliases: 200, Directives: 200, FragmentSpreads: 200, Fields: 1000},
	JobsPerRequest: 100,
	PayloadBytes:   64 << 10,
}

func withServerLimits(o *options) {
	o.limits = serverLimits
	o.startPool = false
}

// numbered joins n copies of item with %d replaced by the copy's number.
func numbered(n int, item string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.ReplaceAll(item, "%d", strconv.Itoa(i)))
		b.WriteByte(' ')
	}
	return b.String()
}

// fanOut is the fragment fan-out of issue 10: 2^levels fields once
// expanded, in a few hundred bytes.
func fanOut(levels int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{ ...F%d } fragment F0 on Query { __typename }", levels)
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, " fragment F%d on Query { ...F%d ...F%d }", i, i-1, i-1)
	}
	return b.String()
}

// issue10Attacks are the documents of issue 10 that a single request can
// send, by the code they must be refused with.
func issue10Attacks() map[string]struct{ query, code string } {
	return map[string]struct{ query, code string }{
		"fragment fan-out":          {fanOut(40), graph.CodeQueryTooLarge},
		"2,000 aliases of __schema": {"{" + numbered(2000, "a%d:__schema{types{fields{args{name}}}}") + "}", graph.CodeQueryTooLarge},
		"20,000 __typename":         {"{" + strings.Repeat(" __typename", 20000) + "}", graph.CodeQueryTooLarge},
		"60,000 @skip":              {"{" + strings.Repeat(" __typename @skip(if:false)", 60000) + "}", graph.CodeQueryTooLarge},
		"24 pages of 500 payloads":  {"{" + numbered(24, `a%d:jobs(type:"big",first:500){nodes{payload}}`) + "}", graph.CodeComplexityLimit},
		"101 createJob":             {"mutation {" + numbered(101, `c%d: createJob(input: {type: "x"}) { id }`) + "}", graph.CodeTooManyJobs},
	}
}

// refusalStatus is the HTTP status of each refusal code.
var refusalStatus = map[string]int{
	graph.CodeQueryTooLarge:   http.StatusRequestEntityTooLarge,
	graph.CodeComplexityLimit: http.StatusBadRequest,
	graph.CodeTooManyJobs:     http.StatusBadRequest,
}

// postQuery sends query as a POST answered in accept ("" for
// application/json).
func postQuery(h http.Handler, query, accept string) *httptest.ResponseRecorder {
	body, _ := json.Marshal(map[string]string{"query": query})
	req := httptest.NewRequest(http.MethodPost, "/query", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// wantOK checks that rec is a 200 with data and no errors.
func wantOK(t *testing.T, rec *httptest.ResponseRecorder, what string) {
	t.Helper()
	var resp struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusOK || len(resp.Errors) > 0 || len(resp.Data) == 0 {
		t.Fatalf("%s: got %d %.300s, want 200 with data and no errors", what, rec.Code, rec.Body)
	}
}

// wantRefused checks that rec is a refusal with code: its HTTP status, a
// JSON body holding one short error with that code, and no data.
func wantRefused(t *testing.T, rec *httptest.ResponseRecorder, code string) gqlError {
	t.Helper()
	return wantRefusedWith(t, rec, code, refusalStatus[code])
}

// wantRefusedWith is wantRefused for a request error answered with status.
func wantRefusedWith(t *testing.T, rec *httptest.ResponseRecorder, code string, status int) gqlError {
	t.Helper()
	var resp struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("body %.300s is not JSON: %v", rec.Body, err)
	}
	if rec.Code != status || len(resp.Errors) != 1 || resp.Errors[0].code() != code {
		t.Fatalf("got %d %.300s, want %d with one error of code %s", rec.Code, rec.Body, status, code)
	}
	if len(resp.Data) != 0 && string(resp.Data) != "null" {
		t.Fatalf("refused request has data %s", resp.Data)
	}
	// Short, and never the request echoed back.
	if m := resp.Errors[0].Message; len(m) > 160 {
		t.Fatalf("message of %d bytes: %q", len(m), m)
	}
	return resp.Errors[0]
}

func TestIssue10AttacksRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, withServerLimits)
	b.storeCreate(t, "big", 3)
	for name, a := range issue10Attacks() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, accept := range []string{"", "application/json", "application/graphql-response+json"} {
				wantRefused(t, postQuery(b.handler, a.query, accept), a.code)
			}
		})
	}
	page, err := b.store.List(context.Background(), store.ListQuery{Limit: 1})
	if err != nil || page.Total != 3 {
		t.Fatalf("after the attacks the store holds %d jobs (%v), want the 3 it had", page.Total, err)
	}
}

// TestFanOutOverGET: a GET (an <img> tag on any page can send one) is
// refused the same way.
func TestFanOutOverGET(t *testing.T) {
	t.Parallel()
	b := setup(t, withServerLimits)
	for _, accept := range []string{"", "application/graphql-response+json"} {
		req := httptest.NewRequest(http.MethodGet, "/query?query="+url.QueryEscape(fanOut(40)), nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		rec := httptest.NewRecorder()
		b.handler.ServeHTTP(rec, req)
		wantRefused(t, rec, graph.CodeQueryTooLarge)
	}
}

// TestQueryLimitsThroughHandler checks each document limit at, just under
// and just over the boundary through the handler (internal/gqllimit tests
// how each is counted).
func TestQueryLimitsThroughHandler(t *testing.T) {
	t.Parallel()
	const n = 20
	cases := []struct {
		name  string
		set   func(*gqllimit.Limits)
		query func(count int) string
	}{
		{"tokens", func(l *gqllimit.Limits) { l.Tokens = n },
			func(c int) string { return "{" + strings.Repeat(" __typename", c-2) + " }" }},
		{"aliases", func(l *gqllimit.Limits) { l.Aliases = n },
			func(c int) string { return "{" + numbered(c, "a%d: __typename") + "}" }},
		{"directives", func(l *gqllimit.Limits) { l.Directives = n },
			func(c int) string { return "{" + strings.Repeat(" __typename @include(if: true)", c) + " }" }},
		{"fragment spreads", func(l *gqllimit.Limits) { l.FragmentSpreads = n },
			func(c int) string { return "{" + strings.Repeat(" ...F", c) + " } fragment F on Query { __typename }" }},
		{"fields", func(l *gqllimit.Limits) { l.Fields = n },
			func(c int) string { return "{" + strings.Repeat(" __typename", c) + " }" }},
		// job { errors { ... } } nests 3; each __type ofType 1 more.
		{"depth", func(l *gqllimit.Limits) { l.Depth = n },
			func(c int) string {
				return `{ __type(name: "Job") {` + strings.Repeat(" ofType {", c-2) + " name" + strings.Repeat(" }", c-2) + " } }"
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *options) {
				o.startPool = false
				c.set(&o.limits.Query)
			})
			for _, count := range []int{n - 1, n} {
				wantOK(t, postQuery(b.handler, c.query(count), ""), fmt.Sprintf("%d %s with a limit of %d", count, c.name, n))
			}
			e := wantRefused(t, postQuery(b.handler, c.query(n+1), ""), graph.CodeQueryTooLarge)
			if !strings.Contains(e.Message, strconv.Itoa(n)) {
				t.Fatalf("message %q does not name the limit %d", e.Message, n)
			}
		})
	}
}

func TestTooManyJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, withServerLimits)
	count := func() int {
		t.Helper()
		page, err := b.store.List(context.Background(), store.ListQuery{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		return page.Total
	}
	creates := func(n int) string {
		return numbered(n, `c%d: createJob(input: {type: "x"}) { id }`)
	}
	for _, n := range []int{99, 100} {
		before := count()
		wantOK(t, postQuery(b.handler, "mutation {"+creates(n)+"}", ""), fmt.Sprintf("%d createJob", n))
		if got := count() - before; got != n {
			t.Fatalf("%d createJob created %d jobs", n, got)
		}
	}
	before := count()
	for _, c := range []struct{ name, doc, operation string }{
		{"101 aliases", "mutation {" + creates(101) + "}", ""},
		// Fragments and inline fragments count once per spread.
		{"fragments", "mutation { ...M ... on Mutation { ...M } c: createJob(input: {type: \"x\"}) { id } } fragment M on Mutation {" + creates(50) + "}", ""},
		// The operation that runs is counted.
		{"named", "query Q { __typename } mutation M {" + creates(101) + "}", "M"},
	} {
		e := wantRefused(t, postOperation(b.handler, c.doc, c.operation), graph.CodeTooManyJobs)
		if !strings.Contains(e.Message, "100") || !strings.Contains(e.Message, "101") {
			t.Fatalf("%s: message %q, want it to name the limit 100 and the 101 fields", c.name, e.Message)
		}
	}
	if got := count(); got != before {
		t.Fatalf("refused mutations created %d jobs, want none", got-before)
	}
	// Another operation of the document may hold more: only the one that
	// runs counts.
	doc := "mutation Big {" + creates(101) + "} mutation Small {" + creates(2) + "}"
	wantOK(t, postOperation(b.handler, doc, "Small"), "Small of a document with a Big one")
	if got := count() - before; got != 2 {
		t.Fatalf("Small created %d jobs, want 2", got)
	}
}

// postOperation sends the operation named operation of doc as a POST.
func postOperation(h http.Handler, doc, operation string) *httptest.ResponseRecorder {
	return postRequest(h, map[string]any{"query": doc, "operationName": operation})
}

// postRequest posts the GraphQL request r (query, operationName,
// variables) as JSON.
func postRequest(h http.Handler, r map[string]any) *httptest.ResponseRecorder {
	body, _ := json.Marshal(r)
	req := httptest.NewRequest(http.MethodPost, "/query", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestPayloadComplexity: payload and result count one point per 4 KiB of
// MAX_PAYLOAD_BYTES, at least one.
func TestPayloadComplexity(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ payloadBytes, price int }{{1, 1}, {4096, 1}, {4097, 2}, {64 << 10, 16}} {
		t.Run(strconv.Itoa(c.payloadBytes), func(t *testing.T) {
			t.Parallel()
			// jobs(first: 500) costs 1 + 500 × (nodes 1 + payload + result).
			cost := 1 + 500*(1+2*c.price)
			const q = `{ jobs(first: 500) { nodes { payload result } } }`
			for _, limit := range []int{cost, cost + 1} {
				b := setup(t, func(o *options) {
					o.startPool, o.complexity, o.limits.PayloadBytes = false, limit, c.payloadBytes
				})
				wantOK(t, postQuery(b.handler, q, ""), fmt.Sprintf("complexity %d with a limit of %d", cost, limit))
			}
			b := setup(t, func(o *options) {
				o.startPool, o.complexity, o.limits.PayloadBytes = false, cost-1, c.payloadBytes
			})
			e := wantRefused(t, postQuery(b.handler, q, ""), graph.CodeComplexityLimit)
			if !strings.Contains(e.Message, strconv.Itoa(cost)) {
				t.Fatalf("message %q does not name the complexity %d", e.Message, cost)
			}
		})
	}
}

// TestIntrospectionComplexity: introspection counts what it returns,
// which gqlgen's walker does not (__schema costs it nothing).
func TestIntrospectionComplexity(t *testing.T) {
	t.Parallel()
	types := len(graph.NewExecutableSchema(graph.Config{}).Schema().Types)
	for _, c := range []struct {
		query string
		cost  int
	}{
		// __schema, types, a name per type.
		{`{ __schema { types { name } } }`, 2 + types},
		// __type, fields, a name per field of Job (22).
		{`{ __type(name: "Job") { fields { name } } }`, 2 + 22},
		// Besides other fields: jobs(first: 10) { nodes { id } } is 21.
		{`{ jobs(first: 10) { nodes { id } } __type(name: "Job") { fields { name } } }`, 21 + 24},
	} {
		for _, limit := range []int{c.cost, c.cost + 1} {
			b := setup(t, func(o *options) { o.startPool, o.complexity = false, limit })
			wantOK(t, postQuery(b.handler, c.query, ""), fmt.Sprintf("%s (complexity %d) with a limit of %d", c.query, c.cost, limit))
		}
		b := setup(t, func(o *options) { o.startPool, o.complexity = false, c.cost-1 })
		wantRefused(t, postQuery(b.handler, c.query, ""), graph.CodeComplexityLimit)
	}
	// Aliases of the schema within the document limits (50 × 13 fields),
	// refused by what they would return (50 × 608 on this schema).
	b := setup(t, withServerLimits)
	schema := "a%d: __schema { types { name kind description fields { name description type { name kind } args { name } } } }"
	wantRefused(t, postQuery(b.handler, "{"+numbered(50, schema)+"}", ""), graph.CodeComplexityLimit)
}

// TestRefusalLoggedOnce: one warning per refused request, with the
// client's address and without the document.
func TestRefusalLoggedOnce(t *testing.T) {
	t.Parallel()
	log, logs := logtest.Logger()
	b := setup(t, func(o *options) {
		withServerLimits(o)
		o.log = log
	})
	body, _ := json.Marshal(map[string]string{"query": "{" + strings.Repeat(" secretField", 1001) + " }"})
	req := httptest.NewRequest(http.MethodPost, "/query", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "198.51.100.7:4242"
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	wantRefused(t, rec, graph.CodeQueryTooLarge)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d log lines, want 1:\n%s", len(lines), logs.String())
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line["level"] != "WARN" || line["code"] != graph.CodeQueryTooLarge || line["client"] != "198.51.100.7:4242" {
		t.Fatalf("log line %s, want WARN with code %s and client 198.51.100.7:4242", lines[0], graph.CodeQueryTooLarge)
	}
	if strings.Contains(lines[0], "secretField") {
		t.Fatalf("log line echoes the document: %s", lines[0])
	}
}

// TestRefusalOverWebsocket: a refused operation ends with the protocol's
// error message, carrying the code; the connection stays usable.
func TestRefusalOverWebsocket(t *testing.T) {
	t.Parallel()
	b := setup(t, withServerLimits)
	ws := dialWS(t, b.server(t), "graphql-transport-ws")
	ws.Init()
	ws.Send(wstest.Msg{ID: "1", Type: "subscribe", Payload: wstest.Payload(fanOut(40), nil)})
	m := ws.Expect("error", "1")
	if errs := subscriptionError(t, m); len(errs) != 1 || errs[0].code() != graph.CodeQueryTooLarge {
		t.Fatalf("error message %s, want one error with code %s", m.Payload, graph.CodeQueryTooLarge)
	}
	ws.Send(wstest.Msg{ID: "2", Type: "subscribe", Payload: wstest.Payload("{ __typename }", nil)})
	// The error ended 1: no complete follows it, the next message is 2's.
	ws.Expect("next", "2")
	ws.Expect("complete", "2")
}

// TestFragmentCycle: fragments that spread one another are refused as
// validation would refuse them, before anything expands them.
func TestFragmentCycle(t *testing.T) {
	t.Parallel()
	b := setup(t, withServerLimits)
	rec := postQuery(b.handler, "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }", "application/graphql-response+json")
	var resp struct{ Errors []gqlError }
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusBadRequest || len(resp.Errors) != 1 ||
		resp.Errors[0].code() != "GRAPHQL_VALIDATION_FAILED" || !strings.Contains(resp.Errors[0].Message, "cycle") {
		t.Fatalf("got %d %.300s, want 400 with one GRAPHQL_VALIDATION_FAILED error naming the cycle", rec.Code, rec.Body)
	}
}
