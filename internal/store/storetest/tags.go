package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// A job keeps the tags it was created with, through every change, in what
// every method returns and publishes; a job without tags has none.
func testTagsPersist(t *testing.T, newStore NewStore) {
	rec := &recorder{}
	s := newStore(t, Options{Publisher: rec})
	ctx := context.Background()
	tags := []string{"billing", "eu-west:1", "urgent"}
	tagged, err := s.Create(ctx, domain.NewJob{Type: "t", Tags: tags})
	if err != nil || !slices.Equal(tagged.Tags, tags) {
		t.Fatalf("create with tags = %+v, %v", tagged, err)
	}
	plain := mustCreate(t, s, "t")
	if len(plain.Tags) != 0 {
		t.Fatalf("a job created without tags has tags %q", plain.Tags)
	}
	check := func(what string, j *domain.Job, err error) {
		t.Helper()
		if err != nil || !slices.Equal(j.Tags, tags) {
			t.Fatalf("%s = %+v, %v; want tags %q", what, j, err, tags)
		}
	}
	got, err := s.Get(ctx, tagged.ID)
	check("get", got, err)
	c, l := claimID(t, s, tagged.ID)
	check("claimed job", c, nil)
	f, err := s.Fail(ctx, l, "boom", time.Time{})
	check("failed job", f, err)
	r, err := s.Retry(ctx, tagged.ID)
	check("retried job", r, err)
	x, err := s.Cancel(ctx, tagged.ID)
	check("cancelled job", x, err)
	page, err := s.List(ctx, store.ListQuery{Limit: 10})
	if err != nil || len(page.Jobs) != 2 || !slices.Equal(page.Jobs[1].Tags, tags) || len(page.Jobs[0].Tags) != 0 {
		t.Fatalf("list = %s, %v; want both jobs with their tags", ids(page.Jobs), err)
	}
	n := 0
	for _, ev := range rec.all() {
		if ev.ID == tagged.ID {
			n++
			if !slices.Equal(ev.Tags, tags) {
				t.Fatalf("event v%d has tags %q, want %q", ev.Version, ev.Tags, tags)
			}
		}
	}
	if n != int(x.Version) {
		t.Fatalf("%d events of the tagged job, want %d", n, x.Version)
	}
}

// List by tag: only the jobs carrying it, combined with the type, status
// and owner filters, newest first, paged, with exact totals; a deleted job
// leaves the listing.
func testTagList(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	// 12 jobs: types a, a, a, b, b, b, ...; owners alice, bob, none in
	// turn; every even job tagged "red" (and "x"), every third "blue".
	var all, red []*domain.Job // oldest first
	for i := range 12 {
		nj := domain.NewJob{Type: []string{"a", "b"}[i/3%2], Owner: []string{alice, bob, ""}[i%3]}
		if i%2 == 0 {
			nj.Tags = append(nj.Tags, "red", "x")
		}
		if i%3 == 0 {
			nj.Tags = append([]string{"blue"}, nj.Tags...)
		}
		j, err := s.Create(ctx, nj)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, j)
		if i%2 == 0 {
			red = append(red, j)
		}
	}
	// red: 0 (a, alice), 2 (a, none), 4 (b, bob), 6 (a, alice), 8 (a, none),
	// 10 (b, bob). Claim everything, then complete red[1] (job 2).
	if got := claim(t, s, 100); len(got) != 12 {
		t.Fatalf("claimed %d jobs, want 12", len(got))
	}
	if _, err := s.Complete(ctx, store.LeaseOf(mustGet(t, s, red[1].ID), owner), nil); err != nil {
		t.Fatal(err)
	}
	want := func(name string, q store.ListQuery, total int, jobs ...*domain.Job) store.ListPage {
		t.Helper()
		if q.Limit == 0 {
			q.Limit = 10
		}
		p, err := s.List(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, w := ids(p.Jobs), ids(jobs); got != w || p.Total != total {
			t.Fatalf("%s = %s, total %d; want %s, total %d", name, got, p.Total, w, total)
		}
		for _, j := range p.Jobs {
			if !j.HasTag(q.Tag) {
				t.Fatalf("%s lists job %d with tags %q", name, j.Seq, j.Tags)
			}
		}
		return p
	}
	want("red", store.ListQuery{Tag: "red"}, 6, red[5], red[4], red[3], red[2], red[1], red[0])
	want("blue", store.ListQuery{Tag: "blue"}, 4, all[9], all[6], all[3], all[0])
	want("red of type a", store.ListQuery{Tag: "red", Type: "a"}, 4, red[4], red[3], red[1], red[0])
	want("red completed", store.ListQuery{Tag: "red", Status: domain.StatusCompleted}, 1, red[1])
	want("red processing b", store.ListQuery{Tag: "red", Status: domain.StatusProcessing, Type: "b"}, 2, red[5], red[2])
	want("alice's red", store.ListQuery{Tag: "red", Owner: alice}, 2, red[3], red[0])
	want("alice's red of type b", store.ListQuery{Tag: "red", Owner: alice, Type: "b"}, 0)
	want("no such tag", store.ListQuery{Tag: "green"}, 0)

	// Pages of 2: the cursor walks the tag's jobs only, totals stay.
	p := want("red, page 1", store.ListQuery{Tag: "red", Limit: 2}, 6, red[5], red[4])
	if !p.HasMore {
		t.Fatal("first page of red says no more")
	}
	p = want("red, page 2", store.ListQuery{Tag: "red", Limit: 2, BeforeSeq: p.Jobs[1].Seq}, 6, red[3], red[2])
	p = want("red, page 3", store.ListQuery{Tag: "red", Limit: 2, BeforeSeq: p.Jobs[1].Seq}, 6, red[1], red[0])
	if p.HasMore {
		t.Fatal("last page of red says more")
	}
	p = want("red of type b, page 1", store.ListQuery{Tag: "red", Type: "b", Limit: 1}, 2, red[5])
	if !p.HasMore {
		t.Fatal("first page of red b says no more")
	}

	// A deleted job leaves the tag's listing and its total.
	if n, err := s.DeleteFinished(ctx, time.Now().Add(time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("delete finished = %d, %v; want the one completed job", n, err)
	}
	want("red after deletion", store.ListQuery{Tag: "red"}, 5, red[5], red[4], red[3], red[2], red[0])
}
