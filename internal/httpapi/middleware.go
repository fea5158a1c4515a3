package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// readBody reads a request's whole body before the handler runs, so that
// every handler (gqlgen's included) sees either a whole body or none: a
// body over max bytes gets 413, and one that does not arrive within
// timeout gets 408 and frees its connection (a client that declares a
// length and never sends it would otherwise hold the connection for as
// long as it likes). Once read, the connection has no read deadline
// again: an SSE stream goes on as long as it lasts. Each refusal is
// logged at warn with the client's address.
func readBody(log *slog.Logger, max int64, timeout time.Duration, next http.Handler) http.Handler {
	refuse := func(w http.ResponseWriter, r *http.Request, status int, msg string) {
		log.WarnContext(r.Context(), "http request refused", "status", status, "reason", msg, "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr)
		w.Header().Set("Connection", "close")
		writeError(w, status, msg)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if max > 0 && r.ContentLength > max {
			refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is %d bytes; the limit is %d", r.ContentLength, max))
			return
		}
		rc := http.NewResponseController(w)
		if timeout > 0 {
			_ = rc.SetReadDeadline(time.Now().Add(timeout)) // not supported by test recorders
		}
		src := r.Body
		if max > 0 {
			src = io.NopCloser(io.LimitReader(r.Body, max+1))
		}
		body, err := io.ReadAll(src)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			refuse(w, r, http.StatusRequestTimeout, fmt.Sprintf("request body not received within %s", timeout))
			return
		case err != nil:
			refuse(w, r, http.StatusBadRequest, "reading request body: "+err.Error())
			return
		case max > 0 && int64(len(body)) > max:
			refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", max))
			return
		}
		// The deadline stays on a refused body: net/http would otherwise
		// wait for the rest of it before it closes the connection.
		if timeout > 0 {
			_ = rc.SetReadDeadline(time.Time{})
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// limitTime gives a REST request at most timeout through its context:
// store calls stop at it and the answer is 503. (GraphQL bounds each of its
// operations itself, whatever the transport.)
func limitTime(timeout time.Duration, next http.HandlerFunc) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// limitWrites gives every write of a response (each event of an SSE
// stream too) at most timeout to reach the client: one that stops
// reading has its connection closed then, and the response's memory is
// freed, instead of holding it for as long as it likes. Websocket upgrades
// pass untouched: their transport sets its own write deadlines.
func limitWrites(timeout time.Duration, next http.Handler) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wstransport.IsUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}, r)
	})
}

// deadlineWriter sets a write deadline before each write and flush.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout)) // not supported by test recorders
	return w.ResponseWriter.Write(p)
}

// Flush lets SSE stream through the wrapper.
func (w *deadlineWriter) Flush() {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recoverPanics turns a handler panic into a logged 500 instead of a
// dropped connection.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.ErrorContext(r.Context(), "http handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, "internal server error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Streams tracks the long-lived requests of the GraphQL endpoint
// (Server-Sent Events). http.Server.Shutdown does not end them (it would
// wait for them), so Run ends them once the server's shutdown gets to it.
// Websockets are the websocket transport's to track and close, and pass
// untouched: their handler returns once the connection is upgraded, while
// the connection keeps the request's context (for its values) for its
// whole life, so a context made here would stay with every idle
// connection. Safe for concurrent use.
type Streams struct {
	ctx    context.Context // cancelled once Run's ctx is done
	cancel context.CancelFunc

	mu      sync.Mutex
	open    int           // stream handlers running
	stopped bool          // Run's ctx is done
	ended   chan struct{} // closed once stopped and open == 0
}

// NewStreams returns an empty tracker.
func NewStreams() *Streams {
	ctx, cancel := context.WithCancel(context.Background())
	return &Streams{ctx: ctx, cancel: cancel, ended: make(chan struct{})}
}

func (s *Streams) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !graph.IsStream(r.Header) || wstransport.IsUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		s.open++
		s.mu.Unlock()
		defer s.left()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(s.ctx, cancel)
		defer stop()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Open returns how many streams are open. Safe for concurrent use.
func (s *Streams) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// left counts a stream handler out.
func (s *Streams) left() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	s.closeIfEnded()
}

func (s *Streams) closeIfEnded() {
	if s.stopped && s.open == 0 {
		select {
		case <-s.ended:
		default:
			close(s.ended)
		}
	}
}

// Run waits until ctx is done, then ends every stream, current and future
// (their contexts are cancelled: gqlgen ends an SSE response with its
// complete event), and returns once the handlers of those open at that
// moment have returned. It returns nil; call it once.
func (s *Streams) Run(ctx context.Context) error {
	<-ctx.Done()
	s.cancel()
	s.mu.Lock()
	s.stopped = true
	s.closeIfEnded()
	s.mu.Unlock()
	<-s.ended
	return nil
}
