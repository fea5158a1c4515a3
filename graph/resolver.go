// Package graph is the GraphQL layer: gqlgen's generated executor
// (generated.go, models in model/) and thin resolvers that adapt GraphQL to
// the store and the broker. resolver.go is the dependency-injection point
// and is never regenerated.
package graph

import (
	"log/slog"

	"github.com/jobqueue/jobqueue/internal/domain"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Resolver holds the dependencies of every resolver. It is safe for
// concurrent use once built.
type Resolver struct {
	Store  store.Store
	Broker *broker.Broker
	Logger *slog.Logger
	// MaxPayloadBytes bounds a job's encoded payload.
	MaxPayloadBytes int
	// DefaultMaxAttempts applies to jobs created without maxAttempts.
	DefaultMaxAttempts int
	// Types, when not nil, are the only job types createJob accepts.
	Types domain.TypeFilter
}

// Page sizes of the jobs query.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)
