// Package wstransport is the GraphQL websocket transport: it implements
// gqlgen's public graphql.Transport and speaks both graphql-transport-ws
// (npm graphql-ws) and the legacy graphql-ws protocol
// (subscriptions-transport-ws) itself, reading and writing the websocket
// frames too; github.com/gorilla/websocket performs the handshake.
//
// It owns the message framing, so a subscription result shared by many
// subscribers (same document, operation name and variables, same change) is
// executed and encoded once and written to every connection as is.
//
// Memory is what it is designed for. A connection holds at most two
// goroutines whatever its number of subscriptions:
//
//   - a reader, started once the HTTP handler has upgraded the request (the
//     handler then returns: the transport owns the connection and tracks it
//     for shutdown). While the client is silent it waits on a shallow
//     stack holding no buffer; what arrives is read on a fresh goroutine
//     that decodes client messages, answers the protocol's own
//     (connection_init, ping, complete; websocket pings and close frames)
//     and queues operations for the writer, then hands over to a new
//     waiting one (see reader.go). It exits when the socket closes.
//   - a writer, only while there is something to do: it starts the queued
//     operations in order (parsing, validation, resolvers; a query or
//     mutation is answered at once), takes changes from the subscriptions
//     that have some (see Feed) and has gqlgen execute them, appends the
//     frames to the connection's buffer and writes the buffer with few
//     write(2) calls, each under a write deadline, then exits. Deep call
//     chains thus run on short-lived stacks, never on the one an idle
//     connection keeps for its whole life.
//
// Subscriptions own no goroutine: their source (a broker subscription)
// calls back when it has something, and the writer drains it. Keep-alive
// pings come from a timer. Buffers are pooled and released while idle. (A
// subscription resolver that does not hand its source over with Feed gets
// gqlgen's loop on a goroutine of its own; jobUpdated always uses Feed.)
//
// What one connection can make the server hold is bounded, so that a client
// that sends much and reads nothing costs little more than one that reads:
//
//   - Outgoing queue: the bytes queued for a client and not yet written
//     (the write under way included) are bounded by Options.MaxQueuedBytes
//     (1 MiB). The writer starts operations and takes subscription changes
//     only while less than one write's worth (64 KiB) is queued, and the
//     reader reads no further frame while the queue is at the bound: no
//     ping is answered, no message handled, until the socket drains below
//     it (Options.WriteTimeout still drops a client that reads nothing;
//     keep-alive counts from when reading resumes). So the queue holds at
//     most the bound plus one result (a result is never split; the server
//     bounds each with MAX_RESPONSE_BYTES) plus one reply of the reader;
//     nothing is queued behind a large result until it is written.
//     Nothing is dropped and nothing refused for it: pongs and protocol
//     replies count toward the bound, and the client's own socket buffer
//     fills instead, as TCP intends. Subscriptions wait in their source,
//     which coalesces a lagging subscriber to each job's latest state and
//     ends it (SLOW_SUBSCRIBER) past its cap.
//   - Waiting operations: at most maxWaiting (32) subscribe (start)
//     messages wait for the writer to start them; while that many wait,
//     the reader reads nothing more. A client that sends a burst of
//     subscribes is thus slowed, not refused: graphql-ws clients multiplex
//     every subscription of a page over one socket and send them at once,
//     and refusing the ones past a cap would fail pages that open many.
//   - Subscriptions: at most Options.MaxSubscriptions (100) at once; one
//     more gets an error message with CodeTooManySubscriptions.
//   - graphql-transport-ws ping messages: the pong echoes a payload of up to
//     maxPongPayload (1 KiB); a larger payload is left out of the pong.
//   - Shared results (see results.go): at most Options.SharedResults
//     results and Options.SharedBytes (16 MiB) bytes, the oldest dropped
//     first; a result larger than SharedBytes is not kept. A result is
//     dropped as soon as the last subscription of its operation ends.
//
// Decisions where the protocols are silent or the two differ:
//   - One set of close codes for both subprotocols; the legacy protocol
//     defines none, and its clients treat every close alike. Legacy clients
//     still get connection_error before a close where gqlgen sent one.
//   - The server answers a client's complete (stop) with complete, as
//     gqlgen did: clients ignore messages for finished ids.
//   - An operation that fails before it runs (parse or validation errors,
//     bad variables, a document refused by the server's limits), a query
//     or mutation whose response carries errors and no data (refused by
//     the server's middleware, say SERVER_BUSY or RESPONSE_TOO_LARGE), and
//     a subscription whose resolver did not hand over a source (Feed) and
//     whose first response carries errors and no data, end with the
//     protocol's error message carrying the errors, in both protocols:
//     both define it for errors before execution, and clients report it to
//     their error callback. No complete follows an error message. (gqlgen
//     sent some of these as a result with errors.) A subscription's later
//     events, RESPONSE_TOO_LARGE among them, are results.
//   - Keep-alive starts with connection_ack; before it only the
//     initialisation timeout applies.
//   - At shutdown (Run's context) connections close with 1000 "terminated",
//     as gqlgen's transport did; clients reconnect as after any close.
//
// Close codes follow graphql-transport-ws for both protocols (the legacy one
// defines none): 4400 invalid message, 4401 subscribe before
// connection_ack, 4403 refused by Options.InitFunc, 4408 no connection_init
// in time, 4409 duplicate subscription id, 4429 a second connection_init.
package wstransport

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
)

// Subprotocols, in the order of preference gqlgen used: a client offering
// both gets the legacy one; a client offering none is spoken to in it too.
const (
	protocolLegacy    = "graphql-ws"
	protocolTransport = "graphql-transport-ws"
)

// Defaults for zero Options fields.
const (
	DefaultWriteTimeout     = 10 * time.Second
	DefaultReadLimit        = 1 << 20
	DefaultMaxQueuedBytes   = 1 << 20
	DefaultMaxSubscriptions = 100
	DefaultSharedResults    = 16384
	DefaultSharedBytes      = 16 << 20
)

// maxWaiting is how many operations of a connection may wait for the writer
// to start them; while that many wait, the connection is not read.
const maxWaiting = 32

// maxPongPayload is the largest ping payload a pong message echoes.
const maxPongPayload = 1 << 10

// CodeTooManySubscriptions is extensions.code of the error a subscription
// gets when its connection already holds Options.MaxSubscriptions.
const CodeTooManySubscriptions = "TOO_MANY_SUBSCRIPTIONS"

// Options configure a Transport. Zero values get the documented defaults.
type Options struct {
	// InitTimeout closes (4408) connections that send no connection_init in
	// time. 0: no limit.
	InitTimeout time.Duration
	// KeepAlive is the interval of websocket pings (and of "ka" messages
	// for legacy clients) once a connection is acknowledged; a client that
	// answers no ping for two intervals is dropped. 0: none.
	KeepAlive time.Duration
	// WriteTimeout bounds every socket write; a client that stops reading
	// is dropped after it. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// ReadLimit is the largest message read from a client; a larger one
	// closes the connection with 1009. Default DefaultReadLimit.
	ReadLimit int64
	// MaxQueuedBytes bounds the bytes a connection queues for its client
	// and has not written yet: at the bound the connection starts no
	// operation, takes no subscription change and reads nothing until
	// its client has read enough (see the package doc). Default
	// DefaultMaxQueuedBytes.
	MaxQueuedBytes int
	// MaxSubscriptions bounds the subscriptions one connection holds at
	// once; one more gets an error message with CodeTooManySubscriptions.
	// Default DefaultMaxSubscriptions.
	MaxSubscriptions int
	// SharedResults and SharedBytes bound the cache of shared subscription
	// results: how many it keeps and their bytes. Defaults
	// DefaultSharedResults and DefaultSharedBytes.
	SharedResults int
	SharedBytes   int
	// InitFunc, when set, runs on connection_init with its payload (nil
	// when absent) and a context carrying the upgrade request's values
	// (never cancelled: each operation's context is, when it ends or its
	// connection closes). It returns the context operations of the
	// connection run under, or an error that refuses the connection (close 4403
	// Forbidden; legacy clients get a connection_error with its message
	// first). It is called from many connections' goroutines at once.
	InitFunc func(ctx context.Context, payload map[string]any) (context.Context, error)
	// CheckOrigin decides whether a handshake's Origin is allowed. nil
	// accepts any origin: the API is public and used by browser
	// applications from other origins, which is safe only while websockets
	// do not authenticate with ambient credentials such as cookies.
	CheckOrigin func(r *http.Request) bool

	probes *probes // for tests: see export_test.go
}

// probes let tests watch a connection's queues. Their functions are called
// with the connection's lock held.
type probes struct {
	queued  func(bytes int) // bytes queued and not written, after each addition
	waiting func(n int)     // operations waiting to start, after each addition
}

// Transport accepts GraphQL websocket connections. Create it with New, add
// it to gqlgen's server, and run it with Run. Its methods are safe for
// concurrent use.
type Transport struct {
	opts     Options
	upgrader websocket.Upgrader
	results  *resultCache
	sending  counter // changes taken from sources, not yet queued on their connection

	// For metrics.
	subscriptions atomic.Int64 // held by connections now
	sent          atomic.Int64 // subscription events queued for clients
	refused       atomic.Int64 // subscriptions refused with CodeTooManySubscriptions

	mu         sync.Mutex
	conns      map[*conn]struct{}
	stopping   bool
	goroutines int           // readers, writers and fallback subscription loops
	idle       chan struct{} // closed when stopping and goroutines is 0
}

var _ graphql.Transport = (*Transport)(nil)

// New returns a Transport configured by opts.
func New(opts Options) *Transport {
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = DefaultReadLimit
	}
	if opts.MaxQueuedBytes <= 0 {
		opts.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if opts.MaxSubscriptions <= 0 {
		opts.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if opts.SharedResults <= 0 {
		opts.SharedResults = DefaultSharedResults
	}
	if opts.SharedBytes <= 0 {
		opts.SharedBytes = DefaultSharedBytes
	}
	checkOrigin := opts.CheckOrigin
	if checkOrigin == nil {
		checkOrigin = func(*http.Request) bool { return true }
	}
	return &Transport{
		opts: opts,
		upgrader: websocket.Upgrader{
			HandshakeTimeout: opts.WriteTimeout,
			// gorilla only performs the handshake: the connection it
			// returns is dropped once its subprotocol is read. Without a
			// ReadBufferSize it reuses net/http's reader for it, and the
			// pool keeps it from allocating a write buffer.
			WriteBufferPool: &sync.Pool{},
			Subprotocols:    []string{protocolLegacy, protocolTransport},
			CheckOrigin:     checkOrigin,
		},
		results: newResultCache(opts.SharedResults, opts.SharedBytes),
		conns:   make(map[*conn]struct{}),
		idle:    make(chan struct{}),
	}
}

// Connections returns how many websocket connections are open. Safe for
// concurrent use, as are the counts below.
func (t *Transport) Connections() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Subscriptions returns how many subscriptions the connections hold.
func (t *Transport) Subscriptions() int64 { return t.subscriptions.Load() }

// MessagesSent returns how many subscription events were queued for
// clients.
func (t *Transport) MessagesSent() int64 { return t.sent.Load() }

// RefusedSubscriptions returns how many subscriptions were refused with
// CodeTooManySubscriptions.
func (t *Transport) RefusedSubscriptions() int64 { return t.refused.Load() }

// Supports reports whether r asks for a websocket upgrade (IsUpgrade).
func (t *Transport) Supports(r *http.Request) bool {
	return IsUpgrade(r)
}

// IsUpgrade reports whether r asks to be upgraded to a websocket: its
// Connection header lists the token "upgrade" and its Upgrade header the
// token "websocket", both case-insensitive (RFC 6455, section 4.2.1, as
// gorilla/websocket checks them). It is the project's one test of "is this
// a websocket": the transport, the GraphQL handler and the HTTP middleware
// all use it.
func IsUpgrade(r *http.Request) bool {
	return IsUpgradeHeader(r.Header)
}

// IsUpgradeHeader is IsUpgrade for where only the headers are at hand,
// such as an operation's graphql.OperationContext.Headers (on a websocket,
// the transport gives operations headers that pass it).
func IsUpgradeHeader(h http.Header) bool {
	return hasToken(h, "Upgrade", "websocket") && hasToken(h, "Connection", "upgrade")
}

// hasToken reports whether the comma-separated lists of header name hold
// token, case-insensitive.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Do upgrades r and returns: the connection's reader goroutine serves it
// from then on, until the client leaves, a protocol error, or Run's context
// ends. On a failed upgrade gorilla has answered with an HTTP error; after
// Run's context ended new connections get 503.
func (t *Transport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	t.mu.Lock()
	stopping := t.stopping
	t.mu.Unlock()
	if stopping {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	hw := &hijacker{ResponseWriter: w, t: t}
	ws, err := t.upgrader.Upgrade(hw, r, nil)
	if err != nil {
		if hw.c != nil {
			hw.c.abandon()
		}
		return
	}
	hw.releaseBuffers()
	c := hw.c
	c.start(ws, r, exec)
}

// Run returns once ctx is done and every connection has been closed, each
// with a close frame (1000) after the frames queued before it, and every
// goroutine the transport started has exited. A client that does not read
// holds this up for at most Options.WriteTimeout. Call it once.
func (t *Transport) Run(ctx context.Context) error {
	<-ctx.Done()
	t.mu.Lock()
	t.stopping = true
	conns := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	if t.goroutines == 0 {
		close(t.idle)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.CloseNormalClosure, "terminated")
	}
	<-t.idle
	return nil
}

// WaitSent waits until every change that subscriptions took from their
// sources has been queued on its connection (after it, in front of any
// close frame), or until ctx is done. After the broker's Flush it tells
// shutdown that closing the connections loses no change.
func (t *Transport) WaitSent(ctx context.Context) error {
	if err := t.sending.wait(ctx); err != nil {
		return fmt.Errorf("wait for websocket subscriptions to queue their changes: %w", err)
	}
	return nil
}

// track registers c and its reader goroutine, or reports false once Run's
// context is done.
func (t *Transport) track(c *conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return false
	}
	t.conns[c] = struct{}{}
	t.goroutines++
	return true
}

func (t *Transport) untrack(c *conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// goStarted counts a goroutine about to start. Its caller is itself a
// counted goroutine (or holds a connection that Run has not closed yet), so
// the count never rises again once Run saw it at zero.
func (t *Transport) goStarted() {
	t.mu.Lock()
	t.goroutines++
	t.mu.Unlock()
}

func (t *Transport) goDone() {
	t.mu.Lock()
	t.goroutines--
	if t.goroutines == 0 && t.stopping {
		close(t.idle)
	}
	t.mu.Unlock()
}

// counter counts work in flight, and lets callers wait on a channel for it
// to reach zero. Counting is two atomic operations; the channel is only
// made, and closed, while someone waits.
type counter struct {
	n    atomic.Int64
	zero atomic.Pointer[chan struct{}] // closed when n reaches 0; nil while nobody waits
}

func (c *counter) add(d int64) {
	if c.n.Add(d) != 0 {
		return
	}
	if p := c.zero.Load(); p != nil && c.zero.CompareAndSwap(p, nil) {
		close(*p)
	}
}

func (c *counter) wait(ctx context.Context) error {
	for {
		// Armed before looking, so that reaching zero meanwhile wakes us.
		p := c.zero.Load()
		if p == nil {
			ch := make(chan struct{})
			if !c.zero.CompareAndSwap(nil, &ch) {
				continue
			}
			p = &ch
		}
		if c.n.Load() == 0 {
			return nil
		}
		select {
		case <-*p:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
