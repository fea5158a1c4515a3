// Package jobwatch lets tests wait for a job to reach a state by watching
// the changes a store publishes, instead of polling the store or sleeping.
//
// It sits beside the store contract rather than on the broker because the
// store's Publisher is where every change starts (the broker is fed from
// it): it is called synchronously, in version order, and never drops a
// change, whereas a broker subscriber that falls behind is disconnected.
// Any test that builds a store can hang a Watcher on its publishers.
package jobwatch

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// DefaultTimeout is how long Wait waits before it fails the test.
const DefaultTimeout = 15 * time.Second

// Watcher is a store.Publisher that keeps the latest version of every job
// published to it and wakes the tests waiting on them. Its methods are
// safe for concurrent use; Publish never blocks. Inside a testing/synctest
// bubble, create it in the bubble.
type Watcher struct {
	// Timeout bounds each Wait; zero means DefaultTimeout.
	Timeout time.Duration

	mu      sync.Mutex
	jobs    map[string]*domain.Job
	events  int
	changed chan struct{} // closed and replaced at every change
}

var _ store.Publisher = (*Watcher)(nil)

// New returns a Watcher that has seen nothing yet.
func New() *Watcher {
	return &Watcher{jobs: make(map[string]*domain.Job), changed: make(chan struct{})}
}

// Publish records a change of a job (an older version than one already
// seen is ignored) and wakes the waiters.
func (w *Watcher) Publish(job *domain.Job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events++
	if old := w.jobs[job.ID]; old != nil && old.Version > job.Version {
		return
	}
	w.jobs[job.ID] = job
	close(w.changed)
	w.changed = make(chan struct{})
}

// Events returns how many changes were published to w, older versions
// included.
func (w *Watcher) Events() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events
}

// Job returns the latest version of the job seen, or nil.
func (w *Watcher) Job(id string) *domain.Job {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.jobs[id]
}

// Wait waits until the latest version of job id satisfies cond and
// returns it; it fails the test (t.Fatalf, naming what) when that does not
// happen within the Timeout. cond gets nil while no version was seen.
func (w *Watcher) Wait(t testing.TB, id, what string, cond func(*domain.Job) bool) *domain.Job {
	t.Helper()
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		w.mu.Lock()
		j, changed := w.jobs[id], w.changed
		w.mu.Unlock()
		if cond(j) {
			return j
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("job %s: %s: not within %s (last seen: %s)", id, what, timeout, describe(j))
			return nil
		}
	}
}

// WaitStatus waits until job id has one of the statuses and returns it.
func (w *Watcher) WaitStatus(t testing.TB, id string, statuses ...domain.Status) *domain.Job {
	t.Helper()
	return w.Wait(t, id, fmt.Sprintf("status %v", statuses), func(j *domain.Job) bool {
		return j != nil && slices.Contains(statuses, j.Status)
	})
}

// WaitFinal waits until every job of ids is in a final status and returns
// their latest versions, in the order of ids.
func (w *Watcher) WaitFinal(t testing.TB, ids ...string) []*domain.Job {
	t.Helper()
	out := make([]*domain.Job, len(ids))
	for i, id := range ids {
		out[i] = w.Wait(t, id, "a final status", func(j *domain.Job) bool { return j != nil && j.Status.Final() })
	}
	return out
}

func describe(j *domain.Job) string {
	if j == nil {
		return "no change"
	}
	return fmt.Sprintf("%s, version %d, attempt %d, error %q", j.Status, j.Version, j.Attempts, j.Error)
}
