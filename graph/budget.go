package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// CodeResponseTooLarge: the result would exceed MAX_RESPONSE_BYTES.
const CodeResponseTooLarge = "RESPONSE_TOO_LARGE"

// responseBudget counts the bytes of one response while its fields
// resolve, so that a response over the budget is stopped before it is
// built rather than measured once it has been. Fields resolve
// concurrently: the count is atomic.
type responseBudget struct {
	left     atomic.Int64
	exceeded atomic.Bool
}

type responseBudgetKey struct{}

// budgetResponses gives every response (each event of a subscription too)
// a budget of max bytes, and answers one that overran it with a single
// RESPONSE_TOO_LARGE error and no data, logged once at warn.
func budgetResponses(max int64, log *slog.Logger) graphql.ResponseMiddleware {
	return func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		b := &responseBudget{}
		b.left.Store(max)
		resp := next(context.WithValue(ctx, responseBudgetKey{}, b))
		if resp == nil || !b.exceeded.Load() {
			return resp
		}
		log.WarnContext(ctx, "graphql response refused", "code", CodeResponseTooLarge, "limit", max, "client", clientAddr(ctx))
		return &graphql.Response{Errors: gqlerror.List{{
			Message:    fmt.Sprintf("the response would be larger than the server's limit of %d bytes; select fewer jobs or fields", max),
			Extensions: map[string]any{"code": CodeResponseTooLarge},
		}}}
	}
}

// budgetFields charges each resolved field to its response's budget: its
// name and, for a scalar, its value's size as encoded (about). Once the
// budget is spent, the fields left resolve to nothing, so the response
// stays small until budgetResponses replaces it.
func budgetFields(ctx context.Context, next graphql.Resolver) (any, error) {
	b, _ := ctx.Value(responseBudgetKey{}).(*responseBudget)
	if b == nil {
		return next(ctx)
	}
	if b.exceeded.Load() {
		return nil, nil
	}
	res, err := next(ctx)
	cost := int64(4) // quotes, colon, comma
	if fc := graphql.GetFieldContext(ctx); fc != nil {
		cost += int64(len(fc.Field.Alias))
	}
	cost += encodedSize(res)
	if b.left.Add(-cost) < 0 {
		b.exceeded.Store(true)
		return nil, nil
	}
	return res, err
}

// encodedSize is about how many bytes v takes in a JSON response: exact
// for raw JSON, the bytes of a string plus its quotes, 8 for any other
// scalar; objects and lists cost nothing themselves (their fields do).
func encodedSize(v any) int64 {
	switch v := v.(type) {
	case json.RawMessage:
		return int64(len(v))
	case *json.RawMessage:
		if v != nil {
			return int64(len(*v))
		}
	case string:
		return int64(len(v)) + 2
	case *string:
		if v != nil {
			return int64(len(*v)) + 2
		}
	case []string:
		var n int64
		for _, s := range v {
			n += int64(len(s)) + 3
		}
		return n
	}
	return 8
}
