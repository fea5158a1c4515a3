package jobwatch_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store/jobwatch"
)

// Wait returns once a change satisfies the condition, woken by Publish
// from another goroutine; a version older than one seen is ignored.
func TestWaitSeesLaterChanges(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		w := jobwatch.New()
		go func() {
			time.Sleep(time.Second)
			w.Publish(&domain.Job{ID: "a", Version: 1, Status: domain.StatusPending})
			w.Publish(&domain.Job{ID: "a", Version: 3, Status: domain.StatusCompleted})
			w.Publish(&domain.Job{ID: "a", Version: 2, Status: domain.StatusProcessing})
		}()
		j := w.WaitStatus(t, "a", domain.StatusCompleted)
		if j.Version != 3 {
			t.Fatalf("waited for version %d, want 3", j.Version)
		}
		synctest.Wait()
		if got := w.Job("a"); got.Version != 3 {
			t.Fatalf("latest = version %d after an older one arrived, want 3", got.Version)
		}
	})
}

// fatalTB records Fatalf and ends its goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A job that never gets there fails the test after the Timeout, saying
// what was last seen.
func TestWaitFailsAfterTheTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		w := jobwatch.New()
		w.Timeout = time.Minute
		w.Publish(&domain.Job{ID: "a", Version: 1, Status: domain.StatusPending})
		tb := &fatalTB{TB: t}
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.WaitFinal(tb, "a")
		}()
		<-done
		if d := time.Since(start); d != time.Minute || !strings.Contains(tb.msg, "pending") {
			t.Fatalf("Wait failed after %v with %q, want after 1m naming the last status", d, tb.msg)
		}
	})
}
