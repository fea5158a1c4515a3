package tracing

import (
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// NewRecording returns tracing that is on and hands every ended span to
// exp at once.
func NewRecording(exp sdktrace.SpanExporter) *Tracing {
	provider := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithRawSpanLimits(spanLimits()))
	return &Tracing{provider: provider, tracer: provider.Tracer(instrumentation), propagator: propagation.TraceContext{}}
}

// Tracer returns t's tracer, to make parent spans in tests.
func (t *Tracing) Tracer() trace.Tracer { return t.tracer }
