package tracing_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
