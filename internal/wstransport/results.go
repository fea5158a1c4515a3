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
// caller's identity must join the operation's key.
//
// Subscriptions of one operation share an opGroup, found once when they
// start, so that a change is looked up by its value alone (hashing a
// pointer, not the operation's text, once per subscriber and change).

// resultCache holds the groups of running subscriptions and the results
// they share. Concurrent requests for one result execute once: a burst
// delivers the same change to every subscriber at the same moment, and
// without that they would all miss together. It keeps at most maxN results
// of at most maxBytes encoded bytes in all, dropping the oldest first; a
// result larger than maxBytes is handed to those waiting for it and not
// kept. A group's results are dropped when its last subscription ends.
// Safe for concurrent use.
type resultCache struct {
	mu     sync.Mutex
	groups map[string]*opGroup // by operation key, while some subscription uses them
	// kept results, oldest first
	oldest, newest *cacheEntry
	n, bytes       int
	maxN, maxBytes int
}

// opGroup is one operation's shared results.
type opGroup struct {
	key     string   // the operation's key, one copy for all its subscriptions
	refs    int      // subscriptions using the group; under resultCache.mu
	entries sync.Map // value → *cacheEntry, being produced or kept
}

type cacheEntry struct {
	done    chan struct{} // closed once encoded is set
	encoded []byte

	g     *opGroup
	value any
	// under resultCache.mu
	kept       bool // in the list of kept results, counted in n and bytes
	prev, next *cacheEntry
}

func newResultCache(maxN, maxBytes int) *resultCache {
	return &resultCache{maxN: maxN, maxBytes: maxBytes, groups: make(map[string]*opGroup)}
}

// acquire returns the group of the operation key, for one more
// subscription; release gives it back.
func (c *resultCache) acquire(key string) *opGroup {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[key]
	if g == nil {
		g = &opGroup{key: key}
		c.groups[key] = g
	}
	g.refs++
	return g
}

// release ends one subscription's use of g. A group nobody uses leaves the
// map and its results are dropped: none outlives the subscriptions that
// shared it. (Subscriptions waiting for a result keep it until they have
// it.)
func (c *resultCache) release(g *opGroup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g.refs--
	if g.refs > 0 {
		return
	}
	if c.groups[g.key] == g {
		delete(c.groups, g.key)
	}
	g.entries.Range(func(value, e any) bool {
		c.dropLocked(e.(*cacheEntry))
		g.entries.Delete(value)
		return true
	})
}

// do returns the encoded result of g's operation on value, waiting if
// another goroutine is producing it, or produces it with exec. It returns
// nil only if ctx ends first or exec returns nil (then a waiter executes
// for itself).
func (c *resultCache) do(ctx context.Context, g *opGroup, value any, exec func() []byte) []byte {
	v, ok := g.entries.Load(value)
	if !ok {
		e := &cacheEntry{done: make(chan struct{}), g: g, value: value}
		if v, ok = g.entries.LoadOrStore(value, e); !ok {
			// Deferred so that a panicking exec cannot leave waiters
			// blocked on this key.
			defer func() {
				close(e.done)
				c.keep(e)
			}()
			e.encoded = exec()
			return e.encoded
		}
	}
	e := v.(*cacheEntry)
	select {
	case <-e.done: // the common case, without a select on ctx
	default:
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil
		}
	}
	if e.encoded == nil {
		return exec()
	}
	return e.encoded
}

// keep adds a produced result to the kept ones, dropping the oldest to
// stay within the bounds; or drops it, when it is nil, larger than the
// bound on bytes, or its group was released meanwhile.
func (c *resultCache) keep(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	size := len(e.encoded)
	if e.encoded == nil || size > c.maxBytes || e.g.refs == 0 {
		e.g.entries.CompareAndDelete(e.value, e)
		return
	}
	for c.oldest != nil && (c.n >= c.maxN || c.bytes+size > c.maxBytes) {
		c.dropLocked(c.oldest)
	}
	e.kept = true
	e.prev = c.newest
	if c.newest != nil {
		c.newest.next = e
	} else {
		c.oldest = e
	}
	c.newest = e
	c.n++
	c.bytes += size
}

// dropLocked removes e from the kept results and from its group, if it is
// kept. c.mu is held.
func (c *resultCache) dropLocked(e *cacheEntry) {
	if !e.kept {
		return
	}
	e.kept = false
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.newest = e.prev
	}
	e.prev, e.next = nil, nil
	c.n--
	c.bytes -= len(e.encoded)
	e.g.entries.CompareAndDelete(e.value, e)
}
