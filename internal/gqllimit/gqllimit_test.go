package gqllimit_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/jobqueue/jobqueue/internal/gqllimit"
)

// repeat joins n copies of item, numbered by %[1]d when it has one.
func repeat(n int, item string) string {
	var b strings.Builder
	for i := range n {
		if strings.Contains(item, "%") {
			fmt.Fprintf(&b, item, i)
		} else {
			b.WriteString(item)
		}
		b.WriteByte(' ')
	}
	return b.String()
}

// fanOut is the fragment fan-out of issue 10: F(i) spreads F(i-1) twice,
// so the operation selects 2^levels fields once expanded.
func fanOut(levels int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{ ...F%d }\nfragment F0 on Query { __typename }\n", levels)
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "fragment F%d on Query { ...F%d ...F%d }\n", i, i-1, i-1)
	}
	return b.String()
}

// wantExceeded checks that err is the limit what.
func wantExceeded(t *testing.T, err error, what string, limit int) {
	t.Helper()
	var e *gqllimit.ExceededError
	if !errors.As(err, &e) || e.What != what || e.Limit != limit {
		t.Fatalf("got %v, want the %s limit of %d exceeded", err, what, limit)
	}
}

// TestLimitBoundaries checks each limit one under, at and one over: only
// over is refused, and by that limit.
func TestLimitBoundaries(t *testing.T) {
	t.Parallel()
	const n = 10
	cases := []struct {
		what  string
		set   func(*gqllimit.Limits, int)
		query func(count int) string // a document with count of what is limited
	}{
		{"tokens", func(l *gqllimit.Limits, v int) { l.Tokens = v },
			func(c int) string { return "{" + repeat(c-2, "a") + "}" }},
		{"aliases", func(l *gqllimit.Limits, v int) { l.Aliases = v },
			func(c int) string { return "{ a " + repeat(c, "a%d: a") + "}" }},
		{"directives", func(l *gqllimit.Limits, v int) { l.Directives = v },
			func(c int) string { return "query @a {" + repeat(c-1, "a @skip(if: false)") + "}" }},
		{"fragment spreads", func(l *gqllimit.Limits, v int) { l.FragmentSpreads = v },
			func(c int) string { return "{" + repeat(c, "...F") + "} fragment F on Query { a }" }},
		// The fragment's 2 fields count in each of its c/2 spreads.
		{"fields", func(l *gqllimit.Limits, v int) { l.Fields = v },
			func(c int) string {
				return "{" + repeat(c%2, "a") + repeat(c/2, "...F") + "} fragment F on Query { a b }"
			}},
		{"depth", func(l *gqllimit.Limits, v int) { l.Depth = v },
			func(c int) string {
				return "{ a { ...F } } fragment F on A {" + strings.Repeat(" b {", c-2) + " c" + strings.Repeat(" }", c-2) + " }"
			}},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			t.Parallel()
			var l gqllimit.Limits
			c.set(&l, n)
			for _, count := range []int{n - 1, n} {
				if _, err := gqllimit.Check(c.query(count), l); err != nil {
					t.Fatalf("%d %s with a limit of %d: %v", count, c.what, n, err)
				}
			}
			_, err := gqllimit.Check(c.query(n+1), l)
			wantExceeded(t, err, c.what, n)
			// A limit of 0 is not checked.
			if _, err := gqllimit.Check(c.query(n+1), gqllimit.Limits{}); err != nil {
				t.Fatalf("no limits: %v", err)
			}
		})
	}
}

// TestAttacks checks that issue 10's documents are refused by a limit the
// server's defaults set, each by the limit its shape meets first.
func TestAttacks(t *testing.T) {
	t.Parallel()
	defaults := gqllimit.Limits{Tokens: 15000, Depth: 25, Aliases: 200, Directives: 200, FragmentSpreads: 200, Fields: 1000}
	schemaFields := "__schema { types { name fields { name args { name type { name } } } } }"
	for _, c := range []struct {
		name, query, what string
		limit             int
	}{
		{"fragment fan-out", fanOut(40), "fields", 1000},
		// 2^70 overflows an int: the count saturates instead of wrapping.
		{"fragment fan-out past overflow", fanOut(70), "fields", 1000},
		{"2,000 aliases of __schema", "{" + repeat(2000, "s%d: "+schemaFields) + "}", "tokens", 15000},
		{"201 aliases of __schema", "{" + repeat(201, "s%d: "+schemaFields) + "}", "aliases", 200},
		{"20,000 __typename", "{" + repeat(20000, "__typename") + "}", "tokens", 15000},
		{"1,001 __typename", "{" + repeat(1001, "__typename") + "}", "fields", 1000},
		{"60,000 @skip", "{" + repeat(60000, "__typename @skip(if: false)") + "}", "tokens", 15000},
		{"201 @skip", "{" + repeat(201, "__typename @skip(if: false)") + "}", "directives", 200},
		{"deep nesting", strings.Repeat("{ a ", 30) + strings.Repeat("}", 30), "depth", 25},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := gqllimit.Check(c.query, defaults)
			wantExceeded(t, err, c.what, c.limit)
		})
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	l := gqllimit.Limits{Tokens: 5}
	// Comments are tokens: the lexer reads them.
	_, err := gqllimit.Check("# one\n# two\n# three\n{ a }", l)
	wantExceeded(t, err, "tokens", 5)
	// A syntax error within the limit is left to gqlgen's parser.
	if d, err := gqllimit.Check("{ a", l); d != nil || err != nil {
		t.Fatalf("syntax error: got %v, %v; want nil, nil", d, err)
	}
	// Past the limit, the document is too long whatever follows.
	_, err = gqllimit.Check("{ a b c d e f (", l)
	wantExceeded(t, err, "tokens", 5)
}

func TestFragmentCycles(t *testing.T) {
	t.Parallel()
	for _, q := range []string{
		"{ ...A } fragment A on Query { ...A }",
		"{ ...A } fragment A on Query { b { ...B } } fragment B on B { ... on B { ...A } }",
		// A cycle no operation reaches is still refused: validation walks it.
		"{ a } fragment A on Query { ...B } fragment B on Query { ...A }",
	} {
		if _, err := gqllimit.Check(q, gqllimit.Limits{}); !errors.Is(err, gqllimit.ErrFragmentCycle) {
			t.Errorf("%s: got %v, want ErrFragmentCycle", q, err)
		}
	}
	// A fragment spread twice, or by two others, is no cycle.
	if _, err := gqllimit.Check("{ ...A ...B } fragment A on Query { ...C ...C } fragment B on Query { ...C } fragment C on Query { c }", gqllimit.Limits{}); err != nil {
		t.Fatalf("diamond: %v", err)
	}
	// An unknown fragment is validation's to name.
	if _, err := gqllimit.Check("{ ...Nope }", gqllimit.Limits{Fields: 1}); err != nil {
		t.Fatalf("unknown fragment: %v", err)
	}
}

// TestUnusedFragmentCounts: a fragment no operation spreads is validated
// all the same, so it is measured too.
func TestUnusedFragmentCounts(t *testing.T) {
	t.Parallel()
	_, err := gqllimit.Check("{ a } fragment F on Query { "+repeat(11, "a")+"}", gqllimit.Limits{Fields: 10})
	wantExceeded(t, err, "fields", 10)
}

func TestRootFields(t *testing.T) {
	t.Parallel()
	doc := `
		mutation Many { a: createJob b: createJob ...M ... on Mutation { c: createJob ...M } cancelJob }
		fragment M on Mutation { d: createJob e: createJob ...N }
		fragment N on Mutation { createJob nested { createJob } }
		query Q { createJob }
	`
	d, err := gqllimit.Check(doc, gqllimit.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// a, b, c, and twice M (d, e, N's one): nested fields do not count.
	if n, op, ok := d.RootFields("Many", "createJob"); !ok || op != ast.Mutation || n != 9 {
		t.Fatalf("Many: %d %s %v, want 9 mutation true", n, op, ok)
	}
	if n, op, ok := d.RootFields("Q", "createJob"); !ok || op != ast.Query || n != 1 {
		t.Fatalf("Q: %d %s %v, want 1 query true", n, op, ok)
	}
	// No name with two operations: gqlgen finds no operation either.
	if _, _, ok := d.RootFields("", "createJob"); ok {
		t.Fatal("unnamed operation found in a document of two named ones")
	}
	one, err := gqllimit.Check("mutation { createJob createJob }", gqllimit.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, ok := one.RootFields("", "createJob"); !ok || n != 2 {
		t.Fatalf("the only operation: %d %v, want 2 true", n, ok)
	}
	// Counting a fan-out memoizes each fragment: 2^62 saturates nothing and
	// finishes at once.
	fan, err := gqllimit.Check(strings.ReplaceAll(strings.ReplaceAll(fanOut(62), "on Query", "on Mutation"), "{ ...F62 }", "mutation { ...F62 }"), gqllimit.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := fan.RootFields("", "__typename"); n != 1<<62 {
		t.Fatalf("fan-out of 62 levels: %d, want 2^62", n)
	}
}

func TestRootListItems(t *testing.T) {
	t.Parallel()
	doc := `
		mutation M($in: [I!]!, $none: [I], $one: I, $def: [I!] = [{}, {}, {}], $absent: [I]) {
			lit: createJobs(inputs: [{}, {}]) { id }
			var: createJobs(inputs: $in) { id }
			null: createJobs(inputs: null) { id }
			nullVar: createJobs(inputs: $none) { id }
			single: createJobs(inputs: {}) { id }
			singleVar: createJobs(inputs: $one) { id }
			def: createJobs(inputs: $def) { id }
			absent: createJobs(inputs: $absent) { id }
			inner: createJobs(inputs: [$one, $one]) { id }
			...F ...F
			createJob(input: {}) { id }
		}
		fragment F on Mutation { createJobs(inputs: $in) { id } }
	`
	d, err := gqllimit.Check(doc, gqllimit.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{"in": []any{map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}}, "none": nil, "one": map[string]any{}}
	// lit 2, var 4, null 0, nullVar 0, single 1, singleVar 1, def 3,
	// absent 0, inner 2, and F twice with 4 each.
	if n, op, ok := d.RootListItems("M", "createJobs", "inputs", vars); !ok || op != ast.Mutation || n != 2+4+1+1+3+2+8 {
		t.Fatalf("M: %d %s %v, want 21 mutation true", n, op, ok)
	}
	// A variable sent overrides its default.
	vars["def"] = []any{map[string]any{}}
	if n, _, _ := d.RootListItems("M", "createJobs", "inputs", vars); n != 19 {
		t.Fatalf("with $def sent: %d, want 19", n)
	}
}
