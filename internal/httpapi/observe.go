package httpapi

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/requestid"
)

// observe is the outermost middleware: it gives the request its id (the
// caller's X-Request-Id when sane, or a new one), returns it in the
// response and puts it in the request's context, where the logger finds
// it (requestid.Handler); once the request is answered it records its
// duration by route (the pattern of mux that serves it, never the raw
// path) and logs one line at info. A streamed response (flushed: SSE) or
// a connection taken over (hijacked: websocket) lasts as long as its
// client stays, so its duration is logged but not recorded: it would
// swamp the histogram of the requests answered at once.
func observe(log *slog.Logger, m *metrics.Metrics, mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(requestid.Header)
		if !requestid.Sane(id) {
			id = requestid.New()
		}
		w.Header().Set(requestid.Header, id)
		ctx := requestid.NewContext(r.Context(), id)
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		_, route := mux.Handler(r)
		if route == "" {
			route = "unmatched"
		}
		defer func() {
			took := time.Since(start)
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if !sw.streamed {
				m.HTTPRequest(route, r.Method, status, took)
			}
			log.InfoContext(ctx, "http request", "method", r.Method, "route", route, "status", status, "duration_ms", float64(took.Microseconds())/1000)
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status of the response, and whether it was
// streamed (flushed) or its connection hijacked.
type statusWriter struct {
	http.ResponseWriter
	status   int
	streamed bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
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

// Flush lets SSE stream through the wrapper.
func (w *statusWriter) Flush() {
	w.streamed = true
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack lets a websocket take the connection (101).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.streamed = true
		if w.status == 0 {
			w.status = http.StatusSwitchingProtocols
		}
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
