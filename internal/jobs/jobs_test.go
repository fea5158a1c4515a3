package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a memory store that remembers the list queries it answers
// and the bulk changes it makes, and counts the Stats calls, so tests can
// tell what reached the store.
type recorder struct {
	*memory.Store
	mu      sync.Mutex
	lists   []store.ListQuery
	bulks   []bulkCall
	statsN  int
	failing error // when set, List and Stats fail with it
}

// bulkCall is one call of CancelJobs or RetryJobs.
type bulkCall struct {
	op      string
	ids     int
	owner   string
	changed int
}

func (r *recorder) CancelJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	jobs, err := r.Store.CancelJobs(ctx, ids, owner)
	r.mu.Lock()
	r.bulks = append(r.bulks, bulkCall{"cancel", len(ids), owner, len(jobs)})
	r.mu.Unlock()
	return jobs, err
}

func (r *recorder) RetryJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	jobs, err := r.Store.RetryJobs(ctx, ids, owner)
	r.mu.Lock()
	r.bulks = append(r.bulks, bulkCall{"retry", len(ids), owner, len(jobs)})
	r.mu.Unlock()
	return jobs, err
}

// bulkCalls returns the bulk changes the store made so far.
func (r *recorder) bulkCalls() []bulkCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bulkCall(nil), r.bulks...)
}

func (r *recorder) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	r.mu.Lock()
	r.lists = append(r.lists, q)
	err := r.failing
	r.mu.Unlock()
	if err != nil {
		return store.ListPage{}, err
	}
	return r.Store.List(ctx, q)
}

func (r *recorder) Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error) {
	r.mu.Lock()
	r.statsN++
	err := r.failing
	r.mu.Unlock()
	if err != nil {
		return domain.Stats{}, err
	}
	return r.Store.Stats(ctx, q)
}

// listed returns the list queries the store answered so far.
func (r *recorder) listed() []store.ListQuery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]store.ListQuery(nil), r.lists...)
}

type bundle struct {
	svc    *jobs.Service
	store  *recorder
	events *broker.Broker
}

// setup builds a service over a memory store and a broker.
func setup(t *testing.T, opts jobs.Options) *bundle {
	t.Helper()
	events := brokertest.New(t, broker.Options{})
	st := &recorder{Store: memory.New(events)}
	return &bundle{svc: jobs.New(st, events, opts), store: st, events: events}
}

func ptr[T any](v T) *T { return &v }

// create stores a job of type typ through the service.
func (b *bundle) create(t *testing.T, typ string) *domain.Job {
	t.Helper()
	j, err := b.svc.Create(context.Background(), jobs.CreateRequest{Type: ptr(typ)})
	if err != nil {
		t.Fatalf("create %s: %v", typ, err)
	}
	return j
}

// wantValidation fails unless err is a *domain.ValidationError whose
// message (as both APIs show it) is want.
func wantValidation(t *testing.T, err error, want string) {
	t.Helper()
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("err = %v, want a validation error %q", err, want)
	}
	if got := ve.Error(); got != want {
		t.Fatalf("validation error %q, want %q", got, want)
	}
}

// Every rule of a new job, with the message both APIs show (GraphQL's and
// REST's tests pin some of them; these pin all). A broken rule stores
// nothing.
func TestCreateRefusesWhatBreaksARule(t *testing.T) {
	t.Parallel()
	types := jobs.TypeFilter{"b": true, "a": true, "email": true}
	for _, tc := range []struct {
		name string
		req  jobs.CreateRequest
		want string
	}{
		{"type missing", jobs.CreateRequest{}, "type: is required"},
		{"type empty", jobs.CreateRequest{Type: ptr("")}, "type: must not be empty"},
		{"type with a space", jobs.CreateRequest{Type: ptr("a b")}, `type: may contain only letters, digits and . _ : - (found ' ' at position 1)`},
		{"type too long", jobs.CreateRequest{Type: ptr(strings.Repeat("x", domain.MaxTypeLength+1))}, "type: must be at most 128 characters, got 129"},
		{"type without handler", jobs.CreateRequest{Type: ptr("sms")}, `type: no handler is configured for type "sms" (configured: a, b, email)`},
		{"payload not JSON", jobs.CreateRequest{Type: ptr("email"), Payload: json.RawMessage(`{"a":`)}, "payload: unexpected end of JSON input"},
		{"payload too large", jobs.CreateRequest{Type: ptr("email"), Payload: json.RawMessage(`"` + strings.Repeat("x", 31) + `"`)}, "payload: must be at most 32 bytes once encoded, got 33"},
		{"timeoutSeconds zero", jobs.CreateRequest{Type: ptr("email"), TimeoutSeconds: ptr(0)}, "timeoutSeconds: must be positive, got 0"},
		{"timeoutSeconds negative", jobs.CreateRequest{Type: ptr("email"), TimeoutSeconds: ptr(-5)}, "timeoutSeconds: must be positive, got -5"},
		{"timeoutSeconds above a day", jobs.CreateRequest{Type: ptr("email"), TimeoutSeconds: ptr(86401)}, "timeoutSeconds: must be between 1 and 86400, got 86401"},
		{"maxAttempts zero", jobs.CreateRequest{Type: ptr("email"), MaxAttempts: ptr(0)}, "maxAttempts: must be between 1 and 100, got 0"},
		{"maxAttempts above the bound", jobs.CreateRequest{Type: ptr("email"), MaxAttempts: ptr(101)}, "maxAttempts: must be between 1 and 100, got 101"},
		{"idempotencyKey empty", jobs.CreateRequest{Type: ptr("email"), IdempotencyKey: ptr("")}, "idempotencyKey: must not be empty when given"},
		{"idempotencyKey too long", jobs.CreateRequest{Type: ptr("email"), IdempotencyKey: ptr(strings.Repeat("k", 256))}, "idempotencyKey: must be at most 255 bytes, got 256"},
		{"priority above", jobs.CreateRequest{Type: ptr("email"), Priority: ptr(101)}, "priority: must be between -100 and 100, got 101"},
		{"priority below", jobs.CreateRequest{Type: ptr("email"), Priority: ptr(-101)}, "priority: must be between -100 and 100, got -101"},
		{"11 tags", jobs.CreateRequest{Type: ptr("email"), Tags: []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10"}}, "tags: must be at most 10 different tags, got 11"},
		{"tag with a space", jobs.CreateRequest{Type: ptr("email"), Tags: []string{"ok", "a", "b", "bad tag"}}, `tags[3]: may contain only letters, digits and . _ : - (found ' ' at position 3)`},
		{"tag empty", jobs.CreateRequest{Type: ptr("email"), Tags: []string{""}}, "tags[0]: must not be empty"},
		{"tag too long", jobs.CreateRequest{Type: ptr("email"), Tags: []string{strings.Repeat("t", domain.MaxTypeLength+1)}}, "tags[0]: must be at most 128 characters, got 129"},
		// The order both APIs have always reported: the optional
		// fields' own checks before the type's.
		{"timeoutSeconds before type", jobs.CreateRequest{Type: ptr("a b"), TimeoutSeconds: ptr(0)}, "timeoutSeconds: must be positive, got 0"},
		{"type syntax before handler", jobs.CreateRequest{Type: ptr("a;b")}, `type: may contain only letters, digits and . _ : - (found ';' at position 1)`},
		{"bounds before handler", jobs.CreateRequest{Type: ptr("sms"), Priority: ptr(500)}, "priority: must be between -100 and 100, got 500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, jobs.Options{MaxPayloadBytes: 32, DefaultMaxAttempts: 3, Types: types})
			_, err := b.svc.Create(context.Background(), tc.req)
			wantValidation(t, err, tc.want)
			if st, err := b.store.Store.Stats(context.Background(), store.StatsQuery{}); err != nil || st != (domain.Stats{}) {
				t.Fatalf("stats after a refused create = %+v, %v; want nothing stored", st, err)
			}
		})
	}
}

// Omitted fields get the defaults; given ones are kept (a time in UTC); the
// payload is stored compacted and measured so, and JSON null is no payload.
func TestCreateAppliesDefaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobs.Options{MaxPayloadBytes: 9, DefaultMaxAttempts: 7})

	j, err := b.svc.Create(ctx, jobs.CreateRequest{Type: ptr("email"), Payload: json.RawMessage("{ \"a\" :\n 1 }")})
	if err != nil {
		t.Fatal(err)
	}
	if string(j.Payload) != `{"a":1}` || j.MaxAttempts != 7 || j.Priority != 0 || j.Timeout != 0 || j.IdempotencyKey != "" {
		t.Fatalf("defaults: payload %s, maxAttempts %d, priority %d, timeout %v, key %q; want {\"a\":1}, 7, 0, 0, none", j.Payload, j.MaxAttempts, j.Priority, j.Timeout, j.IdempotencyKey)
	}

	j, err = b.svc.Create(ctx, jobs.CreateRequest{Type: ptr("email"), Payload: json.RawMessage(" null ")})
	if err != nil || j.Payload != nil {
		t.Fatalf("null payload: %v, payload %q; want none", err, j.Payload)
	}

	runAt := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	j, err = b.svc.Create(ctx, jobs.CreateRequest{
		Type: ptr("email"), IdempotencyKey: ptr("k1"), TimeoutSeconds: ptr(30),
		MaxAttempts: ptr(2), RunAt: &runAt, Priority: ptr(-4),
	})
	if err != nil {
		t.Fatal(err)
	}
	if j.IdempotencyKey != "k1" || j.Timeout != 30*time.Second || j.MaxAttempts != 2 || !j.RunAt.Equal(runAt) || j.RunAt.Location() != time.UTC || j.Priority != -4 {
		t.Fatalf("given fields: %+v", j)
	}
	again, err := b.svc.Create(ctx, jobs.CreateRequest{Type: ptr("email"), IdempotencyKey: ptr("k1")})
	if err != nil || again.ID != j.ID {
		t.Fatalf("same key again = %v, %v; want job %s", again, err, j.ID)
	}
	if len(j.Tags) != 0 {
		t.Fatalf("a job created without tags has tags %q", j.Tags)
	}
}

// Tags are stored sorted with duplicates collapsed, and the limit counts
// different tags: 10 different among 12 given is fine.
func TestCreateNormalizesTags(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	given := []string{"b", "a", "b", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "a"}
	j, err := b.svc.Create(context.Background(), jobs.CreateRequest{Type: ptr("email"), Tags: given})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "b", "t10", "t3", "t4", "t5", "t6", "t7", "t8", "t9"}
	if !slices.Equal(j.Tags, want) {
		t.Fatalf("tags = %q, want %q", j.Tags, want)
	}
	if given[0] != "b" {
		t.Fatal("Create reordered the caller's slice")
	}
}

// Page sizes: each API's default and cap, first: 0 (totals only), the
// status and limit rules, SkipTotal and Tag passed on, and a type or tag no
// job can have answered without the store.
func TestListPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobs.Options{RESTListMax: 2})
	for range 2 {
		b.create(t, "email")
	}
	if _, err := b.svc.Create(ctx, jobs.CreateRequest{Type: ptr("email"), Tags: []string{"red"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		req       jobs.ListRequest
		wantLimit int // asked of the store
		wantJobs  int
		wantMore  bool
	}{
		{"GraphQL default", jobs.ListRequest{}, jobs.DefaultPageSize, 3, false},
		{"GraphQL first", jobs.ListRequest{Limit: ptr(2)}, 2, 2, true},
		{"GraphQL cap", jobs.ListRequest{Limit: ptr(100000)}, jobs.MaxPageSize, 3, false},
		{"GraphQL first 0", jobs.ListRequest{Limit: ptr(0)}, 1, 0, true},
		{"REST default", jobs.ListRequest{Pages: jobs.RESTPages}, 2, 2, true},
		{"REST cap", jobs.ListRequest{Pages: jobs.RESTPages, Limit: ptr(10)}, 2, 2, true},
		{"REST limit", jobs.ListRequest{Pages: jobs.RESTPages, Limit: ptr(1)}, 1, 1, true},
		{"status", jobs.ListRequest{Status: domain.StatusPending, SkipTotal: true}, jobs.DefaultPageSize, 3, false},
		{"tag", jobs.ListRequest{Tag: "red"}, jobs.DefaultPageSize, 1, false},
	} {
		page, err := b.svc.List(ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		qs := b.store.listed()
		q := qs[len(qs)-1]
		if q.Limit != tc.wantLimit || q.SkipTotal != tc.req.SkipTotal || q.Status != tc.req.Status || q.Tag != tc.req.Tag {
			t.Errorf("%s: store asked %+v, want limit %d, skipTotal %v, status %q, tag %q", tc.name, q, tc.wantLimit, tc.req.SkipTotal, tc.req.Status, tc.req.Tag)
		}
		if len(page.Jobs) != tc.wantJobs || page.HasMore != tc.wantMore {
			t.Errorf("%s: %d jobs, hasMore %v; want %d, %v", tc.name, len(page.Jobs), page.HasMore, tc.wantJobs, tc.wantMore)
		}
		wantTotal := 3
		if tc.req.Tag != "" {
			wantTotal = 1
		}
		if !tc.req.SkipTotal && page.Total != wantTotal {
			t.Errorf("%s: total %d, want %d", tc.name, page.Total, wantTotal)
		}
	}

	asked := len(b.store.listed())
	_, err := b.svc.List(ctx, jobs.ListRequest{Limit: ptr(-1)})
	wantValidation(t, err, "first: must not be negative, got -1")
	_, err = b.svc.List(ctx, jobs.ListRequest{Pages: jobs.RESTPages, Status: "done"})
	wantValidation(t, err, `status: unknown status "done"`)
	b.store.mu.Lock()
	b.store.failing = errors.New("the store must not be asked")
	b.store.mu.Unlock()
	for _, typ := range []string{"a\x00b", "\xff", "x y"} {
		page, err := b.svc.List(ctx, jobs.ListRequest{Type: typ})
		if err != nil || len(page.Jobs) != 0 || page.Total != 0 || page.HasMore {
			t.Errorf("type %q: %+v, %v; want an empty page", typ, page, err)
		}
		page, err = b.svc.List(ctx, jobs.ListRequest{Tag: typ})
		if err != nil || len(page.Jobs) != 0 || page.Total != 0 || page.HasMore {
			t.Errorf("tag %q: %+v, %v; want an empty page", typ, page, err)
		}
	}
	if n := len(b.store.listed()); n != asked {
		t.Fatalf("the store was asked %d more times, want none", n-asked)
	}
}

// Without REST_LIST_MAX the REST cap is the GraphQL one.
func TestListRESTDefaultCap(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{})
	if _, err := b.svc.List(context.Background(), jobs.ListRequest{Pages: jobs.RESTPages}); err != nil {
		t.Fatal(err)
	}
	if q := b.store.listed()[0]; q.Limit != jobs.MaxPageSize {
		t.Fatalf("limit %d, want %d", q.Limit, jobs.MaxPageSize)
	}
}

// Stats counts per type; a type no job can have counts nothing without
// the store; the store's failure comes back wrapped.
func TestStats(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobs.Options{})
	b.create(t, "email")
	b.create(t, "sms")
	if st, err := b.svc.Stats(ctx, "email"); err != nil || st != (domain.Stats{Pending: 1}) {
		t.Fatalf("stats of email = %+v, %v; want one pending", st, err)
	}
	if st, err := b.svc.Stats(ctx, "x\x00y"); err != nil || st != (domain.Stats{}) || b.store.statsN != 1 {
		t.Fatalf("stats of an impossible type = %+v, %v after %d store calls; want nothing, without the store", st, err, b.store.statsN)
	}
	b.store.failing = domain.ErrUnavailable
	if _, err := b.svc.Stats(ctx, ""); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("stats on a failing store: %v, want it to wrap ErrUnavailable", err)
	}
}

// Cancel and Retry: unknown ids wrap ErrNotFound; a status that refuses
// the operation gives a ConflictError naming the status.
func TestCancelRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobs.Options{})
	j := b.create(t, "email")

	if _, err := b.svc.Retry(ctx, j.ID); !conflictIn(err, "retry", j.ID, domain.StatusPending) {
		t.Fatalf("retry of a pending job: %v; want a conflict naming pending", err)
	}
	got, err := b.svc.Cancel(ctx, j.ID)
	if err != nil || got.Status != domain.StatusCancelled {
		t.Fatalf("cancel = %v, %v; want cancelled", got, err)
	}
	if _, err := b.svc.Cancel(ctx, j.ID); !conflictIn(err, "cancel", j.ID, domain.StatusCancelled) {
		t.Fatalf("cancel of a cancelled job: %v; want a conflict naming cancelled", err)
	}
	if got, err := b.svc.Retry(ctx, j.ID); err != nil || got.Status != domain.StatusPending {
		t.Fatalf("retry = %v, %v; want pending", got, err)
	}
	for _, op := range []func(context.Context, string) (*domain.Job, error){b.svc.Cancel, b.svc.Retry, b.svc.Get} {
		if _, err := op(ctx, "nope"); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("unknown id: %v, want ErrNotFound", err)
		}
	}
}

// CreateMany applies Create's rules to every request and stores nothing
// when one breaks a rule, naming its index.
func TestCreateManyAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobs.Options{MaxPayloadBytes: 10, DefaultMaxAttempts: 4})
	good := jobs.CreateRequest{Type: ptr("t")}
	_, err := b.svc.CreateMany(ctx, []jobs.CreateRequest{good, good, {Type: ptr("t"), Payload: []byte(`"more than ten bytes"`)}, good})
	wantValidation(t, err, "inputs[2].payload: must be at most 10 bytes once encoded, got 21")
	_, err = b.svc.CreateMany(ctx, []jobs.CreateRequest{good, {}})
	wantValidation(t, err, "inputs[1].type: is required")
	if st, _ := b.svc.Stats(ctx, ""); st != (domain.Stats{}) {
		t.Fatalf("refused calls stored %+v", st)
	}
	created, err := b.svc.CreateMany(ctx, []jobs.CreateRequest{good, {Type: ptr("u"), Priority: ptr(3)}})
	if err != nil || len(created) != 2 || created[0].Type != "t" || created[0].MaxAttempts != 4 || created[1].Type != "u" || created[1].Priority != 3 {
		t.Fatalf("create many = %+v, %v; want t then u with the defaults applied", created, err)
	}
}

// Delete deletes a finished job only.
func TestDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobs.Options{})
	j := b.create(t, "email")
	if err := b.svc.Delete(ctx, j.ID); !conflictIn(err, "delete", j.ID, domain.StatusPending) {
		t.Fatalf("delete of a pending job: %v; want a conflict naming pending", err)
	}
	if _, err := b.svc.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.Delete(ctx, j.ID); err != nil {
		t.Fatalf("delete of a cancelled job: %v", err)
	}
	if _, err := b.svc.Get(ctx, j.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if err := b.svc.Delete(ctx, j.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("delete again: %v, want ErrNotFound", err)
	}
}

func conflictIn(err error, op, id string, status domain.Status) bool {
	var ce *jobs.ConflictError
	return errors.As(err, &ce) && errors.Is(err, domain.ErrConflict) && *ce == jobs.ConflictError{Op: op, ID: id, Status: status}
}

// next takes the subscription's next change.
func next(t *testing.T, sub *broker.Subscription) *domain.Job {
	t.Helper()
	select {
	case j, ok := <-sub.C():
		if !ok {
			t.Fatal("subscription ended")
		}
		sub.Ack()
		return j
	case <-time.After(10 * time.Second):
		t.Fatal("no change within 10s")
		return nil
	}
}

// Watching one job starts with its current state and ends after its final
// one; an unknown job, or one of another type, is NOT_FOUND and leaves no
// subscription behind; a type filter sees only its jobs' changes.
func TestWatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, jobs.Options{})
	j := b.create(t, "email")

	sub, err := b.svc.Watch(ctx, jobs.WatchRequest{ID: j.ID, Type: "email"})
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, sub); got.ID != j.ID || got.Version != 1 || got.Status != domain.StatusPending {
		t.Fatalf("first change %+v; want the current state (version 1, pending)", got)
	}
	if _, err := b.svc.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if got := next(t, sub); got.Status != domain.StatusCancelled {
		t.Fatalf("second change %+v; want cancelled", got)
	}
	if _, ok := <-sub.C(); ok {
		t.Fatal("the subscription went on after the final state")
	}

	// A final job: its state, then the end.
	sub, err = b.svc.Watch(ctx, jobs.WatchRequest{ID: j.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, sub); got.Status != domain.StatusCancelled {
		t.Fatalf("watching a cancelled job gave %+v first", got)
	}
	if _, ok := <-sub.C(); ok {
		t.Fatal("the subscription of a final job went on")
	}

	before := b.events.Subscribers()
	for _, req := range []jobs.WatchRequest{{ID: "nope"}, {ID: j.ID, Type: "sms"}, {ID: j.ID, Tag: "red"}} {
		if sub, err := b.svc.Watch(ctx, req); !errors.Is(err, domain.ErrNotFound) || sub != nil {
			t.Fatalf("watch %+v = %v, %v; want ErrNotFound and no subscription", req, sub, err)
		}
	}
	if n := b.events.Subscribers(); n != before {
		t.Fatalf("%d subscriptions after refused watches, want %d", n, before)
	}

	sub, err = b.svc.Watch(ctx, jobs.WatchRequest{Type: "sms"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	b.create(t, "email")
	sms := b.create(t, "sms")
	if got := next(t, sub); got.ID != sms.ID {
		t.Fatalf("type watch got %+v, want the sms job %s", got, sms.ID)
	}

	red, err := b.svc.Watch(ctx, jobs.WatchRequest{Tag: "red"})
	if err != nil {
		t.Fatal(err)
	}
	defer red.Close()
	b.create(t, "email")
	tagged, err := b.svc.Create(ctx, jobs.CreateRequest{Type: ptr("email"), Tags: []string{"blue", "red"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, red); got.ID != tagged.ID {
		t.Fatalf("tag watch got %+v, want the red job %s", got, tagged.ID)
	}
}
