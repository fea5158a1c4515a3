// Package runtest runs a long-running part of the server (a worker pool, a
// transport, a maintenance service) in the background of a test, in the
// project's one lifecycle shape: Run(ctx) works until ctx is done, then
// returns once everything it started has exited.
package runtest

import (
	"context"
	"sync"
	"testing"
)

// Runner is that shape.
type Runner interface {
	Run(ctx context.Context) error
}

// Start runs r.Run in a goroutine and returns stop, which cancels Run's
// context, waits for Run to return and returns its error (the same error
// to every call). When the test ends without having called stop, stop is
// called then and an error fails the test; since that cleanup is
// registered by Start, the test's cleanups registered after it run first.
func Start(t testing.TB, r Runner) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	finish := func() (first bool) {
		once.Do(func() {
			cancel()
			err = <-done
			first = true
		})
		return first
	}
	t.Cleanup(func() {
		if finish() && err != nil {
			t.Errorf("%T.Run: %v", r, err)
		}
	})
	return func() error {
		finish()
		return err
	}
}
