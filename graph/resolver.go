// Package graph is the GraphQL layer: gqlgen's generated executor
// (generated.go, models in model/) and thin resolvers that translate GraphQL
// to the jobs service and its errors to GraphQL's. resolver.go is the
// dependency-injection point and is never regenerated.
//
// Around the executor, each in its own file:
//   - server.go builds the handler: transports, extensions, middleware;
//   - limits.go measures a request before gqlgen parses it (with
//     internal/gqllimit) and prices it after validation;
//   - heavy.go runs costly queries and mutations a few at a time;
//   - budget.go bounds each response's size and the responses in flight;
//   - errors.go presents errors (codes, short messages, at most 20) and
//     bounds each operation's time;
//   - httpstatus.go and request.go adapt gqlgen's plain HTTP answers to the
//     GraphQL-over-HTTP specification and carry what one HTTP request's
//     operations share with it (a status, work to do once it is written);
//   - stream.go hands subscriptions to the websocket transport or SSE.
package graph

import (
	"log/slog"

	"github.com/jobqueue/jobqueue/internal/jobs"
)

// Resolver holds the dependencies of every resolver. It is safe for
// concurrent use once built.
type Resolver struct {
	// Service carries out every request: defaults, validation and the
	// store. (Not named Jobs: the jobs query's resolver method is.)
	Service *jobs.Service
	Logger  *slog.Logger
}

// Page sizes of the jobs query, as the jobs service applies them
// (jobs.GraphQLPages); the complexity function prices queries by them.
const (
	DefaultPageSize = jobs.DefaultPageSize
	MaxPageSize     = jobs.MaxPageSize
)
