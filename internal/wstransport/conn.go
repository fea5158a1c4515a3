package wstransport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
)

// Close codes of graphql-transport-ws, used for both protocols.
const (
	CloseBadRequest         = 4400
	CloseUnauthorized       = 4401
	CloseForbidden          = 4403
	CloseInitTimeout        = 4408
	CloseSubscriberExists   = 4409
	CloseTooManyInitRequest = 4429
)

// conn is one websocket connection. Its reading goroutine (wait, then
// serve, then wait again: see reader.go) owns the fields marked "reader";
// everything under mu is shared with the writer goroutine, the keep-alive
// timer and the sources' callbacks.
type conn struct {
	t      *Transport
	sock   net.Conn // the hijacked connection
	exec   graphql.GraphExecutor
	legacy bool // graphql-ws (subscriptions-transport-ws)

	ctx context.Context // the connection's: the upgrade request's values

	// reader
	first    [1]byte // read by wait
	initSeen bool
	acked    bool
	opCtx    context.Context // from Options.InitFunc

	mu       sync.Mutex
	out      *[]byte       // frames not yet written; nil when empty
	inFlight int           // bytes of the socket write under way
	room     chan struct{} // closed when the connection has room again (hasRoomLocked); nil while nobody waits
	writing  bool          // the writer goroutine runs
	starts   []*operation  // operations for the writer to start, in order; at most maxWaiting
	ready    []*operation  // subscriptions with something for the writer
	ops      []*operation  // running, in no order; a slice, as connections hold few

	subs       int  // subscriptions among ops
	closeSent  bool // a close frame is queued: nothing may follow it
	closing    bool // closeWith was called: operations ended; the writer closes the socket once the queue is written
	sockClosed bool
	failed     error // first socket write error
	pingTimer  *time.Timer
	expiry     *time.Timer // closes the connection when its credential expires (WithExpiry)
	pongDue    time.Time   // read deadline set by keep-alive; zero until the first ping
}

// websocketHeader is what operations on a websocket see as their request
// headers (graphql.OperationContext.Headers): only that the request is an
// upgrade (IsUpgradeHeader). The handshake's own headers would be held for
// the connection's whole life; graphql-ws clients put what HTTP headers
// carry (credentials) in the connection_init payload, which InitFunc sees.
// Never modified.
var websocketHeader = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}

// hijacker is the http.ResponseWriter given to gorilla's Upgrade: its
// Hijack creates the connection, whose sockConn gorilla then writes the 101
// response to.
type hijacker struct {
	http.ResponseWriter
	t   *Transport
	c   *conn
	brw *bufio.ReadWriter
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	sock, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("wstransport: hijack: %w", err)
	}
	c := &conn{t: h.t, sock: sock}
	if !h.t.track(c) {
		_ = sock.Close()
		return nil, nil, errors.New("wstransport: shutting down")
	}
	h.c, h.brw = c, brw
	return sockConn{Conn: sock, c: c}, brw, nil
}

func (h *hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// releaseBuffers shrinks, in place, the bufio.Reader and Writer Hijack
// returned (net/http's 4 KiB each per connection): the transport reads the
// socket itself, gorilla checked this reader holds no client data, and
// formatted the 101 response into the writer's buffer, already queued.
// Should anything still use them, the reader reports EOF and the writer
// discards.
func (h *hijacker) releaseBuffers() {
	if h.brw == nil {
		return
	}
	*h.brw.Reader = *bufio.NewReaderSize(eofReader{}, 16)
	*h.brw.Writer = *bufio.NewWriterSize(io.Discard, 1)
	h.brw = nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// sockConn is the net.Conn gorilla sees during the handshake: its write
// (the 101 response) joins the connection's queue, in front of the
// transport's own frames. Write deadlines belong to the writer goroutine,
// so they are ignored here.
type sockConn struct {
	net.Conn
	c *conn
}

func (s sockConn) Write(p []byte) (int, error) {
	if !s.c.queueRaw(p) {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (s sockConn) SetWriteDeadline(time.Time) error { return nil }
func (s sockConn) SetDeadline(t time.Time) error    { return s.Conn.SetReadDeadline(t) }

// abandon releases a connection whose upgrade failed after the hijack.
func (c *conn) abandon() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.closeSocket()
	c.t.untrack(c)
	c.t.goDone()
}

// start runs the connection on its reading goroutine; Do returns after it.
// Of gorilla's connection only the negotiated subprotocol is kept.
func (c *conn) start(ws *websocket.Conn, r *http.Request, exec graphql.GraphExecutor) {
	c.exec = exec
	c.legacy = ws.Subprotocol() != protocolTransport
	// The request's context ends when Do returns; its values stay. It is
	// not cancelled when the connection closes either: each operation's
	// own context is, which spares every connection the bookkeeping of a
	// cancellable parent with children.
	c.ctx = context.WithoutCancel(r.Context())
	c.opCtx = c.ctx
	if d := c.t.opts.InitTimeout; d > 0 {
		_ = c.sock.SetReadDeadline(time.Now().Add(d))
	}
	go c.wait()
}

// inMessage is a client message of either protocol.
type inMessage struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// readFailed ends the connection after a failed read.
func (c *conn) readFailed(err error) {
	var ne net.Error
	switch {
	case !c.acked && c.t.opts.InitTimeout > 0 && errors.As(err, &ne) && ne.Timeout():
		c.closeWith(CloseInitTimeout, "Connection initialisation timeout")
	default:
		// The peer left, keep-alive expired, or the socket is gone:
		// nothing more to say.
		c.closeWith(0, "")
	}
}

// handle acts on one client message; false ends the reader.
func (c *conn) handle(m *inMessage) bool {
	switch {
	case m.Type == "connection_init":
		return c.init(m.Payload)
	case m.Type == "ping" && !c.legacy:
		payload := m.Payload
		if len(payload) > maxPongPayload {
			payload = nil
		}
		c.queueMessage("", "pong", payload)
		return true
	case m.Type == "pong" && !c.legacy:
		return true
	case m.Type == "connection_terminate" && c.legacy:
		c.closeWith(websocket.CloseNormalClosure, "terminated")
		return false
	case m.Type == "subscribe" && !c.legacy, m.Type == "start" && c.legacy:
		if !c.acked {
			c.closeWith(CloseUnauthorized, "Unauthorized")
			return false
		}
		if m.ID == "" {
			c.closeWith(CloseBadRequest, "Invalid message received: a subscribe message needs an id")
			return false
		}
		if c.has(m.ID) {
			c.closeWith(CloseSubscriberExists, "Subscriber for "+m.ID+" already exists")
			return false
		}
		c.queueStart(m.ID, m.Payload)
		return true
	case m.Type == "complete" && !c.legacy, m.Type == "stop" && c.legacy:
		c.stopOperation(m.ID)
		return true
	}
	if c.legacy {
		c.queueConnectionError("unexpected message " + m.Type)
	}
	c.closeWith(CloseBadRequest, "Invalid message received: unexpected type "+truncate(m.Type, 40))
	return false
}

// init handles connection_init.
func (c *conn) init(payload json.RawMessage) bool {
	if c.initSeen {
		c.closeWith(CloseTooManyInitRequest, "Too many initialisation requests")
		return false
	}
	c.initSeen = true
	var p map[string]any
	if len(payload) > 0 {
		if err := json.Unmarshal(payload, &p); err != nil {
			c.closeWith(CloseBadRequest, "Invalid message received: connection_init payload is not an object")
			return false
		}
	}
	if f := c.t.opts.InitFunc; f != nil {
		ctx, err := f(c.ctx, p)
		if err != nil {
			if c.legacy {
				c.queueConnectionError(err.Error())
			}
			c.closeWith(CloseForbidden, "Forbidden")
			return false
		}
		if ctx != nil {
			c.opCtx = ctx
			if at, ok := ctx.Value(expiryKey{}).(time.Time); ok && !at.IsZero() {
				c.expireAt(at)
			}
		}
	}
	c.acked = true
	_ = c.sock.SetReadDeadline(time.Time{})
	c.queueMessage("", "connection_ack", nil)
	if c.legacy {
		c.queueMessage("", "ka", nil)
	}
	c.startKeepAlive()
	return true
}

// queueConnectionError queues a legacy connection_error message.
func (c *conn) queueConnectionError(msg string) {
	b, _ := json.Marshal(map[string]string{"message": msg})
	c.queueMessage("", "connection_error", b)
}

// closeWith queues a close frame with code and reason after the frames
// already queued (none if code is 0, or a close frame went out already),
// ends every operation, and has the writer close the socket once the queue
// is written. Later frames are dropped. Safe to call more than once, from
// any goroutine.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if code != 0 && !c.sockClosed {
		c.appendLocked(func(b []byte) []byte {
			return appendFrame(b, websocket.CloseMessage, websocket.FormatCloseMessage(code, truncate(reason, maxCloseReason)))
		})
	}
	c.closeSent = true
	c.closing = true
	c.signalRoomLocked()
	ops := c.endAllLocked()
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.kickLocked()
	c.mu.Unlock()
	for _, op := range ops {
		op.stop()
	}
}

// expireAt closes the connection with 4403 at t, when the credential it
// was accepted with expires (legacy clients get a connection_error
// first).
func (c *conn) expireAt(t time.Time) {
	expire := func() {
		if c.legacy {
			c.queueConnectionError("the credential expired")
		}
		c.closeWith(CloseForbidden, "Forbidden: the credential expired")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		c.expiry = time.AfterFunc(time.Until(t), expire)
	}
}

type expiryKey struct{}

// WithExpiry returns a copy of ctx for Options.InitFunc to return when the
// connection's credential expires at t: the connection then closes with
// 4403 Forbidden at t, as if connection_init had been refused then. A zero
// t means the credential does not expire (and undoes an earlier
// WithExpiry).
func WithExpiry(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, expiryKey{}, t)
}

// closeSocket closes the socket once.
func (c *conn) closeSocket() {
	c.mu.Lock()
	done := c.sockClosed
	c.sockClosed = true
	c.mu.Unlock()
	if !done {
		_ = c.sock.Close()
	}
}

// maxCloseReason is the longest close reason a close frame carries: control
// frames hold 125 bytes, two of them the code.
const maxCloseReason = 123

// truncate shortens s to at most n bytes without splitting a UTF-8
// sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// startKeepAlive arms the keep-alive timer: a timer, not a goroutine.
func (c *conn) startKeepAlive() {
	d := c.t.opts.KeepAlive
	if d <= 0 {
		return
	}
	c.mu.Lock()
	if !c.closing {
		c.pingTimer = time.AfterFunc(d, c.keepAlive)
	}
	c.mu.Unlock()
}

// keepAlive runs on the timer: it sends a ping (and a legacy "ka"), arms
// the read deadline at the first one (pongs move it), and re-arms itself.
func (c *conn) keepAlive() {
	d := c.t.opts.KeepAlive
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	if c.pongDue.IsZero() {
		c.pongDue = time.Now().Add(2 * d)
		_ = c.sock.SetReadDeadline(c.pongDue)
	}
	c.appendLocked(func(b []byte) []byte { return appendFrame(b, websocket.PingMessage, nil) })
	if c.legacy {
		c.appendLocked(func(b []byte) []byte { return appendMessage(b, "", "ka", nil) })
	}
	c.kickLocked()
	c.pingTimer.Reset(d)
}

// pong moves the keep-alive read deadline; it runs on the reader.
func (c *conn) pong() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		c.pongDue = time.Now().Add(2 * c.t.opts.KeepAlive)
		_ = c.sock.SetReadDeadline(c.pongDue)
	}
}
