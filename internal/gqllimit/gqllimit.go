// Package gqllimit measures a GraphQL document before it is validated or
// executed, and refuses one whose size would make that work expensive.
//
// gqlgen parses a document, validates it (some rules are quadratic in the
// fields of one selection set) and prices it with a complexity walker that
// expands every fragment spread, so ten lines of fragments that each spread
// the previous one twice cost 2^40 steps before any limit is checked. Check
// runs first: it parses with a token limit (linear in the bounded input)
// and measures the document in one pass over its syntax tree, pricing each
// fragment once however often it is spread, so its own cost never depends
// on what the document would expand to.
package gqllimit

import (
	"errors"
	"fmt"
	"math"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/lexer"
	"github.com/vektah/gqlparser/v2/parser"
)

// Limits bound one GraphQL document. A limit of 0 or less is not checked.
type Limits struct {
	// Tokens bounds the lexical tokens of the document (names, punctuation,
	// values, comments). Give gqlgen's parser the same limit.
	Tokens int
	// Aliases, Directives and FragmentSpreads bound those as written in
	// the document, all operations and fragments together: what the parser
	// and the validator go through.
	Aliases         int
	Directives      int
	FragmentSpreads int
	// Fields bounds the fields an operation, or a fragment, selects once
	// its fragment spreads are expanded, at every level: roughly the work
	// of pricing and executing it, and what a response can hold beyond
	// list items.
	Fields int
	// Depth bounds how deep selection sets nest, through fragment spreads;
	// a field without a selection set is depth 1.
	Depth int
}

// ExceededError is a document over one of the Limits.
type ExceededError struct {
	// What is counted: "tokens", "aliases", "directives", "fragment
	// spreads", "fields" or "depth".
	What  string
	Limit int
}

func (e *ExceededError) Error() string {
	switch e.What {
	case "depth":
		return fmt.Sprintf("query is nested deeper than the limit of %d levels", e.Limit)
	case "fields":
		return fmt.Sprintf("query selects more than the limit of %d fields once its fragments are expanded", e.Limit)
	}
	return fmt.Sprintf("query has more than the limit of %d %s", e.Limit, e.What)
}

// ErrFragmentCycle is a document whose fragments spread one another in a
// cycle: no limit can price it, and validation would refuse it anyway.
var ErrFragmentCycle = errors.New("fragment spreads form a cycle")

// Document is a parsed document that is within its Limits.
type Document struct {
	doc       *ast.QueryDocument
	fragments map[string]*ast.FragmentDefinition
}

// Check parses query and measures it against l without validating it or
// expanding its fragments. It returns an *ExceededError naming the first
// limit exceeded, an error wrapping ErrFragmentCycle, or the document. A
// query that does not parse yields (nil, nil): gqlgen's parser reports the
// syntax error. Its cost is linear in the length of query, up to l.Tokens.
func Check(query string, l Limits) (*Document, error) {
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, max(l.Tokens, 0))
	if err != nil {
		if l.Tokens > 0 && tokensOver(query, l.Tokens) {
			return nil, &ExceededError{What: "tokens", Limit: l.Tokens}
		}
		return nil, nil
	}
	d := &Document{doc: doc, fragments: make(map[string]*ast.FragmentDefinition, len(doc.Fragments))}
	for _, f := range doc.Fragments {
		if _, dup := d.fragments[f.Name]; !dup {
			d.fragments[f.Name] = f
		}
	}
	if err := d.checkWritten(l); err != nil {
		return nil, err
	}
	if err := d.checkExpanded(l); err != nil {
		return nil, err
	}
	return d, nil
}

// tokensOver reports whether query has more than limit tokens. The parser
// says only that it stopped; counting again, only when it did, tells a
// document too long from one with a syntax error.
func tokensOver(query string, limit int) bool {
	lex := lexer.New(&ast.Source{Input: query})
	for n := 0; ; n++ {
		tok, err := lex.ReadToken()
		if err != nil || tok.Kind == lexer.EOF {
			return false
		}
		if n >= limit {
			return true
		}
	}
}

// checkWritten counts aliases, directives and spreads as written.
func (d *Document) checkWritten(l Limits) error {
	var aliases, directives, spreads int
	var walk func(ast.SelectionSet)
	walk = func(set ast.SelectionSet) {
		for _, s := range set {
			switch s := s.(type) {
			case *ast.Field:
				if s.Alias != "" && s.Alias != s.Name {
					aliases++
				}
				directives += len(s.Directives)
				walk(s.SelectionSet)
			case *ast.InlineFragment:
				directives += len(s.Directives)
				walk(s.SelectionSet)
			case *ast.FragmentSpread:
				spreads++
				directives += len(s.Directives)
			}
		}
	}
	for _, op := range d.doc.Operations {
		directives += len(op.Directives)
		for _, v := range op.VariableDefinitions {
			directives += len(v.Directives)
		}
		walk(op.SelectionSet)
	}
	for _, f := range d.doc.Fragments {
		directives += len(f.Directives)
		walk(f.SelectionSet)
	}
	switch {
	case l.Aliases > 0 && aliases > l.Aliases:
		return &ExceededError{What: "aliases", Limit: l.Aliases}
	case l.Directives > 0 && directives > l.Directives:
		return &ExceededError{What: "directives", Limit: l.Directives}
	case l.FragmentSpreads > 0 && spreads > l.FragmentSpreads:
		return &ExceededError{What: "fragment spreads", Limit: l.FragmentSpreads}
	}
	return nil
}

// size is what a selection set amounts to once expanded.
type size struct{ fields, depth int }

// checkExpanded prices every operation and every fragment (a fragment no
// operation uses is still validated) as if expanded, each fragment once.
func (d *Document) checkExpanded(l Limits) error {
	m := measurer{d: d, sizes: map[string]size{}, visiting: map[string]bool{}}
	var sizes []size
	for _, op := range d.doc.Operations {
		s, err := m.set(op.SelectionSet)
		if err != nil {
			return err
		}
		sizes = append(sizes, s)
	}
	for _, f := range d.doc.Fragments {
		s, err := m.fragment(f.Name)
		if err != nil {
			return err
		}
		sizes = append(sizes, s)
	}
	for _, s := range sizes {
		if l.Fields > 0 && s.fields > l.Fields {
			return &ExceededError{What: "fields", Limit: l.Fields}
		}
		if l.Depth > 0 && s.depth > l.Depth {
			return &ExceededError{What: "depth", Limit: l.Depth}
		}
	}
	return nil
}

// measurer prices selection sets, remembering each fragment's size; it
// finds a cycle by meeting a fragment it is still pricing.
type measurer struct {
	d        *Document
	sizes    map[string]size
	visiting map[string]bool
}

func (m *measurer) set(set ast.SelectionSet) (size, error) {
	var total size
	for _, s := range set {
		var sub size
		var err error
		switch s := s.(type) {
		case *ast.Field:
			sub, err = m.set(s.SelectionSet)
			sub.fields = addSat(sub.fields, 1)
			sub.depth = addSat(sub.depth, 1)
		case *ast.InlineFragment:
			sub, err = m.set(s.SelectionSet)
		case *ast.FragmentSpread:
			sub, err = m.fragment(s.Name)
		}
		if err != nil {
			return size{}, err
		}
		total.fields = addSat(total.fields, sub.fields)
		total.depth = max(total.depth, sub.depth)
	}
	return total, nil
}

func (m *measurer) fragment(name string) (size, error) {
	if s, ok := m.sizes[name]; ok {
		return s, nil
	}
	f := m.d.fragments[name]
	if f == nil {
		return size{}, nil // an unknown fragment: validation names it
	}
	if m.visiting[name] {
		return size{}, fmt.Errorf("fragment %s: %w", name, ErrFragmentCycle)
	}
	m.visiting[name] = true
	s, err := m.set(f.SelectionSet)
	delete(m.visiting, name)
	if err != nil {
		return size{}, err
	}
	m.sizes[name] = s
	return s, nil
}

// RootFields reports how many times the operation gqlgen would run for
// operationName selects the root field name, through fragment spreads and
// inline fragments, each alias counted (saturating at math.MaxInt), and
// the operation's type. ok is false when the document has no such
// operation (gqlgen reports it).
func (d *Document) RootFields(operationName, name string) (n int, op ast.Operation, ok bool) {
	return d.rootSum(operationName, name, func(*ast.Field, *ast.OperationDefinition) int { return 1 })
}

// RootListItems is RootFields counting, for each root field name, the
// elements of its list argument arg instead of one: a list literal's
// length, or the length of a variable's list in vars (the request's
// variables, not yet coerced), or of its default. A value that is not a
// list counts one (GraphQL coerces it into a list of one); a null or
// missing one, none.
func (d *Document) RootListItems(operationName, name, arg string, vars map[string]any) (n int, op ast.Operation, ok bool) {
	return d.rootSum(operationName, name, func(f *ast.Field, def *ast.OperationDefinition) int {
		a := f.Arguments.ForName(arg)
		if a == nil {
			return 0
		}
		return listItems(a.Value, vars, def)
	})
}

func listItems(v *ast.Value, vars map[string]any, def *ast.OperationDefinition) int {
	switch {
	case v == nil || v.Kind == ast.NullValue:
		return 0
	case v.Kind == ast.ListValue:
		return len(v.Children)
	case v.Kind != ast.Variable:
		return 1
	}
	if raw, ok := vars[v.Raw]; ok {
		switch raw := raw.(type) {
		case nil:
			return 0
		case []any:
			return len(raw)
		}
		return 1
	}
	if vd := def.VariableDefinitions.ForName(v.Raw); vd != nil && vd.DefaultValue != nil && vd.DefaultValue.Kind != ast.Variable {
		return listItems(vd.DefaultValue, nil, def)
	}
	return 0
}

// rootSum adds up cost over the root fields named name of the operation
// gqlgen would run for operationName (see RootFields).
func (d *Document) rootSum(operationName, name string, cost func(*ast.Field, *ast.OperationDefinition) int) (n int, op ast.Operation, ok bool) {
	def := d.doc.Operations.ForName(operationName)
	if def == nil {
		return 0, "", false
	}
	// Check found no cycle, so the recursion ends; the memo keeps it
	// linear however often a fragment is spread.
	memo := map[string]int{}
	var count func(ast.SelectionSet) int
	count = func(set ast.SelectionSet) int {
		total := 0
		for _, s := range set {
			switch s := s.(type) {
			case *ast.Field:
				if s.Name == name {
					total = addSat(total, cost(s, def))
				}
			case *ast.InlineFragment:
				total = addSat(total, count(s.SelectionSet))
			case *ast.FragmentSpread:
				c, seen := memo[s.Name]
				if !seen {
					if f := d.fragments[s.Name]; f != nil {
						c = count(f.SelectionSet)
					}
					memo[s.Name] = c
				}
				total = addSat(total, c)
			}
		}
		return total
	}
	return count(def.SelectionSet), def.Operation, true
}

// addSat adds two non-negative counts, saturating at math.MaxInt so that a
// document cannot wrap a count around to a small one.
func addSat(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}
