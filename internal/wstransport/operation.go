package wstransport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
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
}

// Feed makes the transport drive a subscription's source: on a connection
// of this transport it returns the channel for gqlgen's generated code and
// true. The transport takes each value from src when the connection can
// write, puts it into that channel (of one slot) and calls gqlgen's
// response handler on its own writer goroutine, so the generated code never
// waits; subscribers of one operation share the result of one execution on
// one value (T's equality says "the same value"). Elsewhere (Server-Sent
// Events) it returns nil and false: serve src.C() as usual.
//
// Call it from the subscription resolver, at most once per operation.
func Feed[T comparable](ctx context.Context, src Source[T]) (<-chan T, bool) {
	op, _ := ctx.Value(operationKey{}).(*operation)
	if op == nil || op.feed != nil {
		return nil, false
	}
	f := &feed[T]{src: src, ch: make(chan T, 1)}
	op.feed = f
	src.OnReady(op.wake)
	return f.ch, true
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

// operation is one started operation of a connection. Fields set before the
// operation is started are written by the reader only; queued and done are
// under conn.mu; the rest belongs to the writer.
type operation struct {
	c      *conn
	id     string
	idJSON []byte // id as a JSON string
	key    string // document, operation name and variables; "" when not shareable
	cancel context.CancelFunc
	sub    bool

	feed    feeder
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
	_, ok := c.ops[id]
	return ok
}

// endAllLocked marks every operation done and returns them (to cancel
// outside the lock).
func (c *conn) endAllLocked() []*operation {
	ops := make([]*operation, 0, len(c.ops))
	for id, op := range c.ops {
		op.done = true
		ops = append(ops, op)
		delete(c.ops, id)
	}
	c.subs = 0
	c.ready = nil
	return ops
}

// endLocked removes op and queues its last message (typ with payload;
// nothing when typ is ""). It reports whether op was still running.
func (c *conn) endLocked(op *operation, typ string, payload []byte) bool {
	if op.done {
		return false
	}
	op.done = true
	if c.ops[op.id] == op {
		delete(c.ops, op.id)
		if op.sub {
			c.subs--
		}
	}
	if typ != "" && !c.closing {
		c.appendLocked(func(b []byte) []byte { return appendEncodedMessage(b, op.idJSON, typ, payload) })
		c.kickLocked()
	}
	return true
}

func (c *conn) end(op *operation, typ string, payload []byte) {
	c.mu.Lock()
	c.endLocked(op, typ, payload)
	c.mu.Unlock()
	op.cancel()
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
	op := c.ops[id]
	if op == nil {
		c.mu.Unlock()
		return
	}
	c.endLocked(op, "complete", nil)
	c.mu.Unlock()
	op.cancel()
}

// startOperation runs a subscribe (start) message on the reader: it parses
// and validates the operation and runs its resolvers (for a subscription,
// the resolver subscribes and calls Feed); a query or mutation is answered
// at once. Operations of one connection thus start one after another.
func (c *conn) startOperation(id string, payload json.RawMessage) bool {
	start := graphql.Now()
	idJSON, _ := json.Marshal(id)
	ctx := graphql.StartOperationTrace(c.opCtx)
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil || params.Query == "" && len(params.Extensions) == 0 {
		if !c.legacy {
			c.closeWith(CloseBadRequest, "Invalid message received: subscribe payload")
			return false
		}
		c.queueOpErrors(idJSON, gqlerror.List{{Message: "invalid json"}})
		c.queueOpMessage(idJSON, "complete", nil)
		return true
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	params.Headers = c.header

	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			c.queueOpErrors(idJSON, resp.Errors)
		} else {
			c.queueOpResponse(idJSON, &graphql.Response{Errors: errs})
		}
		c.queueOpMessage(idJSON, "complete", nil)
		return true
	}

	op := &operation{c: c, id: id, idJSON: idJSON, rc: rc, sub: rc.Operation.Operation == ast.Subscription}
	ctx, op.cancel = context.WithCancel(graphql.WithOperationContext(ctx, rc))
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		op.cancel()
		return false
	}
	if op.sub && c.t.opts.MaxSubscriptions > 0 && c.subs >= c.t.opts.MaxSubscriptions {
		c.mu.Unlock()
		op.cancel()
		c.queueOpErrors(idJSON, gqlerror.List{{
			Message:    fmt.Sprintf("at most %d subscriptions per connection", c.t.opts.MaxSubscriptions),
			Extensions: map[string]any{"code": CodeTooManySubscriptions},
		}})
		return true
	}
	c.ops[id] = op
	if op.sub {
		c.subs++
	}
	c.mu.Unlock()

	if op.sub {
		op.key = shareKey(rc)
		ctx = context.WithValue(ctx, operationKey{}, op)
	}
	op.handler, op.ctx = c.exec.DispatchOperation(ctx, rc)

	switch {
	case !op.sub:
		resp := op.respond()
		c.mu.Lock()
		if resp != nil && !op.done && !c.closing {
			c.appendLocked(func(b []byte) []byte { return appendEncodedMessage(b, idJSON, c.nextType(), resp) })
		}
		c.endLocked(op, "complete", nil)
		c.mu.Unlock()
		op.cancel()
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
		if op.woken {
			op.woken = false
			if !op.done && !c.closing {
				op.queued = true
				c.ready = append(c.ready, op)
				c.kickLocked()
			}
		}
		c.mu.Unlock()
	}
	return true
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

// respond calls gqlgen's response handler once and encodes its response
// (nil at the end of the stream). A panic becomes an error response.
func (op *operation) respond() (encoded []byte) {
	defer func() {
		if p := recover(); p != nil {
			err := op.rc.Recover(op.ctx, p)
			var ge *gqlerror.Error
			if !errors.As(err, &ge) {
				ge = &gqlerror.Error{Message: fmt.Sprint(err)}
			}
			encoded, _ = json.Marshal(&graphql.Response{Errors: gqlerror.List{ge}})
		}
	}()
	resp := op.handler(op.ctx)
	if resp == nil {
		return nil
	}
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(&graphql.Response{Errors: gqlerror.List{{Message: "encoding the response: " + err.Error()}}})
	}
	return b
}

// loop serves a subscription that does not use Feed the way gqlgen's own
// transport did, on its own goroutine, until its stream ends.
func (op *operation) loop() {
	defer op.c.t.goDone()
	for {
		resp := op.respond()
		if resp == nil {
			break
		}
		op.c.mu.Lock()
		if !op.done && !op.c.closing {
			op.c.appendLocked(func(b []byte) []byte { return appendEncodedMessage(b, op.idJSON, op.c.nextType(), resp) })
			op.c.kickLocked()
		}
		op.c.mu.Unlock()
	}
	if op.c.ctx.Err() == nil {
		op.c.end(op, "complete", nil) // a closed connection gets no complete, as with gqlgen
	} else {
		op.c.end(op, "", nil)
	}
}

// pump runs on the writer: it takes one value from op's source, has it
// executed (or finds it executed for another subscriber) and queues the
// result; or ends op when its source has ended.
func (op *operation) pump() {
	c := op.c
	c.mu.Lock()
	op.queued = false
	done := op.done
	c.mu.Unlock()
	if done {
		return
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
		}
		if !op.done && !op.queued {
			// More may wait: look again on the next round.
			op.queued = true
			c.ready = append(c.ready, op)
		}
		c.mu.Unlock()
		c.t.sending.add(-1)
	}
}

// result returns the encoded response for value v.
func (op *operation) result(v any) []byte {
	exec := func() []byte {
		op.feed.load()
		return op.respond()
	}
	if op.key == "" {
		return exec()
	}
	return op.c.t.results.do(op.ctx, cacheKey{value: v, op: op.key}, exec)
}

// queueOpMessage queues a message of an operation that was not started.
func (c *conn) queueOpMessage(idJSON []byte, typ string, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.appendLocked(func(b []byte) []byte { return appendEncodedMessage(b, idJSON, typ, payload) })
	c.kickLocked()
}

func (c *conn) queueOpErrors(idJSON []byte, errs gqlerror.List) {
	c.queueOpMessage(idJSON, "error", encodeErrors(errs))
}

func (c *conn) queueOpResponse(idJSON []byte, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(&graphql.Response{Errors: gqlerror.List{{Message: "encoding the response: " + err.Error()}}})
	}
	c.queueOpMessage(idJSON, c.nextType(), b)
}

// encodeErrors is the payload of an error message: the list of errors.
func encodeErrors(errs gqlerror.List) []byte {
	b, err := json.Marshal(errs)
	if err != nil {
		b, _ = json.Marshal(gqlerror.List{{Message: err.Error()}})
	}
	return b
}
