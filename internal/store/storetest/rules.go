package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// testRulesAgree pins every store's changes to the domain's rules
// (internal/domain/rules.go). Stores may encode a rule their own way (SQL
// does, for speed); this table applies every store operation to a job in
// every state it accepts and compares the whole job the store returns with
// the domain rule applied to the job as it was: a change to a rule in one
// place fails here until every backend agrees.
func testRulesAgree(t *testing.T, newStore NewStore) {
	s := newStore(t, Options{})
	ctx := context.Background()
	P, R, C, F, X := domain.StatusPending, domain.StatusProcessing, domain.StatusCompleted, domain.StatusFailed, domain.StatusCancelled
	result := json.RawMessage(`{"ok":true}`)
	keep := domain.DefaultErrorHistory // the store's error history
	// retryAt is in the future, so a retried job is not claimed by the
	// claims of later cases.
	retryAt := time.Date(2100, 1, 2, 3, 4, 5, 6000, time.UTC)

	// Pre-states beyond put's: a processing job whose cancellation was
	// requested, and one on its last attempt.
	type state struct {
		name string
		make func(t *testing.T) *domain.Job
	}
	plain := func(st domain.Status) state {
		return state{string(st), func(t *testing.T) *domain.Job { return put(t, s, st) }}
	}
	cancelRequested := state{"processing, cancel requested", func(t *testing.T) *domain.Job {
		j, err := s.Cancel(ctx, put(t, s, R).ID)
		if err != nil || !j.CancelRequested {
			t.Fatalf("request cancellation: %+v, %v", j, err)
		}
		return j
	}}
	lastAttempt := state{"processing, last attempt", func(t *testing.T) *domain.Job {
		return putJob(t, s, domain.NewJob{Type: "t", MaxAttempts: 1}, R)
	}}
	withHistory := state{"failed with history", func(t *testing.T) *domain.Job {
		j := putJob(t, s, domain.NewJob{Type: "t", MaxAttempts: 3}, R)
		// Due before every job put made, so that claimID claims it next.
		j, err := s.Fail(ctx, lease(j), "first", time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil || j.Status != P {
			t.Fatalf("fail the first attempt: %+v, %v", j, err)
		}
		j, l := claimID(t, s, j.ID)
		j, err = s.Finish(ctx, l, F, "second")
		if err != nil {
			t.Fatal(err)
		}
		return j
	}}

	// rule applies the domain's rule to a copy of the job as it was; now
	// is the store's time of the change (the new UpdatedAt). A nil error
	// with unchanged false expects a new version.
	type rule func(j *domain.Job, now time.Time) (unchanged bool, err error)
	// bulk changes one job with a call of CancelJobs or RetryJobs: the job
	// it returns, or an error wrapping domain.ErrConflict when it skipped
	// the job.
	bulk := func(f func(ctx context.Context, ids []string, owner string) ([]*domain.Job, error)) func(j *domain.Job) (*domain.Job, error) {
		return func(j *domain.Job) (*domain.Job, error) {
			jobs, err := f(ctx, []string{j.ID}, j.Owner)
			switch {
			case err != nil:
				return nil, err
			case len(jobs) == 0:
				return nil, fmt.Errorf("skipped: %w", domain.ErrConflict)
			case len(jobs) > 1 || jobs[0].ID != j.ID:
				return nil, fmt.Errorf("changed %s, want only job %s", ids(jobs), j.ID)
			}
			return jobs[0], nil
		}
	}
	type op struct {
		name   string
		states []state
		do     func(j *domain.Job) (*domain.Job, error)
		rule   rule
	}
	ops := []op{
		{"claim", []state{plain(P)}, func(j *domain.Job) (*domain.Job, error) {
			for _, c := range claim(t, s, 1000) {
				if c.ID == j.ID {
					return c, nil
				}
			}
			return nil, errors.New("not claimed")
		}, func(j *domain.Job, now time.Time) (bool, error) { j.Claim(now); return false, nil }},
		{"complete", []state{plain(R), cancelRequested, lastAttempt}, func(j *domain.Job) (*domain.Job, error) {
			return s.Complete(ctx, lease(j), result)
		}, func(j *domain.Job, now time.Time) (bool, error) { j.Complete(result, now); return false, nil }},
		{"finish failed", []state{plain(R), cancelRequested, lastAttempt}, func(j *domain.Job) (*domain.Job, error) {
			return s.Finish(ctx, lease(j), F, "boom")
		}, func(j *domain.Job, now time.Time) (bool, error) { j.Finish(F, "boom", now, keep); return false, nil }},
		{"finish cancelled", []state{plain(R), cancelRequested}, func(j *domain.Job) (*domain.Job, error) {
			return s.Finish(ctx, lease(j), X, "")
		}, func(j *domain.Job, now time.Time) (bool, error) { j.Finish(X, "", now, keep); return false, nil }},
		{"finish completed", []state{plain(R)}, func(j *domain.Job) (*domain.Job, error) {
			return s.Finish(ctx, lease(j), C, "")
		}, func(j *domain.Job, now time.Time) (bool, error) { j.Finish(C, "", now, keep); return false, nil }},
		{"fail with retry", []state{plain(R), cancelRequested, lastAttempt}, func(j *domain.Job) (*domain.Job, error) {
			return s.Fail(ctx, lease(j), "flaky", retryAt)
		}, func(j *domain.Job, now time.Time) (bool, error) {
			j.Fail("flaky", retryAt, now, keep)
			return false, nil
		}},
		{"fail for good", []state{plain(R)}, func(j *domain.Job) (*domain.Job, error) {
			return s.Fail(ctx, lease(j), "fatal", time.Time{})
		}, func(j *domain.Job, now time.Time) (bool, error) {
			j.Fail("fatal", time.Time{}, now, keep)
			return false, nil
		}},
		{"progress", []state{plain(R)}, func(j *domain.Job) (*domain.Job, error) {
			return s.Progress(ctx, lease(j), 40)
		}, func(j *domain.Job, now time.Time) (bool, error) { return false, j.SetProgress(40) }},
		{"progress unchanged", []state{plain(R)}, func(j *domain.Job) (*domain.Job, error) {
			p, err := s.Progress(ctx, lease(j), 40)
			if err != nil {
				return nil, err
			}
			*j = *p // the state before the second, unchanging report
			return s.Progress(ctx, lease(j), 40)
		}, func(j *domain.Job, now time.Time) (bool, error) {
			if err := j.SetProgress(40); !errors.Is(err, domain.ErrUnchanged) {
				return false, fmt.Errorf("domain: %v, want ErrUnchanged", err)
			}
			return true, nil
		}},
		{"release", []state{plain(R), cancelRequested}, func(j *domain.Job) (*domain.Job, error) {
			return s.Release(ctx, lease(j))
		}, func(j *domain.Job, now time.Time) (bool, error) { j.Release(now); return false, nil }},
		{"rescue", []state{plain(R), cancelRequested, lastAttempt}, func(j *domain.Job) (*domain.Job, error) {
			// Leases last a minute (see claim): two minutes on, it expired.
			rescued, err := s.RescueExpired(ctx, time.Now().Add(2*time.Minute), 1000)
			if err != nil {
				return nil, err
			}
			for _, r := range rescued {
				if r.ID == j.ID {
					return r, nil
				}
			}
			return nil, errors.New("not rescued")
		}, func(j *domain.Job, now time.Time) (bool, error) {
			j.Rescue(store.WorkerLost, now, keep)
			return false, nil
		}},
		{"cancel", []state{plain(P), plain(R)}, func(j *domain.Job) (*domain.Job, error) {
			return s.Cancel(ctx, j.ID)
		}, func(j *domain.Job, now time.Time) (bool, error) { return false, j.Cancel(now) }},
		{"cancel again", []state{cancelRequested}, func(j *domain.Job) (*domain.Job, error) {
			return s.Cancel(ctx, j.ID)
		}, func(j *domain.Job, now time.Time) (bool, error) {
			if err := j.Cancel(now); !errors.Is(err, domain.ErrUnchanged) {
				return false, fmt.Errorf("domain: %v, want ErrUnchanged", err)
			}
			return true, nil
		}},
		{"retry", []state{plain(F), plain(X), withHistory}, func(j *domain.Job) (*domain.Job, error) {
			return s.Retry(ctx, j.ID)
		}, func(j *domain.Job, now time.Time) (bool, error) { return false, j.Retry(now) }},
		{"cancel jobs", []state{plain(P), plain(R)}, bulk(s.CancelJobs), func(j *domain.Job, now time.Time) (bool, error) { return false, j.Cancel(now) }},
		{"cancel jobs again", []state{cancelRequested}, func(j *domain.Job) (*domain.Job, error) {
			if _, err := bulk(s.CancelJobs)(j); !errors.Is(err, domain.ErrConflict) {
				return nil, fmt.Errorf("cancel jobs: %v, want the job skipped", err)
			}
			return s.Get(ctx, j.ID)
		}, func(j *domain.Job, now time.Time) (bool, error) {
			if err := j.Cancel(now); !errors.Is(err, domain.ErrUnchanged) {
				return false, fmt.Errorf("domain: %v, want ErrUnchanged", err)
			}
			return true, nil
		}},
		{"retry jobs", []state{plain(F), plain(X), withHistory}, bulk(s.RetryJobs), func(j *domain.Job, now time.Time) (bool, error) { return false, j.Retry(now) }},
	}
	// Refusals: the rules that can refuse (cancel, retry) refuse in the
	// store exactly where they refuse in the domain, and change nothing.
	refusals := []struct {
		name   string
		states []state
		do     func(j *domain.Job) (*domain.Job, error)
		rule   func(j *domain.Job, now time.Time) error
	}{
		{"cancel", []state{plain(C), plain(F), plain(X)}, func(j *domain.Job) (*domain.Job, error) { return s.Cancel(ctx, j.ID) },
			func(j *domain.Job, now time.Time) error { return j.Cancel(now) }},
		{"retry", []state{plain(P), plain(R), plain(C), cancelRequested}, func(j *domain.Job) (*domain.Job, error) { return s.Retry(ctx, j.ID) },
			func(j *domain.Job, now time.Time) error { return j.Retry(now) }},
		// The bulk changes skip the jobs the rule refuses.
		{"cancel jobs", []state{plain(C), plain(F), plain(X)}, bulk(s.CancelJobs),
			func(j *domain.Job, now time.Time) error { return j.Cancel(now) }},
		{"retry jobs", []state{plain(P), plain(R), plain(C), cancelRequested}, bulk(s.RetryJobs),
			func(j *domain.Job, now time.Time) error { return j.Retry(now) }},
	}
	for _, o := range refusals {
		for _, st := range o.states {
			t.Run(o.name+" refused from "+st.name, func(t *testing.T) {
				before := st.make(t)
				if err := o.rule(cloneJob(before), time.Now()); !errors.Is(err, domain.ErrConflict) {
					t.Fatalf("domain: %v, want ErrConflict", err)
				}
				if _, err := o.do(cloneJob(before)); !errors.Is(err, domain.ErrConflict) {
					t.Fatalf("store: %v, want ErrConflict as the domain", err)
				}
				after, err := s.Get(ctx, before.ID)
				if err != nil {
					t.Fatal(err)
				}
				if diff := jobDiff(before, after); diff != "" {
					t.Errorf("a refused %s changed the job:\n%s", o.name, diff)
				}
			})
		}
	}
	for _, o := range ops {
		for _, st := range o.states {
			t.Run(o.name+" from "+st.name, func(t *testing.T) {
				before := st.make(t)
				got, err := o.do(cloneJob(before))
				if err != nil {
					t.Fatalf("store: %v", err)
				}
				// "progress unchanged" moves before on by one report.
				if o.name == "progress unchanged" {
					before = got
				}
				want := cloneJob(before)
				unchanged, err := o.rule(want, got.UpdatedAt)
				if err != nil {
					t.Fatalf("domain rule: %v", err)
				}
				if !unchanged {
					want.Version++
					want.UpdatedAt = got.UpdatedAt
				}
				if diff := jobDiff(want, got); diff != "" {
					t.Errorf("the store and the domain rule disagree:\n%s", diff)
				}
			})
		}
	}
}

// cloneJob copies a snapshot so a rule can change it.
func cloneJob(j *domain.Job) *domain.Job {
	c := *j
	return &c
}

// jobDiff lists the fields in which got differs from want.
func jobDiff(want, got *domain.Job) string {
	var out bytes.Buffer
	field := func(name string, w, g any) {
		if fmt.Sprint(w) != fmt.Sprint(g) {
			fmt.Fprintf(&out, "  %s: store %v, domain %v\n", name, g, w)
		}
	}
	timePtr := func(p *time.Time) string {
		if p == nil {
			return "nil"
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	intPtr := func(p *int) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprint(*p)
	}
	jsonText := func(r json.RawMessage) string {
		var b bytes.Buffer
		if len(r) == 0 || json.Compact(&b, r) != nil {
			return string(r)
		}
		return b.String()
	}
	field("Status", want.Status, got.Status)
	field("Attempts", want.Attempts, got.Attempts)
	field("MaxAttempts", want.MaxAttempts, got.MaxAttempts)
	field("Error", want.Error, got.Error)
	field("Errors", errorsText(want.Errors), errorsText(got.Errors))
	field("RunAt", want.RunAt.UTC().Format(time.RFC3339Nano), got.RunAt.UTC().Format(time.RFC3339Nano))
	field("StartedAt", timePtr(want.StartedAt), timePtr(got.StartedAt))
	field("FinishedAt", timePtr(want.FinishedAt), timePtr(got.FinishedAt))
	field("UpdatedAt", want.UpdatedAt.UTC().Format(time.RFC3339Nano), got.UpdatedAt.UTC().Format(time.RFC3339Nano))
	field("Progress", intPtr(want.Progress), intPtr(got.Progress))
	field("Result", jsonText(want.Result), jsonText(got.Result))
	field("Payload", jsonText(want.Payload), jsonText(got.Payload))
	field("CancelRequested", want.CancelRequested, got.CancelRequested)
	field("Version", want.Version, got.Version)
	field("Priority", want.Priority, got.Priority)
	return out.String()
}

func errorsText(es []domain.JobError) string {
	var b bytes.Buffer
	for _, e := range es {
		fmt.Fprintf(&b, "[%d %q %s]", e.Attempt, e.Message, e.At.UTC().Format(time.RFC3339Nano))
	}
	return b.String()
}
