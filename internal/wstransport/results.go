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
// without that they would all miss together. It keeps at most limit
// results, evicting the oldest first. Safe for concurrent use.
type resultCache struct {
	mu     sync.Mutex
	groups map[string]*opGroup // by operation key, while some subscription uses them
	order  []cached            // ring of kept results
	next   int
	limit  int
}

// opGroup is one operation's shared results.
type opGroup struct {
	key     string   // the operation's key, one copy for all its subscriptions
	refs    int      // subscriptions using the group; under resultCache.mu
	entries sync.Map // value → *cacheEntry
}

type cached struct {
	g     *opGroup
	value any
}

type cacheEntry struct {
	done    chan struct{} // closed once encoded is set
	encoded []byte
}

func newResultCache(limit int) *resultCache {
	return &resultCache{limit: limit, groups: make(map[string]*opGroup), order: make([]cached, 0, min(limit, 1024))}
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
// map; its results leave the ring as it turns.
func (c *resultCache) release(g *opGroup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g.refs--
	if g.refs == 0 && c.groups[g.key] == g {
		delete(c.groups, g.key)
	}
}

// do returns the encoded result of g's operation on value, waiting if
// another goroutine is producing it, or produces it with exec. It returns
// nil only if ctx ends first or exec returns nil (then a waiter executes
// for itself).
func (c *resultCache) do(ctx context.Context, g *opGroup, value any, exec func() []byte) []byte {
	v, ok := g.entries.Load(value)
	if !ok {
		e := &cacheEntry{done: make(chan struct{})}
		if v, ok = g.entries.LoadOrStore(value, e); !ok {
			// Deferred so that a panicking exec cannot leave waiters
			// blocked on this key.
			defer func() {
				close(e.done)
				c.remember(g, value)
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

func (c *resultCache) remember(g *opGroup, value any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.order) < c.limit {
		c.order = append(c.order, cached{g, value})
		return
	}
	old := c.order[c.next]
	old.g.entries.Delete(old.value)
	c.order[c.next] = cached{g, value}
	c.next = (c.next + 1) % c.limit
}
