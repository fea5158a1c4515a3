package wstransport

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

func TestResultCacheConcurrentMissesExecuteOnce(t *testing.T) {
	t.Parallel()
	c := newResultCache(8, 1<<20)
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
	c := newResultCache(4, 1<<20)
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
	c := newResultCache(4, 1<<20)
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

// kept counts g's entries and checks them against the cache's counts.
func kept(t *testing.T, c *resultCache, g *opGroup) (entries, bytes int) {
	t.Helper()
	g.entries.Range(func(_, e any) bool {
		entries++
		bytes += len(e.(*cacheEntry).encoded)
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n != entries || c.bytes != bytes {
		t.Fatalf("cache counts %d results of %d bytes, the group holds %d of %d", c.n, c.bytes, entries, bytes)
	}
	return entries, bytes
}

func TestResultCacheDropsResultsWithTheLastSubscription(t *testing.T) {
	t.Parallel()
	c := newResultCache(16, 1<<20)
	a, b := c.acquire("q"), c.acquire("q")
	for range 3 {
		c.do(context.Background(), a, new(int), func() []byte { return make([]byte, 100) })
	}
	c.release(a)
	if n, size := kept(t, c, b); n != 3 || size != 300 {
		t.Fatalf("%d results of %d bytes after one of two subscriptions ended, want all 3 (300 bytes)", n, size)
	}
	c.release(b)
	if n, size := kept(t, c, b); n != 0 || size != 0 {
		t.Fatalf("%d results of %d bytes after the last subscription ended, want none", n, size)
	}

	// A result produced while its last subscription ends is not kept.
	g := c.acquire("q")
	c.do(context.Background(), g, new(int), func() []byte {
		c.release(g)
		return make([]byte, 100)
	})
	if n, size := kept(t, c, g); n != 0 || size != 0 {
		t.Fatalf("%d results of %d bytes kept for a released group, want none", n, size)
	}
}

func TestResultCacheKeepsAtMostMaxBytes(t *testing.T) {
	t.Parallel()
	c := newResultCache(16, 250)
	g := c.acquire("q")
	values := make([]*int, 5)
	for i := range values {
		values[i] = new(int)
		c.do(context.Background(), g, values[i], func() []byte { return append(make([]byte, 99), byte(i)) })
	}
	// 100 bytes each: the two newest fit in 250.
	if n, size := kept(t, c, g); n != 2 || size != 200 {
		t.Fatalf("%d results of %d bytes, want the 2 newest (200 bytes)", n, size)
	}
	if got := c.do(context.Background(), g, values[4], func() []byte { t.Fatal("executed again"); return nil }); got[99] != 4 {
		t.Fatalf("got result %d, want the newest", got[99])
	}
	execs := 0
	c.do(context.Background(), g, values[0], func() []byte { execs++; return make([]byte, 100) })
	if execs != 1 {
		t.Fatal("the oldest result was kept past the bound")
	}

	// A result larger than the bound is handed to whoever asked for it,
	// and not kept: the next request executes again.
	big := new(int)
	for range 2 {
		if got := c.do(context.Background(), g, big, func() []byte { execs++; return make([]byte, 300) }); len(got) != 300 {
			t.Fatalf("large result of %d bytes, want 300", len(got))
		}
	}
	if execs != 3 {
		t.Fatalf("%d executions of a result over the bound, want one per request", execs-1)
	}
	if n, size := kept(t, c, g); n != 2 || size != 200 {
		t.Fatalf("%d results of %d bytes after a large one, want the 2 kept before (200 bytes)", n, size)
	}
}
