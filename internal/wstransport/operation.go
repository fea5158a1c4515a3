package wstransport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Source is a subscription's stream of values that the transport drains
// without blocking (a broker subscription implements it).
type Source[T any] interface {
	// C delivers the values; it is closed when the stream ends.
	C() <-chan T
	// Err says why C closed: nil for a normal end, else an error for the
	// client (a *gqlerror.Error is sent as it is).
	Err() error
	// Ack tells the source that a value taken from C was handed on.
	Ack()
	// OnReady registers f, called whenever a value is put into C or C is
	// closed (at once if one already waits). f does not block and does not
	// call back into the source.
	OnReady(f func())
	// Close ends the stream early; C then closes. It may be called more
	// than once, also after the stream ended by itself.
	Close()
}

// Feed makes the transport drive a subscription's source: on a connection
// of this transport it returns the channel for gqlgen's generated code and
// true. The transport takes each value from src when the connection can
// write, puts it into that channel (of one slot) and calls gqlgen's
// response handler on its own writer goroutine, so the generated code never
// waits; subscribers of one operation share the result of one execution on
// one value (T's equality says "the same value"). The transport closes src
// when the operation ends (at once, if it ended while the resolver ran), so
// src need not watch ctx. Elsewhere (Server-Sent Events) it returns nil and
// false: serve src.C() as usual.
//
// Call it from the subscription resolver, at most once per operation.
func Feed[T comparable](ctx context.Context, src Source[T]) (<-chan T, bool) {
	op := feedable(ctx)
	if op == nil {
		return nil, false
	}
	f := &feed[T]{src: src, ch: make(chan T, 1)}
	c := op.c
	c.mu.Lock()
	op.feed = f
	done := op.done
	c.mu.Unlock()
	if done {
		src.Close()
	}
	src.OnReady(op.wake)
	return f.ch, true
}

// Feeds reports whether Feed will take a source for the operation of ctx.
// A resolver that creates its source only for Feed can then create it
// without a watch on ctx (context.WithoutCancel), which would cost every
// idle subscription its registration: the transport ends the source.
func Feeds(ctx context.Context) bool { return feedable(ctx) != nil }

// feedable returns the operation of ctx if Feed may take its source.
// op.feed is set only by Feed, on the writer goroutine, where resolvers
// run.
func feedable(ctx context.Context) *operation {
	op, _ := ctx.Value(operationKey{}).(*operation)
	if op == nil || op.feed != nil {
		return nil
	}
	return op
}

// Fail makes a subscription that cannot start end with the protocol's
// error message carrying err (graphql-ws clients call their error
// callback), instead of a result with errors. It reports false off this
// transport. The resolver then returns a closed channel.
func Fail(ctx context.Context, err *gqlerror.Error) bool {
	op, _ := ctx.Value(operationKey{}).(*operation)
	if op == nil {
		return false
	}
	op.failed = append(op.failed, err)
	return true
}

type operationKey struct{}

// feeder is a Feed without its type parameter.
type feeder interface {
	// poll takes the next value without blocking: ok when one was taken,
	// ended when the source has ended.
	poll() (key any, ok, ended bool)
	// load puts the value taken last into gqlgen's channel.
	load()
	ack()
	err() error
	close()
}

type feed[T comparable] struct {
	src  Source[T]
	ch   chan T
	last T
}

func (f *feed[T]) poll() (any, bool, bool) {
	select {
	case v, ok := <-f.src.C():
		if !ok {
			return nil, false, true
		}
		f.last = v
		return v, true, false
	default:
		return nil, false, false
	}
}

func (f *feed[T]) load() {
	select {
	case <-f.ch: // left over by a call that ended early
	default:
	}
	f.ch <- f.last
}

func (f *feed[T]) ack()       { f.src.Ack() }
func (f *feed[T]) err() error { return f.src.Err() }
func (f *feed[T]) close()     { f.src.Close() }

// operation is one operation of a connection, from its subscribe (start)
// message to its end. The reader creates it (id, base, cancel, payload);
// the writer begins it and from then on owns the rest, except the fields
// marked "under conn.mu". A subscription resolver sets feed or failed
// during begin, on the writer.
type operation struct {
	c      *conn
	id     string
	idJSON []byte   // id as a JSON string
	group  *opGroup // its shared results; nil when not shareable; set before it starts
	// released: group given back (under conn.mu)
	released bool
	cancel   context.CancelFunc
	base     context.Context // the operation's; cancel ends it
	sub      bool

	payload  json.RawMessage // the subscribe message's, until begin
	received time.Time

	feed    feeder // set under conn.mu, by the writer
	failed  gqlerror.List
	handler graphql.ResponseHandler
	ctx     context.Context
	rc      *graphql.OperationContext

	started bool // under conn.mu: the writer may serve it
	woken   bool // under conn.mu: woken before it started
	queued  bool // under conn.mu: in conn.ready
	done    bool // under conn.mu: ended; nothing more is queued for it
}

// wake queues op for the writer; its source calls it.
func (op *operation) wake() {
	c := op.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if op.done || c.closing {
		return
	}
	if !op.started {
		op.woken = true
		return
	}
	if !op.queued {
		op.queued = true
		c.ready = append(c.ready, op)
		c.kickLocked()
	}
}

func (c *conn) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.findLocked(id) >= 0
}

// endAllLocked marks every operation done and returns them (to cancel
// outside the lock).
func (c *conn) endAllLocked() []*operation {
	ops := c.ops
	for _, op := range ops {
		op.done = true
		op.releaseLocked()
	}
	c.ops = nil
	c.t.subscriptions.Add(-int64(c.subs))
	c.subs = 0
	c.ready = nil
	return ops
}

// releaseLocked gives op's shared-results group back. conn.mu is held.
func (op *operation) releaseLocked() {
	if op.group != nil && !op.released {
		op.released = true
		op.c.t.results.release(op.group)
	}
}

// endLocked removes op and queues its last message (typ with payload;
// nothing when typ is ""). It reports whether op was still running.
func (c *conn) endLocked(op *operation, typ string, payload []byte) bool {
	if op.done {
		return false
	}
	op.done = true
	op.releaseLocked()
	if i := c.findLocked(op.id); i >= 0 && c.ops[i] == op {
		last := len(c.ops) - 1
		c.ops[i], c.ops[last] = c.ops[last], nil
		c.ops = c.ops[:last]
		if op.sub {
			c.subs--
			c.t.subscriptions.Add(-1)
		}
	}
	if typ != "" && !c.closing {
		c.appendLocked(func(b []byte) []byte { return appendEncodedMessage(b, op.idJSON, typ, payload) })
		c.kickLocked()
	}
	return true
}

// stop ends the context and the source of op, once it is done (endLocked
// or endAllLocked). conn.mu is not held: closing the source calls back
// (wake).
func (op *operation) stop() {
	op.cancel()
	c := op.c
	c.mu.Lock()
	f := op.feed
	c.mu.Unlock()
	if f != nil {
		f.close()
	}
}

func (c *conn) end(op *operation, typ string, payload []byte) {
	c.mu.Lock()
	c.endLocked(op, typ, payload)
	c.mu.Unlock()
	op.stop()
}

// Message names of the two protocols.
func (c *conn) nextType() string {
	if c.legacy {
		return "data"
	}
	return "next"
}

// stopOperation ends the operation id at the client's request (complete,
// or stop): the client gets complete, as gqlgen answered.
func (c *conn) stopOperation(id string) {
	c.mu.Lock()
	i := c.findLocked(id)
	if i < 0 {
		c.mu.Unlock()
		return
	}
	op := c.ops[i]
	c.endLocked(op, "complete", nil)
	c.mu.Unlock()
	op.stop()
}

// findLocked returns the index of the operation id in c.ops, or -1.
func (c *conn) findLocked(id string) int {
	for i, op := range c.ops {
		if op.id == id {
			return i
		}
	}
	return -1
}

// queueStart registers a subscribe (start) message's operation and queues
// it for the writer, which starts it (begin). Operations start off the
// reader so that executing them (resolvers, gqlgen's deep call chains)
// never grows the reader's stack, which an idle connection keeps for its
// whole life, while the writer's goes away with it. They start one after
// another, in the order the client sent them. The reader reads no frame
// while maxWaiting operations wait (waitRoom), so at most that many do.
func (c *conn) queueStart(id string, payload json.RawMessage) {
	idJSON, _ := json.Marshal(id)
	op := &operation{c: c, id: id, idJSON: idJSON, payload: payload, received: graphql.Now()}
	op.base, op.cancel = context.WithCancel(c.opCtx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		op.cancel()
		return
	}
	c.ops = append(c.ops, op)
	c.starts = append(c.starts, op)
	if p := c.t.opts.probes; p != nil && p.waiting != nil {
		p.waiting(len(c.starts))
	}
	c.kickLocked()
}

// begin starts op on the writer: it parses and validates the operation and
// runs its resolvers (for a subscription, the resolver subscribes and calls
// Feed); a query or mutation is answered at once.
func (op *operation) begin() {
	c := op.c
	c.mu.Lock()
	done := op.done
	c.mu.Unlock()
	if done {
		return
	}
	payload := op.payload
	op.payload = nil
	// Only CreateOperationContext reads the trace's start: the context
	// the operation runs under, which a subscription keeps, goes without.
	traced := graphql.StartOperationTrace(op.base)
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil || params.Query == "" && len(params.Extensions) == 0 {
		if !c.legacy {
			c.closeWith(CloseBadRequest, "Invalid message received: subscribe payload")
			return
		}
		// An error message ends the operation: no complete follows it.
		c.mu.Lock()
		c.endLocked(op, "error", encodeErrors(gqlerror.List{{Message: "invalid json"}}))
		c.mu.Unlock()
		op.stop()
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: op.received, End: graphql.Now()}
	params.Headers = websocketHeader

	rc, errs := c.exec.CreateOperationContext(traced, params)
	if errs != nil {
		// Failed before it ran: the error message, in both protocols,
		// with the errors as the server presents them (DispatchError
		// runs the error presenter and the response middleware).
		if resp := c.exec.DispatchError(graphql.WithOperationContext(traced, rc), errs); resp != nil && len(resp.Errors) > 0 {
			errs = resp.Errors
		}
		c.end(op, "error", encodeErrors(errs)) // no complete after an error message
		return
	}

	op.rc = rc
	sub := rc.Operation.Operation == ast.Subscription
	key := ""
	if sub {
		key = shareKey(rc)
	}
	c.mu.Lock()
	if op.done {
		c.mu.Unlock()
		return
	}
	op.sub = sub // under c.mu: endLocked reads it
	if op.sub {
		if max := c.t.opts.MaxSubscriptions; c.subs >= max {
			c.t.refused.Add(1)
			op.sub = false // never counted in c.subs
			c.endLocked(op, "error", encodeErrors(gqlerror.List{{
				Message:    fmt.Sprintf("at most %d subscriptions per connection", max),
				Extensions: map[string]any{"code": CodeTooManySubscriptions},
			}}))
			c.mu.Unlock()
			op.stop()
			return
		}
		c.subs++
		c.t.subscriptions.Add(1)
		if key != "" {
			op.group = c.t.results.acquire(key)
		}
	}
	c.mu.Unlock()

	ctx := op.base // DispatchOperation adds rc itself
	if op.sub {
		ctx = context.WithValue(ctx, operationKey{}, op)
	}
	op.handler, op.ctx = c.exec.DispatchOperation(ctx, rc)

	switch {
	case !op.sub:
		resp := op.respond()
		if refused := refusal(resp); refused != nil {
			c.end(op, "error", refused)
			return
		}
		c.mu.Lock()
		if resp != nil && !op.done {
			c.queueLocked(op.idJSON, c.nextType(), encodeResponse(resp))
		}
		c.endLocked(op, "complete", nil)
		c.mu.Unlock()
		op.stop()
	case op.failed != nil:
		c.end(op, "error", encodeErrors(op.failed))
	case op.feed == nil:
		// A resolver that failed (gqlgen answers with its errors once) or
		// that does not use Feed: gqlgen's loop on a goroutine of its
		// own, the exception to "no goroutine per subscription".
		c.t.goStarted()
		go op.loop()
	default:
		c.mu.Lock()
		op.started = true
		if op.woken && !op.done && !c.closing {
			op.queued = true
			c.ready = append(c.ready, op)
			c.kickLocked()
		}
		c.mu.Unlock()
	}
}

// shareKey identifies a subscription operation among all connections, or
// is "" if its variables cannot be encoded.
func shareKey(rc *graphql.OperationContext) string {
	vars, err := json.Marshal(rc.Variables)
	if err != nil {
		return ""
	}
	return rc.RawQuery + "\x00" + rc.OperationName + "\x00" + string(vars)
}

// respond calls gqlgen's response handler once and returns its response
// (nil at the end of the stream). A panic becomes an error response.
func (op *operation) respond() (resp *graphql.Response) {
	defer func() {
		if p := recover(); p != nil {
			err := op.rc.Recover(op.ctx, p)
			var ge *gqlerror.Error
			if !errors.As(err, &ge) {
				ge = &gqlerror.Error{Message: fmt.Sprint(err)}
			}
			resp = &graphql.Response{Errors: gqlerror.List{ge}}
		}
	}()
	return op.handler(op.ctx)
}

// refusal returns the payload of an error message for a first response
// that carries errors and no data, or nil: the operation was refused
// before it produced anything (see the package doc).
func refusal(resp *graphql.Response) []byte {
	if resp == nil || len(resp.Data) > 0 || len(resp.Errors) == 0 {
		return nil
	}
	return encodeErrors(resp.Errors)
}

// loop serves a subscription that does not use Feed the way gqlgen's own
// transport did, on its own goroutine, until its stream ends. A first
// response with errors and no data (a resolver or middleware that refused
// the subscription) ends it with the error message instead.
func (op *operation) loop() {
	defer op.c.t.goDone()
	c := op.c
	for first := true; ; first = false {
		resp := op.respond()
		if resp == nil {
			break
		}
		if first {
			if refused := refusal(resp); refused != nil {
				c.end(op, "error", refused)
				return
			}
		}
		// Its results count toward the connection's bound like the
		// writer's.
		if ok, _ := c.waitRoom(); !ok {
			break
		}
		payload := encodeResponse(resp)
		c.mu.Lock()
		if !op.done && !c.closing {
			c.appendLocked(func(b []byte) []byte { return appendEncodedMessage(b, op.idJSON, c.nextType(), payload) })
			c.t.sent.Add(1)
			c.kickLocked()
		}
		c.mu.Unlock()
	}
	// A closed connection gets no complete, as with gqlgen (and endLocked
	// queues nothing once it is closing).
	c.end(op, "complete", nil)
}

// pump runs on the writer: it takes one value from op's source, has it
// executed (or finds it executed for another subscriber) and queues the
// result; or ends op when its source has ended. It reports whether the
// connection's queue has reached gather bytes.
func (op *operation) pump(gather int) (full bool) {
	c := op.c
	c.mu.Lock()
	op.queued = false
	done := op.done
	full = c.queuedLocked() >= gather
	c.mu.Unlock()
	if done {
		return full
	}
	v, ok, ended := op.feed.poll()
	switch {
	case ended:
		if err := op.feed.err(); err != nil {
			var ge *gqlerror.Error
			if !errors.As(err, &ge) {
				ge = gqlerror.Wrap(err)
			}
			c.end(op, "error", encodeErrors(gqlerror.List{ge}))
		} else {
			c.end(op, "complete", nil)
		}
	case ok:
		// Counted before the ack: the broker's Flush, then WaitSent, see
		// the change in one or the other.
		c.t.sending.add(1)
		op.feed.ack()
		payload := op.result(v)
		c.mu.Lock()
		if payload != nil && !op.done && !c.closing {
			c.appendLocked(func(b []byte) []byte { return appendEncodedMessage(b, op.idJSON, c.nextType(), payload) })
			c.t.sent.Add(1)
		}
		if !op.done && !op.queued {
			// More may wait: look again on the next round.
			op.queued = true
			c.ready = append(c.ready, op)
		}
		full = c.queuedLocked() >= gather
		c.mu.Unlock()
		c.t.sending.add(-1)
		return full
	}
	return full
}

// result returns the encoded response for value v.
func (op *operation) result(v any) []byte {
	exec := func() []byte {
		op.feed.load()
		if resp := op.respond(); resp != nil {
			return encodeResponse(resp)
		}
		return nil
	}
	if op.group == nil {
		return exec()
	}
	return op.c.t.results.do(op.ctx, op.group, v, exec)
}

// queueLocked queues a message of an operation. c.mu is held.
func (c *conn) queueLocked(idJSON []byte, typ string, payload []byte) {
	if c.closing {
		return
	}
	c.appendLocked(func(b []byte) []byte { return appendEncodedMessage(b, idJSON, typ, payload) })
	c.kickLocked()
}

func encodeResponse(resp *graphql.Response) []byte {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(&graphql.Response{Errors: gqlerror.List{{Message: "encoding the response: " + err.Error()}}})
	}
	return b
}

// encodeErrors is the payload of an error message: the list of errors.
func encodeErrors(errs gqlerror.List) []byte {
	b, err := json.Marshal(errs)
	if err != nil {
		b, _ = json.Marshal(gqlerror.List{{Message: err.Error()}})
	}
	return b
}
