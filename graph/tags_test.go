package graph_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"

	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
)

// taggedJob is the part of a Job the tag tests read.
type taggedJob struct {
	ID     string   `json:"id"`
	Type   string   `json:"type"`
	Status string   `json:"status"`
	Tags   []string `json:"tags"`
}

// createTagged creates a job of type typ with tags through createJob.
func (b *bundle) createTagged(t *testing.T, typ string, tags []string) taggedJob {
	t.Helper()
	var resp struct {
		CreateJob taggedJob `json:"createJob"`
	}
	input := map[string]any{"type": typ}
	if tags != nil {
		input["tags"] = tags
	}
	if err := b.client.Post(`mutation($input: CreateJobInput!) { createJob(input: $input) { id type status tags } }`, &resp, client.Var("input", input)); err != nil {
		t.Fatalf("createJob(%s, %q): %v", typ, tags, err)
	}
	return resp.CreateJob
}

type taggedUpdate struct {
	JobUpdated taggedJob `json:"jobUpdated"`
}

// nextTagged reads the subscription's next message within waitBound.
func nextTagged(t *testing.T, sub *client.Subscription) (taggedUpdate, error) {
	t.Helper()
	type result struct {
		u   taggedUpdate
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		r.err = sub.Next(&r.u)
		ch <- r
	}()
	select {
	case r := <-ch:
		return r.u, r.err
	case <-time.After(waitBound):
		_ = sub.Close() // unblocks the reader
		t.Fatalf("no subscription message within %v", waitBound)
		return taggedUpdate{}, nil
	}
}

// createJob takes tags (sorted, duplicates collapsed; a job without tags
// shows an empty list), jobs(tag:) lists the jobs carrying one with the
// other filters, paging and an exact totalCount, and job(id) shows them.
func TestTagsCreateAndList(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	red1 := b.createTagged(t, "email", []string{"urgent", "red", "urgent"})
	if want := []string{"red", "urgent"}; !reflect.DeepEqual(red1.Tags, want) {
		t.Fatalf("created tags %q, want %q", red1.Tags, want)
	}
	plain := b.createTagged(t, "email", nil)
	if plain.Tags == nil || len(plain.Tags) != 0 {
		t.Fatalf("a job without tags shows tags %#v, want []", plain.Tags)
	}
	red2 := b.createTagged(t, "sms", []string{"red"})
	red3 := b.createTagged(t, "email", []string{"red", "blue"})

	list := func(vars map[string]any) ([]string, int, bool, string) {
		t.Helper()
		var resp struct {
			Jobs struct {
				Nodes    []taggedJob `json:"nodes"`
				PageInfo struct {
					HasNextPage bool   `json:"hasNextPage"`
					EndCursor   string `json:"endCursor"`
				} `json:"pageInfo"`
				TotalCount int `json:"totalCount"`
			} `json:"jobs"`
		}
		var opts []client.Option
		for k, v := range vars {
			opts = append(opts, client.Var(k, v))
		}
		err := b.client.Post(`query($tag: String, $type: String, $status: JobStatus, $first: Int, $after: String) {
			jobs(tag: $tag, type: $type, status: $status, first: $first, after: $after) {
				nodes { id type status tags } pageInfo { hasNextPage endCursor } totalCount } }`, &resp, opts...)
		if err != nil {
			t.Fatalf("jobs(%v): %v", vars, err)
		}
		var ids []string
		for _, n := range resp.Jobs.Nodes {
			ids = append(ids, n.ID)
		}
		return ids, resp.Jobs.TotalCount, resp.Jobs.PageInfo.HasNextPage, resp.Jobs.PageInfo.EndCursor
	}
	for _, tc := range []struct {
		vars map[string]any
		want []string
	}{
		{map[string]any{"tag": "red"}, []string{red3.ID, red2.ID, red1.ID}},
		{map[string]any{"tag": "red", "type": "email"}, []string{red3.ID, red1.ID}},
		{map[string]any{"tag": "blue", "status": "PENDING"}, []string{red3.ID}},
		{map[string]any{"tag": "red", "status": "COMPLETED"}, nil},
		{map[string]any{"tag": "green"}, nil},
		{map[string]any{"tag": "not a tag"}, nil},
	} {
		got, total, _, _ := list(tc.vars)
		if !reflect.DeepEqual(got, tc.want) || total != len(tc.want) {
			t.Fatalf("jobs(%v) = %v, total %d; want %v, total %d", tc.vars, got, total, tc.want, len(tc.want))
		}
	}
	got, total, more, cursor := list(map[string]any{"tag": "red", "first": 2})
	if !reflect.DeepEqual(got, []string{red3.ID, red2.ID}) || total != 3 || !more {
		t.Fatalf("red, first 2 = %v, total %d, more %v", got, total, more)
	}
	got, total, more, _ = list(map[string]any{"tag": "red", "first": 2, "after": cursor})
	if !reflect.DeepEqual(got, []string{red1.ID}) || total != 3 || more {
		t.Fatalf("red, after the first 2 = %v, total %d, more %v", got, total, more)
	}

	var byID struct {
		Job taggedJob `json:"job"`
	}
	if err := b.client.Post(`query($id: ID!) { job(id: $id) { id type status tags } }`, &byID, client.Var("id", red3.ID)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"blue", "red"}; !reflect.DeepEqual(byID.Job.Tags, want) {
		t.Fatalf("job(id) tags %q, want %q", byID.Job.Tags, want)
	}
}

// Broken tag rules are BAD_USER_INPUT naming the field, and store nothing.
func TestTagsValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	for _, tc := range []struct {
		tags []string
		msg  string
	}{
		{[]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}, "tags: must be at most 10 different tags, got 11"},
		{[]string{"ok", "a", "b", "bad tag"}, "tags[3]: may contain only letters"},
		{[]string{""}, "tags[0]: must not be empty"},
	} {
		err := b.client.Post(`mutation($input: CreateJobInput!) { createJob(input: $input) { id } }`, &struct{}{},
			client.Var("input", map[string]any{"type": "email", "tags": tc.tags}))
		wantError(t, err, "BAD_USER_INPUT", tc.msg)
	}
	if n := len(b.mustJobs(t, nil).Nodes); n != 0 {
		t.Fatalf("refused creations stored %d jobs", n)
	}
}

// jobUpdated(tag:) streams the changes of the jobs carrying the tag only;
// with an id, a job without the tag is NOT_FOUND.
func TestTagsFirehose(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	const sub = `subscription($id: ID, $tag: String) { jobUpdated(id: $id, tag: $tag) { id type status tags } }`
	red := b.client.Websocket(sub, client.Var("tag", "red"))
	t.Cleanup(func() { _ = red.Close() })
	brokertest.WaitSubscribers(t, b.broker, 1, "the tag subscriber")

	// Changes are published in order: a change of the untagged job
	// reaching the subscriber would come before the tagged one's.
	plain := b.createTagged(t, "email", []string{"blue"})
	tagged := b.createTagged(t, "email", []string{"blue", "red"})
	got, err := nextTagged(t, red)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobUpdated.ID != tagged.ID || !reflect.DeepEqual(got.JobUpdated.Tags, []string{"blue", "red"}) {
		t.Fatalf("tag subscription got %+v, want the red job %s (not %s)", got.JobUpdated, tagged.ID, plain.ID)
	}

	byID := b.client.Websocket(sub, client.Var("id", plain.ID), client.Var("tag", "red"))
	t.Cleanup(func() { _ = byID.Close() })
	_, err = nextTagged(t, byID)
	wantError(t, err, "NOT_FOUND", `carrying tag "red"`)
}
