package tracing

import (
	"context"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// GraphQL returns the gqlgen extension that makes a span of each GraphQL
// operation, named "mutation createJob" (its type and name, as written by
// the client, cut to maxNameBytes) with both as attributes, a child of the
// request's span. The
// resolvers run under it. A subscription's span lasts as long as the
// subscription. Off, it returns nil: add nothing.
func (t *Tracing) GraphQL() graphql.HandlerExtension {
	if !t.Enabled() {
		return nil
	}
	return operations{t.tracer}
}

type operations struct{ tracer trace.Tracer }

func (operations) ExtensionName() string                   { return "Tracing" }
func (operations) Validate(graphql.ExecutableSchema) error { return nil }
func (o operations) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	kind, name := "operation", oc.OperationName
	if oc.Operation != nil {
		kind = string(oc.Operation.Operation)
		if name == "" {
			name = oc.Operation.Name
		}
	}
	name = truncate(name, maxNameBytes)
	spanName := kind
	if name != "" {
		spanName += " " + name
	}
	ctx, span := o.tracer.Start(ctx, spanName, trace.WithAttributes(semconv.GraphQLOperationTypeKey.String(kind)))
	if name != "" {
		span.SetAttributes(semconv.GraphQLOperationName(name))
	}
	subscription := oc.Operation != nil && oc.Operation.Operation == ast.Subscription
	if subscription {
		// Its responses come until it ends, when its context does.
		context.AfterFunc(ctx, func() { span.End() })
	}
	respond := next(ctx)
	return func(ctx context.Context) *graphql.Response {
		resp := respond(ctx)
		if resp != nil && len(resp.Errors) > 0 {
			span.SetStatus(codes.Error, truncate(resp.Errors[0].Message, attributeValueLengthLimit))
		}
		if !subscription || resp == nil {
			span.End()
		}
		return resp
	}
}

// maxNameBytes bounds the operation name a client chooses, as it goes into
// the span's name and attribute.
const maxNameBytes = 128

// truncate returns s cut to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
