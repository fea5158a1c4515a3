package tracing

import (
	"bufio"
	"net"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// Middleware makes a server span of each request next serves, continuing
// the trace of a traceparent header the request carries. The span is
// named after the request's method until Route renames it after the route
// pattern that served it (never after the raw path, whose ids would make
// every name different). Place it outermost, and Route right around the
// router. The probes and scrapes (/health, /ready, /metrics) get no span:
// they would bury the traces of real work. Off, it returns next.
func (t *Tracing) Middleware(next http.Handler) http.Handler {
	if !t.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if untraced(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := t.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLScheme(scheme(r))))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(ctx))
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	})
}

// untraced reports whether requests to path get no span: the paths of
// health probes and metric scrapes.
func untraced(path string) bool {
	switch path {
	case "/health", "/ready", "/metrics":
		return true
	}
	return false
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// Route renames the server span of each request (see Middleware) after
// the pattern of router that served it, "POST /jobs" or "POST /query", and
// records the pattern as http.route. router must be an *http.ServeMux or
// another router that sets Request.Pattern on the request it is given.
// Without a recording span in the request's context it does nothing else.
func Route(router http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		router.ServeHTTP(w, r)
		span := trace.SpanFromContext(r.Context())
		if r.Pattern == "" || !span.IsRecording() {
			return
		}
		name := r.Pattern
		if !strings.Contains(name, " ") { // a pattern without a method
			name = r.Method + " " + name
		}
		span.SetName(name)
		span.SetAttributes(semconv.HTTPRoute(r.Pattern))
	})
}

// statusWriter remembers the status of a response. It passes flushes and
// hijacks (websocket upgrades) through, and Unwrap lets
// http.ResponseController reach the writer beneath.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Transport makes a client span of each request base sends (a webhook
// call), and carries the span's trace context to the receiver in the
// request's traceparent header. Off, it returns base.
func (t *Tracing) Transport(base http.RoundTripper) http.RoundTripper {
	if !t.Enabled() {
		return base
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base, t: t}
}

type transport struct {
	base http.RoundTripper
	t    *Tracing
}

func (rt *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := rt.t.tracer.Start(req.Context(), req.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.HTTPRequestMethodKey.String(req.Method), semconv.ServerAddress(req.URL.Hostname())))
	defer span.End()
	// A RoundTripper must not change the request it is given.
	req = req.Clone(ctx)
	rt.t.propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := rt.base.RoundTrip(req)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, resp.Status)
	}
	return resp, nil
}
