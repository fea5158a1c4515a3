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
	k := cacheKey{value: new(int), op: "q"}
	var wg sync.WaitGroup
	results := make([][]byte, 20)
	for i := range results {
		wg.Go(func() {
			results[i] = c.do(context.Background(), k, func() []byte {
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
	keys := make([]cacheKey, 10)
	for i := range keys {
		keys[i] = cacheKey{value: new(int), op: "q"}
		c.do(context.Background(), keys[i], func() []byte { return []byte{byte(i)} })
	}
	n := 0
	c.entries.Range(func(any, any) bool { n++; return true })
	if n != 4 {
		t.Fatalf("%d entries, want the limit 4", n)
	}
	// The newest are kept: asking again for one executes nothing.
	if got := c.do(context.Background(), keys[9], func() []byte { t.Fatal("executed again"); return nil }); got[0] != 9 {
		t.Fatalf("got %v", got)
	}
}
