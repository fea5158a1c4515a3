package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"

	"github.com/jobqueue/jobqueue/graph"
)

// limitBody answers 413 to bodies over max bytes. A declared length is
// checked up front; a chunked body is read up to the limit first, so every
// handler (gqlgen's included) sees either a whole body or none.
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if max > 0 && r.Body != nil && r.Body != http.NoBody {
			if r.ContentLength > max {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is %d bytes; the limit is %d", r.ContentLength, max))
				return
			}
			if r.ContentLength < 0 {
				body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
				if err != nil {
					writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
					return
				}
				if int64(len(body)) > max {
					writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", max))
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = int64(len(body))
			} else {
				r.Body = http.MaxBytesReader(w, r.Body, max)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a handler panic into a logged 500 instead of a
// dropped connection.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("http handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, "internal server error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Streams tracks the long-lived requests of the GraphQL endpoint
// (Server-Sent Events). http.Server.Shutdown does not end them (it would
// wait for them), so Run ends them once the server's shutdown gets to it.
// Websockets are the websocket transport's to track and close: their
// handler returns once the connection is upgraded. Safe for concurrent use.
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
		if !graph.IsStream(r.Header) {
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
