// Package graph is the GraphQL layer: gqlgen's generated executor
// (generated.go, models in model/) and thin resolvers that translate GraphQL
// to the jobs service and its errors to GraphQL's. resolver.go is the
// dependency-injection point and is never regenerated.
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
