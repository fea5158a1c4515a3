package graph_test

import (
	"context"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// cancelJobs and retryJobs over GraphQL: counts, more, and a bad limit
// named in a BAD_USER_INPUT error.
func TestBulkMutations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Due in a day: no worker takes them meanwhile.
	for _, typ := range []string{"bulk", "bulk", "bulk", "keep"} {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: typ, RunAt: time.Now().Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	var resp struct {
		CancelJobs struct {
			Count int  `json:"count"`
			More  bool `json:"more"`
		} `json:"cancelJobs"`
	}
	const cancel = `mutation($f: JobFilter!, $n: Int) { cancelJobs(filter: $f, limit: $n) { count more } }`
	if err := b.client.Post(cancel, &resp, client.Var("f", map[string]any{"type": "bulk"}), client.Var("n", 2)); err != nil {
		t.Fatal(err)
	}
	if resp.CancelJobs.Count != 2 || !resp.CancelJobs.More {
		t.Fatalf("first call: %+v, want 2 and more", resp.CancelJobs)
	}
	if err := b.client.Post(cancel, &resp, client.Var("f", map[string]any{"type": "bulk", "status": "PENDING"})); err != nil {
		t.Fatal(err)
	}
	if resp.CancelJobs.Count != 1 || resp.CancelJobs.More {
		t.Fatalf("second call: %+v, want 1 and no more", resp.CancelJobs)
	}
	var retried struct {
		RetryJobs struct {
			Count int  `json:"count"`
			More  bool `json:"more"`
		} `json:"retryJobs"`
	}
	if err := b.client.Post(`mutation { retryJobs(filter: {type: "bulk"}) { count more } }`, &retried); err != nil {
		t.Fatal(err)
	}
	if retried.RetryJobs.Count != 3 || retried.RetryJobs.More {
		t.Fatalf("retry: %+v, want 3", retried.RetryJobs)
	}
	err := b.client.Post(`mutation { cancelJobs(filter: {}, limit: 0) { count } }`, &resp)
	wantError(t, err, "BAD_USER_INPUT", "limit")
}
