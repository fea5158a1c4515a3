// Package tracing sets up OpenTelemetry traces for the server and holds the
// small hooks that make the spans of its parts: the HTTP request
// (Middleware, Route), the GraphQL operation (GraphQL), store calls (Store),
// each attempt of a job (Handler) and each webhook request (Transport).
//
// Tracing is off unless an OTLP endpoint or OTEL_TRACES_EXPORTER=otlp is
// configured (see Config). Off, every hook returns what it wraps, unchanged,
// so that tracing costs nothing.
//
// The W3C trace context of the span that creates a job is kept with the job
// (domain.Job.TraceParent, see TraceParent); the span of each attempt links
// to it, whichever process runs the attempt and however much later.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the tracer of this project's spans.
const instrumentation = "github.com/jobqueue/jobqueue"

// Config is the tracing part of the server's settings, named after the
// OpenTelemetry environment variables they come from. Other variables of
// the OTLP exporter and the SDK (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _COMPRESSION, _CERTIFICATE, OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES) are read
// by the SDK itself from the process environment.
type Config struct {
	// Exporter is OTEL_TRACES_EXPORTER: "otlp", "none", or "" (otlp when
	// an endpoint is set, else none).
	Exporter string
	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT, the collector's base URL:
	// traces go to its path /v1/traces.
	Endpoint string
	// TracesEndpoint is OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, the full URL
	// traces go to; it wins over Endpoint.
	TracesEndpoint string
	// Protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
	// OTEL_EXPORTER_OTLP_PROTOCOL: only "http/protobuf" (the default) is
	// supported.
	Protocol string
	// ServiceName is OTEL_SERVICE_NAME.
	ServiceName string
	// Sampler and SamplerArg are OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG.
	Sampler, SamplerArg string
	// InstanceID becomes the resource's service.instance.id.
	InstanceID string
}

// DefaultServiceName is the service.name of the spans unless
// OTEL_SERVICE_NAME says otherwise.
const DefaultServiceName = "jobqueue"

// defaultTracesURL is where traces go with OTEL_TRACES_EXPORTER=otlp and
// no endpoint: the local collector's default OTLP/HTTP port.
const defaultTracesURL = "http://localhost:4318/v1/traces"

// Enabled reports whether c turns tracing on.
func (c Config) Enabled() bool {
	switch c.Exporter {
	case "otlp":
		return true
	case "none":
		return false
	}
	return c.Endpoint != "" || c.TracesEndpoint != ""
}

// Check returns an error naming the variable of the first setting that is
// not valid.
func (c Config) Check() error {
	switch c.Exporter {
	case "", "otlp", "none":
	default:
		return fmt.Errorf("OTEL_TRACES_EXPORTER: want otlp or none, got %q", c.Exporter)
	}
	for _, e := range []struct{ env, v string }{{"OTEL_EXPORTER_OTLP_ENDPOINT", c.Endpoint}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", c.TracesEndpoint}} {
		if e.v == "" {
			continue
		}
		if u, err := url.Parse(e.v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s: want an http(s) URL like http://collector:4318, got %q", e.env, e.v)
		}
	}
	switch c.Protocol {
	case "", "http/protobuf":
	case "grpc", "http/json":
		return fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %s is not supported; use http/protobuf (an OpenTelemetry collector accepts it on port 4318)", c.Protocol)
	default:
		return fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: want http/protobuf, got %q", c.Protocol)
	}
	_, err := sampler(c.Sampler, c.SamplerArg)
	return err
}

// tracesURL is the URL spans are sent to.
func (c Config) tracesURL() string {
	switch {
	case c.TracesEndpoint != "":
		return c.TracesEndpoint
	case c.Endpoint != "":
		return strings.TrimSuffix(c.Endpoint, "/") + "/v1/traces"
	}
	return defaultTracesURL
}

// sampler returns the sampler OTEL_TRACES_SAMPLER names (the SDK's
// default, parentbased_always_on, when empty), with its argument.
func sampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: want a ratio from 0 to 1, got %q", arg)
		}
		return f, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio()
		return sdktrace.TraceIDRatioBased(r), err
	case "parentbased_traceidratio":
		r, err := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), err
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio, got %q", name)
}

// Tracing holds the tracer provider and the propagator of the server's
// spans. Its methods are safe for concurrent use. The zero value, and a
// Tracing built from a Config that is not Enabled, is off.
type Tracing struct {
	provider   *sdktrace.TracerProvider // nil when off
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// New returns the server's tracing as cfg says: off, or exporting spans in
// batches over OTLP/HTTP. It contacts nothing yet: spans are exported in
// the background, and a collector that is down costs dropped spans, not
// errors. Run shuts it down.
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return &Tracing{}, nil
	}
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.tracesURL()))
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	name := cfg.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []resource.Option{resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithAttributes(semconv.ServiceName(name))}
	if cfg.InstanceID != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceInstanceID(cfg.InstanceID)))
	}
	res, err := resource.New(ctx, attrs...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	s, _ := sampler(cfg.Sampler, cfg.SamplerArg) // checked above
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res), sdktrace.WithSampler(s), sdktrace.WithRawSpanLimits(spanLimits()))
	return &Tracing{
		provider:   provider,
		tracer:     provider.Tracer(instrumentation),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// attributeValueLengthLimit is the most characters of a string attribute
// kept unless OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT (or
// OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT) sets a limit, and the most bytes of a
// GraphQL error kept as a span's status: values that come from clients
// must not make spans of any size.
const attributeValueLengthLimit = 1024

// spanLimits returns the SDK's span limits (from the OTEL_SPAN_*
// variables), with string attributes cut to attributeValueLengthLimit
// unless the environment sets a limit.
func spanLimits() sdktrace.SpanLimits {
	l := sdktrace.NewSpanLimits()
	if l.AttributeValueLengthLimit < 0 {
		l.AttributeValueLengthLimit = attributeValueLengthLimit
	}
	return l
}

// Enabled reports whether t makes spans.
func (t *Tracing) Enabled() bool { return t != nil && t.provider != nil }

// shutdownTimeout bounds the export of the last spans at shutdown.
const shutdownTimeout = 5 * time.Second

// Run waits until ctx is done, then exports the spans not sent yet (for up
// to 5 s) and shuts the tracer provider down: stop it after every part
// that makes spans. Off, it only waits. The error is the export's.
func (t *Tracing) Run(ctx context.Context) error {
	<-ctx.Done()
	if !t.Enabled() {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := t.provider.Shutdown(sctx); err != nil {
		return fmt.Errorf("tracing: flush spans: %w", err)
	}
	return nil
}

// TraceParent returns the W3C traceparent of the span in ctx, or "" when
// ctx has none (tracing is off).
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// linkTo returns a link to the span a W3C traceparent names, and false when
// traceParent is empty or not valid.
func linkTo(traceParent string, attrs ...attribute.KeyValue) (trace.Link, bool) {
	if traceParent == "" {
		return trace.Link{}, false
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceParent})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc, Attributes: attrs}, true
}
