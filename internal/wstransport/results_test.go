package wstransport

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

func TestResultCacheConcurrentMissesExecuteOnce(t *testing.T) {
	t.Parallel()
	c := newResultCache(8)
	var execs atomic.Int64
	release := make(chan struct{})
	g := c.acquire("q")
	v := new(int)
	var wg sync.WaitGroup
	results := make([][]byte, 20)
	for i := range results {
		wg.Go(func() {
			results[i] = c.do(context.Background(), g, v, func() []byte {
				execs.Add(1)
				<-release
				return []byte("r")
			})
		})
	}
	close(release)
	wg.Wait()
	if n := execs.Load(); n != 1 {
		t.Fatalf("%d executions for one key, want 1", n)
	}
	for i, r := range results {
		if string(r) != "r" {
			t.Fatalf("caller %d got %q", i, r)
		}
	}
}

func TestResultCacheKeepsAtMostLimit(t *testing.T) {
	t.Parallel()
	c := newResultCache(4)
	g := c.acquire("q")
	values := make([]*int, 10)
	for i := range values {
		values[i] = new(int)
		c.do(context.Background(), g, values[i], func() []byte { return []byte{byte(i)} })
	}
	n := 0
	g.entries.Range(func(any, any) bool { n++; return true })
	if n != 4 {
		t.Fatalf("%d entries, want the limit 4", n)
	}
	// The newest are kept: asking again for one executes nothing.
	if got := c.do(context.Background(), g, values[9], func() []byte { t.Fatal("executed again"); return nil }); got[0] != 9 {
		t.Fatalf("got %v", got)
	}
}

func TestResultCacheGroupLeavesWithItsLastSubscription(t *testing.T) {
	t.Parallel()
	c := newResultCache(4)
	a, b := c.acquire("q"), c.acquire("q")
	if a != b {
		t.Fatal("two subscriptions of one operation got different groups")
	}
	c.release(a)
	if c.groups["q"] != a {
		t.Fatal("the group left while a subscription still uses it")
	}
	c.release(b)
	if _, ok := c.groups["q"]; ok {
		t.Fatal("the group stayed after its last subscription ended")
	}
}
