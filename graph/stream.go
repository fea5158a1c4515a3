package graph

import (
	"context"
	"errors"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// How a jobUpdated subscription reaches its client.
//
// On a websocket the transport (wstransport) drives the broker subscription
// itself: deliver hands it over with wstransport.Feed, and the transport
// takes changes when the connection can write them, shares one execution
// and encoding among subscribers of the same operation, ends the
// subscription with the protocol's error message when the broker gives up
// on it (SLOW_SUBSCRIBER), and closes it when the operation ends, so it is
// made without a watch on the operation's context (watchContext).
//
// Over Server-Sent Events (gqlgen's transport.SSE) gqlgen reads the broker's
// channel; subscriptionsOverHTTP acknowledges each change to the broker
// once gqlgen has made its response, and turns the reason the broker ended
// the subscription into a last response with errors. A plain HTTP request
// cannot carry a subscription: it gets BAD_REQUEST at once.

// deliver returns the channel gqlgen reads sub's changes from.
func deliver(ctx context.Context, sub *broker.Subscription) <-chan *domain.Job {
	if ch, ok := wstransport.Feed(ctx, presentedEnd{Subscription: sub, ctx: ctx}); ok {
		return ch
	}
	if s, _ := ctx.Value(httpStreamKey{}).(*httpStream); s != nil {
		s.sub = sub
	}
	return sub.C()
}

// watchContext is the context a jobUpdated subscription is made under. The
// broker watches a cancellable one with a registration that every idle
// subscriber would keep; on a websocket the transport closes the
// subscription instead.
func watchContext(ctx context.Context) context.Context {
	if wstransport.Feeds(ctx) {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// presentedEnd is a broker subscription whose end error is the client's
// GraphQL error.
type presentedEnd struct {
	*broker.Subscription
	ctx context.Context
}

func (p presentedEnd) Err() error {
	if err := p.Subscription.Err(); err != nil {
		return subscriptionEndError(p.ctx, err)
	}
	return nil
}

// failSubscription reports a subscription that cannot start. On a websocket
// a coded error goes out as the protocol's error message (graphql-ws clients
// call their error callback) instead of a result with errors; other
// transports (SSE) get the result with errors.
func failSubscription(ctx context.Context, err error) (<-chan *domain.Job, error) {
	var gqlErr *gqlerror.Error
	if !errors.As(err, &gqlErr) || gqlErr.Extensions["code"] == nil || !wstransport.Fail(ctx, gqlErr) {
		return nil, err
	}
	ch := make(chan *domain.Job)
	close(ch) // ends the operation; the transport then sends the error
	return ch, nil
}

// httpStream is an SSE subscription's link between its resolver (which
// sets sub) and subscriptionsOverHTTP.
type httpStream struct {
	sub     *broker.Subscription
	errSent bool
}

type httpStreamKey struct{}

// subscriptionsOverHTTP returns the operation middleware for subscriptions
// over HTTP (see above); m counts the events sent (nil: none).
func subscriptionsOverHTTP(m *metrics.Metrics) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		return streamOverHTTP(ctx, next, m)
	}
}

func streamOverHTTP(ctx context.Context, next graphql.OperationHandler, m *metrics.Metrics) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc == nil || oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	if wstransport.IsUpgradeHeader(oc.Headers) {
		// A websocket: the transport drives the subscription (Feed), and
		// an idle subscriber should hold nothing more.
		return next(ctx)
	}
	if !IsStream(oc.Headers) {
		// gqlgen would wait for the first change and answer with it
		// alone, holding the request open indefinitely.
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{codedError(ctx, CodeBadRequest,
			"subscriptions need a websocket (graphql-transport-ws or graphql-ws) or Server-Sent Events (POST with Accept: text/event-stream)")}})
	}
	s := &httpStream{}
	responses := next(context.WithValue(ctx, httpStreamKey{}, s))
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		if s.sub == nil {
			return resp // on a websocket, or the subscription did not start
		}
		if resp != nil {
			s.sub.Ack()
			m.SSEMessage()
			return resp
		}
		if err := s.sub.Err(); err != nil && !s.errSent {
			s.errSent = true
			return &graphql.Response{Errors: gqlerror.List{subscriptionEndError(ctx, err)}}
		}
		return nil
	}
}

// typeUpdates serves a jobTypeUpdated subscription: a goroutine reads
// the watch and hands each change to gqlgen's channel. It exits, closing
// the channel and the watch, when ctx ends (the operation ends) or the
// watch does (the server stops). Changes of types' controls are rare, so
// one goroutine per such subscription costs little.
func (r *Resolver) typeUpdates(ctx context.Context, w *jobs.TypeWatch) <-chan *jobs.JobType {
	ch := make(chan *jobs.JobType, 1)
	go func() {
		defer close(ch)
		defer w.Close()
		for {
			t, err := w.Next(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, broker.ErrClosed) {
					r.Logger.WarnContext(ctx, "jobTypeUpdated: subscription ended", "err", err)
				}
				return
			}
			select {
			case ch <- &t:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
