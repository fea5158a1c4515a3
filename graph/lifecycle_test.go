package graph_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

type lifecycleJSON struct {
	ID              string `json:"id"`
	Status          string `json:"status"`
	Version         int    `json:"version"`
	Attempts        int    `json:"attempts"`
	CancelRequested bool   `json:"cancelRequested"`
	Errors          []struct {
		Attempt int    `json:"attempt"`
		Message string `json:"message"`
		At      string `json:"at"`
	} `json:"errors"`
}

const lifecycleFields = `id status version attempts cancelRequested errors { attempt message at }`

func (b *bundle) mutate(op, id string) (lifecycleJSON, error) {
	var resp map[string]lifecycleJSON
	err := b.client.Post(`mutation($id: ID!) { r: `+op+`(id: $id) { `+lifecycleFields+` } }`, &resp, client.Var("id", id))
	return resp["r"], err
}

func TestCancelJob(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// PENDING: cancelled at once. The pool is busy with a gated job, so the
	// second job stays pending.
	running := b.create(t, gatedType, nil)
	b.gate.waitStarted(t, running.ID)
	pending := b.create(t, "email", nil)
	got, err := b.mutate("cancelJob", pending.ID)
	if err != nil || got.Status != "CANCELLED" || got.Version != 2 {
		t.Fatalf("cancel pending = %+v, %v; want CANCELLED v2", got, err)
	}

	// PROCESSING: the handler's context is cancelled; a subscriber sees the
	// request, then CANCELLED, then the end.
	sub := b.subscribe(t, map[string]any{"id": running.ID})
	if j := mustNext(t, sub); j.Status != "PROCESSING" {
		t.Fatalf("first state %+v", j)
	}
	got, err = b.mutate("cancelJob", running.ID)
	if err != nil || got.Status != "PROCESSING" || !got.CancelRequested {
		t.Fatalf("cancel processing = %+v, %v; want PROCESSING with cancelRequested", got, err)
	}
	if j := mustNext(t, sub); j.Status != "PROCESSING" || j.Version != got.Version {
		t.Fatalf("subscriber: %+v, want the cancellation request (v%d)", j, got.Version)
	}
	if j := mustNext(t, sub); j.Status != "CANCELLED" {
		t.Fatalf("subscriber: %+v, want CANCELLED", j)
	}
	wantComplete(t, sub)

	// Final: CONFLICT naming the status. Unknown: NOT_FOUND.
	_, err = b.mutate("cancelJob", running.ID)
	wantError(t, err, graph.CodeConflict, "CANCELLED")
	_, err = b.mutate("cancelJob", "no-such-job")
	wantError(t, err, graph.CodeNotFound, "no-such-job")
}

func TestRetryJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := b.create(t, gatedType, nil)
	b.gate.waitStarted(t, j.ID)

	_, err := b.mutate("retryJob", j.ID)
	wantError(t, err, graph.CodeConflict, "PROCESSING")

	b.gate.release(j.ID, errors.New("smtp down"))
	b.watch.WaitStatus(t, j.ID, domain.StatusFailed)
	b.gate.reset(j.ID) // a fresh gate for the second run
	got, err := b.mutate("retryJob", j.ID)
	if err != nil || got.Status != "PENDING" || got.Attempts != 1 || len(got.Errors) != 1 ||
		got.Errors[0].Attempt != 1 || got.Errors[0].Message != "smtp down" || got.Errors[0].At == "" {
		t.Fatalf("retry = %+v, %v; want PENDING keeping attempt 1 and its error", got, err)
	}
	// The worker runs it again; this time it succeeds.
	b.gate.waitStarted(t, j.ID)
	b.gate.release(j.ID, nil)
	b.watch.WaitStatus(t, j.ID, domain.StatusCompleted)
	done, err := b.store.Get(t.Context(), j.ID)
	if err != nil || done.Attempts != 2 || len(done.Errors) != 1 {
		t.Fatalf("after the retry = %+v, %v; want attempt 2 with the first error kept", done, err)
	}
	_, err = b.mutate("retryJob", j.ID)
	wantError(t, err, graph.CodeConflict, "COMPLETED")
	_, err = b.mutate("retryJob", "no-such-job")
	wantError(t, err, graph.CodeNotFound, "no-such-job")
}

func TestStats(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	b.storeCreate(t, "a", 3)
	b.storeCreate(t, "b", 2)
	c := b.create(t, "a", nil)
	if _, err := b.mutate("cancelJob", c.ID); err != nil {
		t.Fatal(err)
	}
	var resp struct {
		All, A struct{ Pending, Processing, Completed, Failed, Cancelled int }
	}
	if err := b.client.Post(`{ all: stats { pending processing completed failed cancelled } a: stats(type: "a") { pending processing completed failed cancelled } }`, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.All.Pending != 5 || resp.All.Cancelled != 1 || resp.A.Pending != 3 || resp.A.Cancelled != 1 || resp.A.Completed != 0 {
		t.Fatalf("stats = %+v", resp)
	}
}

// reset forgets a gated job's handler state, so that it can run again.
func (g *gate) reset(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.jobs, id)
}

func TestSubscriptionOverPlainHTTPIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	var resp map[string]any
	err := b.client.Post(`subscription { jobUpdated { id } }`, &resp)
	wantError(t, err, graph.CodeBadRequest, "Server-Sent Events")
}

func TestCreateJobIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	create := func(key any, payload any) (struct{ ID, IdempotencyKey string }, error) {
		var resp struct {
			CreateJob struct{ ID, IdempotencyKey string }
		}
		err := b.client.Post(`mutation($input: CreateJobInput!) { createJob(input: $input) { id idempotencyKey } }`, &resp,
			client.Var("input", map[string]any{"type": "mail", "payload": payload, "idempotencyKey": key}))
		return resp.CreateJob, err
	}
	const racers = 16
	got := make(chan string, racers)
	for i := range racers {
		go func() {
			j, err := create("order-7", map[string]any{"i": i})
			if err != nil {
				t.Error(err)
			}
			got <- j.ID
		}()
	}
	first := <-got
	for range racers - 1 {
		if id := <-got; id != first {
			t.Fatalf("racing createJob with one key made %s and %s", first, id)
		}
	}
	if st, _ := b.store.Stats(t.Context(), store.StatsQuery{Type: "mail"}); st.Pending != 1 {
		t.Fatalf("%d jobs stored, want 1", st.Pending)
	}
	j, err := create("order-7", nil)
	if err != nil || j.ID != first || j.IdempotencyKey != "order-7" {
		t.Fatalf("same key again = %+v, %v", j, err)
	}
	_, err = create("", nil)
	wantError(t, err, graph.CodeBadUserInput, "idempotencyKey")
	_, err = create(strings.Repeat("k", 256), nil)
	wantError(t, err, graph.CodeBadUserInput, "idempotencyKey")
}

func TestCreateJobTimeoutSeconds(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	create := func(input map[string]any) (*int, error) {
		var resp struct {
			CreateJob struct{ TimeoutSeconds *int }
		}
		err := b.client.Post(`mutation($input: CreateJobInput!) { createJob(input: $input) { timeoutSeconds } }`, &resp, client.Var("input", input))
		return resp.CreateJob.TimeoutSeconds, err
	}
	if got, err := create(map[string]any{"type": "t", "timeoutSeconds": 2}); err != nil || got == nil || *got != 2 {
		t.Fatalf("timeoutSeconds 2 = %v, %v", got, err)
	}
	if got, err := create(map[string]any{"type": "t"}); err != nil || got != nil {
		t.Fatalf("no timeoutSeconds = %v, %v; want null (the server default)", got, err)
	}
	for _, bad := range []int{0, -1, 86401} {
		_, err := create(map[string]any{"type": "t", "timeoutSeconds": bad})
		wantError(t, err, graph.CodeBadUserInput, "timeoutSeconds")
	}
}

func TestSubscriberSeesProgressAndResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := b.create(t, "report", map[string]any{"durationMs": 50, "progress": true})
	var resp struct {
		JobUpdated struct {
			Status   string
			Progress *int
			Result   map[string]any
		}
	}
	sub := b.client.Websocket(`subscription($id: ID) { jobUpdated(id: $id) { status progress result } }`, client.Var("id", j.ID))
	defer sub.Close()
	last := -1
	for {
		if err := sub.Next(&resp); err != nil {
			t.Fatalf("subscription ended before COMPLETED: %v", err)
		}
		u := resp.JobUpdated
		if u.Progress != nil {
			if *u.Progress < last {
				t.Fatalf("progress went back from %d to %d", last, *u.Progress)
			}
			last = *u.Progress
		}
		if u.Status == "COMPLETED" {
			if last != 100 || u.Result["simulated"] != true || u.Result["durationMs"] != float64(50) {
				t.Fatalf("completed with progress %d, result %v", last, u.Result)
			}
			return
		}
	}
}

func TestCreateJobSchedulingFields(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	type created struct {
		MaxAttempts int
		RunAt       string
		Priority    int
	}
	create := func(input map[string]any) (created, error) {
		var resp struct{ CreateJob created }
		err := b.client.Post(`mutation($input: CreateJobInput!) { createJob(input: $input) { maxAttempts runAt priority } }`, &resp, client.Var("input", input))
		return resp.CreateJob, err
	}
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	got, err := create(map[string]any{"type": "t", "maxAttempts": 5, "runAt": at.Format(time.RFC3339), "priority": 7})
	if err != nil || got.MaxAttempts != 5 || got.Priority != 7 {
		t.Fatalf("created %+v, %v", got, err)
	}
	if parsed, err := time.Parse(time.RFC3339Nano, got.RunAt); err != nil || !parsed.Equal(at) {
		t.Fatalf("runAt = %s, want %s", got.RunAt, at)
	}
	dflt, err := create(map[string]any{"type": "t"})
	if err != nil || dflt.MaxAttempts != 1 || dflt.Priority != 0 || dflt.RunAt == "" {
		t.Fatalf("defaults = %+v, %v (the bundle's resolver has no default maxAttempts: the store's 1)", dflt, err)
	}
	for field, bad := range map[string]any{"maxAttempts": 0, "priority": 101} {
		_, err := create(map[string]any{"type": "t", field: bad})
		wantError(t, err, graph.CodeBadUserInput, field)
	}
	_, err = create(map[string]any{"type": "t", "maxAttempts": 101})
	wantError(t, err, graph.CodeBadUserInput, "maxAttempts")
}
