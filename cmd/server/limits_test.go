package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// gqlResponse is what /query answered: the status and the decoded body.
type gqlResponse struct {
	status int
	Data   map[string]json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
	raw string
}

// query sends a GraphQL request as POST (variables may be nil), or as GET
// when get is true.
func (s *server) query(t *testing.T, get bool, doc string, variables map[string]any) gqlResponse {
	t.Helper()
	var resp *http.Response
	var err error
	if get {
		resp, err = s.client.Get(s.url + "/query?query=" + url.QueryEscape(doc))
	} else {
		body, _ := json.Marshal(map[string]any{"query": doc, "variables": variables})
		resp, err = s.client.Post(s.url+"/query", "application/json", bytes.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := gqlResponse{status: resp.StatusCode, raw: string(b)}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("body %.300s: %v", b, err)
	}
	return r
}

func numbered(n int, item string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.ReplaceAll(item, "%d", fmt.Sprint(i)))
		b.WriteByte(' ')
	}
	return b.String()
}

// TestDefaultLimitsPassRealClients: the default limits let through what
// real clients send: GraphiQL's introspection, the e2e suite's largest
// page, a dashboard, a batch of MAX_JOBS_PER_REQUEST creations.
func TestDefaultLimitsPassRealClients(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"PROCESSING_TIME": "0"})
	s.createJob(t, `{"type":"email","payload":{"to":"user@example.com"}}`)
	introspection, err := os.ReadFile("testdata/graphiql-introspection.graphql")
	if err != nil {
		t.Fatal(err)
	}
	const allJobFields = `id type payload status attempts error createdAt updatedAt startedAt finishedAt version
		errors { attempt message at } idempotencyKey timeoutSeconds maxAttempts runAt priority progress result cancelRequested`
	for _, c := range []struct {
		name string
		get  bool
		doc  string
		vars map[string]any
	}{
		{"GraphiQL introspection", false, string(introspection), nil},
		{"GraphiQL introspection as GET", true, string(introspection), nil},
		// e2e/lib/fleet.mjs JOB_PAGE: complexity 16,001.
		{"e2e page of 500 jobs with payloads", false, `query Jobs($type: String, $after: String) {
			jobs(type: $type, first: 500, after: $after) {
				totalCount
				pageInfo { hasNextPage endCursor }
				nodes { id type status attempts error errors { attempt message at } version finishedAt payload }
			}
		}`, map[string]any{"type": "email"}},
		// A dashboard: counts, a page of 100 jobs with every field, the
		// next page's cursor (complexity 6,013).
		{"dashboard", false, `query Dashboard($first: Int = 100, $after: String) {
			stats { pending processing completed failed cancelled }
			emails: stats(type: "email") { pending processing completed failed cancelled }
			jobs(first: $first, after: $after) {
				totalCount
				pageInfo { hasNextPage endCursor }
				edges { cursor node { ...Row } }
			}
		}
		fragment Row on Job { ` + allJobFields + ` }`, nil},
		{"batch of 100 createJob", false, "mutation {" + numbered(100, `c%d: createJob(input: {type: "batch", payload: {n: %d}}) { id status createdAt }`) + "}", nil},
	} {
		r := s.query(t, c.get, c.doc, c.vars)
		if r.status != http.StatusOK || len(r.Errors) > 0 || len(r.Data) == 0 {
			t.Errorf("%s: got %d %.400s, want 200 with data", c.name, r.status, r.raw)
		}
	}
}

// TestDefaultLimitsRefuseIssue10: issue 10's requests, sent to a server
// with the default settings, are refused with their code and status.
func TestDefaultLimitsRefuseIssue10(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{})
	var fanOut strings.Builder
	fanOut.WriteString("{ ...F40 } fragment F0 on Query { __typename }")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&fanOut, " fragment F%d on Query { ...F%d ...F%d }", i, i-1, i-1)
	}
	for _, c := range []struct {
		name   string
		get    bool
		doc    string
		code   string
		status int
	}{
		{"fragment fan-out", false, fanOut.String(), "QUERY_TOO_LARGE", 413},
		{"fragment fan-out as GET", true, fanOut.String(), "QUERY_TOO_LARGE", 413},
		{"2,000 aliases of __schema", false, "{" + numbered(2000, "a%d:__schema{types{fields{args{name}}}}") + "}", "QUERY_TOO_LARGE", 413},
		{"20,000 __typename", false, "{" + strings.Repeat(" __typename", 20000) + "}", "QUERY_TOO_LARGE", 413},
		// 60,000 would pass MAX_BODY_BYTES (1 MiB); 35,000 fit in it.
		{"35,000 @skip", false, "{" + strings.Repeat(" __typename @skip(if:false)", 35000) + "}", "QUERY_TOO_LARGE", 413},
		{"24 pages of 500 payloads", false, "{" + numbered(24, `a%d:jobs(type:"big",first:500){nodes{payload}}`) + "}", "COMPLEXITY_LIMIT_EXCEEDED", 400},
		{"101 createJob", false, "mutation {" + numbered(101, `c%d: createJob(input: {type: "x"}) { id }`) + "}", "TOO_MANY_JOBS", 400},
	} {
		r := s.query(t, c.get, c.doc, nil)
		if r.status != c.status || len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != c.code {
			t.Errorf("%s: got %d %.300s, want %d with one error of code %s", c.name, r.status, r.raw, c.status, c.code)
		}
	}
	var warnings int
	for _, l := range s.logs.Lines() {
		if l["msg"] == "graphql request refused" && l["level"] == "WARN" && strings.HasPrefix(fmt.Sprint(l["client"]), "127.0.0.1:") {
			warnings++
		}
	}
	if warnings != 7 {
		t.Errorf("%d warnings naming the client, want one per refused request (7)", warnings)
	}
}

// TestLimitSettings: each limit is read from its variable (and flag).
func TestLimitSettings(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"MAX_QUERY_FIELDS": "4", "MAX_JOBS_PER_REQUEST": "1"})
	if r := s.query(t, false, "{ a: __typename b: __typename c: __typename d: __typename e: __typename }", nil); r.status != 413 {
		t.Errorf("5 fields with MAX_QUERY_FIELDS=4: %d %.300s, want 413", r.status, r.raw)
	}
	if r := s.query(t, false, `mutation { a: createJob(input: {type: "x"}) { id } b: createJob(input: {type: "x"}) { id } }`, nil); r.status != 400 {
		t.Errorf("2 createJob with MAX_JOBS_PER_REQUEST=1: %d %.300s, want 400", r.status, r.raw)
	}
	cfg, err := parseConfig([]string{"-max-query-tokens", "7", "-max-query-depth", "6", "-max-query-aliases", "5", "-max-query-directives", "4", "-max-query-fragment-spreads", "3", "-max-query-fields", "2", "-max-jobs-per-request", "1"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.graphQLLimits()
	if q := l.Query; q.Tokens != 7 || q.Depth != 6 || q.Aliases != 5 || q.Directives != 4 || q.FragmentSpreads != 3 || q.Fields != 2 || l.JobsPerRequest != 1 || l.PayloadBytes != 65536 {
		t.Fatalf("limits from flags: %+v", l)
	}
}
