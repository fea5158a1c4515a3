package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// testCreationsNoted checks that Create and CreateMany report to the
// context's WithCreations function exactly the jobs they insert: of many
// racing creations with one key, one; of a CreateMany repeating a key,
// the first element's job; none for a key already taken.
func testCreationsNoted(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	var noted atomic.Int64
	ctx := store.WithCreations(context.Background(), func(*domain.Job) { noted.Add(1) })
	for round := range 5 {
		key := fmt.Sprint("k", round)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 10 {
			wg.Go(func() {
				<-start
				nj := domain.NewJob{Type: "a", IdempotencyKey: key}
				var err error
				if i%2 == 0 {
					_, err = s.Create(ctx, nj)
				} else {
					_, err = s.CreateMany(ctx, []domain.NewJob{nj, nj})
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if got := noted.Load(); got != 5 {
		t.Fatalf("noted %d creations for 5 keys each created by 10 racing calls, want 5", got)
	}
	noted.Store(0)
	jobs, err := s.CreateMany(ctx, []domain.NewJob{{Type: "b"}, {Type: "b", IdempotencyKey: "k0"}, {Type: "b", IdempotencyKey: "new"}, {Type: "b", IdempotencyKey: "new"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := noted.Load(); got != 2 || jobs[2].ID != jobs[3].ID {
		t.Fatalf("noted %d creations for a batch inserting 2 jobs, want 2", got)
	}
	if _, err := s.Create(context.Background(), domain.NewJob{Type: "c"}); err != nil {
		t.Fatal(err) // no WithCreations: nothing to report to
	}
}
