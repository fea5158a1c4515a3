package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// failureWay is one of the writes that record a failure of a processing
// job; it returns the job as the write left it.
type failureWay struct {
	name string
	fail func(t *testing.T, s store.Store, j *domain.Job, msg string) *domain.Job
}

var failureWays = []failureWay{
	{"fail with retry", func(t *testing.T, s store.Store, j *domain.Job, msg string) *domain.Job {
		t.Helper()
		// A retry time in the past: the next claim takes the job at once.
		f, err := s.Fail(context.Background(), lease(j), msg, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil || f.Status != domain.StatusPending {
			t.Fatalf("fail: %+v, %v; want pending again", f, err)
		}
		return f
	}},
	{"finish failed, then retry", func(t *testing.T, s store.Store, j *domain.Job, msg string) *domain.Job {
		t.Helper()
		f, err := s.Finish(context.Background(), lease(j), domain.StatusFailed, msg)
		if err != nil || f.Status != domain.StatusFailed {
			t.Fatalf("finish: %+v, %v; want failed", f, err)
		}
		r, err := s.Retry(context.Background(), j.ID)
		if err != nil || len(r.Errors) != len(f.Errors) {
			t.Fatalf("retry: %+v, %v; want pending with the history of the failure", r, err)
		}
		return f
	}},
	{"rescue", func(t *testing.T, s store.Store, j *domain.Job, _ string) *domain.Job {
		t.Helper()
		// Leases last a minute (see claim): two minutes on, it expired.
		rescued, err := s.RescueExpired(context.Background(), time.Now().Add(2*time.Minute), 10)
		if err != nil || len(rescued) != 1 || rescued[0].ID != j.ID || rescued[0].Status != domain.StatusPending {
			t.Fatalf("rescue: %s, %v; want job %s pending again", ids(rescued), err, j.ID)
		}
		return rescued[0]
	}},
}

// testErrorHistory checks that each way of recording a failure keeps the
// newest entries of the history, as many as the store's error history,
// while Attempts counts every attempt: under, at and over the limit, for
// the smallest limit, a small one and the default.
func testErrorHistory(t *testing.T, newStore NewStore) {
	for _, option := range []int{1, 3, 0} {
		limit := option
		if limit == 0 {
			limit = domain.DefaultErrorHistory
		}
		for _, way := range failureWays {
			t.Run(fmt.Sprintf("%s, history %d", way.name, option), func(t *testing.T) {
				t.Parallel()
				s := newStore(t, Options{ErrorHistory: option})
				ctx := context.Background()
				j, err := s.Create(ctx, domain.NewJob{Type: "h", MaxAttempts: domain.MaxMaxAttempts})
				if err != nil {
					t.Fatal(err)
				}
				message := func(n int) string {
					if way.name == "rescue" {
						return store.WorkerLost
					}
					return fmt.Sprintf("boom %d", n)
				}
				for n := 1; n <= limit+2; n++ {
					claimed, _ := claimID(t, s, j.ID)
					returned := way.fail(t, s, claimed, message(n))
					stored, err := s.Get(ctx, j.ID)
					if err != nil {
						t.Fatal(err)
					}
					for _, got := range []*domain.Job{returned, stored} {
						if got.Attempts != n || got.Error != message(n) {
							t.Fatalf("after failure %d: attempts %d, error %q; want %d, %q", n, got.Attempts, got.Error, n, message(n))
						}
						kept := min(n, limit)
						if len(got.Errors) != kept {
							t.Fatalf("after failure %d with a history of %d: %d entries kept, want %d", n, limit, len(got.Errors), kept)
						}
						for i, e := range got.Errors {
							if attempt := n - kept + 1 + i; e.Attempt != attempt || e.Message != message(attempt) || e.At.IsZero() {
								t.Fatalf("after failure %d: errors[%d] = %+v, want attempt %d, %q", n, i, e, attempt, message(attempt))
							}
						}
					}
				}
			})
		}
	}
}

// testErrorMessageCap checks that failure messages are kept as
// domain.TruncateErrorMessage cuts them, in Error and in Errors: whole up
// to domain.MaxErrorMessageBytes, cut with a marker beyond.
func testErrorMessageCap(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	// The writes that take a message (a rescue records one of the
	// store's), failing the job for good so that it is not claimed again.
	ways := map[string]func(l store.Lease, msg string) (*domain.Job, error){
		"fail": func(l store.Lease, msg string) (*domain.Job, error) { return s.Fail(ctx, l, msg, time.Time{}) },
		"finish": func(l store.Lease, msg string) (*domain.Job, error) {
			return s.Finish(ctx, l, domain.StatusFailed, msg)
		},
	}
	const limit = domain.MaxErrorMessageBytes
	for _, msg := range []string{
		strings.Repeat("a", limit-1),
		strings.Repeat("b", limit),
		strings.Repeat("c", limit+1),
		strings.Repeat("€", 100<<10), // 300 KiB of three-byte characters
	} {
		want := domain.TruncateErrorMessage(msg)
		if len(msg) <= limit && want != msg || len(msg) > limit && (len(want) > limit || !strings.Contains(want, "truncated")) {
			t.Fatalf("TruncateErrorMessage of %d bytes gave %d bytes", len(msg), len(want))
		}
		for name, write := range ways {
			j := mustCreate(t, s, "m")
			_, l := claimID(t, s, j.ID)
			returned, err := write(l, msg)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			stored, err := s.Get(ctx, j.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range []*domain.Job{returned, stored} {
				if got.Error != want || len(got.Errors) != 1 || got.Errors[0].Message != want {
					t.Errorf("%s of a message of %d bytes: error of %d bytes, history of %d entries; want %d bytes in both (…%q)",
						name, len(msg), len(got.Error), len(got.Errors), len(want), want[max(len(want)-40, 0):])
				}
			}
		}
	}
}
