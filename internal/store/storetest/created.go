package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// testCreatedBounds checks List's CreatedBefore and CreatedAfter: strict
// bounds, combined with the other filters, with totals counted among the
// jobs selected, and with bounds finer than the microseconds stores keep.
func testCreatedBounds(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	var all []*domain.Job // oldest first
	for i := range 8 {
		nj := domain.NewJob{Type: []string{"a", "b"}[i%2]}
		if i%4 == 0 {
			nj.Tags = []string{"red"}
		}
		j, err := s.Create(ctx, nj)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, j)
	}
	// matching is what a query should list, newest first: the stored
	// times decide, so jobs created in the same microsecond are no
	// problem.
	matching := func(q store.ListQuery) []*domain.Job {
		var want []*domain.Job
		for _, j := range slices.Backward(all) {
			if (q.CreatedBefore.IsZero() || j.CreatedAt.Before(q.CreatedBefore)) &&
				(q.CreatedAfter.IsZero() || j.CreatedAt.After(q.CreatedAfter)) &&
				(q.Type == "" || j.Type == q.Type) && (q.Tag == "" || j.HasTag(q.Tag)) {
				want = append(want, j)
			}
		}
		return want
	}
	check := func(name string, q store.ListQuery) {
		t.Helper()
		q.Limit = 20
		p, err := s.List(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := matching(q)
		if got, w := ids(p.Jobs), ids(want); got != w || p.Total != len(want) {
			t.Fatalf("%s = %s, total %d; want %s, total %d", name, got, p.Total, w, len(want))
		}
	}
	mid, late := all[2].CreatedAt, all[5].CreatedAt
	if !all[0].CreatedAt.Before(late) || !all[7].CreatedAt.After(mid) {
		t.Fatalf("creation times do not grow: %v … %v … %v … %v", all[0].CreatedAt, mid, late, all[7].CreatedAt)
	}
	check("before", store.ListQuery{CreatedBefore: late})
	check("after", store.ListQuery{CreatedAfter: mid})
	check("between", store.ListQuery{CreatedAfter: mid, CreatedBefore: late})
	check("between, type b", store.ListQuery{CreatedAfter: mid, CreatedBefore: late, Type: "b"})
	check("before, red", store.ListQuery{CreatedBefore: late, Tag: "red"})
	check("empty range", store.ListQuery{CreatedAfter: late, CreatedBefore: mid})

	// A bound between two stored microseconds: a job created at x is
	// before x+1ns and after x-1ns, and neither before nor after x.
	x := all[3].CreatedAt
	for _, c := range []struct {
		name string
		q    store.ListQuery
		in   bool
	}{
		{"before x+1ns", store.ListQuery{CreatedBefore: x.Add(time.Nanosecond)}, true},
		{"before x", store.ListQuery{CreatedBefore: x}, false},
		{"after x-1ns", store.ListQuery{CreatedAfter: x.Add(-time.Nanosecond)}, true},
		{"after x", store.ListQuery{CreatedAfter: x}, false},
	} {
		c.q.Limit = 20
		p, err := s.List(ctx, c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := slices.ContainsFunc(p.Jobs, func(j *domain.Job) bool { return j.ID == all[3].ID }); got != c.in {
			t.Fatalf("%s lists the job created at x: %v, want %v", c.name, got, c.in)
		}
	}

	// The cursor walks within the bounds.
	q := store.ListQuery{CreatedAfter: all[0].CreatedAt, Limit: 2}
	want := matching(q)
	var got []*domain.Job
	for {
		p, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Jobs...)
		if !p.HasMore {
			break
		}
		q.BeforeSeq = p.Jobs[len(p.Jobs)-1].Seq
	}
	if ids(got) != ids(want) {
		t.Fatalf("paged after the first job = %s, want %s", ids(got), ids(want))
	}
}
