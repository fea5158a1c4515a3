package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// A query whose result would be larger than MAX_RESPONSE_BYTES is answered
// with RESPONSE_TOO_LARGE and no data; one just under it is answered in
// full.
func TestResponseBudget(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	b := setup(t, func(o *options) { o.startPool = false; o.maxResponse = limit })
	payload := json.RawMessage(`"` + strings.Repeat("x", 10<<10) + `"`) // about 10 KiB each
	for range 10 {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "big", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	query := func(first int) (*struct{ Data json.RawMessage }, []gqlError) {
		rec, errs := b.postRaw(t, fmt.Sprintf(`{"query":"{ jobs(first: %d) { nodes { id payload } } }"}`, first))
		var out struct{ Data json.RawMessage }
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return &out, errs
	}
	// Five payloads: about 51 KiB, under the limit.
	if out, errs := query(5); len(errs) != 0 || strings.Count(string(out.Data), `"payload"`) != 5 {
		t.Fatalf("5 jobs: errors %+v, %d payloads; want all 5", errs, strings.Count(string(out.Data), `"payload"`))
	}
	// Ten: about 102 KiB, over it.
	out, errs := query(10)
	if len(errs) != 1 || errs[0].code() != "RESPONSE_TOO_LARGE" {
		t.Fatalf("10 jobs: errors %+v, want one RESPONSE_TOO_LARGE", errs)
	}
	if len(out.Data) != 0 && string(out.Data) != "null" {
		t.Fatalf("10 jobs: data %.200s, want none", out.Data)
	}
	// Aliases of a small query add up the same way.
	var q strings.Builder
	q.WriteString("{")
	for i := range 8 {
		fmt.Fprintf(&q, " a%d: jobs(first: 1) { nodes { payload } }", i)
	}
	q.WriteString(" }")
	if _, errs := b.postRaw(t, `{"query":`+fmt.Sprintf("%q", q.String())+`}`); len(errs) != 1 || errs[0].code() != "RESPONSE_TOO_LARGE" {
		t.Fatalf("8 aliases of 10 KiB: errors %+v, want one RESPONSE_TOO_LARGE", errs)
	}
}

// A subscription's events obey the same bound: an event over it arrives
// as RESPONSE_TOO_LARGE instead of the job.
func TestResponseBudgetSubscription(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false; o.maxResponse = 4 << 10 })
	job, err := b.store.Create(context.Background(), domain.NewJob{Type: "big", Payload: json.RawMessage(`"` + strings.Repeat("x", 8<<10) + `"`)})
	if err != nil {
		t.Fatal(err)
	}
	small, err := b.store.Create(context.Background(), domain.NewJob{Type: "small", Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if j := mustNext(t, b.subscribe(t, map[string]any{"id": small.ID})); j.ID != small.ID {
		t.Fatalf("small job's event: %+v", j)
	}
	_, err = next(t, b.subscribe(t, map[string]any{"id": job.ID}))
	wantError(t, err, "RESPONSE_TOO_LARGE", "larger than the server's limit")
}

// A response that would take the responses in flight over
// MAX_INFLIGHT_RESPONSE_BYTES is answered SERVER_BUSY with 503; its bytes
// are given back once it is answered, so a smaller one then passes.
func TestResponsesInFlightBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false; o.maxResponse = 1 << 20; o.maxInFlight = 48 << 10 })
	for range 10 {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "big", Payload: json.RawMessage(`"` + strings.Repeat("x", 10<<10) + `"`)}); err != nil {
			t.Fatal(err)
		}
	}
	rec, errs := b.postRaw(t, `{"query":"{ jobs(first: 10) { nodes { payload } } }"}`)
	if len(errs) != 1 || errs[0].code() != "SERVER_BUSY" || rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("10 × 10 KiB over a 48 KiB in-flight budget: %d %+v, want 503 SERVER_BUSY", rec.Code, errs)
	}
	for range 3 {
		if _, errs := b.postRaw(t, `{"query":"{ jobs(first: 3) { nodes { payload } } }"}`); len(errs) != 0 {
			t.Fatalf("3 × 10 KiB after the refusal: %+v, want data (the budget given back)", errs)
		}
	}
}

// Messages about the request quote it at most briefly.
func TestLongNamesShortenedInErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	rec, errs := b.postRaw(t, `{"query":"{ `+strings.Repeat("y", 200<<10)+` }"}`)
	if len(errs) != 1 || len(errs[0].Message) > 310 || rec.Body.Len() > 2048 {
		t.Fatalf("a 200 KiB field name: %d errors, message of %d bytes, body of %d; want one short error", len(errs), len(errs[0].Message), rec.Body.Len())
	}
}
