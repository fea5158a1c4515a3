package jobs_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// A job keeps the traceparent of the span that created it only when the
// service is told to (tracing on): with it off, a span context in the
// request (one a client sent) leaves no trace in the job.
func TestTraceParent(t *testing.T) {
	t.Parallel()
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	const want = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	typ := "t"
	for _, on := range []bool{false, true} {
		svc := jobs.New(memory.New(nil), nil, jobs.Options{TraceParents: on})
		expect := ""
		if on {
			expect = want
		}
		j, err := svc.Create(ctx, jobs.CreateRequest{Type: &typ})
		if err != nil || j.TraceParent != expect {
			t.Fatalf("tracing %v: create = %+v, %v; want traceparent %q", on, j, err, expect)
		}
		many, err := svc.CreateMany(ctx, []jobs.CreateRequest{{Type: &typ}, {Type: &typ}})
		if err != nil || many[0].TraceParent != expect || many[1].TraceParent != expect {
			t.Fatalf("tracing %v: create many = %+v, %v; want traceparent %q", on, many, err, expect)
		}
		if j, err := svc.Create(context.Background(), jobs.CreateRequest{Type: &typ}); err != nil || j.TraceParent != "" {
			t.Fatalf("tracing %v: create without a span = %+v, %v; want no traceparent", on, j, err)
		}
	}
}
