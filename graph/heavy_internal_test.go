package graph

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// operation returns a context of a query of the given complexity, as
// gqlgen hands it to operation interceptors, and the HTTP status it asks.
func operation(complexity int) (context.Context, *request) {
	oc := &graphql.OperationContext{Operation: &ast.OperationDefinition{Operation: ast.Query}}
	oc.Stats.SetExtension("ComplexityLimit", &extension.ComplexityStats{Complexity: complexity, ComplexityLimit: 25000})
	req := &request{}
	return graphql.WithOperationContext(withRequest(context.Background(), req), oc), req
}

// Heavy operations run one slot each; when none is free they wait, and
// after heavyWait are refused SERVER_BUSY with 503; light operations never
// wait.
func TestHeavyOperationsShareTheirSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHeavyOperations(100, 1, slog.New(slog.DiscardHandler))
		release := make(chan struct{})
		ran := make(chan int, 4)
		op := func(n int, block bool) graphql.OperationHandler {
			return func(ctx context.Context) graphql.ResponseHandler {
				return func(ctx context.Context) *graphql.Response {
					ran <- n
					if block {
						<-release
					}
					return &graphql.Response{}
				}
			}
		}
		// The first heavy one takes the slot and runs until released; over
		// HTTP it keeps the slot until its response is written (finish).
		ctx, first := operation(100)
		go h.intercept(ctx, op(1, true))(ctx)
		if n := <-ran; n != 1 {
			t.Fatalf("ran %d, want 1", n)
		}
		// A light one runs at once.
		light, _ := operation(99)
		h.intercept(light, op(2, false))(light)
		if n := <-ran; n != 2 {
			t.Fatalf("ran %d, want the light operation", n)
		}
		// A second heavy one waits, and is refused after heavyWait.
		start := time.Now()
		ctx, status := operation(5000)
		resp := h.intercept(ctx, op(3, false))(ctx)
		if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != CodeBusy || time.Since(start) != heavyWait {
			t.Fatalf("waited %v, answered %+v; want SERVER_BUSY after %v", time.Since(start), resp.Errors, heavyWait)
		}
		if status.getStatus() != http.StatusServiceUnavailable {
			t.Fatalf("asked HTTP status %d, want 503", status.getStatus())
		}
		select {
		case n := <-ran:
			t.Fatalf("operation %d ran without a slot", n)
		default:
		}
		// One that comes while the slot is taken runs once it is freed.
		ctx, _ = operation(100)
		done := make(chan struct{})
		go func() {
			h.intercept(ctx, op(4, false))(ctx)
			close(done)
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("a heavy operation ran while the slot was taken")
		default:
		}
		close(release)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("a heavy operation ran before the response holding the slot was written")
		default:
		}
		first.finish()
		<-done
		if n := <-ran; n != 4 {
			t.Fatalf("ran %d, want 4", n)
		}
	})
}

// The status an operation asks for is the response's, with Retry-After
// for 503.
func TestConformHTTPAskedStatus(t *testing.T) {
	h := conformHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requestFrom(r.Context()).setStatus(http.StatusServiceUnavailable)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"errors":[]}`))
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/query", strings.NewReader(`{}`)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || rec.Body.String() != `{"errors":[]}` {
		t.Fatalf("%d Retry-After %q %s, want 503 with Retry-After and the body", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
}

// The limiter records the complexity heavyOperations reads for queries
// and mutations, and not for subscriptions.
func TestComplexityRecordedForQueriesOnly(t *testing.T) {
	schema := NewExecutableSchema(Config{Resolvers: &Resolver{}})
	c := newLimiter(Limits{}, 25000, slog.New(slog.DiscardHandler))
	if err := c.Validate(schema); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		stats bool
	}{
		{`{ jobs(first: 10) { nodes { id } } }`, true},
		{`mutation { createJob(input: {type: "t"}) { id } }`, true},
		{`subscription { jobUpdated { id } }`, false},
	} {
		doc, errs := gqlparser.LoadQuery(schema.Schema(), tc.query)
		if errs != nil {
			t.Fatal(errs)
		}
		oc := &graphql.OperationContext{Doc: doc, Operation: doc.Operations[0]}
		ctx := graphql.WithOperationContext(context.Background(), oc)
		if err := c.MutateOperationContext(ctx, oc); err != nil {
			t.Fatal(err)
		}
		if got := extension.GetComplexityStats(ctx); (got != nil) != tc.stats || (got != nil && got.Complexity < 2) {
			t.Fatalf("%s: complexity stats %+v, want recorded: %v", tc.query, got, tc.stats)
		}
	}
}

// Only short queries' parsed documents are kept.
func TestQueryCacheKeepsShortQueriesOnly(t *testing.T) {
	c := queryCache{lru.New[*ast.QueryDocument](10)}
	short, long := "{ __typename }", "{ "+strings.Repeat("a ", maxCachedQuery)+"}"
	c.Add(context.Background(), short, &ast.QueryDocument{})
	c.Add(context.Background(), long, &ast.QueryDocument{})
	if _, ok := c.Get(context.Background(), short); !ok {
		t.Fatal("a short query was not cached")
	}
	if _, ok := c.Get(context.Background(), long); ok {
		t.Fatalf("a %d-byte query was cached", len(long))
	}
}
