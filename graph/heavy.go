package graph

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// CodeBusy: the server runs as many heavy operations as it allows and no
// slot came free in time; the same request may succeed shortly (HTTP 503
// with Retry-After).
const CodeBusy = "SERVER_BUSY"

// heavyWait is how long a heavy operation waits for a slot before it is
// answered SERVER_BUSY.
const heavyWait = 5 * time.Second

// heavyOperations runs the queries and mutations whose complexity is at
// least threshold at most slots at a time, so that a client sending large
// queries cannot take every core: /health, small queries and the workers
// keep their latency while heavy operations queue, and after heavyWait are
// refused. Subscriptions are not counted: their cost is per event.
type heavyOperations struct {
	threshold int
	slots     chan struct{}
	log       *slog.Logger
}

func newHeavyOperations(threshold, slots int, log *slog.Logger) *heavyOperations {
	return &heavyOperations{threshold: threshold, slots: make(chan struct{}, slots), log: log}
}

func (h *heavyOperations) intercept(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	stats := extension.GetComplexityStats(ctx)
	if oc.Operation == nil || oc.Operation.Operation == ast.Subscription || stats == nil || stats.Complexity < h.threshold {
		return next(ctx)
	}
	timer := time.NewTimer(heavyWait)
	defer timer.Stop()
	select {
	case h.slots <- struct{}{}:
	case <-timer.C:
		return h.busy(ctx)
	case <-ctx.Done():
		return h.busy(ctx)
	}
	var once sync.Once
	release := func() { once.Do(func() { <-h.slots }) }
	handler := next(ctx)
	return func(ctx context.Context) *graphql.Response {
		// Over plain HTTP the slot is held until the response is written:
		// a client that reads slowly keeps its slot, not a slot's worth of
		// memory beside the others.
		if req := requestFrom(ctx); req != nil {
			req.onDone(release)
		} else {
			defer release()
		}
		return handler(ctx)
	}
}

func (h *heavyOperations) busy(ctx context.Context) graphql.ResponseHandler {
	h.log.WarnContext(ctx, "graphql request refused", "code", CodeBusy, "slots", cap(h.slots), "client", clientAddr(ctx))
	if req := requestFrom(ctx); req != nil {
		req.setStatus(http.StatusServiceUnavailable)
	}
	return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
		Message:    "the server is running as many large operations as it allows; retry shortly, or ask for less",
		Extensions: map[string]any{"code": CodeBusy},
	}}})
}
