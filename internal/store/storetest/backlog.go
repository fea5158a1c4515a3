package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// BenchClaimClosedBacklog measures a claim when the jobs ahead of the
// runnable one in dispatch order all belong to a closed type: none
// (backlog=none), 100,000 of a paused type (backlog=paused), and 100,000
// of a type at its concurrency limit (backlog=atLimit). One op creates a
// job of an open type, claims it (Limit 1) and completes it. A claim's
// cost must not grow with closed types' backlogs: the backlog cases may
// cost more than none only as much as a store of 100,000 more jobs costs
// in other ways (larger maps and indexes), microseconds, not the
// milliseconds a walk of the backlog costs. Backends call it as
// BenchFailRetryCycles.
func BenchClaimClosedBacklog(b *testing.B, open func(b *testing.B) store.Store) {
	const backlog = 100_000
	for _, c := range []struct {
		name  string
		jobs  int
		close func(ctx context.Context, s store.Store) error
	}{
		{"backlog=none", 0, nil},
		{"backlog=paused", backlog, func(ctx context.Context, s store.Store) error {
			p := true
			_, err := s.SetTypeControl(ctx, "closed", domain.TypeChange{Paused: &p})
			return err
		}},
		{"backlog=atLimit", backlog, func(ctx context.Context, s store.Store) error {
			if _, err := s.SetTypeControl(ctx, "closed", domain.TypeChange{Limits: &domain.TypeLimits{Concurrency: 1}}); err != nil {
				return err
			}
			now := time.Now()
			_, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: now.Add(time.Hour)})
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			if err := fillBacklog(ctx, s, "closed", c.jobs); err != nil {
				b.Fatal(err)
			}
			if c.close != nil {
				if err := c.close(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
			// A first claim finds the backlog due (once, whatever the
			// store): only the claims after it are measured.
			now := time.Now()
			if jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)}); err != nil || len(jobs) != 0 {
				b.Fatalf("first claim: %d jobs, %v; want none", len(jobs), err)
			}
			b.ResetTimer()
			for b.Loop() {
				j, err := s.Create(ctx, domain.NewJob{Type: "open"})
				if err != nil {
					b.Fatal(err)
				}
				now := time.Now()
				jobs, err := s.Claim(ctx, store.ClaimRequest{Owner: owner, Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
				if err != nil || len(jobs) != 1 || jobs[0].ID != j.ID {
					b.Fatalf("claim: %d jobs, %v; want %s", len(jobs), err, j.ID)
				}
				if _, err := s.Complete(ctx, store.LeaseOf(jobs[0], owner), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fillBacklog creates n pending jobs of the type, in batches.
func fillBacklog(ctx context.Context, s store.Store, typ string, n int) error {
	const batch = 1000
	njs := make([]domain.NewJob, 0, batch)
	for done := 0; done < n; done += len(njs) {
		njs = njs[:0]
		for range min(batch, n-done) {
			njs = append(njs, domain.NewJob{Type: typ})
		}
		if _, err := s.CreateMany(ctx, njs); err != nil {
			return err
		}
	}
	return nil
}
