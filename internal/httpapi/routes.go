// Package httpapi is the HTTP surface of the service: one routes.go maps
// the GraphQL endpoint, the playground and the REST endpoints kept from the
// original service, wrapped in the middleware every request passes through.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/99designs/gqlgen/graphql/playground"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Deps are what the HTTP surface needs.
type Deps struct {
	Store   store.Store
	GraphQL http.Handler
	Logger  *slog.Logger
	// Streams tracks websockets and SSE responses so shutdown can end them
	// and wait for them.
	Streams *Streams
	// MaxBodyBytes bounds request bodies; larger ones get 413.
	MaxBodyBytes int64
	// MaxPayloadBytes bounds a job's encoded payload.
	MaxPayloadBytes int
	// DefaultMaxAttempts applies to jobs created by POST /jobs.
	DefaultMaxAttempts int
	// Types, when not nil, are the only job types POST /jobs accepts.
	Types domain.TypeFilter
	// ListMax caps GET /jobs.
	ListMax int
}

// NewHandler returns the service's whole HTTP surface.
func NewHandler(d Deps) http.Handler {
	rest := &restHandlers{store: d.Store, log: d.Logger, maxPayload: d.MaxPayloadBytes, listMax: d.ListMax, maxAttempts: d.DefaultMaxAttempts, types: d.Types}
	mux := http.NewServeMux()
	mux.Handle("/query", d.Streams.track(d.GraphQL))
	mux.Handle("GET /{$}", playground.Handler("Job queue", "/query"))
	mux.HandleFunc("GET /health", rest.health)
	mux.HandleFunc("POST /jobs", rest.createJob)
	mux.HandleFunc("GET /jobs", rest.listJobs)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
	})
	return recoverPanics(d.Logger, limitBody(d.MaxBodyBytes, mux))
}
