package gqllimit_test

import (
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/jobqueue/jobqueue/internal/gqllimit"
)

const testSchema = `
type Query {
  a(x: Int, y: Int): Int
  b: [B!]
}
type B { c: String }
`

// operation validates query against testSchema.
func operation(t *testing.T, query string) (*ast.Schema, *ast.OperationDefinition) {
	t.Helper()
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: testSchema})
	doc, errs := gqlparser.LoadQuery(schema, query)
	if errs != nil {
		t.Fatalf("%s: %v", query, errs)
	}
	return schema, doc.Operations[0]
}

func TestIntrospectionCost(t *testing.T) {
	t.Parallel()
	schema, op := operation(t, `{ __schema { types { name } } }`)
	// __schema, types, and one name per type (the built-in ones too).
	if got, want := gqllimit.IntrospectionCost(schema, op, nil, 1e6), 2+len(schema.Types); got != want {
		t.Fatalf("__schema types name: %d, want %d", got, want)
	}

	// __type: one per field, per item of fields and args. a's args are x
	// and y; b has none: 1 + 1 + (1 + 1 + 2) + (1 + 1) = 8.
	_, op = operation(t, `query($n: String!) { __type(name: $n) { fields { name args { name } } } }`)
	if got := gqllimit.IntrospectionCost(schema, op, map[string]any{"n": "Query"}, 1e6); got != 8 {
		t.Fatalf("__type(Query) fields and args: %d, want 8", got)
	}
	// An unknown type is null: the field alone.
	if got := gqllimit.IntrospectionCost(schema, op, map[string]any{"n": "Nope"}, 1e6); got != 1 {
		t.Fatalf("__type(Nope): %d, want 1", got)
	}

	// Type references through fragments: b is [B!], so its type (LIST),
	// ofType (NON_NULL) and ofType (B) each count with their kind.
	_, op = operation(t, `{ __type(name: "Query") { ...T } }
		fragment T on __Type { fields { type { ...R } } }
		fragment R on __Type { kind ofType { kind ofType { kind ofType { kind ofType { kind } } } } }`)
	// __type 1, fields 1; a: type 1 + kind 1 + ofType 1 (null); b: type 1
	// + kind 1 + 2 × (ofType 1 + kind 1) + ofType 1 (null).
	if got := gqllimit.IntrospectionCost(schema, op, nil, 1e6); got != 2+3+7 {
		t.Fatalf("type references: %d, want 12", got)
	}

	// Fields other than introspection cost nothing here: gqlgen's walker
	// prices them.
	_, op = operation(t, `{ a b { c } __typename }`)
	if got := gqllimit.IntrospectionCost(schema, op, nil, 1e6); got != 0 {
		t.Fatalf("no introspection: %d, want 0", got)
	}
}

// TestIntrospectionCostStopsAtBudget: however many times a document asks
// for the schema, counting stops just past the budget.
func TestIntrospectionCostStopsAtBudget(t *testing.T) {
	t.Parallel()
	schema, op := operation(t, "{"+repeat(200, "s%d: __schema { types { name fields { name } } }")+"}")
	full := gqllimit.IntrospectionCost(schema, op, nil, 1e9)
	if full < 200*len(schema.Types) {
		t.Fatalf("200 schemas cost %d, want at least %d", full, 200*len(schema.Types))
	}
	for _, budget := range []int{0, 100, full - 1} {
		if got := gqllimit.IntrospectionCost(schema, op, nil, budget); got != budget+1 {
			t.Fatalf("budget %d: got %d, want %d (counting stops once over)", budget, got, budget+1)
		}
	}
	if got := gqllimit.IntrospectionCost(schema, op, nil, full); got != full {
		t.Fatalf("budget %d, the exact cost: got %d", full, got)
	}
}
