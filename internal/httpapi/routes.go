// Package httpapi is the HTTP surface of the service: one routes.go maps
// the GraphQL endpoint, the playground, the dashboard and the REST
// endpoints kept from the original service, wrapped in the middleware
// every request passes through.
package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/dashboard"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/playground"
	"github.com/jobqueue/jobqueue/internal/tracing"
)

// Deps are what the HTTP surface needs.
type Deps struct {
	// Jobs serves the REST endpoints.
	Jobs    *jobs.Service
	GraphQL http.Handler
	Logger  *slog.Logger
	// Streams tracks SSE responses so shutdown can end them and wait for
	// them.
	Streams *Streams
	// MaxBodyBytes bounds request bodies; larger ones get 413.
	MaxBodyBytes int64
	// BodyTimeout bounds the time to receive a request's body; a slower
	// one gets 408. Zero: no bound.
	BodyTimeout time.Duration
	// RequestTimeout bounds the time to answer a REST request (GraphQL
	// bounds its operations itself). Zero: no bound.
	RequestTimeout time.Duration
	// WriteTimeout bounds each write of a response (websockets aside):
	// a client that stops reading for longer is dropped. Zero: no bound.
	WriteTimeout time.Duration
	// LargeListings bounds the GET /jobs answers of 100 jobs or more built
	// at once; the others wait up to 5 s, then get 503. Zero: no bound.
	LargeListings int
	// MaxResponseBytes bounds a GET /jobs answer; a larger one gets 400.
	// (The GraphQL handler has its own bound.) Zero: no bound.
	MaxResponseBytes int64
	// Access says who may call the API, and from which web pages.
	Access Access
	// Metrics records each request's duration by route and the access
	// refusals; nil records nothing.
	Metrics *metrics.Metrics
	// MetricsHandler, when not nil, serves GET /metrics (with access
	// control on, to viewer and admin identities only).
	MetricsHandler http.Handler
	// Ready answers GET /ready, which passes every access check as
	// /health does.
	Ready *Readiness
}

// NewHandler returns the service's whole HTTP surface.
func NewHandler(d Deps) http.Handler {
	play, err := playground.New(playground.Config{Endpoint: "/query", AssetPath: "/playground/", Authenticated: d.Access.authenticating()})
	if err != nil {
		// The page and its files are embedded in the binary: only a broken
		// build gets here.
		panic(err)
	}
	rest := &restHandlers{jobs: d.Jobs, log: d.Logger, maxResponse: d.MaxResponseBytes, mutations: d.Access.Mutations}
	if d.LargeListings > 0 {
		rest.listSlots = make(chan struct{}, d.LargeListings)
	}
	mux := http.NewServeMux()
	mux.Handle("/query", d.Streams.track(d.GraphQL))
	mux.Handle("GET /{$}", play.Page())
	mux.Handle("GET /playground/", play.Assets())
	// The dashboard, a client of /query like any other; GET /ui
	// redirects here.
	mux.Handle("GET "+dashboard.Prefix, dashboard.Handler())
	mux.HandleFunc("GET /health", rest.health)
	if d.Ready != nil {
		mux.Handle("GET /ready", d.Ready)
	}
	if d.MetricsHandler != nil {
		mux.Handle("GET /metrics", readersOnly(d.Access.authenticating(), d.Metrics, d.MetricsHandler))
	}
	mux.Handle("POST /jobs", limitTime(d.RequestTimeout, rest.createJob))
	mux.Handle("GET /jobs", limitTime(d.RequestTimeout, rest.listJobs))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
	})
	// Access is checked before the body is read: a caller refused reads
	// and holds nothing.
	return observe(d.Logger, d.Metrics, mux, recoverPanics(d.Logger, limitWrites(d.WriteTimeout, d.Access.guard(d.Logger, d.Metrics, readBody(d.Logger, d.MaxBodyBytes, d.BodyTimeout, tracing.Route(mux))))))
}

// readersOnly serves next to viewer and admin identities only when
// access control is on (a user's identity gets 403).
func readersOnly(authenticating bool, m *metrics.Metrics, next http.Handler) http.Handler {
	if !authenticating {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := auth.IdentityFrom(r.Context())
		if !ok || (id.Role != auth.RoleViewer && id.Role != auth.RoleAdmin) {
			m.Refused(metrics.RefusedForbidden)
			writeError(w, http.StatusForbidden, "/metrics needs a viewer or admin identity")
			return
		}
		next.ServeHTTP(w, r)
	})
}
