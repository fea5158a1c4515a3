// Package gorillaws plugs github.com/gorilla/websocket into gqlgen's websocket
// transport.
//
// gqlgen v0.17.92 and later default to github.com/coder/websocket. This
// package provides a transport.WebsocketImplementation backed by gorilla
// instead:
//
//	srv.AddTransport(transport.Websocket{
//		Implementation: gorillaws.New(gorillaws.Options{}),
//		// ...
//	})
//
// Behaviour mirrors gqlgen's CoderWebsocketImplementation where the two
// libraries allow it: the GraphQL subprotocols gqlgen offers are negotiated in
// gqlgen's preference order, a normal close by the peer is reported as
// transport.ErrWebsocketClosed, and the read limit and read deadline hooks are
// supported. In addition every socket write the adapter performs carries a
// write deadline, so a client that stops reading cannot pin a server
// goroutine.
//
// Cost per message and per connection is kept low: WriteJSON encodes gqlgen's
// message structs without re-validating their already-encoded payloads (see
// encode.go), and WriteText sends messages encoded beforehand (package graph
// writes subscription results encoded once for all subscribers that way);
// frames are handed to a per-connection buffer that a short-lived goroutine
// writes to the socket, so bursts leave in few write(2) calls (see
// flushConn); and Options.PingInterval keeps connections alive with websocket
// pings from a timer instead of a goroutine per connection.
package gorillaws

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// Defaults applied by New to zero (or negative) Options fields.
const (
	// DefaultWriteTimeout is the write deadline used when Options.WriteTimeout
	// is zero.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultReadBufferSize is the per-connection read buffer size used when
	// Options.ReadBufferSize is zero. It is deliberately small because every
	// open connection holds its read buffer for its whole lifetime, while
	// GraphQL clients send little (a larger message is read in several
	// pieces); it still holds any control frame whole (gorilla's minimum
	// is 125 bytes).
	DefaultReadBufferSize = 512
	// DefaultWriteBufferSize is the size of the pooled write buffers used when
	// Options.WriteBufferSize is zero.
	DefaultWriteBufferSize = 4096
)

// maxCloseReasonBytes is the longest close reason that fits in a close frame:
// control frame payloads are limited to 125 bytes, two of which hold the code.
const maxCloseReasonBytes = 123

// Options configures an Implementation. The zero value is valid: zero (or
// negative) fields get the documented defaults.
type Options struct {
	// WriteTimeout bounds every write to a connection's socket. Frames (data
	// messages, close frames, pings and pong replies) are buffered and
	// written by a flusher goroutine that sets a deadline of
	// now+WriteTimeout before each socket write; one write usually carries
	// several frames. When a deadline expires the connection is closed and
	// the timeout error is returned by the next WriteJSON or WriteClose; the
	// connection is unusable for further writes. WriteJSON waits for buffer
	// room (when a connection already has 256 KiB queued) at most about
	// this long too, and Close waits at most this long for queued frames to
	// leave. Default DefaultWriteTimeout (10s).
	WriteTimeout time.Duration

	// ReadBufferSize is gorilla's Upgrader.ReadBufferSize: the size of the
	// buffer every connection holds for reading. It does not limit message
	// size (see transport.Websocket.PayloadReadLimit for that). Default
	// DefaultReadBufferSize (512), which keeps idle connections small.
	ReadBufferSize int

	// WriteBufferSize is gorilla's Upgrader.WriteBufferSize. Write buffers are
	// taken from a pool shared by all connections of one Implementation only
	// for the duration of a write, so idle connections hold none. Default
	// DefaultWriteBufferSize (4096).
	WriteBufferSize int

	// CheckOrigin decides whether a handshake request's Origin is allowed.
	// It may be called concurrently from many requests.
	//
	// nil means ACCEPT ANY ORIGIN. This is intentional: the API is public and
	// is used by browser applications served from other origins. Note that
	// this differs from both gorilla's and coder/websocket's default (same
	// origin only). Accepting any origin is only safe while the websocket
	// endpoint does not authenticate with ambient browser credentials such as
	// cookies; if it ever does, set CheckOrigin to guard against cross-site
	// websocket hijacking.
	CheckOrigin func(r *http.Request) bool

	// EnableCompression negotiates permessage-deflate (RFC 7692) with clients
	// that offer it. Default false.
	EnableCompression bool

	// PingInterval, when positive, makes every connection send a websocket
	// ping control frame each PingInterval and drop peers that stop
	// answering with pongs. Browsers and most websocket libraries (Node's ws,
	// gorilla while reading) answer pings automatically; unlike gqlgen's
	// PingPongInterval this needs no GraphQL-level ping/pong and no goroutine
	// per connection (a self-re-arming time.AfterFunc timer sends the pings).
	//
	// Liveness is enforced with the read deadline: the first ping arms it at
	// now+2*PingInterval, each pong received moves it to now+2*PingInterval,
	// and pings never move an armed deadline, so a peer is cut off at most
	// 2*PingInterval after its last pong (or after the first ping if it
	// never answers). NextReader then fails with a timeout error and gqlgen
	// closes the connection. Data messages from the peer do not count as
	// pongs. A deadline set through SetReadDeadline (gqlgen's own
	// PingPongInterval) is kept alongside: the earlier of the two applies.
	//
	// 0 (the default) disables pings; the adapter then never sets a read
	// deadline by itself.
	PingInterval time.Duration
}

// Implementation accepts HTTP requests as gorilla websocket connections for
// gqlgen's websocket transport. It satisfies transport.WebsocketImplementation.
//
// Create it with New. It is immutable after creation and safe for concurrent
// use: Accept may be called from any number of goroutines. A zero
// Implementation behaves like New(Options{}).
type Implementation struct {
	upgrader      websocket.Upgrader // never mutated after New; copied per Accept
	writeTimeout  time.Duration
	pingInterval  time.Duration
	coalesceLimit int         // flushConn.limit
	hooks         *flushHooks // tests only
	configured    bool        // false for a zero Implementation
}

var _ transport.WebsocketImplementation = (*Implementation)(nil)

// defaultImplementation backs a zero Implementation so it shares one buffer
// pool and never mutates the caller's value.
var defaultImplementation = sync.OnceValue(func() *Implementation {
	return New(Options{})
})

// New returns an Implementation configured by opts (see Options for the
// defaults). All connections accepted by the returned Implementation share one
// write buffer pool (gorilla's Upgrader.WriteBufferPool), so a connection holds
// a write buffer only while it is writing.
func New(opts Options) *Implementation {
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = DefaultReadBufferSize
	}
	if opts.WriteBufferSize <= 0 {
		opts.WriteBufferSize = DefaultWriteBufferSize
	}
	checkOrigin := opts.CheckOrigin
	if checkOrigin == nil {
		checkOrigin = acceptAnyOrigin
	}

	return &Implementation{
		upgrader: websocket.Upgrader{
			// Gorilla sets it as the write deadline of the 101 response; that
			// write goes through flushConn, whose socket writes are bounded
			// by the write timeout anyway.
			HandshakeTimeout:  opts.WriteTimeout,
			ReadBufferSize:    opts.ReadBufferSize,
			WriteBufferSize:   opts.WriteBufferSize,
			WriteBufferPool:   &sync.Pool{},
			CheckOrigin:       checkOrigin,
			EnableCompression: opts.EnableCompression,
		},
		writeTimeout:  opts.WriteTimeout,
		pingInterval:  max(opts.PingInterval, 0),
		coalesceLimit: defaultCoalesceLimit,
		configured:    true,
	}
}

func acceptAnyOrigin(*http.Request) bool { return true }

// Accept upgrades the request to a websocket connection.
//
// The subprotocols in options.Subprotocols (gqlgen passes graphql-ws and
// graphql-transport-ws) are offered in that order of preference: the first one
// the client also offers is selected; if the client offers none of them the
// connection is accepted with no subprotocol (gqlgen then speaks graphql-ws).
// options.ResponseHeader is sent with the 101 response.
//
// The network connection gorilla writes to is a flushConn (obtained by
// wrapping w's Hijack), which coalesces frames into few socket writes. After
// a successful upgrade Accept shrinks the buffers net/http hands over with
// the hijacked connection (see hijackWriter.releaseBuffers).
//
// On failure the HTTP error response has already been written by gorilla (as
// coder/websocket does too) and the returned error wraps gorilla's error.
// Accept is safe for concurrent use.
func (i *Implementation) Accept(
	w http.ResponseWriter,
	r *http.Request,
	options transport.WebsocketAcceptOptions,
) (transport.WebsocketConn, error) {
	if i == nil || !i.configured {
		i = defaultImplementation()
	}

	upgrader := i.upgrader // copy: Accept must not mutate shared state
	upgrader.Subprotocols = mergeSubprotocols(i.upgrader.Subprotocols, options.Subprotocols)

	hw := &hijackWriter{ResponseWriter: w, timeout: i.writeTimeout, limit: i.coalesceLimit, hooks: i.hooks}
	ws, err := upgrader.Upgrade(hw, r, options.ResponseHeader)
	if err != nil {
		return nil, fmt.Errorf("gorillaws: upgrade: %w", err)
	}
	hw.releaseBuffers()

	c := &conn{ws: ws, writeTimeout: i.writeTimeout}
	c.fc, _ = ws.NetConn().(*flushConn)
	ws.SetPingHandler(c.handlePing)
	ws.SetCloseHandler(c.handleClose)
	if i.pingInterval > 0 {
		c.pingInterval = i.pingInterval
		ws.SetPongHandler(c.handlePong)
		c.rdMu.Lock()
		c.pingTimer = time.AfterFunc(c.pingInterval, c.sendPing)
		c.rdMu.Unlock()
	}
	return c, nil
}

// mergeSubprotocols returns base followed by the entries of extra not already
// present, in a new slice.
func mergeSubprotocols(base, extra []string) []string {
	merged := slices.Clone(base)
	for _, p := range extra {
		if !slices.Contains(merged, p) {
			merged = append(merged, p)
		}
	}
	return merged
}

// conn adapts *websocket.Conn to transport.WebsocketConn.
//
// Concurrency: gorilla allows one concurrent reader and one concurrent writer;
// WriteControl and Close may be called concurrently with anything. gqlgen's
// transport reads from one goroutine and already serialises WriteJSON and
// WriteClose under its own mutex, but conn does not rely on that: WriteJSON
// takes writeMu so that concurrent WriteJSON calls are safe. WriteClose, the
// automatic pong/close replies and keep-alive pings use WriteControl, which
// gorilla serialises with data writes internally (waiting at most until the
// control frame's deadline). All of them only hand bytes to the flushConn.
type conn struct {
	ws           *websocket.Conn
	fc           *flushConn // ws's network connection
	writeTimeout time.Duration

	writeMu sync.Mutex // gorilla allows one WriteMessage at a time

	// Read deadlines and keep-alive pings (Options.PingInterval), under rdMu.
	rdMu         sync.Mutex
	userDeadline time.Time // from SetReadDeadline; zero: none
	pingDeadline time.Time // armed by the first ping, moved by pongs; zero: none
	pingInterval time.Duration
	pingTimer    *time.Timer // nil when pings are off
	pingStopped  bool        // Close was called
	pingsActive  sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var (
	_ transport.WebsocketConn          = (*conn)(nil)
	_ transport.WebsocketReadLimiter   = (*conn)(nil)
	_ transport.WebsocketReadDeadliner = (*conn)(nil)
)

// Close closes the underlying network connection without sending a close
// frame (gqlgen calls WriteClose first). Frames already written, including a
// close frame, are sent first, waiting at most the write timeout. It stops
// keep-alive pings and returns only once no goroutine of the connection is
// left. It unblocks a pending NextReader, which then returns an error
// satisfying errors.Is(err, net.ErrClosed). It is safe to call more than once
// and concurrently with any other method; later calls return the first
// call's result.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		c.rdMu.Lock()
		c.pingStopped = true
		if c.pingTimer != nil {
			c.pingTimer.Stop()
		}
		c.rdMu.Unlock()
		if err := c.ws.Close(); err != nil {
			c.closeErr = fmt.Errorf("gorillaws: close: %w", err)
		}
		c.pingsActive.Wait() // a ping being sent now fails fast: the connection is closed
	})
	return c.closeErr
}

// NextReader returns the next data message. The reader is only valid until
// the next call to NextReader.
//
// A close frame from the peer with code 1000 (normal closure), 1001 (going
// away) or 1005 (no status) is reported as exactly transport.ErrWebsocketClosed.
// Every other error is returned unchanged (in particular *websocket.CloseError
// values, so websocket.IsCloseError keeps working in a transport ErrorFunc).
// Errors are permanent. Not safe for concurrent use with itself or with
// SetReadLimit: there must be a single reader.
func (c *conn) NextReader() (int, io.Reader, error) {
	messageType, r, err := c.ws.NextReader()
	if err != nil {
		if isNormalClose(err) {
			return messageType, nil, transport.ErrWebsocketClosed
		}
		return messageType, nil, err
	}
	return messageType, r, nil
}

// isNormalClose reports whether err is a close frame from the peer that ends
// the connection without indicating a failure. gqlgen's coder adapter maps
// 1000 and 1005; 1001 (going away — what browsers send when a page is
// closed or navigated away from) is added because it is equally not an error.
func isNormalClose(err error) bool {
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code {
	case websocket.CloseNormalClosure,
		websocket.CloseGoingAway,
		websocket.CloseNoStatusReceived:
		return true
	default:
		return false
	}
}

// encodeBuffers holds WriteJSON's encoding buffers (*[]byte).
var encodeBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

// WriteJSON encodes v as JSON and sends it as one text message. gqlgen's
// message structs are encoded by a cached per-type plan that writes their
// json.RawMessage payload as is (see appendJSON); other values use
// json.Marshal.
//
// The frame is handed to the connection's flusher (see flushConn), so
// WriteJSON usually returns before the bytes are on the wire. A socket write
// that does not complete within the write timeout closes the connection, and
// that error is returned by the next WriteJSON or WriteClose; after it the
// connection cannot be written to again. WriteJSON blocks only while the
// connection already buffers too much (see defaultCoalesceLimit). Safe for
// concurrent use.
func (c *conn) WriteJSON(v any) error {
	// Encode before writing (and outside the lock) so an encoding error
	// never leaves a partial or empty frame on the wire.
	buf := encodeBuffers.Get().(*[]byte)
	data, err := appendJSON((*buf)[:0], v)
	defer func() {
		if cap(data) <= maxPooledBuffer {
			*buf = data[:0]
			encodeBuffers.Put(buf)
		}
	}()
	if err != nil {
		return fmt.Errorf("gorillaws: encode message: %w", err)
	}

	// No per-message deadline: flushConn sets one for every socket write.
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("gorillaws: write: %w", err)
	}
	return nil
}

// WriteText sends p as one text message, as is: the caller vouches that it
// is what it means to send (for gqlgen, a protocol message encoded as JSON;
// graph writes pre-encoded subscription results this way). Delivery and
// errors are as for WriteJSON; p is copied before WriteText returns. Safe for
// concurrent use.
func (c *conn) WriteText(p []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.WriteMessage(websocket.TextMessage, p); err != nil {
		return fmt.Errorf("gorillaws: write: %w", err)
	}
	return nil
}

// WriteClose queues a close frame with closeCode and message after the frames
// already written. It leaves as promptly as a data message, and Close waits
// for it (within the write timeout) before closing the socket. A message longer
// than the 123 bytes a close frame can carry is truncated at a UTF-8
// boundary. It does not close the network connection; call Close for that. If
// a close frame was already sent (including the automatic reply to the peer's
// close frame) it returns nil without sending another. It fails if an earlier
// socket write failed. Safe for concurrent use.
func (c *conn) WriteClose(closeCode int, message string) error {
	payload := websocket.FormatCloseMessage(closeCode, truncateCloseReason(message))
	err := c.ws.WriteControl(websocket.CloseMessage, payload, time.Now().Add(c.writeTimeout))
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		return fmt.Errorf("gorillaws: write close frame: %w", err)
	}
	return nil
}

// truncateCloseReason shortens s to at most maxCloseReasonBytes without
// splitting a UTF-8 sequence; gorilla rejects oversized control frames.
func truncateCloseReason(s string) string {
	if len(s) <= maxCloseReasonBytes {
		return s
	}
	n := maxCloseReasonBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Subprotocol returns the negotiated subprotocol, or "" if none was
// negotiated. Safe for concurrent use.
func (c *conn) Subprotocol() string {
	return c.ws.Subprotocol()
}

// SetReadLimit sets the maximum size in bytes of a message read from the peer.
// A larger message makes NextReader fail with websocket.ErrReadLimit, and
// gorilla sends the peer a 1009 (message too big) close frame. Not safe for
// concurrent use with NextReader: call it before reading starts, as gqlgen
// does.
func (c *conn) SetReadLimit(limit int64) {
	c.ws.SetReadLimit(limit)
}

// SetReadDeadline sets the deadline for reads; a zero t means no deadline.
// When it passes, a pending or future NextReader fails with a timeout error
// and the connection can no longer be read. With Options.PingInterval the
// keep-alive deadline applies too: the earlier of the two wins. Safe to call
// concurrently with NextReader (gqlgen's ping loop does so).
func (c *conn) SetReadDeadline(t time.Time) error {
	c.rdMu.Lock()
	defer c.rdMu.Unlock()
	c.userDeadline = t
	if err := c.applyReadDeadlineLocked(); err != nil {
		return fmt.Errorf("gorillaws: set read deadline: %w", err)
	}
	return nil
}

// applyReadDeadlineLocked sets the socket's read deadline to the earlier of
// userDeadline and pingDeadline (zero meaning none). c.rdMu must be held.
func (c *conn) applyReadDeadlineLocked() error {
	d := c.userDeadline
	if !c.pingDeadline.IsZero() && (d.IsZero() || c.pingDeadline.Before(d)) {
		d = c.pingDeadline
	}
	return c.ws.SetReadDeadline(d)
}

// sendPing runs from c.pingTimer every pingInterval: it arms the keep-alive
// read deadline if it is not armed yet, sends a ping control frame and
// re-arms the timer. It stops for good once Close was called, a close frame
// was sent or the connection failed; a ping that merely timed out waiting
// behind a blocked data write is retried at the next interval.
func (c *conn) sendPing() {
	c.rdMu.Lock()
	if c.pingStopped {
		c.rdMu.Unlock()
		return
	}
	c.pingsActive.Add(1) // before Close's Wait: Close sets pingStopped under rdMu first
	defer c.pingsActive.Done()
	now := time.Now()
	if c.pingDeadline.IsZero() {
		c.pingDeadline = now.Add(2 * c.pingInterval)
		_ = c.applyReadDeadlineLocked()
	}
	c.rdMu.Unlock()

	if err := c.ws.WriteControl(websocket.PingMessage, nil, now.Add(c.writeTimeout)); err != nil {
		if errors.Is(err, websocket.ErrCloseSent) || errors.Is(err, net.ErrClosed) ||
			(c.fc != nil && c.fc.writeFailure() != nil) {
			return
		}
	}

	c.rdMu.Lock()
	if !c.pingStopped {
		c.pingTimer.Reset(c.pingInterval)
	}
	c.rdMu.Unlock()
}

// handlePong extends the keep-alive read deadline. It runs on the reading
// goroutine (inside NextReader), only when Options.PingInterval is set.
func (c *conn) handlePong(string) error {
	c.rdMu.Lock()
	defer c.rdMu.Unlock()
	if c.pingStopped {
		return nil
	}
	c.pingDeadline = time.Now().Add(2 * c.pingInterval)
	_ = c.applyReadDeadlineLocked() // fails only once closed; the read fails then anyway
	return nil
}

// handlePing replaces gorilla's default ping handler only to use the
// configured write timeout instead of gorilla's fixed one second. It runs on
// the reading goroutine.
func (c *conn) handlePing(appData string) error {
	err := c.ws.WriteControl(websocket.PongMessage, []byte(appData), time.Now().Add(c.writeTimeout))
	if err == nil || errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	// Like gorilla's default: a pong that times out must not fail the read;
	// a broken writer surfaces on the next write instead.
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// handleClose replaces gorilla's default close handler only to use the
// configured write timeout: it echoes the peer's close code, completing the
// close handshake. NextReader then returns the *websocket.CloseError.
func (c *conn) handleClose(code int, _ string) error {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(c.writeTimeout))
	return nil
}
