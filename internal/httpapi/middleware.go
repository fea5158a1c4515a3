package httpapi

import (
	"bytes"
	"context"
	"errors"
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
// wait for them), so the server ends them itself through CloseAll once the
// workers have stopped, and waits for them with Wait. Websockets are the
// websocket transport's to track and close, and pass untouched: their
// handler returns once the connection is upgraded, while the connection
// keeps the request's context (for its values) for its whole life, so a
// context made here would stay with every idle connection. Safe for
// concurrent use.
type Streams struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewStreams returns an empty tracker.
func NewStreams() *Streams {
	ctx, cancel := context.WithCancel(context.Background())
	return &Streams{ctx: ctx, cancel: cancel}
}

func (s *Streams) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !graph.IsStream(r.Header) || r.Header.Get("Upgrade") != "" {
			next.ServeHTTP(w, r)
			return
		}
		s.wg.Add(1)
		defer s.wg.Done()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(s.ctx, cancel)
		defer stop()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// CloseAll cancels every stream's context, current and future: gqlgen then
// ends SSE responses.
func (s *Streams) CloseAll() { s.cancel() }

// Wait blocks until every tracked stream handler has returned, or ctx is
// done.
func (s *Streams) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("streams still open: " + ctx.Err().Error())
	}
}
