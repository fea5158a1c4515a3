package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// CodeResponseTooLarge: the result would exceed MAX_RESPONSE_BYTES.
const CodeResponseTooLarge = "RESPONSE_TOO_LARGE"

// responseBudgets bounds the memory responses take: each response's size
// (perResponse, MAX_RESPONSE_BYTES), counted field by field as they
// resolve so that a response over it is stopped before it is built, and
// the bytes of all responses built and not yet written (inFlightMax,
// MAX_INFLIGHT_RESPONSE_BYTES), so that many clients that ask for large
// answers and read them slowly cannot add up to more. A plain HTTP
// response's bytes count until it is written; a websocket's or SSE
// event's until its transport takes it (the websocket transport bounds
// what a connection queues). Safe for concurrent use.
type responseBudgets struct {
	perResponse int64
	inFlightMax int64
	inFlight    atomic.Int64
	log         *slog.Logger
}

// responseBudget is one response's: fields resolve concurrently, so its
// counts are atomic.
type responseBudget struct {
	all      *responseBudgets
	left     atomic.Int64
	charged  atomic.Int64 // added to all.inFlight
	exceeded atomic.Bool  // over perResponse
	busy     atomic.Bool  // over inFlightMax
}

type responseBudgetKey struct{}

// responses gives every response (each event of a subscription too) its
// budget, and answers one that overran it with a single error and no data,
// logged once at warn: RESPONSE_TOO_LARGE, or SERVER_BUSY (HTTP 503) when
// the responses in flight took the server's whole budget.
func (rb *responseBudgets) responses(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	b := &responseBudget{all: rb}
	b.left.Store(rb.perResponse)
	resp := next(context.WithValue(ctx, responseBudgetKey{}, b))
	release := func() { rb.inFlight.Add(-b.charged.Load()) }
	if req := requestFrom(ctx); req != nil {
		req.onDone(release)
	} else {
		release()
	}
	switch {
	case resp == nil:
		return resp
	case b.exceeded.Load():
		rb.log.WarnContext(ctx, "graphql response refused", "code", CodeResponseTooLarge, "limit", rb.perResponse, "client", clientAddr(ctx))
		return &graphql.Response{Errors: gqlerror.List{{
			Message:    fmt.Sprintf("the response would be larger than the server's limit of %d bytes; select fewer jobs or fields", rb.perResponse),
			Extensions: map[string]any{"code": CodeResponseTooLarge},
		}}}
	case b.busy.Load():
		rb.log.WarnContext(ctx, "graphql response refused", "code", CodeBusy, "in_flight_limit", rb.inFlightMax, "client", clientAddr(ctx))
		if req := requestFrom(ctx); req != nil {
			req.setStatus(http.StatusServiceUnavailable)
		}
		return &graphql.Response{Errors: gqlerror.List{{
			Message:    "the server holds as many large responses as it allows; retry shortly, or ask for less",
			Extensions: map[string]any{"code": CodeBusy},
		}}}
	}
	return resp
}

// fields charges each resolved field to its response's budget and to the
// responses in flight: its name and, for a scalar, its value's size as
// encoded (about). Once either is spent, the fields left resolve to
// nothing, so the response stays small until responses replaces it.
func (rb *responseBudgets) fields(ctx context.Context, next graphql.Resolver) (any, error) {
	b, _ := ctx.Value(responseBudgetKey{}).(*responseBudget)
	if b == nil {
		return next(ctx)
	}
	if b.exceeded.Load() || b.busy.Load() {
		return nil, nil
	}
	res, err := next(ctx)
	cost := int64(4) // quotes, colon, comma
	if fc := graphql.GetFieldContext(ctx); fc != nil {
		cost += int64(len(fc.Field.Alias))
	}
	cost += encodedSize(res)
	b.charged.Add(cost)
	over := b.left.Add(-cost) < 0
	busy := rb.inFlight.Add(cost) > rb.inFlightMax
	switch {
	case over:
		b.exceeded.Store(true)
		return nil, nil
	case busy:
		b.busy.Store(true)
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
