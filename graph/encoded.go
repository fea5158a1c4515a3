package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// Shared results are also encoded once, and written without gqlgen's
// per-response work, for websocket subscribers.
//
// gqlgen's websocket transport encodes every response with json.Marshal,
// once per subscriber, and json.Marshal validates the already encoded data
// (a json.RawMessage) byte by byte; around it, gqlgen's executor builds a
// response context and runs the response middleware chain for every
// response. With results shared (shared.go) that was most of the work left
// per subscriber and message. So, on websockets:
//
//   - The response middleware encodes a shared result once (the bytes
//     gqlgen would produce as the message's payload).
//   - A subscription's first shared result goes through gqlgen as a
//     stand-in: a tiny response whose data is a string naming the
//     subscription (its token). The websocket connection, wrapped by
//     encodingWebsocket, recognises the stand-in in the message gqlgen asks
//     it to write, writes a copy of that message with the shared encoding
//     as its payload, and learns from it the subscription's template: the
//     message's encoding around its payload (or, when the wrapped
//     connection cannot send pre-encoded text, the message itself).
//   - Later shared results are written by the middleware itself, from the
//     template with their encoding as payload, without returning to gqlgen;
//     the middleware returns only for what gqlgen must handle (a result
//     that is not shared, the end of the subscription).
//
// Clients receive exactly the messages gqlgen would have sent, in the same
// order: all writes of one subscription happen on gqlgen's goroutine for it,
// one after the other. The message format stays gqlgen's (both
// subprotocols), as the template is a message gqlgen built.
//
// The stand-in hand-over needs no clean-up: gqlgen calls the response
// middleware and then writes its result on the same goroutine, so the
// encoding is left with the connection just before WriteJSON takes it back,
// and what the connection learns (the template) is kept by the
// subscription's stand-in, which the subscription owns. Real results cannot
// be mistaken for stand-ins: their data is an object or null, never a
// string.

// standInMarker starts the data string of every stand-in.
const standInMarker = "jobqueue:shared-response:"

// standInPrefix is how json.Marshal(graphql.Response) of a stand-in begins;
// the token and `"}` follow.
var standInPrefix = []byte(`{"data":"` + standInMarker)

// websocketSlot carries a websocket request's connection, once accepted, to
// the operations started on it (their context descends from the request's).
type websocketSlot struct{ conn *encodingConn }

type websocketSlotKey struct{}

// withWebsocketSlot gives websocket upgrade requests (those gqlgen's
// websocket transport takes) a websocketSlot in their context.
func withWebsocketSlot(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), websocketSlotKey{}, &websocketSlot{})))
	})
}

// encodingConnFrom returns the connection ctx's operation runs on, or nil
// when it does not run on a websocket accepted by encodingWebsocket.
func encodingConnFrom(ctx context.Context) *encodingConn {
	s, _ := ctx.Value(websocketSlotKey{}).(*websocketSlot)
	if s == nil {
		return nil
	}
	return s.conn
}

// encodingWebsocket wraps a websocket implementation so that its
// connections write pre-encoded shared results in place of stand-ins. It is
// safe for concurrent use if inner is.
type encodingWebsocket struct {
	inner   transport.WebsocketImplementation
	buffers sync.Pool // *[]byte for assembling messages, shared by all connections
}

var _ transport.WebsocketImplementation = (*encodingWebsocket)(nil)

// maxPooledMessage is the largest message buffer kept for reuse.
const maxPooledMessage = 64 << 10

// Accept accepts the connection with the wrapped implementation and puts it
// in the request's websocketSlot, if it has one.
func (e *encodingWebsocket) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := e.inner.Accept(w, r, opts)
	if err != nil {
		return nil, err
	}
	ec := &encodingConn{WebsocketConn: c, buffers: &e.buffers}
	ec.text, _ = c.(textWriter)
	if s, _ := r.Context().Value(websocketSlotKey{}).(*websocketSlot); s != nil {
		// gqlgen starts the connection's operations, on goroutines of
		// their own, only after Accept returns.
		s.conn = ec
	}
	return ec, nil
}

// textWriter is implemented by websocket connections that can send a
// message encoded beforehand (gorillaws). WriteText(p) must send what
// WriteJSON(v) sends when p is json.Marshal(v).
type textWriter interface {
	WriteText(p []byte) error
}

// encodingConn is a websocket connection that substitutes stand-ins and
// writes shared results directly (see above). Its WriteJSON and writeShared
// are serialised with each other (gqlgen serialises its own writes, but
// writeShared runs outside its lock); other methods are safe for concurrent
// use as far as the wrapped connection's are.
type encodingConn struct {
	transport.WebsocketConn
	text    textWriter // the wrapped connection, if it is one; else nil
	buffers *sync.Pool

	writeMu sync.Mutex // serialises writes to the wrapped connection

	mu       sync.Mutex
	tokens   uint64     // last token handed out
	inFlight []*standIn // left with an encoding, not written yet: rarely more than one
}

var (
	_ transport.WebsocketReadLimiter   = (*encodingConn)(nil)
	_ transport.WebsocketReadDeadliner = (*encodingConn)(nil)
)

// standIn identifies one subscription's stand-ins and keeps what the
// connection learns from them. The subscription holds it; the connection
// only while one of its stand-ins is in flight, so it needs no clean-up.
type standIn struct {
	token   uint64
	pending []byte // the encoding the stand-in in flight stands for; under encodingConn.mu
	tmpl    atomic.Pointer[template]
}

// template is how the messages of one subscription look, learnt from the
// message gqlgen wrote for its first stand-in. It is immutable.
type template struct {
	// The message's JSON encoding before and after its payload, when the
	// wrapped connection is a textWriter and the encoding could be split;
	// else nil, and msg is a copy of the message struct, payload the index
	// of its Payload field.
	prefix, suffix []byte
	msg            reflect.Value
	payload        int
}

// payloadSlot stands for the payload while a template's encoding is split.
var payloadSlot = []byte(`"jobqueue:payload-slot"`)

func newTemplate(msg reflect.Value, payload int, split bool) *template {
	t := &template{msg: reflect.New(msg.Type()).Elem(), payload: payload}
	t.msg.Set(msg)
	if !split {
		return t
	}
	b, err := json.Marshal(t.with(payloadSlot))
	if err != nil || bytes.Count(b, payloadSlot) != 1 {
		return t // e.g. an id that contains the slot's text: no shortcut
	}
	i := bytes.Index(b, payloadSlot)
	return &template{prefix: b[:i], suffix: b[i+len(payloadSlot):]}
}

// with returns a pointer to a copy of the message with payload as Payload.
// Only for a template without prefix.
func (t *template) with(payload []byte) any {
	cp := reflect.New(t.msg.Type())
	cp.Elem().Set(t.msg)
	cp.Elem().Field(t.payload).SetBytes(payload)
	return cp.Interface()
}

// newStandIn returns the stand-ins of a new subscription.
func (c *encodingConn) newStandIn() *standIn {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens++
	return &standIn{token: c.tokens}
}

// leave returns a stand-in of s that, when gqlgen writes it to c, is
// replaced by encoded, a complete payload (an encoded graphql.Response).
// gqlgen must write it before leave is called again for s.
func (c *encodingConn) leave(s *standIn, encoded []byte) *graphql.Response {
	c.mu.Lock()
	if s.pending == nil {
		c.inFlight = append(c.inFlight, s)
	}
	s.pending = encoded
	c.mu.Unlock()
	data := make([]byte, 0, len(standInMarker)+22)
	data = append(data, '"')
	data = append(data, standInMarker...)
	data = strconv.AppendUint(data, s.token, 10)
	data = append(data, '"')
	return &graphql.Response{Data: data}
}

// take returns the stand-in whose encoded response is payload, if it is one
// in flight, with the encoding left for it.
func (c *encodingConn) take(payload []byte) (*standIn, []byte) {
	rest, ok := bytes.CutPrefix(payload, standInPrefix)
	if !ok {
		return nil, nil
	}
	digits, ok := bytes.CutSuffix(rest, []byte(`"}`))
	if !ok {
		return nil, nil
	}
	token, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.inFlight {
		if s.token == token {
			c.inFlight = slices.Delete(c.inFlight, i, i+1)
			encoded := s.pending
			s.pending = nil
			return s, encoded
		}
	}
	return nil, nil
}

// writeShared writes the message gqlgen wrote for s's first stand-in, with
// encoded as its payload. It reports false, writing nothing, when gqlgen has
// not written one yet; otherwise it returns the write's error.
func (c *encodingConn) writeShared(s *standIn, encoded []byte) (bool, error) {
	t := s.tmpl.Load()
	if t == nil {
		return false, nil
	}
	if t.prefix == nil {
		v := t.with(encoded)
		c.writeMu.Lock()
		defer c.writeMu.Unlock()
		return true, c.WebsocketConn.WriteJSON(v)
	}
	buf, _ := c.buffers.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	b := append((*buf)[:0], t.prefix...)
	b = append(b, encoded...)
	b = append(b, t.suffix...)
	c.writeMu.Lock()
	err := c.text.WriteText(b)
	c.writeMu.Unlock()
	if cap(b) <= maxPooledMessage {
		*buf = b[:0]
		c.buffers.Put(buf)
	}
	return true, err
}

// rawMessageType is the type of the Payload field of gqlgen's messages.
var rawMessageType = reflect.TypeFor[json.RawMessage]()

// WriteJSON writes v with the wrapped connection. v is one of gqlgen's
// protocol messages (a pointer to a struct with a json.RawMessage Payload);
// when its payload is a stand-in in flight, a copy carrying the encoding
// left for it is written instead, and the stand-in learns the message's
// template.
func (c *encodingConn) WriteJSON(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().Kind() == reflect.Struct {
		msg := rv.Elem()
		if f, ok := msg.Type().FieldByName("Payload"); ok && f.Type == rawMessageType && len(f.Index) == 1 {
			if s, encoded := c.take(msg.Field(f.Index[0]).Bytes()); s != nil {
				// Copies: the message is gqlgen's.
				cp := reflect.New(msg.Type())
				cp.Elem().Set(msg)
				cp.Elem().Field(f.Index[0]).SetBytes(encoded)
				v = cp.Interface()
				if s.tmpl.Load() == nil {
					s.tmpl.Store(newTemplate(msg, f.Index[0], c.text != nil))
				}
			}
		}
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.WebsocketConn.WriteJSON(v)
}

// SetReadLimit forwards to the wrapped connection, if it can limit reads.
func (c *encodingConn) SetReadLimit(limit int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(limit)
	}
}

// SetReadDeadline forwards to the wrapped connection, or fails if it cannot
// set read deadlines.
func (c *encodingConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return errors.New("graph: the websocket implementation cannot set read deadlines")
}
