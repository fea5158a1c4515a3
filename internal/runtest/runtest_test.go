package runtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/runtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runner runs until its context is done, then returns err.
type runner struct{ err error }

func (r runner) Run(ctx context.Context) error {
	<-ctx.Done()
	return r.err
}

// fakeTB keeps the cleanups and errors of a test that Start is given.
type fakeTB struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// stop ends Run and returns its error, to every call; the test that saw
// the error is not failed for it again at its end.
func TestStopReturnsRunsError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tb := &fakeTB{TB: t}
	stop := runtest.Start(tb, runner{err: boom})
	for range 2 {
		if err := stop(); !errors.Is(err, boom) {
			t.Fatalf("stop = %v, want Run's error", err)
		}
	}
	tb.end()
	if len(tb.errs) != 0 {
		t.Fatalf("errors at the end of the test: %q, want none (the test had seen it)", tb.errs)
	}
}

// A runner the test did not stop is stopped at its end, and its error
// fails the test.
func TestUnstoppedRunnerIsStoppedAndCheckedAtTheEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err      error
		wantErrs int
	}{{nil, 0}, {errors.New("boom"), 1}} {
		tb := &fakeTB{TB: t}
		runtest.Start(tb, runner{err: tc.err})
		tb.end()
		if len(tb.errs) != tc.wantErrs {
			t.Fatalf("Run returned %v: errors at the end of the test %q, want %d", tc.err, tb.errs, tc.wantErrs)
		}
	}
}
