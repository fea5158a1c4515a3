package graph

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/jobqueue/jobqueue/internal/ratelimit"
)

// CodeRateLimited: the caller made more mutations than RATE_LIMIT allows;
// extensions.retryAfterSeconds says when to try again (HTTP 429 with
// Retry-After).
const CodeRateLimited = "RATE_LIMITED"

// rateLimitMutations charges each mutation to its caller's bucket (the key
// the HTTP surface or the websocket's connection_init put in the context),
// one action per root field and one per createJobs input (see
// mutationCost), so that aliases and lists do not multiply what one
// request may do. A refused mutation does nothing: none of its fields
// runs.
func rateLimitMutations(l *ratelimit.Limiter, log *slog.Logger) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		oc := graphql.GetOperationContext(ctx)
		if oc.Operation == nil || oc.Operation.Operation != ast.Mutation {
			return next(ctx)
		}
		n := mutationCost(oc)
		ok, wait := l.Allow(ratelimit.KeyFrom(ctx), n, time.Now())
		if ok {
			return next(ctx)
		}
		if n > l.Burst() {
			// Waiting would not help: the request must change (400, no
			// Retry-After).
			log.WarnContext(ctx, "graphql request refused", "code", CodeRateLimited, "fields", n, "burst", l.Burst(), "client", clientAddr(ctx))
			if req := requestFrom(ctx); req != nil {
				req.setStatus(http.StatusBadRequest)
			}
			return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
				Message:    "this mutation counts " + strconv.Itoa(n) + " (one per field, one per createJobs input); at most " + strconv.Itoa(l.Burst()) + " may run in one request (RATE_BURST): split it",
				Extensions: map[string]any{"code": CodeRateLimited},
			}}})
		}
		secs := int(wait / time.Second)
		log.WarnContext(ctx, "graphql request refused", "code", CodeRateLimited, "fields", n, "retry_after_seconds", secs, "client", clientAddr(ctx))
		if req := requestFrom(ctx); req != nil {
			req.setStatus(http.StatusTooManyRequests)
			req.setRetryAfter(secs)
		}
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
			Message:    "too many mutations: retry in " + strconv.Itoa(secs) + " s",
			Extensions: map[string]any{"code": CodeRateLimited, "retryAfterSeconds": secs},
		}}})
	}
}

// mutationCost is what a mutation takes from its caller's bucket: one per
// root field, except createJobs, which takes one per input (at least one).
func mutationCost(oc *graphql.OperationContext) int {
	n := 0
	for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, []string{"Mutation"}) {
		if f.Name != "createJobs" {
			n++
			continue
		}
		inputs, _ := f.ArgumentMap(oc.Variables)["inputs"].([]any)
		n += max(1, len(inputs))
	}
	return n
}
