package graph_test

import (
	"context"
	"fmt"
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

// JobFilter's createdBefore and createdAfter reach the store: only jobs
// created within the bounds change, and a bad time is BAD_USER_INPUT.
func TestBulkCreatedBounds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var created []*domain.Job
	for range 4 {
		j, err := b.store.Create(context.Background(), domain.NewJob{Type: "dated", RunAt: time.Now().Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, j)
	}
	var resp struct {
		CancelJobs struct {
			Count int `json:"count"`
		} `json:"cancelJobs"`
	}
	const cancel = `mutation($f: JobFilter!) { cancelJobs(filter: $f) { count } }`
	f := map[string]any{
		"type":          "dated",
		"createdAfter":  created[0].CreatedAt.Format(time.RFC3339Nano),
		"createdBefore": created[3].CreatedAt.Format(time.RFC3339Nano),
	}
	if err := b.client.Post(cancel, &resp, client.Var("f", f)); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, j := range created {
		if j.CreatedAt.After(created[0].CreatedAt) && j.CreatedAt.Before(created[3].CreatedAt) {
			want++
		}
	}
	if resp.CancelJobs.Count != want {
		t.Fatalf("cancelled %d jobs between the first and the last, want %d", resp.CancelJobs.Count, want)
	}
	for i, j := range created {
		got, err := b.store.Get(context.Background(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		inside := j.CreatedAt.After(created[0].CreatedAt) && j.CreatedAt.Before(created[3].CreatedAt)
		if (got.Status == domain.StatusCancelled) != inside {
			t.Fatalf("job %d (created %v) is %s; inside the bounds: %v", i, j.CreatedAt, got.Status, inside)
		}
	}
	if created[0].Status != domain.StatusPending || !created[3].CreatedAt.After(created[0].CreatedAt) {
		t.Fatalf("setup: first and last job created at %v and %v", created[0].CreatedAt, created[3].CreatedAt)
	}
	err := b.client.Post(cancel, &resp, client.Var("f", map[string]any{"createdBefore": "yesterday"}))
	e := wantError(t, err, "BAD_USER_INPUT", "RFC3339")
	if fmt.Sprint(e.Path) != "[cancelJobs filter createdBefore]" {
		t.Fatalf("bad createdBefore: error path %v, want the field's", e.Path)
	}
}
