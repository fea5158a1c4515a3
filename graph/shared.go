package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// Subscription results are shared between subscribers.
//
// gqlgen executes a subscription's selection set once per subscriber and per
// event. Thousands of dashboards watching the same jobs with the same
// document would repeat identical work for every change. The broker hands
// every subscriber the same immutable *domain.Job snapshot for a change, so
// the result of executing one operation (document, operation name and
// variables) on one snapshot is the same for everyone: the first subscriber
// to need it executes it, the others reuse the *graphql.Response, which
// gqlgen's transports only read.
//
// How it plugs in: an operation middleware gives each subscription operation
// a relay in its context; the jobUpdated resolver hands the broker's channel
// to the relay and returns the relay's own channel to gqlgen; a response
// middleware then takes each change from the broker, answers from the cache
// when it can, and otherwise feeds the change to gqlgen through the relay
// and caches the response it produces. On websockets the cached response is
// also encoded once and later written without gqlgen (see encoded.go).

// relay sits between a subscription's broker channel and gqlgen.
type relay struct {
	src     <-chan *domain.Job // from the broker
	err     func() error       // why src closed
	ack     func()             // tells the broker a change was taken
	out     chan *domain.Job   // read by gqlgen's generated code
	key     string             // identifies the operation and its variables
	errSent bool

	// On a websocket accepted by encodingWebsocket (see encoded.go): the
	// connection, and the stand-in of this subscription's shared results,
	// made on its first result.
	conn    *encodingConn
	standIn *standIn

	// holding is true from taking a change off src until gqlgen asks for
	// the next response, which it does once it has written this one.
	holding atomic.Bool
	sending *atomic.Int64 // relays holding a change, server-wide
}

func (r *relay) hold() {
	r.holding.Store(true)
	r.sending.Add(1)
}

func (r *relay) release() {
	if r.holding.Swap(false) {
		r.sending.Add(-1)
	}
}

type relayKey struct{}

func relayFrom(ctx context.Context) *relay {
	r, _ := ctx.Value(relayKey{}).(*relay)
	return r
}

// attach makes the relay serve src and returns the channel to give gqlgen.
// err reports why src closed; a non-nil error reaches the client as a last
// response with errors before the subscription completes. Without a relay
// in ctx (the operation middleware is not installed) src is returned as is.
func attach(ctx context.Context, src <-chan *domain.Job, err func() error, ack func()) <-chan *domain.Job {
	r := relayFrom(ctx)
	if r == nil {
		return src
	}
	r.src, r.err, r.ack = src, err, ack
	r.out = make(chan *domain.Job, 1)
	return r.out
}

// sharedResult is a response shared between subscribers, with its encoding
// (json.Marshal of resp: what gqlgen's websocket transport sends as the
// payload), or nil if it could not be encoded.
type sharedResult struct {
	resp    *graphql.Response
	encoded []byte
}

// resultCache maps (snapshot, operation) to the response gqlgen produced.
// Concurrent requests for one key execute once: a burst delivers the same
// change to every subscriber at the same moment, and without that they
// would all miss together. It is safe for concurrent use and keeps at most
// limit entries, evicting the oldest first.
type resultCache struct {
	entries sync.Map // cacheKey → *cacheEntry
	mu      sync.Mutex
	order   []cacheKey // ring of inserted keys
	next    int
	limit   int
}

type cacheKey struct {
	job *domain.Job
	op  string
}

type cacheEntry struct {
	done chan struct{} // closed once res is set
	res  sharedResult
}

func newResultCache(limit int) *resultCache {
	return &resultCache{limit: limit, order: make([]cacheKey, 0, limit)}
}

// do returns the cached result for k, waiting if another goroutine is
// producing it, or produces it with exec. Its resp is nil only if ctx ends
// first or exec returns a nil resp.
func (c *resultCache) do(ctx context.Context, k cacheKey, exec func() sharedResult) sharedResult {
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
			e.res = exec()
			return e.res
		}
	}
	e := v.(*cacheEntry)
	select {
	case <-e.done:
	case <-ctx.Done():
		return sharedResult{}
	}
	if e.res.resp == nil {
		return exec()
	}
	return e.res
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

// shareSubscriptionResults installs the two middlewares on srv.
func shareSubscriptionResults(srv interface {
	AroundOperations(graphql.OperationMiddleware)
	AroundResponses(graphql.ResponseMiddleware)
}, cache *resultCache, sending *atomic.Int64) {
	srv.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		oc := graphql.GetOperationContext(ctx)
		if oc == nil || oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
			return next(ctx)
		}
		if isPlainHTTP(ctx) {
			// gqlgen would wait for the first change and answer with it
			// alone, holding the request open indefinitely.
			return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{codedError(ctx, CodeBadRequest,
				"subscriptions need a websocket (graphql-transport-ws or graphql-ws) or Server-Sent Events (POST with Accept: text/event-stream)")}})
		}
		vars, err := json.Marshal(oc.Variables)
		if err != nil {
			return next(ctx) // unshareable; execute per subscriber
		}
		r := &relay{key: oc.RawQuery + "\x00" + oc.OperationName + "\x00" + string(vars), sending: sending, conn: encodingConnFrom(ctx)}
		// gqlgen may stop asking for responses without a last call (its
		// context ended): the relay lets go of its change then.
		context.AfterFunc(ctx, r.release)
		return next(context.WithValue(ctx, relayKey{}, r))
	})
	srv.AroundResponses(func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		r := relayFrom(ctx)
		if r == nil || r.src == nil {
			return next(ctx)
		}
		r.release() // gqlgen wrote the previous response: it asks for the next
		for {
			if resp, done := r.next(ctx, cache, next); done {
				return resp
			}
		}
	})
}

// next takes the next change and answers it. done is false when the change
// was written directly to the websocket (see encoded.go) and gqlgen is to
// get nothing for it; otherwise resp is the response for gqlgen (nil: the
// end).
func (r *relay) next(ctx context.Context, cache *resultCache, next graphql.ResponseHandler) (resp *graphql.Response, done bool) {
	// gqlgen checks this before each response it asks for; results written
	// directly must stop as soon too (a client's complete, a closed
	// connection), although changes may be waiting.
	if ctx.Err() != nil {
		return nil, true
	}
	select {
	case j, ok := <-r.src:
		if !ok {
			// The broker ended the subscription. Say why, if it was an
			// error, then let gqlgen see the end.
			if err := r.err(); err != nil && !r.errSent {
				r.errSent = true
				e := subscriptionEndError(ctx, err)
				if !onWebsocket(ctx) {
					return &graphql.Response{Errors: gqlerror.List{e}}, true
				}
				transport.AddSubscriptionError(ctx, e) // sent as the protocol's error message
			}
			close(r.out)
			return next(ctx), true
		}
		r.hold()
		r.ack() // after hold: Broker.Flush then Handler.WaitSent see it in one or the other
		res := cache.do(ctx, cacheKey{job: j, op: r.key}, func() sharedResult {
			r.out <- j // never blocks: out has room for one and gqlgen takes it next
			// gqlgen gives each response a context of its own to collect
			// errors in; results written directly are all executed within
			// one call of this middleware, so each needs a fresh one, or a
			// field error of one result would be repeated in every later
			// one (and shared with other subscribers).
			resp := next(graphql.WithFreshResponseContext(ctx))
			if resp == nil {
				return sharedResult{}
			}
			// gqlgen reuses the buffer behind Data for the
			// subscription's next event: keep a copy to share.
			shared := *resp
			shared.Data = bytes.Clone(resp.Data)
			encoded, err := json.Marshal(&shared)
			if err != nil {
				encoded = nil // gqlgen's transports will report it
			}
			return sharedResult{resp: &shared, encoded: encoded}
		})
		if res.resp == nil || r.conn == nil || res.encoded == nil {
			return res.resp, true
		}
		if r.standIn == nil {
			r.standIn = r.conn.newStandIn()
		}
		// Write errors are gqlgen's to ignore too: a broken connection
		// ends the subscription's context.
		if written, _ := r.conn.writeShared(r.standIn, res.encoded); written {
			r.release()
			return nil, false
		}
		return r.conn.leave(r.standIn, res.encoded), true
	case <-ctx.Done():
		return nil, true
	}
}
