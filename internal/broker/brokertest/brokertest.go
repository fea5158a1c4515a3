// Package brokertest runs a broker for the length of a test, and lets the
// test wait for its subscriptions to arrive or leave on the broker's own
// signal instead of polling its count.
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/runtest"
)

// Run returns a broker with opts whose Run runs until the test ends (its
// cleanup stops it and waits for Run to return), or until stop is called:
// stop ends every subscription as a server's shutdown does, and returns
// once Run has returned. stop may be called more than once.
func Run(t testing.TB, opts broker.Options) (b *broker.Broker, stop func()) {
	t.Helper()
	b = broker.New(opts)
	stopRun := runtest.Start(t, b)
	return b, func() {
		if err := stopRun(); err != nil {
			t.Errorf("broker: %v", err)
		}
	}
}

// New is Run for tests that need not stop the broker themselves.
func New(t testing.TB, opts broker.Options) *broker.Broker {
	t.Helper()
	b, _ := Run(t, opts)
	return b
}

// Timeout bounds each wait: something that should happen at once.
const Timeout = 10 * time.Second

// WaitSubscribers waits until exactly n subscriptions are registered with
// b, and fails the test (naming what it waited for) when that does not
// happen within Timeout.
func WaitSubscribers(t testing.TB, b *broker.Broker, n int, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := b.WaitSubscribers(ctx, n); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
