package gqllimit

import (
	"github.com/99designs/gqlgen/graphql/introspection"
	"github.com/vektah/gqlparser/v2/ast"
)

// IntrospectionCost prices the introspection fields at the root of a
// validated operation (__schema, and __type for the type its name argument
// asks for) at one point per field of the response they produce on
// schema: lists count one per item, as the schema's types, fields and
// arguments really are. gqlgen's complexity walker skips __schema and
// counts __type's selection once, whatever the lists hold; this counts
// what is built. It stops counting, and returns a value over budget, as
// soon as the price exceeds budget, so its own work is bounded by budget
// whatever the operation repeats. deprecated entries count as if asked
// for.
func IntrospectionCost(schema *ast.Schema, op *ast.OperationDefinition, vars map[string]any, budget int) int {
	p := pricer{budget: budget}
	p.eachField(op.SelectionSet, func(f *ast.Field) {
		switch f.Name {
		case "__schema":
			p.spent = addSat(p.spent, 1)
			p.object(f.SelectionSet, introspection.WrapSchema(schema))
		case "__type":
			p.spent = addSat(p.spent, 1)
			name, _ := f.ArgumentMap(vars)["name"].(string)
			p.typ(f.SelectionSet, introspection.WrapTypeFromDef(schema, schema.Types[name]))
		}
	})
	return p.spent
}

type pricer struct{ budget, spent int }

func (p *pricer) over() bool { return p.spent > p.budget }

// eachField calls fn for every field of set, through fragments (validation
// has resolved them and ruled out cycles).
func (p *pricer) eachField(set ast.SelectionSet, fn func(*ast.Field)) {
	for _, s := range set {
		if p.over() {
			return
		}
		switch s := s.(type) {
		case *ast.Field:
			fn(s)
		case *ast.InlineFragment:
			p.eachField(s.SelectionSet, fn)
		case *ast.FragmentSpread:
			if s.Definition != nil {
				p.eachField(s.Definition.SelectionSet, fn)
			}
		}
	}
}

// field prices f selected on obj, one of introspection's objects (nil for
// an enum value, whose fields are all scalars): one for the field, plus
// its selection over each object it yields.
func (p *pricer) field(f *ast.Field, obj any) {
	p.spent = addSat(p.spent, 1)
	if len(f.SelectionSet) == 0 || p.over() {
		return
	}
	each := func(n int, at func(int) any) {
		for i := 0; i < n && !p.over(); i++ {
			p.object(f.SelectionSet, at(i))
		}
	}
	switch o := obj.(type) {
	case *introspection.Schema:
		switch f.Name {
		case "types":
			ts := o.Types()
			each(len(ts), func(i int) any { return &ts[i] })
		case "directives":
			ds := o.Directives()
			each(len(ds), func(i int) any { return &ds[i] })
		case "queryType":
			p.typ(f.SelectionSet, o.QueryType())
		case "mutationType":
			p.typ(f.SelectionSet, o.MutationType())
		case "subscriptionType":
			p.typ(f.SelectionSet, o.SubscriptionType())
		}
	case *introspection.Type:
		switch f.Name {
		case "fields":
			fs := o.Fields(true)
			each(len(fs), func(i int) any { return &fs[i] })
		case "inputFields":
			vs := o.InputFields()
			each(len(vs), func(i int) any { return &vs[i] })
		case "enumValues":
			vs := o.EnumValues(true)
			each(len(vs), func(int) any { return nil })
		case "interfaces":
			ts := o.Interfaces()
			each(len(ts), func(i int) any { return &ts[i] })
		case "possibleTypes":
			ts := o.PossibleTypes()
			each(len(ts), func(i int) any { return &ts[i] })
		case "ofType":
			p.typ(f.SelectionSet, o.OfType())
		}
	case *introspection.Field:
		switch f.Name {
		case "args":
			each(len(o.Args), func(i int) any { return &o.Args[i] })
		case "type":
			p.typ(f.SelectionSet, o.Type)
		}
	case *introspection.InputValue:
		if f.Name == "type" {
			p.typ(f.SelectionSet, o.Type)
		}
	case *introspection.Directive:
		if f.Name == "args" {
			each(len(o.Args), func(i int) any { return &o.Args[i] })
		}
	}
}

// typ prices set on t, a type that may be null.
func (p *pricer) typ(set ast.SelectionSet, t *introspection.Type) {
	if t != nil {
		p.object(set, t)
	}
}

// object prices set selected on obj.
func (p *pricer) object(set ast.SelectionSet, obj any) {
	p.eachField(set, func(f *ast.Field) { p.field(f, obj) })
}
