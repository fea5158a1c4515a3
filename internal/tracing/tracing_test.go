package tracing_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/store/storetest"
	"github.com/jobqueue/jobqueue/internal/tracing"
	"github.com/jobqueue/jobqueue/internal/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg tracing.Config
		on  bool
		err string // a part of the error; "" for none
	}{
		{tracing.Config{}, false, ""},
		{tracing.Config{Endpoint: "http://collector:4318"}, true, ""},
		{tracing.Config{TracesEndpoint: "https://collector/v1/traces"}, true, ""},
		{tracing.Config{Exporter: "otlp"}, true, ""},
		{tracing.Config{Exporter: "none", Endpoint: "http://collector:4318"}, false, ""},
		{tracing.Config{Exporter: "jaeger"}, false, "OTEL_TRACES_EXPORTER"},
		{tracing.Config{Endpoint: "collector:4318"}, true, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{tracing.Config{Endpoint: "http://c:4318", Protocol: "grpc"}, true, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{tracing.Config{Sampler: "traceidratio", SamplerArg: "0.25"}, false, ""},
		{tracing.Config{Sampler: "traceidratio", SamplerArg: "2"}, false, "OTEL_TRACES_SAMPLER_ARG"},
		{tracing.Config{Sampler: "sometimes"}, false, "OTEL_TRACES_SAMPLER"},
	} {
		err := c.cfg.Check()
		if c.cfg.Enabled() != c.on || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%+v: enabled %v, check %v; want enabled %v, error naming %q", c.cfg, c.cfg.Enabled(), err, c.on, c.err)
		}
	}
}

// Off, every hook returns what it wraps, and Run only waits.
func TestOffWrapsNothing(t *testing.T) {
	t.Parallel()
	tr, err := tracing.New(context.Background(), tracing.Config{})
	if err != nil || tr.Enabled() {
		t.Fatalf("New(off) = %v, %v", tr, err)
	}
	st := memory.New(nil)
	if tr.Store(st, "memory") != store.Store(st) {
		t.Error("Store wrapped the store")
	}
	h := http.NotFoundHandler()
	if tr.GraphQL() != nil || tr.Transport(http.DefaultTransport) != http.DefaultTransport || tr.Handler(nil) != nil {
		t.Error("a hook wrapped its argument")
	}
	if got := tr.Middleware(h); got == nil {
		t.Error("Middleware returned nil")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// The traced store passes the conformance suite: it changes nothing of
// the store's behaviour (Tuning included).
func TestStoreConformance(t *testing.T) {
	t.Parallel()
	tr := tracing.NewRecording(tracetest.NewInMemoryExporter())
	storetest.Run(t, func(t *testing.T, opts storetest.Options) store.Store {
		st, err := memory.NewWithOptions(memory.Options{Publisher: opts.Publisher, ErrorHistory: opts.ErrorHistory})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Store(st, "memory")
	})
}

// An attempt's span is a consumer span of a trace of its own, linked to
// the job's creation; the handler runs under it, and its error marks it.
func TestHandlerSpanLinksToCreation(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewRecording(exp)
	var inner trace.SpanContext
	h := tr.Handler(worker.HandlerFunc(func(ctx context.Context, _ *domain.Job) error {
		inner = trace.SpanContextFromContext(ctx)
		return errors.New("boom")
	}))
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := h.Handle(context.Background(), &domain.Job{ID: "j1", Type: "email", Attempts: 2, TraceParent: tp}); err == nil {
		t.Fatal("the handler's error was lost")
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name != "process email" || s.SpanKind != trace.SpanKindConsumer || !s.SpanContext.Equal(inner) || s.Status.Description != "boom" {
		t.Fatalf("span %q kind %v status %v: want the attempt's consumer span, failed", s.Name, s.SpanKind, s.Status)
	}
	if len(s.Links) != 1 || s.Links[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Links[0].SpanContext.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("links %+v, want one to the creating span", s.Links)
	}
	if s.SpanContext.TraceID() == s.Links[0].SpanContext.TraceID() {
		t.Fatal("the attempt is in the creation's trace; want a trace of its own")
	}
}

// A request's server span is named after the route that served it, and
// the webhook transport carries the trace to the receiver.
func TestHTTPSpans(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewRecording(exp)
	headers := make(chan string, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { headers <- r.Header.Get("traceparent") }))
	defer hook.Close()
	client := &http.Client{Transport: tr.Transport(http.DefaultTransport)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, hook.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	})
	srv := httptest.NewServer(tr.Middleware(tracing.Route(mux)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/jobs/123")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want the request's and the webhook call's", len(spans))
	}
	call, req := spans[0], spans[1]
	if req.Name != "GET /jobs/{id}" || req.SpanKind != trace.SpanKindServer {
		t.Fatalf("request span %q kind %v", req.Name, req.SpanKind)
	}
	if call.Name != "POST" || call.SpanKind != trace.SpanKindClient || call.Parent.SpanID() != req.SpanContext.SpanID() {
		t.Fatalf("call span %q kind %v parent %v", call.Name, call.SpanKind, call.Parent.SpanID())
	}
	if header, want := <-headers, "00-"+call.SpanContext.TraceID().String()+"-"+call.SpanContext.SpanID().String()+"-01"; header != want {
		t.Fatalf("traceparent %q, want %q", header, want)
	}
}

// Idle polling and stats make no traces: a Claim outside any trace gets a
// span only when it claimed jobs (linked to their creation, timed from
// the claim's start), and Stats outside any trace gets none. Inside a
// trace both get their span.
func TestBackgroundStoreCallsMakeNoTraces(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewRecording(exp)
	inner := memory.New(nil)
	st := tr.Store(inner, "memory")
	ctx := context.Background()
	now := time.Now()
	claim := store.ClaimRequest{Owner: "w1", Limit: 5, Now: now, LeaseUntil: now.Add(time.Minute)}
	if js, err := st.Claim(ctx, claim); err != nil || len(js) != 0 {
		t.Fatalf("Claim on an empty store = %v, %v", js, err)
	}
	if _, err := st.Stats(ctx, store.StatsQuery{}); err != nil {
		t.Fatal(err)
	}
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Fatalf("%d spans of an empty claim and stats, want none: %v", len(spans), spans[0].Name)
	}

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	j, err := inner.Create(ctx, domain.NewJob{Type: "email", TraceParent: tp})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	claim.Now = before
	js, err := st.Claim(ctx, claim)
	if err != nil || len(js) != 1 || js[0].ID != j.ID {
		t.Fatalf("Claim = %v, %v; want job %s", js, err, j.ID)
	}
	after := time.Now()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want the claim's", len(spans))
	}
	s := spans[0]
	if s.Name != "store.Claim" || s.SpanKind != trace.SpanKindClient || s.Parent.IsValid() || s.StartTime.Before(before) || s.EndTime.After(after) || s.EndTime.Before(s.StartTime) {
		t.Fatalf("claim span %q kind %v parent %v from %v to %v, want a root client span within the claim's %v to %v", s.Name, s.SpanKind, s.Parent, s.StartTime, s.EndTime, before, after)
	}
	if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("claim links %+v, want one to the job's creation", s.Links)
	}
	exp.Reset()

	pctx, parent := tr.Tracer().Start(ctx, "request")
	if _, err := st.Claim(pctx, claim); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stats(pctx, store.StatsQuery{}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var names []string
	for _, s := range exp.GetSpans() {
		if s.Name != "request" && s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q is not a child of the request", s.Name)
		}
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "store.Claim,store.Stats,request" {
		t.Fatalf("spans %v, want an empty claim and stats inside the trace", names)
	}
}

// Health probes and metric scrapes get no server span; other requests do.
func TestProbesMakeNoSpans(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewRecording(exp)
	var inside []bool
	h := tr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside = append(inside, trace.SpanContextFromContext(r.Context()).IsValid())
	}))
	for _, path := range []string{"/health", "/ready", "/metrics", "/jobs"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	if want := []bool{false, false, false, true}; !slices.Equal(inside, want) {
		t.Fatalf("span in the request's context: %v, want %v", inside, want)
	}
	if spans := exp.GetSpans(); len(spans) != 1 || spans[0].Name != "GET" {
		t.Fatalf("%d spans, want one of GET /jobs", len(spans))
	}
}

// A client's operation name, however long, is cut to 128 bytes (whole
// characters) in the span's name and attribute; the error message in the
// status to 1024 bytes, and any other string attribute to 1024 characters.
func TestLongValuesAreCut(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewRecording(exp)
	long := strings.Repeat("é", 100_000) // 200,000 bytes
	ctx := graphql.WithOperationContext(context.Background(), &graphql.OperationContext{
		OperationName: long,
		Operation:     &ast.OperationDefinition{Operation: ast.Query},
	})
	ext := tr.GraphQL().(graphql.OperationInterceptor)
	respond := ext.InterceptOperation(ctx, func(ctx context.Context) graphql.ResponseHandler {
		return func(ctx context.Context) *graphql.Response {
			return &graphql.Response{Errors: gqlerror.List{{Message: long}}}
		}
	})
	respond(ctx)
	_, other := tr.Tracer().Start(context.Background(), "other", trace.WithAttributes(attribute.String("big", long)))
	other.End()
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	op := spans[0]
	want := strings.Repeat("é", 64)
	if op.Name != "query "+want {
		t.Errorf("span name of %d bytes, want %d", len(op.Name), len("query "+want))
	}
	var name string
	for _, a := range op.Attributes {
		if a.Key == "graphql.operation.name" {
			name = a.Value.AsString()
		}
	}
	if name != want {
		t.Errorf("graphql.operation.name of %d bytes, want %d", len(name), len(want))
	}
	if d := op.Status.Description; len(d) > 1024 || !utf8.ValidString(d) || !strings.HasPrefix(long, d) || d == "" {
		t.Errorf("status description of %d bytes, want a prefix of at most 1024", len(d))
	}
	if big := spans[1].Attributes[0].Value.AsString(); big != strings.Repeat("é", 1024) {
		t.Errorf("attribute of %d characters, want it cut to 1024", utf8.RuneCountInString(big))
	}
}
