package gorillaws

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// flushGate holds the flusher in its next socket write once armed, until the
// test releases it.
type flushGate struct {
	armed   atomic.Bool
	held    chan []byte // receives what the held write is about to send
	release chan struct{}
	once    sync.Once
}

func newFlushGate(t *testing.T) *flushGate {
	g := &flushGate{held: make(chan []byte, 1), release: make(chan struct{})}
	t.Cleanup(g.open) // never leave a flusher parked, whatever happens
	return g
}

func (g *flushGate) beforeSocketWrite(p []byte) {
	if g.armed.CompareAndSwap(true, false) {
		g.held <- bytes.Clone(p)
		select {
		case <-g.release:
		case <-time.After(waitBound): // a failed test must not park it forever
		}
	}
}

func (g *flushGate) open() { g.once.Do(func() { close(g.release) }) }

// awaitHeld waits until the flusher is parked in the gate.
func (g *flushGate) awaitHeld(t *testing.T) []byte {
	t.Helper()
	select {
	case p := <-g.held:
		return p
	case <-time.After(waitBound):
		t.Fatal("the flusher never reached a socket write")
		return nil
	}
}

// gatedServer starts a server whose connections pass through gate.
func gatedServer(t *testing.T, opts Options, limit int, gate *flushGate, blocked func()) (*httptest.Server, <-chan accepted) {
	t.Helper()
	impl := New(opts)
	if limit > 0 {
		impl.coalesceLimit = limit
	}
	impl.hooks = &flushHooks{beforeSocketWrite: gate.beforeSocketWrite, writerBlocked: blocked}
	return startServer(t, impl, gqlgenAcceptOptions())
}

func flushConnOf(t *testing.T, c transport.WebsocketConn) *flushConn {
	t.Helper()
	fc := c.(*conn).fc
	if fc == nil {
		t.Fatal("connection is not a flushConn")
	}
	return fc
}

type seqMsg struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad,omitempty"`
}

// readSeq reads n seqMsg messages and checks they are 0..n-1 in order.
func readSeq(t *testing.T, client *websocket.Conn, n int, pad string) {
	t.Helper()
	if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		_, data, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("client read %d: %v", i, err)
		}
		var m seqMsg
		if err := json.Unmarshal(data, &m); err != nil || m.Seq != i || m.Pad != pad {
			t.Fatalf("message %d = %.80s (%v), want seq %d", i, data, err, i)
		}
	}
}

func TestBurstIsCoalescedIntoFewSocketWrites(t *testing.T) {
	gate := newFlushGate(t)
	srv, ch := gatedServer(t, Options{}, 0, gate, nil)
	client, server := connect(t, srv, ch, graphqlTransportWS)
	fc := flushConnOf(t, server)
	before := fc.socketWrites.Load() // the 101 response went through it too

	const n = 2000
	gate.armed.Store(true)
	for i := range n {
		if err := server.WriteJSON(seqMsg{Seq: i}); err != nil {
			t.Fatalf("WriteJSON %d: %v", i, err)
		}
		if i == 0 {
			gate.awaitHeld(t) // the first message is on its way; the rest pile up
		}
	}
	gate.open()
	readSeq(t, client, n, "")

	// One write for the first message(s), one for everything buffered
	// meanwhile (about 30 KiB, under the limit).
	if got := fc.socketWrites.Load() - before; got != 2 {
		t.Errorf("%d messages took %d socket writes, want 2", n, got)
	}
}

func TestUnpacedBurstUsesFewerSocketWritesThanMessages(t *testing.T) {
	// No gate: the writer and the flusher race as in production. The flusher
	// takes everything written during its previous write(2), so messages
	// per syscall is well above one; the bound is loose to stay reliable.
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	fc := flushConnOf(t, server)
	before := fc.socketWrites.Load()

	const n = 5000
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := server.WriteJSON(seqMsg{Seq: i}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	readSeq(t, client, n, "")
	if err := awaitErr(t, "writer", done); err != nil {
		t.Fatal(err)
	}
	writes := fc.socketWrites.Load() - before
	t.Logf("%d messages, %d socket writes", n, writes)
	if writes > n/2 {
		t.Errorf("%d messages took %d socket writes, want at most %d", n, writes, n/2)
	}
}

func TestLoneMessageIsSentAtOnce(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	fc := flushConnOf(t, server)
	before := fc.socketWrites.Load()

	// Nothing else is written: the message must not wait for company.
	if err := server.WriteJSON(seqMsg{Seq: 0}); err != nil {
		t.Fatal(err)
	}
	readSeq(t, client, 1, "")
	if got := fc.socketWrites.Load() - before; got != 1 {
		t.Errorf("socket writes = %d, want 1", got)
	}
	awaitIdle(t, fc)
}

// awaitIdle waits (yielding, never sleeping) until fc has no flusher and no
// buffer, as an idle connection must.
func awaitIdle(t *testing.T, fc *flushConn) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		fc.mu.Lock()
		idle := !fc.flushing && fc.pending == nil && fc.spare == nil
		fc.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("connection still holds a flusher or a buffer")
		}
		runtime.Gosched()
	}
}

func TestIdleConnectionHoldsNoFlusherOrBuffer(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	fc := flushConnOf(t, server)
	awaitIdle(t, fc) // after the handshake
	for i := range 100 {
		if err := server.WriteJSON(seqMsg{Seq: i, Pad: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	readSeq(t, client, 100, "p")
	awaitIdle(t, fc) // after a burst
}

func TestBufferIsBounded(t *testing.T) {
	const limit = 8 << 10
	blocked := make(chan int, 1)
	var fc atomic.Pointer[flushConn]
	gate := newFlushGate(t)
	srv, ch := gatedServer(t, Options{}, limit, gate, func() {
		// Runs with fc.mu held: read the buffered size directly.
		if f := fc.Load(); f != nil {
			select {
			case blocked <- len(*f.pending):
			default:
			}
		}
	})
	client, server := connect(t, srv, ch, graphqlTransportWS)
	fc.Store(flushConnOf(t, server))

	pad := strings.Repeat("x", 1000)
	const n = 40 // 40 KB: five times the limit
	var written atomic.Int64
	gate.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := server.WriteJSON(seqMsg{Seq: i, Pad: pad}); err != nil {
				done <- err
				return
			}
			written.Add(1)
		}
		done <- nil
	}()
	gate.awaitHeld(t)
	select {
	case pending := <-blocked:
		if pending > limit {
			t.Errorf("buffered %d bytes, limit %d", pending, limit)
		}
		if w := written.Load(); w >= n-1 {
			t.Errorf("writer got %d of %d messages in while the flusher was held", w, n)
		}
	case <-time.After(waitBound):
		t.Fatal("the writer never blocked on a full buffer")
	}
	gate.open()
	readSeq(t, client, n, pad)
	if err := awaitErr(t, "writer", done); err != nil {
		t.Fatal(err)
	}
}

func TestStalledReaderFailsWritesAndClosesConnection(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	srv, ch := startServer(t, New(Options{WriteTimeout: writeTimeout}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS) // the client does not read for now
	reads := nextMessage(server)

	payload := seqMsg{Pad: strings.Repeat("z", 64<<10)}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		for range 1 << 16 {
			if err := server.WriteJSON(payload); err != nil {
				done <- err
				return
			}
		}
		done <- errors.New("wrote 4 GiB to a client that never reads")
	}()
	err := awaitErr(t, "WriteJSON to a stalled client", done)
	elapsed := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("WriteJSON error = %v, want a timeout", err)
	}
	// Filling the socket buffers is quick; then the blocked write(2) gives up
	// after writeTimeout and the writer, waiting for room, sees its error.
	t.Logf("write failed after %v (write timeout %v)", elapsed, writeTimeout)

	// The error is sticky and WriteClose reports it without waiting.
	closeStart := time.Now()
	if err := server.WriteClose(websocket.CloseNormalClosure, "bye"); err == nil {
		t.Error("WriteClose after a failed write succeeded")
	}
	if d := time.Since(closeStart); d > writeTimeout {
		t.Errorf("WriteClose took %v after the connection failed", d)
	}
	// The socket was closed: the pending read ends, and the client, once it
	// reads again, gets what was sent and then the end of the connection.
	if r := awaitRead(t, reads); r.err == nil {
		t.Error("NextReader returned a message after the connection failed")
	}
	if err := clientReadErr(t, client); err == nil || websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("client read = %v, want the connection to be dropped", err)
	}
	if err := server.Close(); err != nil {
		t.Errorf("Close after a failed write = %v, want nil", err)
	}
}

func TestCloseSendsBufferedFramesFirst(t *testing.T) {
	gate := newFlushGate(t)
	srv, ch := gatedServer(t, Options{}, 0, gate, nil)
	client, server := connect(t, srv, ch, graphqlTransportWS)

	gate.armed.Store(true)
	if err := server.WriteJSON(seqMsg{Seq: 0}); err != nil {
		t.Fatal(err)
	}
	gate.awaitHeld(t) // the message is in flight and stuck
	if err := server.WriteJSON(seqMsg{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if err := server.WriteClose(websocket.CloseNormalClosure, "terminated"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	// Release the flusher only once Close is under way.
	fc := flushConnOf(t, server)
	for deadline := time.Now().Add(waitBound); ; runtime.Gosched() {
		fc.mu.Lock()
		closing := fc.closed
		fc.mu.Unlock()
		if closing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close never started")
		}
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while frames were still buffered", err)
	default:
	}
	gate.open()
	if err := awaitErr(t, "Close", closed); err != nil {
		t.Errorf("Close = %v", err)
	}
	readSeq(t, client, 2, "")
	err := clientReadErr(t, client)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure || ce.Text != "terminated" {
		t.Errorf("client got %v, want close frame 1000 terminated", err)
	}
	if err := server.WriteJSON("late"); !errors.Is(err, websocket.ErrCloseSent) && !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteJSON after Close = %v", err)
	}
}

func TestCloseIsBoundedWhenPeerStalls(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	srv, ch := startServer(t, New(Options{WriteTimeout: writeTimeout}), gqlgenAcceptOptions())
	_, server := connect(t, srv, ch, graphqlTransportWS) // never reads
	fc := flushConnOf(t, server)

	// Write until the buffer is full and a writer waits for room: the
	// flusher is then blocked in write(2) on a full socket.
	pad := strings.Repeat("w", 32<<10)
	writerDone := make(chan error, 1)
	go func() {
		for {
			if err := server.WriteJSON(seqMsg{Pad: pad}); err != nil {
				writerDone <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(waitBound)
	for {
		fc.mu.Lock()
		full := fc.pending != nil && len(*fc.pending) > fc.limit/2
		fc.mu.Unlock()
		if full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the buffer never filled")
		}
		runtime.Gosched()
	}
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	awaitErr(t, "Close", closed)
	if d := time.Since(start); d > 4*writeTimeout {
		t.Errorf("Close took %v with a stalled peer; write timeout %v", d, writeTimeout)
	}
	if err := awaitErr(t, "blocked writer", writerDone); err == nil {
		t.Error("writer succeeded after Close")
	}
}

func TestConcurrentWritersWithCloseUnderRace(t *testing.T) {
	// Writers, pings from the peer and Close all at once; -race checks the
	// flusher's hand-offs, goleak that nothing is left running.
	srv, ch := startServer(t, New(Options{PingInterval: time.Millisecond}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	flowing := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			if _, _, err := client.ReadMessage(); err != nil {
				return
			}
			if i == 1000 {
				close(flowing)
			}
		}
	}()
	reads := nextMessage(server)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if err := server.WriteJSON(seqMsg{Seq: w*1000 + i}); err != nil {
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			if err := client.WriteControl(websocket.PingMessage, nil, time.Now().Add(waitBound)); err != nil {
				return
			}
		}
	})
	select {
	case <-flowing:
	case <-time.After(waitBound):
		t.Fatal("messages did not flow")
	}
	if err := server.WriteClose(websocket.CloseNormalClosure, "bye"); err != nil {
		t.Errorf("WriteClose: %v", err)
	}
	if err := server.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	_ = client.Close()
	wg.Wait()
	awaitRead(t, reads)
}

func TestAcceptRequiresAHijackableResponseWriter(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/query", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	w := httptest.NewRecorder() // not an http.Hijacker
	_, err := New(Options{}).Accept(w, r, gqlgenAcceptOptions())
	var he websocket.HandshakeError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "hijack") {
		t.Errorf("Accept = %v, want a handshake error about hijacking", err)
	}
	if w.Code != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", w.Code)
	}
}

// unwrapOnly is middleware's ResponseWriter wrapper: it hides Hijack but
// offers Unwrap, which http.ResponseController (and so Accept) follows.
type unwrapOnly struct{ http.ResponseWriter }

func (u unwrapOnly) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func TestAcceptHijacksThroughUnwrap(t *testing.T) {
	impl := New(Options{})
	ch := make(chan accepted, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := impl.Accept(unwrapOnly{w}, r, gqlgenAcceptOptions())
		ch <- accepted{conn: c, err: err}
	}))
	t.Cleanup(srv.Close)
	client, server := connect(t, srv, ch, graphqlTransportWS)
	if err := server.WriteJSON(seqMsg{Seq: 0}); err != nil {
		t.Fatal(err)
	}
	readSeq(t, client, 1, "")
}

// capturingHijacker records the bufio.ReadWriter net/http hands over.
type capturingHijacker struct {
	http.ResponseWriter
	brw *bufio.ReadWriter
}

func (c *capturingHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(c.ResponseWriter).Hijack()
	c.brw = brw
	return conn, brw, err
}

func TestAcceptReleasesNetHTTPBuffers(t *testing.T) {
	impl := New(Options{})
	type result struct {
		accepted
		reader, writer int
	}
	ch := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &capturingHijacker{ResponseWriter: w}
		c, err := impl.Accept(h, r, gqlgenAcceptOptions())
		res := result{accepted: accepted{conn: c, err: err}}
		if h.brw != nil {
			res.reader, res.writer = h.brw.Reader.Size(), h.brw.Writer.Size()
		}
		ch <- res
	}))
	t.Cleanup(srv.Close)
	client := mustDial(t, srv, graphqlTransportWS)
	var res result
	select {
	case res = <-ch:
	case <-time.After(waitBound):
		t.Fatal("no Accept")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	server := res.conn
	t.Cleanup(func() { _ = server.Close() })
	// net/http's are 4096 bytes each and stay referenced by its response
	// while the handler runs.
	if res.reader > 16 || res.writer > 16 {
		t.Errorf("hijacked buffers still %d (reader) and %d (writer) bytes", res.reader, res.writer)
	}
	// The connection works both ways.
	if err := server.WriteJSON(seqMsg{Seq: 0}); err != nil {
		t.Fatal(err)
	}
	readSeq(t, client, 1, "")
	if err := client.WriteMessage(websocket.TextMessage, []byte(`{"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	if r := awaitRead(t, nextMessage(server)); r.err != nil || string(r.data) != `{"seq":1}` {
		t.Errorf("NextReader = (%s, %v)", r.data, r.err)
	}
}
