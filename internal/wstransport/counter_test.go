package wstransport

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

func TestCounterWaitsForZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		if err := c.wait(context.Background()); err != nil {
			t.Fatalf("wait at zero: %v", err)
		}
		c.add(2)
		done := make(chan error, 1)
		go func() { done <- c.wait(context.Background()) }()
		synctest.Wait()
		c.add(-1)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("wait returned %v at 1", err)
		default:
		}
		c.add(-1)
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("wait at zero: %v", err)
			}
		default:
			t.Fatal("wait did not return when the count reached zero")
		}

		c.add(1)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { done <- c.wait(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("wait after cancel: %v", err)
		}
	})
}
