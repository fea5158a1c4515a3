package graph

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// ServerOptions configure the GraphQL HTTP handler.
type ServerOptions struct {
	// Websocket accepts websocket connections (the gorilla adapter in
	// production; nil means gqlgen's default, coder/websocket).
	Websocket transport.WebsocketImplementation
	// KeepAlive is the interval of keep-alive messages on websockets (ka for
	// graphql-ws, ping for graphql-transport-ws).
	KeepAlive time.Duration
	// InitTimeout closes websockets that send no connection_init in time.
	InitTimeout time.Duration
	// WebsocketReadLimit closes websockets that send a larger message.
	WebsocketReadLimit int64
	// ComplexityLimit bounds the complexity of one operation.
	ComplexityLimit int
}

// sharedResultsLimit bounds the cache of subscription results shared
// between subscribers (see shared.go): enough for the recent changes of many
// jobs under a handful of distinct documents.
const sharedResultsLimit = 16384

// Handler is the GraphQL endpoint. It is safe for concurrent use.
type Handler struct {
	http.Handler
	sending atomic.Int64 // subscriptions holding a change not yet written
}

// WaitSent waits until every job change that subscriptions have taken from
// the broker has been handed to its transport for writing, or until ctx is
// done. With Broker.Flush before it, shutdown lets subscribers receive the
// last changes before their connections close.
func (h *Handler) WaitSent(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for h.sending.Load() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("wait for subscription writes: %w", ctx.Err())
		}
	}
	return nil
}

// NewHandler returns the GraphQL endpoint: POST and GET (queries only),
// websockets speaking graphql-transport-ws and graphql-ws, and
// Server-Sent Events for subscriptions.
func NewHandler(r *Resolver, opts ServerOptions) *Handler {
	h := &Handler{}
	cfg := Config{Resolvers: r}
	cfg.Complexity.Query.Jobs = func(childComplexity int, _ *domain.Status, _ *string, first *int, _ *string) int {
		n := DefaultPageSize
		if first != nil {
			n = min(max(*first, 1), MaxPageSize)
		}
		return 1 + n*childComplexity
	}
	srv := handler.New(NewExecutableSchema(cfg))

	// SSE first: it claims POSTs that accept text/event-stream, which the
	// plain POST transport would otherwise take.
	srv.AddTransport(transport.SSE{})
	websocketImpl := opts.Websocket
	if websocketImpl == nil {
		websocketImpl = transport.CoderWebsocketImplementation{}
	}
	srv.AddTransport(transport.Websocket{
		// Wrapped so that shared subscription results leave encoded once
		// (encoded.go); connections with a WriteText method (gorillaws)
		// send them without encoding anything per subscriber.
		Implementation: &encodingWebsocket{inner: websocketImpl},
		// graphql-ws (legacy) clients expect "ka" messages. Websocket-level
		// pings for every protocol come from the adapter (gorillaws'
		// PingInterval), which needs no goroutine per connection, unlike
		// gqlgen's PingPongInterval.
		KeepAlivePingInterval: opts.KeepAlive,
		InitTimeout:           opts.InitTimeout,
		PayloadReadLimit:      &opts.WebsocketReadLimit,
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			return WithSubscriptionCounter(ctx), nil, nil
		},
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})

	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(extension.Introspection{})
	srv.Use(extension.FixedComplexityLimit(opts.ComplexityLimit))
	// On websockets it writes most subscription results itself, without
	// returning them through the response middleware chain. It must stay
	// the outermost response middleware (none may be added before it): an
	// outer one would see a subscription's stand-in (encoded.go) as its
	// first response and none of the later ones, and one that changed the
	// stand-in would keep it from being recognised.
	shareSubscriptionResults(srv, newResultCache(sharedResultsLimit), &h.sending)
	srv.SetErrorPresenter(ErrorPresenter(r.Logger))
	srv.SetRecoverFunc(Recover(r.Logger))
	h.Handler = withWebsocketSlot(conformHTTP(srv))
	return h
}
