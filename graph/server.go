package graph

import (
	"context"
	"math"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/jobqueue/jobqueue/graph/model"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/ratelimit"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// ServerOptions configure the GraphQL HTTP handler.
type ServerOptions struct {
	// Websocket serves websocket connections; its caller runs it (Run) and
	// waits for it at shutdown (WaitSent). nil: no websockets.
	Websocket *wstransport.Transport
	// ComplexityLimit bounds the complexity of one operation: jobs counts
	// first × its selection, payload and result count by Limits.PayloadBytes,
	// introspection counts what it returns.
	ComplexityLimit int
	// HeavyComplexity is the complexity from which a query or mutation is
	// heavy: at most HeavySlots of them run at once, the others wait (up to
	// 5 s, then SERVER_BUSY, HTTP 503). Zero HeavySlots: no limit.
	HeavyComplexity int
	HeavySlots      int
	// MaxInFlightResponseBytes bounds the bytes of all responses built and
	// not yet written (with MaxResponseBytes set): a response that would
	// go over it is answered SERVER_BUSY. Zero: no bound.
	MaxInFlightResponseBytes int64
	// RequestTimeout bounds each query and mutation, over every transport
	// (subscriptions are not bounded): TIMEOUT. Zero: no bound.
	RequestTimeout time.Duration
	// MaxResponseBytes bounds one response (each event of a subscription
	// too): a larger one is answered with RESPONSE_TOO_LARGE, stopped
	// before it is built. Zero: no bound.
	MaxResponseBytes int64
	// Limits bound each request before gqlgen parses it.
	Limits Limits
	// Mutations limits each caller's mutations, one action per root
	// field (RATE_LIMITED). nil: no limit.
	Mutations *ratelimit.Limiter
	// Metrics counts operations by type and error code; nil counts none.
	Metrics *metrics.Metrics
	// Extensions are added to the handler before the built-in ones, so
	// that their interceptors wrap everything (e.g. the tracing spans of
	// operations). nil elements are skipped.
	Extensions []graphql.HandlerExtension
}

// periodicListPrice is how many periodic jobs the periodicJobs query is
// priced for.
const periodicListPrice = 100

// NewHandler returns the GraphQL endpoint: POST and GET (queries only),
// websockets speaking graphql-transport-ws and graphql-ws (opts.Websocket),
// and Server-Sent Events for subscriptions. It is safe for concurrent use.
func NewHandler(r *Resolver, opts ServerOptions) http.Handler {
	cfg := Config{Resolvers: r}
	cfg.Complexity.Query.Jobs = func(childComplexity int, _ *domain.Status, _, _ *string, first *int, _ *string) int {
		n := DefaultPageSize
		if first != nil {
			n = min(max(*first, 1), MaxPageSize)
		}
		return 1 + n*childComplexity
	}
	payload := payloadComplexity(opts.Limits.PayloadBytes)
	// A bulk operation writes up to limit jobs: priced so, it takes a heavy
	// slot from HEAVY_COMPLEXITY on.
	bulk := func(childComplexity int, _ model.JobFilter, limit *int) int {
		n := jobs.DefaultBulkLimit
		if limit != nil {
			n = min(max(*limit, 1), jobs.MaxBulkLimit)
		}
		return childComplexity + n
	}
	cfg.Complexity.Mutation.CancelJobs = bulk
	cfg.Complexity.Mutation.RetryJobs = bulk
	// jobTypes lists every type that has jobs or controls: priced as a
	// page of DefaultPageSize, though the store keeps counts per type
	// (no job is read), since a client that makes many types makes a
	// long list.
	cfg.Complexity.Query.JobTypes = func(childComplexity int) int { return 1 + DefaultPageSize*childComplexity }
	cfg.Complexity.Job.Payload = func(int) int { return payload }
	cfg.Complexity.Job.Result = func(int) int { return payload }
	// Periodic jobs are an operator's few, listed whole: priced as a page
	// of that many, each with its template's payload and its last job.
	cfg.Complexity.Query.PeriodicJobs = func(childComplexity int) int { return 1 + periodicListPrice*childComplexity }
	cfg.Complexity.PeriodicJobTemplate.Payload = func(int) int { return payload }
	srv := handler.New(NewExecutableSchema(cfg))

	// SSE first: it claims POSTs that accept text/event-stream, which the
	// plain POST transport would otherwise take.
	srv.AddTransport(transport.SSE{})
	if opts.Websocket != nil {
		srv.AddTransport(opts.Websocket)
	}
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})

	srv.SetQueryCache(queryCache{lru.New[*ast.QueryDocument](1000)})
	srv.SetParserTokenLimit(max(opts.Limits.Query.Tokens, 0))
	for _, e := range opts.Extensions {
		if e != nil {
			srv.Use(e)
		}
	}
	srv.Use(extension.Introspection{})
	srv.Use(newLimiter(opts.Limits, opts.ComplexityLimit, r.Logger))
	srv.AroundOperations(subscriptionsOverHTTP(opts.Metrics))
	if opts.Mutations != nil {
		srv.AroundOperations(rateLimitMutations(opts.Mutations, r.Logger))
	}
	if opts.HeavySlots > 0 {
		srv.AroundOperations(newHeavyOperations(opts.HeavyComplexity, opts.HeavySlots, r.Logger).intercept)
	}
	if opts.Metrics != nil {
		srv.AroundOperations(countSubscriptions(opts.Metrics))
		srv.AroundResponses(countOperations(opts.Metrics))
	}
	srv.AroundResponses(capErrors)
	srv.AroundResponses(logTimeouts(r.Logger))
	if opts.MaxResponseBytes > 0 {
		budgets := &responseBudgets{perResponse: opts.MaxResponseBytes, inFlightMax: opts.MaxInFlightResponseBytes, log: r.Logger}
		if budgets.inFlightMax <= 0 {
			budgets.inFlightMax = math.MaxInt64
		}
		srv.AroundResponses(budgets.responses)
		srv.AroundFields(budgets.fields)
	}
	if opts.RequestTimeout > 0 {
		srv.AroundResponses(timeLimit(opts.RequestTimeout))
	}
	srv.SetErrorPresenter(ErrorPresenter(r.Logger))
	srv.SetRecoverFunc(Recover(r.Logger))
	return withClientAddr(conformHTTP(srv))
}

// maxCachedQuery is the longest query whose parsed document is cached: a
// cache bounded by its number of entries alone would let large distinct
// documents (each up to MAX_BODY_BYTES) fill memory. Real clients' queries
// are far shorter (GraphiQL's full introspection query: under 2 KiB).
const maxCachedQuery = 4 << 10

// queryCache caches the parsed documents of queries up to maxCachedQuery
// bytes; longer ones are parsed each time.
type queryCache struct {
	graphql.Cache[*ast.QueryDocument]
}

func (c queryCache) Add(ctx context.Context, query string, doc *ast.QueryDocument) {
	if len(query) <= maxCachedQuery {
		c.Cache.Add(ctx, query, doc)
	}
}
