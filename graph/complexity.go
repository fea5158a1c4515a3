package graph

import (
	"context"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// complexityLimit refuses operations whose complexity exceeds limit, as
// gqlgen's extension.FixedComplexityLimit does. It records the figure in
// the operation's statistics (extension.GetComplexityStats), which
// heavyOperations reads, for queries and mutations only: for a
// subscription that map would stay with it for its whole life, and
// nothing reads it.
type complexityLimit struct {
	limit  int
	schema graphql.ExecutableSchema
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = (*complexityLimit)(nil)

func (c *complexityLimit) ExtensionName() string { return "ComplexityLimit" }

func (c *complexityLimit) Validate(schema graphql.ExecutableSchema) error {
	c.schema = schema
	return nil
}

func (c *complexityLimit) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	op := oc.Doc.Operations.ForName(oc.OperationName)
	n := complexity.Calculate(ctx, c.schema, op, oc.Variables)
	if op != nil && op.Operation != ast.Subscription {
		oc.Stats.SetExtension(c.ExtensionName(), &extension.ComplexityStats{Complexity: n, ComplexityLimit: c.limit})
	}
	if n <= c.limit {
		return nil
	}
	err := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d", n, c.limit)
	errcode.Set(err, CodeComplexityLimit)
	return err
}
