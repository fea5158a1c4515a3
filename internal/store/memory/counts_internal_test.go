package memory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// Job types come from clients: once their jobs are gone, the store keeps
// nothing of them.
func TestCountsForgetTypesWithoutJobs(t *testing.T) {
	t.Parallel()
	s := New(nil)
	ctx := context.Background()
	for i := range 100 {
		j, _ := s.Create(ctx, domain.NewJob{Type: fmt.Sprintf("type-%d", i)})
		if _, err := s.Claim(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Finish(ctx, j.ID, domain.StatusCompleted, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeleteFinished(ctx, time.Now().Add(time.Hour), 1000); err != nil || n != 100 {
		t.Fatalf("deleted %d, %v", n, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.counts) != 0 {
		t.Fatalf("%d count entries left for no jobs", len(s.counts))
	}
}
