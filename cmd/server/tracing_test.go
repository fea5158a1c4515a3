package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/jobqueue/jobqueue/internal/store/sqlite"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it keeps every span the
// server exports.
type otlpReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	instance map[string]string // service.instance.id by span id
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{instance: map[string]string{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var export coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &export)
		}
		if req.URL.Path != "/v1/traces" || err != nil {
			t.Errorf("OTLP receiver: %s %s: %v", req.Method, req.URL.Path, err)
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.ResourceSpans {
			var instance string
			for _, kv := range rs.Resource.GetAttributes() {
				if kv.Key == "service.instance.id" {
					instance = kv.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
				for _, sp := range ss.Spans {
					r.instance[string(sp.SpanId)] = instance
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// instanceOf returns the service.instance.id of the process that made sp.
func (r *otlpReceiver) instanceOf(sp *tracepb.Span) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.instance[string(sp.SpanId)]
}

// named returns the spans with the name.
func (r *otlpReceiver) named(name string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// all returns every span received.
func (r *otlpReceiver) all() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// attr returns the value of the span's attribute key as text.
func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if v, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
				return strconv.FormatInt(v.IntValue, 10)
			}
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

// webhookReceiver answers every delivery and keeps the traceparent header
// of each.
type webhookReceiver struct {
	*httptest.Server
	mu           sync.Mutex
	traceParents []string
}

func newWebhookReceiver(t *testing.T) (*webhookReceiver, string) {
	t.Helper()
	h := &webhookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.traceParents = append(h.traceParents, r.Header.Get("traceparent"))
		h.mu.Unlock()
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(h.Close)
	file := filepath.Join(t.TempDir(), "handlers.json")
	if err := os.WriteFile(file, []byte(`{"email": {"url": "`+h.URL+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return h, file
}

func (h *webhookReceiver) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.traceParents...)
}

// createJobGraphQL creates a job of type email with a named mutation,
// sending headers, and returns its id. With runAt not zero, the job runs
// then.
func (s *server) createJobGraphQL(t *testing.T, header http.Header, runAt time.Time) string {
	t.Helper()
	input := map[string]any{"type": "email"}
	if !runAt.IsZero() {
		input["runAt"] = runAt.Format(time.RFC3339Nano)
	}
	body, _ := json.Marshal(map[string]any{
		"query":         "mutation CreateIt($input: CreateJobInput!) { createJob(input: $input) { id } }",
		"operationName": "CreateIt",
		"variables":     map[string]any{"input": input},
	})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/query", bytes.NewReader(body))
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct{ CreateJob struct{ ID string } }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Data.CreateJob.ID == "" {
		t.Fatalf("createJob: %d %v", resp.StatusCode, err)
	}
	return out.Data.CreateJob.ID
}

// shutdown stops the server and waits for run to return (the spans are
// flushed by then).
func (s *server) shutdown(t *testing.T) {
	t.Helper()
	s.stop()
	err := <-s.done
	s.done <- err // for the cleanup of start
	if err != nil {
		t.Fatalf("server: %v", err)
	}
}

// With an OTLP endpoint set, the server exports the spans of a job's life:
// the HTTP request and the GraphQL operation that created it, the store
// calls, and the attempt, which links to the creating operation's span and
// whose webhook request carries the attempt's trace in its traceparent.
func TestTracesFromCreateJobToTheWebhook(t *testing.T) {
	t.Parallel()
	collector := newOTLPReceiver(t)
	hook, handlers := newWebhookReceiver(t)
	s := start(t, map[string]string{"HANDLERS_FILE": handlers, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_SERVICE_NAME": "jobqueue-test"})
	id := s.createJobGraphQL(t, http.Header{}, time.Time{})
	s.waitStatus(t, id, "COMPLETED")
	restID := s.createJob(t, `{"type":"email"}`)
	s.waitStatus(t, restID, "COMPLETED")
	s.shutdown(t)

	one := func(name string, match func(*tracepb.Span) bool) *tracepb.Span {
		t.Helper()
		var found []*tracepb.Span
		for _, sp := range collector.named(name) {
			if match == nil || match(sp) {
				found = append(found, sp)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d spans %q, want 1", len(found), name)
		}
		return found[0]
	}
	op := one("mutation CreateIt", nil)
	if attr(op, "graphql.operation.type") != "mutation" || attr(op, "graphql.operation.name") != "CreateIt" {
		t.Fatalf("operation span attributes: %v", op.Attributes)
	}
	req := one("POST /query", func(sp *tracepb.Span) bool { return string(sp.SpanId) == string(op.ParentSpanId) })
	if req.Kind != tracepb.Span_SPAN_KIND_SERVER || attr(req, "http.route") != "/query" || string(req.TraceId) != string(op.TraceId) {
		t.Fatalf("request span: kind %v, attributes %v", req.Kind, req.Attributes)
	}
	// The operation's store call is its child.
	one("store.Create", func(sp *tracepb.Span) bool { return string(sp.ParentSpanId) == string(op.SpanId) })
	one("store.Complete", func(sp *tracepb.Span) bool { return attr(sp, "jobqueue.job.id") == id })

	of := func(id string) func(*tracepb.Span) bool {
		return func(sp *tracepb.Span) bool { return attr(sp, "jobqueue.job.id") == id }
	}
	attempt := one("process email", of(id))
	if attempt.Kind != tracepb.Span_SPAN_KIND_CONSUMER || attr(attempt, "jobqueue.job.id") != id ||
		attr(attempt, "jobqueue.job.type") != "email" || attr(attempt, "jobqueue.job.attempt") != "1" {
		t.Fatalf("attempt span: kind %v, attributes %v", attempt.Kind, attempt.Attributes)
	}
	if len(attempt.Links) != 1 || string(attempt.Links[0].TraceId) != string(op.TraceId) || string(attempt.Links[0].SpanId) != string(op.SpanId) {
		t.Fatalf("attempt links %v, want one to the createJob operation's span %x/%x", attempt.Links, op.TraceId, op.SpanId)
	}
	call := one("POST", func(sp *tracepb.Span) bool { return string(sp.ParentSpanId) == string(attempt.SpanId) })
	if call.Kind != tracepb.Span_SPAN_KIND_CLIENT || attr(call, "http.response.status_code") != "200" {
		t.Fatalf("webhook span: kind %v, attributes %v", call.Kind, call.Attributes)
	}
	want := "00-" + hex.EncodeToString(attempt.TraceId) + "-" + hex.EncodeToString(call.SpanId) + "-01"
	if got := hook.received(); len(got) != 2 || got[0] != want {
		t.Fatalf("webhook traceparent headers %q, want [%s, …]", got, want)
	}

	// A job created over REST links to its request's span.
	post := one("POST /jobs", nil)
	restAttempt := one("process email", of(restID))
	if len(restAttempt.Links) != 1 || string(restAttempt.Links[0].SpanId) != string(post.SpanId) || string(restAttempt.Links[0].TraceId) != string(post.TraceId) {
		t.Fatalf("REST job's attempt links %v, want one to the POST /jobs span %x/%x", restAttempt.Links, post.TraceId, post.SpanId)
	}
}

// With tracing off, nothing is kept of a traceparent a client sends: the
// job has none and its webhook request carries none.
func TestTracingOffKeepsNoTraceParent(t *testing.T) {
	t.Parallel()
	hook, handlers := newWebhookReceiver(t)
	db := filepath.Join(t.TempDir(), "jobs.db")
	s := start(t, map[string]string{"HANDLERS_FILE": handlers, "DATABASE_URL": "sqlite:" + db})
	id := s.createJobGraphQL(t, http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, time.Time{})
	s.waitStatus(t, id, "COMPLETED")
	s.shutdown(t)
	if got := hook.received(); len(got) != 1 || got[0] != "" {
		t.Fatalf("webhook traceparent headers %q, want one empty", got)
	}
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	j, err := st.Get(context.Background(), id)
	if err != nil || j.TraceParent != "" {
		t.Fatalf("job = %+v, %v; want no traceparent", j, err)
	}
}

// The link survives the process: a job created by one server, whose first
// attempt that server gives up at shutdown, and which another server
// sharing its database runs then, links both attempts to the span the
// first server made when it created the job.
func TestAttemptLinksToCreationOnAnotherInstance(t *testing.T) {
	t.Parallel()
	collector := newOTLPReceiver(t)
	// a's receiver holds its delivery until a gives it up.
	delivering := make(chan struct{}, 1)
	holding := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to the end, so that the server notices the client leave.
		_, _ = io.Copy(io.Discard, r.Body)
		delivering <- struct{}{}
		<-r.Context().Done()
	}))
	defer holding.Close()
	holdingFile := filepath.Join(t.TempDir(), "holding.json")
	if err := os.WriteFile(holdingFile, []byte(`{"email": {"url": "`+holding.URL+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, answering := newWebhookReceiver(t)
	db := "sqlite:" + filepath.Join(t.TempDir(), "jobs.db")
	env := func(instance, handlers string) map[string]string {
		return map[string]string{"HANDLERS_FILE": handlers, "DATABASE_URL": db, "INSTANCE_ID": instance,
			"SHUTDOWN_TIMEOUT": "10ms", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}
	}
	a := start(t, env("a", holdingFile))
	id := a.createJobGraphQL(t, http.Header{}, time.Time{})
	<-delivering
	a.shutdown(t) // the attempt is cancelled, the job back to pending
	b := start(t, env("b", answering))
	b.waitStatus(t, id, "COMPLETED")
	b.shutdown(t)

	ops := collector.named("mutation CreateIt")
	if len(ops) != 1 || collector.instanceOf(ops[0]) != "a" {
		t.Fatalf("%d operation spans; want one, by a", len(ops))
	}
	op := ops[0]
	attempts := collector.named("process email")
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans, want 2", len(attempts))
	}
	for _, attempt := range attempts {
		want := map[string]string{"1": "a", "2": "b"}[attr(attempt, "jobqueue.job.attempt")]
		if got := collector.instanceOf(attempt); got != want || want == "" {
			t.Fatalf("attempt %s run by %q, want %q", attr(attempt, "jobqueue.job.attempt"), got, want)
		}
		if len(attempt.Links) != 1 || string(attempt.Links[0].TraceId) != string(op.TraceId) || string(attempt.Links[0].SpanId) != string(op.SpanId) {
			t.Fatalf("attempt %s (by %s) links %v, want one to a's createJob span %x/%x", attr(attempt, "jobqueue.job.attempt"), collector.instanceOf(attempt), attempt.Links, op.TraceId, op.SpanId)
		}
	}
}

// The tracing settings come from the environment and the flags:
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins over OTEL_EXPORTER_OTLP_PROTOCOL
// and a protocol other than http/protobuf is refused, naming the setting
// that asked for it; OTEL_SDK_DISABLED=true turns tracing off.
func TestTracingConfig(t *testing.T) {
	t.Parallel()
	const endpoint = "http://collector:4318"
	for _, tt := range []struct {
		env  map[string]string
		args []string
		on   bool
		err  string // a part of the error; "" for none
	}{
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL: grpc is not supported"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, err: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: grpc is not supported"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, args: []string{"-otel-exporter-otlp-traces-protocol", "http/json"}, err: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: http/json is not supported"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SDK_DISABLED": "true"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, args: []string{"-otel-sdk-disabled", "true"}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SDK_DISABLED": "false"}, on: true},
		{env: map[string]string{"OTEL_SDK_DISABLED": "yes"}, err: "OTEL_SDK_DISABLED (-otel-sdk-disabled): want true or false"},
	} {
		cfg, err := parseConfig(tt.args, env(tt.env), io.Discard)
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%v %v: error %v, want one containing %q", tt.env, tt.args, err, tt.err)
			continue
		}
		if err == nil && cfg.Tracing.Enabled() != tt.on {
			t.Errorf("%v %v: tracing on %v, want %v", tt.env, tt.args, cfg.Tracing.Enabled(), tt.on)
		}
	}
}

// With OTEL_SDK_DISABLED=true the server exports nothing, though an
// endpoint is set.
func TestSDKDisabledExportsNothing(t *testing.T) {
	t.Parallel()
	collector := newOTLPReceiver(t)
	s := start(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_SDK_DISABLED": "true"})
	s.createJobGraphQL(t, http.Header{}, time.Time{})
	s.shutdown(t)
	if got := collector.all(); len(got) != 0 {
		t.Fatalf("%d spans exported with OTEL_SDK_DISABLED=true", len(got))
	}
}

// An idle server that is probed and scraped exports no traces: no spans
// of /health, /ready or /metrics, of the Stats they read, or of the
// workers' empty claims (on PostgreSQL, one every POLL_INTERVAL).
func TestIdleServerMakesNoTraces(t *testing.T) {
	t.Parallel()
	backends := map[string]string{"memory": "memory:"}
	if pg := postgresURL(t); pg != "" {
		backends["postgres"] = pg
	}
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			collector := newOTLPReceiver(t)
			s := start(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "DATABASE_URL": url, "POLL_INTERVAL": "10ms"})
			for _, path := range []string{"/health", "/ready"} {
				if code, _, _ := get(t, s.client, s.url+path, nil); code != http.StatusOK {
					t.Fatalf("GET %s: %d", path, code)
				}
			}
			// Scrape until the dispatcher has claimed (nothing) a few
			// times.
			minClaims := uint64(1)
			if name == "postgres" {
				minClaims = 3
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				code, _, body := get(t, s.client, s.url+"/metrics", nil)
				if code != http.StatusOK {
					t.Fatalf("GET /metrics: %d", code)
				}
				f := scrape(t, body)["jobqueue_claim_jobs"]
				if f != nil && len(f.GetMetric()) == 1 && f.GetMetric()[0].GetHistogram().GetSampleCount() >= minClaims {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("fewer than %d claims after 10 s", minClaims)
				}
			}
			s.shutdown(t)
			if got := collector.all(); len(got) != 0 {
				names := make([]string, len(got))
				for i, sp := range got {
					names[i] = sp.Name
				}
				t.Fatalf("spans exported by an idle server: %v", names)
			}
		})
	}
}
