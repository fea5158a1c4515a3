package graph_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/99designs/gqlgen/client"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	jobsvc "github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// listRecorder is a store that remembers the list queries it answers.
type listRecorder struct {
	*memory.Store
	mu      sync.Mutex
	queries []store.ListQuery
}

func (r *listRecorder) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	r.mu.Lock()
	r.queries = append(r.queries, q)
	r.mu.Unlock()
	return r.Store.List(ctx, q)
}

func (r *listRecorder) last(t *testing.T) store.ListQuery {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queries) == 0 {
		t.Fatal("the store was not asked to list")
	}
	return r.queries[len(r.queries)-1]
}

// jobs asks the store for a total only when the query selects totalCount
// (counting costs PostgreSQL more than a page), and then answers it.
func TestJobsCountsOnlyWhenAsked(t *testing.T) {
	events := brokertest.New(t, broker.Options{})
	jobs := &listRecorder{Store: memory.New(events)}
	for range 3 {
		if _, err := jobs.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	c := client.New(graph.NewHandler(&graph.Resolver{Service: jobsvc.New(jobs, events, jobsvc.Options{}), Logger: slog.New(slog.DiscardHandler)}, graph.ServerOptions{ComplexityLimit: 1000}))
	for _, tc := range []struct {
		name, query string
		vars        map[string]any
		wantTotal   bool
	}{
		{"nodes only", `{ jobs { nodes { id } } }`, nil, false},
		{"totalCount", `{ jobs { totalCount } }`, nil, true},
		{"first 0", `{ jobs(first: 0) { totalCount pageInfo { hasNextPage } } }`, nil, true},
		{"first 0 without totalCount", `{ jobs(first: 0) { pageInfo { hasNextPage } } }`, nil, false},
		{"aliased", `{ jobs { n: totalCount } }`, nil, true},
		{"fragment", `query { jobs { ...F } } fragment F on JobConnection { totalCount }`, nil, true},
		{"inline fragment", `{ jobs { ... on JobConnection { totalCount } } }`, nil, true},
		{"skipped", `query($c: Boolean!) { jobs { nodes { id } totalCount @include(if: $c) } }`, map[string]any{"c": false}, false},
		{"included", `query($c: Boolean!) { jobs { nodes { id } totalCount @include(if: $c) } }`, map[string]any{"c": true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp map[string]any
			opts := []client.Option{}
			for k, v := range tc.vars {
				opts = append(opts, client.Var(k, v))
			}
			if err := c.Post(tc.query, &resp, opts...); err != nil {
				t.Fatal(err)
			}
			q := jobs.last(t)
			if q.SkipTotal == tc.wantTotal {
				t.Fatalf("SkipTotal = %v, want %v", q.SkipTotal, !tc.wantTotal)
			}
			if tc.wantTotal {
				conn := resp["jobs"].(map[string]any)
				total, ok := conn["totalCount"]
				if !ok {
					total = conn["n"]
				}
				if total != float64(3) {
					t.Fatalf("totalCount = %v, want 3 (%v)", total, resp)
				}
			}
		})
	}
}
