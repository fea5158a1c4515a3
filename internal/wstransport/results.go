package wstransport

import (
	"context"
	"sync"
)

// Shared results.
//
// gqlgen executes a subscription's selection set once per subscriber and
// change. Thousands of dashboards watching the same jobs with the same
// document would repeat identical work, and its encoding, for every change.
// A source hands every subscriber the same immutable value for a change (the
// broker: one *domain.Job snapshot), so the result of one operation
// (document, operation name and variables) on one value is the same for
// everyone: the first subscriber to need it executes and encodes it, the
// others write the same bytes. This holds while results do not depend on
// who asks; once access control makes them depend on the caller, the
// caller's identity must join the key.

// cacheKey is one operation on one value.
type cacheKey struct {
	value any
	op    string
}

type cacheEntry struct {
	done    chan struct{} // closed once encoded is set
	encoded []byte
}

// resultCache maps a cacheKey to its encoded response. Concurrent requests
// for one key execute once: a burst delivers the same change to every
// subscriber at the same moment, and without that they would all miss
// together. It is safe for concurrent use and keeps at most limit entries,
// evicting the oldest first.
type resultCache struct {
	entries sync.Map // cacheKey → *cacheEntry
	mu      sync.Mutex
	order   []cacheKey // ring of inserted keys
	next    int
	limit   int
}

func newResultCache(limit int) *resultCache {
	return &resultCache{limit: limit, order: make([]cacheKey, 0, min(limit, 1024))}
}

// do returns the encoded response for k, waiting if another goroutine is
// producing it, or produces it with exec. It returns nil only if ctx ends
// first or exec returns nil (then a waiter executes for itself).
func (c *resultCache) do(ctx context.Context, k cacheKey, exec func() []byte) []byte {
	v, ok := c.entries.Load(k)
	if !ok {
		e := &cacheEntry{done: make(chan struct{})}
		if v, ok = c.entries.LoadOrStore(k, e); !ok {
			// Deferred so that a panicking exec cannot leave waiters
			// blocked on this key.
			defer func() {
				close(e.done)
				c.remember(k)
			}()
			e.encoded = exec()
			return e.encoded
		}
	}
	e := v.(*cacheEntry)
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil
	}
	if e.encoded == nil {
		return exec()
	}
	return e.encoded
}

func (c *resultCache) remember(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.order) < c.limit {
		c.order = append(c.order, k)
		return
	}
	c.entries.Delete(c.order[c.next])
	c.order[c.next] = k
	c.next = (c.next + 1) % c.limit
}
