package gorillaws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitBound is an upper bound for things that should happen promptly. Tests
// wait on channels with this as a timeout; they never sleep.
const waitBound = 10 * time.Second

const (
	graphqlWS          = "graphql-ws"
	graphqlTransportWS = "graphql-transport-ws"
)

// gqlgenAcceptOptions mirrors what transport.Websocket.Do passes to Accept.
func gqlgenAcceptOptions() transport.WebsocketAcceptOptions {
	return transport.WebsocketAcceptOptions{
		ResponseHeader: http.Header{},
		Subprotocols:   []string{graphqlWS, graphqlTransportWS},
	}
}

type accepted struct {
	conn transport.WebsocketConn
	err  error
}

// startServer serves impl.Accept and hands every accepted connection (or
// error) to the returned channel. Server-side connections are closed on
// cleanup.
func startServer(t *testing.T, impl *Implementation, opts transport.WebsocketAcceptOptions) (*httptest.Server, <-chan accepted) {
	t.Helper()
	ch := make(chan accepted, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := impl.Accept(w, r, opts)
		ch <- accepted{conn: c, err: err}
	}))
	t.Cleanup(func() {
		srv.Close()
		close(ch)
		for a := range ch {
			if a.conn != nil {
				_ = a.conn.Close()
			}
		}
	})
	return srv, ch
}

func wsURL(srv *httptest.Server) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// dial connects a gorilla client; the connection is closed on cleanup.
func dial(t *testing.T, srv *httptest.Server, header http.Header, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: subprotocols, HandshakeTimeout: waitBound}
	c, resp, err := d.Dial(wsURL(srv), header)
	if resp != nil && resp.Body != nil {
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	if c != nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, resp, err
}

func mustDial(t *testing.T, srv *httptest.Server, subprotocols ...string) *websocket.Conn {
	t.Helper()
	c, _, err := dial(t, srv, nil, subprotocols...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// awaitAccept returns the next accepted server connection, closing it on
// cleanup.
func awaitAccept(t *testing.T, ch <-chan accepted) transport.WebsocketConn {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("Accept: %v", a.err)
		}
		t.Cleanup(func() { _ = a.conn.Close() })
		return a.conn
	case <-time.After(waitBound):
		t.Fatal("server did not accept a connection in time")
		return nil
	}
}

// connect dials srv and returns both ends.
func connect(t *testing.T, srv *httptest.Server, ch <-chan accepted, subprotocols ...string) (*websocket.Conn, transport.WebsocketConn) {
	t.Helper()
	client := mustDial(t, srv, subprotocols...)
	return client, awaitAccept(t, ch)
}

type readResult struct {
	messageType int
	data        []byte
	err         error
}

// nextMessage runs NextReader (and reads the message) in a goroutine so the
// caller can wait for it with a bound. If the test gives up, closing the
// connection in cleanup unblocks the goroutine.
func nextMessage(c transport.WebsocketConn) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		mt, r, err := c.NextReader()
		if err != nil {
			ch <- readResult{messageType: mt, err: err}
			return
		}
		data, err := io.ReadAll(r)
		ch <- readResult{messageType: mt, data: data, err: err}
	}()
	return ch
}

func awaitRead(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitBound):
		t.Fatal("NextReader did not return in time")
		return readResult{}
	}
}

func awaitErr(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitBound):
		t.Fatalf("%s did not return in time", what)
		return nil
	}
}

// clientReadErr reads from the client until an error (at most waitBound)
// and returns it.
func clientReadErr(t *testing.T, c *websocket.Conn) error {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	return readUntilErr(c)
}

// readUntilErr discards messages until a read fails. Callers set the read
// deadline. Safe to run in a goroutine.
func readUntilErr(c *websocket.Conn) error {
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return err
		}
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	impl := New(Options{})
	if impl.writeTimeout != 10*time.Second {
		t.Errorf("writeTimeout = %v, want 10s", impl.writeTimeout)
	}
	u := impl.upgrader
	if u.ReadBufferSize != 512 {
		t.Errorf("ReadBufferSize = %d, want 512", u.ReadBufferSize)
	}
	if u.WriteBufferSize != 4096 {
		t.Errorf("WriteBufferSize = %d, want 4096", u.WriteBufferSize)
	}
	if _, ok := u.WriteBufferPool.(*sync.Pool); !ok {
		t.Errorf("WriteBufferPool = %T, want *sync.Pool", u.WriteBufferPool)
	}
	if u.HandshakeTimeout != 10*time.Second {
		t.Errorf("HandshakeTimeout = %v, want the write timeout", u.HandshakeTimeout)
	}
	if u.EnableCompression {
		t.Error("EnableCompression defaulted to true")
	}
	r := httptest.NewRequest(http.MethodGet, "http://api.example.com/query", nil)
	r.Header.Set("Origin", "https://app.other.example")
	if u.CheckOrigin == nil || !u.CheckOrigin(r) {
		t.Error("nil CheckOrigin must accept cross-origin requests")
	}

	custom := New(Options{
		WriteTimeout:      time.Second,
		ReadBufferSize:    512,
		WriteBufferSize:   2048,
		CheckOrigin:       func(*http.Request) bool { return false },
		EnableCompression: true,
	})
	cu := custom.upgrader
	if custom.writeTimeout != time.Second || cu.ReadBufferSize != 512 || cu.WriteBufferSize != 2048 ||
		!cu.EnableCompression || cu.CheckOrigin(r) {
		t.Errorf("explicit options not applied: timeout=%v upgrader=%+v", custom.writeTimeout, cu)
	}
	if New(Options{}).upgrader.WriteBufferPool == impl.upgrader.WriteBufferPool {
		t.Error("two Implementations share a pool; want one pool per Implementation")
	}
}

func TestSubprotocolNegotiation(t *testing.T) {
	impl := New(Options{})
	srv, ch := startServer(t, impl, gqlgenAcceptOptions())

	tests := []struct {
		name    string
		offered []string
		want    string
	}{
		{"graphql-transport-ws client", []string{graphqlTransportWS}, graphqlTransportWS},
		{"legacy graphql-ws client", []string{graphqlWS}, graphqlWS},
		// Server preference order (gqlgen's list order), same as coder/websocket.
		{"both offered", []string{graphqlTransportWS, graphqlWS}, graphqlWS},
		{"unknown protocol", []string{"mqtt"}, ""},
		{"no protocol", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := connect(t, srv, ch, tt.offered...)
			if got := server.Subprotocol(); got != tt.want {
				t.Errorf("server Subprotocol() = %q, want %q", got, tt.want)
			}
			if got := client.Subprotocol(); got != tt.want {
				t.Errorf("client negotiated %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAcceptDoesNotMutateOptionsOrImplementation(t *testing.T) {
	impl := New(Options{})
	opts := gqlgenAcceptOptions()
	srv, ch := startServer(t, impl, opts)
	connect(t, srv, ch, graphqlTransportWS)
	if impl.upgrader.Subprotocols != nil {
		t.Errorf("Accept mutated the shared upgrader: Subprotocols = %v", impl.upgrader.Subprotocols)
	}
	if len(opts.Subprotocols) != 2 {
		t.Errorf("Accept mutated options.Subprotocols: %v", opts.Subprotocols)
	}
}

func TestAcceptSendsResponseHeader(t *testing.T) {
	opts := gqlgenAcceptOptions()
	opts.ResponseHeader.Set("X-Request-Id", "abc123")
	srv, ch := startServer(t, New(Options{}), opts)
	_, resp, err := dial(t, srv, nil, graphqlTransportWS)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	awaitAccept(t, ch)
	if got := resp.Header.Get("X-Request-Id"); got != "abc123" {
		t.Errorf("response header X-Request-Id = %q, want abc123", got)
	}
}

func TestCheckOrigin(t *testing.T) {
	crossOrigin := http.Header{"Origin": []string{"https://app.other.example"}}

	t.Run("nil accepts any origin", func(t *testing.T) {
		srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
		if _, _, err := dial(t, srv, crossOrigin, graphqlTransportWS); err != nil {
			t.Fatalf("cross-origin dial rejected: %v", err)
		}
		awaitAccept(t, ch)
	})

	t.Run("zero Implementation accepts any origin", func(t *testing.T) {
		srv, ch := startServer(t, &Implementation{}, gqlgenAcceptOptions())
		c, _, err := dial(t, srv, crossOrigin, graphqlTransportWS)
		if err != nil {
			t.Fatalf("cross-origin dial rejected: %v", err)
		}
		if c.Subprotocol() != graphqlTransportWS {
			t.Errorf("subprotocol = %q", c.Subprotocol())
		}
		awaitAccept(t, ch)
	})

	t.Run("custom rejects", func(t *testing.T) {
		impl := New(Options{CheckOrigin: func(r *http.Request) bool {
			return r.Header.Get("Origin") == "https://app.example"
		}})
		srv, ch := startServer(t, impl, gqlgenAcceptOptions())
		_, resp, err := dial(t, srv, crossOrigin, graphqlTransportWS)
		if err == nil {
			t.Fatal("dial succeeded, want origin rejection")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("response = %v, want 403", resp)
		}
		select {
		case a := <-ch:
			if a.err == nil {
				t.Fatal("Accept returned no error")
			}
			if !strings.HasPrefix(a.err.Error(), "gorillaws: upgrade: ") {
				t.Errorf("Accept error %q lacks context", a.err)
			}
			var he websocket.HandshakeError
			if !errors.As(a.err, &he) {
				t.Errorf("Accept error %v does not wrap websocket.HandshakeError", a.err)
			}
		case <-time.After(waitBound):
			t.Fatal("handler did not finish")
		}
	})
}

func TestRoundTrip(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)

	// Server → client.
	msg := map[string]any{"type": "next", "id": "1", "payload": map[string]any{"data": map[string]any{"n": 1}}}
	if err := server.WriteJSON(msg); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	mt, data, err := client.ReadMessage()
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Errorf("message type = %d, want text", mt)
	}
	want, _ := json.Marshal(msg)
	if !bytes.Equal(data, want) {
		t.Errorf("client got %s, want %s", data, want)
	}

	// Client → server.
	const sent = `{"type":"subscribe","id":"2","payload":{"query":"subscription { jobs }"}}`
	if err := client.WriteMessage(websocket.TextMessage, []byte(sent)); err != nil {
		t.Fatalf("client write: %v", err)
	}
	r := awaitRead(t, nextMessage(server))
	if r.err != nil {
		t.Fatalf("NextReader: %v", r.err)
	}
	if r.messageType != websocket.TextMessage || string(r.data) != sent {
		t.Errorf("server got (%d, %s), want (%d, %s)", r.messageType, r.data, websocket.TextMessage, sent)
	}
}

func TestWriteTextSendsBytesAsIsInOrderWithWriteJSON(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	tw, ok := server.(interface{ WriteText([]byte) error })
	if !ok {
		t.Fatalf("%T has no WriteText", server)
	}

	first := []byte(`{"payload":{"data":{"n":1}},"id":"1","type":"next"}`)
	if err := tw.WriteText(first); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	first[0] = 'X' // WriteText copied it
	if err := server.WriteJSON(map[string]any{"type": "complete", "id": "1"}); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	for _, want := range []string{`{"payload":{"data":{"n":1}},"id":"1","type":"next"}`, `{"id":"1","type":"complete"}`} {
		if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			t.Fatal(err)
		}
		mt, data, err := client.ReadMessage()
		if err != nil || mt != websocket.TextMessage || string(data) != want {
			t.Fatalf("client read (%d, %s, %v), want text %s", mt, data, err, want)
		}
	}
}

func TestWriteJSONEncodeErrorWritesNothing(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)

	err := server.WriteJSON(map[string]any{"bad": make(chan int)})
	var ute *json.UnsupportedTypeError
	if !errors.As(err, &ute) {
		t.Fatalf("WriteJSON(chan) error = %v, want *json.UnsupportedTypeError", err)
	}
	// The connection is still usable and nothing was sent for the failed value.
	if err := server.WriteJSON("ok"); err != nil {
		t.Fatalf("WriteJSON after encode error: %v", err)
	}
	if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	_, data, err := client.ReadMessage()
	if err != nil || string(data) != `"ok"` {
		t.Fatalf("client read (%s, %v), want \"ok\"", data, err)
	}
}

func TestNextReaderPeerClose(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())

	tests := []struct {
		name       string
		payload    []byte // close frame payload sent by the client
		wantCode   int    // close code the server sees (and echoes)
		wantClosed bool   // NextReader reports transport.ErrWebsocketClosed
	}{
		{"1000 normal closure", websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), websocket.CloseNormalClosure, true},
		{"1001 going away", websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), websocket.CloseGoingAway, true},
		{"1005 no status", []byte{}, websocket.CloseNoStatusReceived, true},
		{"1011 internal error", websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "boom"), websocket.CloseInternalServerErr, false},
		{"4400 application code", websocket.FormatCloseMessage(4400, "bad request"), 4400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := connect(t, srv, ch, graphqlTransportWS)
			reads := nextMessage(server)
			if err := client.WriteControl(websocket.CloseMessage, tt.payload, time.Now().Add(waitBound)); err != nil {
				t.Fatalf("client close: %v", err)
			}
			r := awaitRead(t, reads)
			if r.err == nil {
				t.Fatal("NextReader returned a message, want an error")
			}
			if got := errors.Is(r.err, transport.ErrWebsocketClosed); got != tt.wantClosed {
				t.Errorf("errors.Is(%v, ErrWebsocketClosed) = %v, want %v", r.err, got, tt.wantClosed)
			}
			if !tt.wantClosed && !websocket.IsCloseError(r.err, tt.wantCode) {
				// IsCloseError uses a type assertion: the error must be unchanged.
				t.Errorf("NextReader error = %#v, want the unchanged *websocket.CloseError %d", r.err, tt.wantCode)
			}

			// The close handshake is completed: the client gets the echo.
			err := clientReadErr(t, client)
			if !websocket.IsCloseError(err, tt.wantCode) {
				t.Errorf("client got %v, want echoed close %d", err, tt.wantCode)
			}
		})
	}
}

func TestNextReaderAbnormalClosureIsNotNormalClose(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	reads := nextMessage(server)
	// Drop the TCP connection without a close frame.
	if err := client.NetConn().Close(); err != nil {
		t.Fatal(err)
	}
	r := awaitRead(t, reads)
	if r.err == nil || errors.Is(r.err, transport.ErrWebsocketClosed) {
		t.Fatalf("NextReader error = %v, want a non-ErrWebsocketClosed error", r.err)
	}
	if !websocket.IsCloseError(r.err, websocket.CloseAbnormalClosure) {
		t.Errorf("NextReader error = %#v, want unchanged *websocket.CloseError 1006", r.err)
	}
}

func TestWriteClose(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)

	if err := server.WriteClose(websocket.CloseNormalClosure, "terminated"); err != nil {
		t.Fatalf("WriteClose: %v", err)
	}
	err := clientReadErr(t, client)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("client read error = %v, want *websocket.CloseError", err)
	}
	if ce.Code != websocket.CloseNormalClosure || ce.Text != "terminated" {
		t.Errorf("client got close (%d, %q), want (1000, \"terminated\")", ce.Code, ce.Text)
	}

	// gqlgen may close twice (e.g. close after the peer's close): no error.
	if err := server.WriteClose(websocket.CloseNormalClosure, "again"); err != nil {
		t.Errorf("second WriteClose = %v, want nil", err)
	}
	if err := server.WriteJSON("late"); !errors.Is(err, websocket.ErrCloseSent) {
		t.Errorf("WriteJSON after WriteClose = %v, want ErrCloseSent", err)
	}
}

func TestWriteCloseTruncatesLongReason(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)

	reason := strings.Repeat("é", 100) // 200 bytes, 2 bytes per rune
	if err := server.WriteClose(websocket.ClosePolicyViolation, reason); err != nil {
		t.Fatalf("WriteClose: %v", err)
	}
	err := clientReadErr(t, client)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("client read error = %v, want *websocket.CloseError", err)
	}
	if ce.Code != websocket.ClosePolicyViolation {
		t.Errorf("code = %d, want 1008", ce.Code)
	}
	if len(ce.Text) > 123 || len(ce.Text) < 120 || !utf8.ValidString(ce.Text) || !strings.HasPrefix(reason, ce.Text) {
		t.Errorf("reason = %q (%d bytes), want a valid UTF-8 prefix of at most 123 bytes", ce.Text, len(ce.Text))
	}
}

func TestCloseUnblocksReaderAndIsIdempotent(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	_, server := connect(t, srv, ch, graphqlTransportWS)
	reads := nextMessage(server)

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- server.Close() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Close = %v, want nil", err)
		}
	}

	r := awaitRead(t, reads)
	// gqlgen's read loop does not report net.ErrClosed (closed by us).
	if !errors.Is(r.err, net.ErrClosed) {
		t.Errorf("NextReader after Close = %v, want errors.Is(net.ErrClosed)", r.err)
	}
	if err := server.Close(); err != nil {
		t.Errorf("Close after Close = %v, want nil", err)
	}
}

func TestReadLimit(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	server.(transport.WebsocketReadLimiter).SetReadLimit(64)

	reads := nextMessage(server)
	if err := client.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 1024)); err != nil {
		t.Fatalf("client write: %v", err)
	}
	r := awaitRead(t, reads)
	if !errors.Is(r.err, websocket.ErrReadLimit) {
		t.Errorf("NextReader = (%d bytes, %v), want ErrReadLimit", len(r.data), r.err)
	}
	if err := clientReadErr(t, client); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("client got %v, want close 1009", err)
	}
}

func TestReadLimitAllowsMessagesUpToLimit(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	server.(transport.WebsocketReadLimiter).SetReadLimit(64)

	msg := bytes.Repeat([]byte("y"), 64)
	if err := client.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	if r := awaitRead(t, nextMessage(server)); r.err != nil || !bytes.Equal(r.data, msg) {
		t.Errorf("NextReader = (%d bytes, %v), want the 64-byte message", len(r.data), r.err)
	}
}

func TestWriteTimeoutWhenClientNeverReads(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	srv, ch := startServer(t, New(Options{WriteTimeout: writeTimeout}), gqlgenAcceptOptions())
	_, server := connect(t, srv, ch, graphqlTransportWS) // the client never reads

	payload := map[string]string{"data": strings.Repeat("z", 64<<10)}
	done := make(chan error, 1)
	go func() {
		// Fill the client's receive buffer and our send buffer; with a write
		// deadline one of these writes fails instead of blocking forever.
		// The iteration cap only stops a broken implementation from spinning.
		for range 1 << 16 {
			if err := server.WriteJSON(payload); err != nil {
				done <- err
				return
			}
		}
		done <- errors.New("wrote 4 GiB to a client that never reads")
	}()

	err := awaitErr(t, "WriteJSON to a client that never reads", done)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("WriteJSON error = %v, want a timeout net.Error", err)
	}
	if !strings.HasPrefix(err.Error(), "gorillaws: write: ") {
		t.Errorf("write error %q lacks context", err)
	}
	// WriteClose is bounded too (the writer is now broken, so it fails fast).
	closed := make(chan error, 1)
	go func() { closed <- server.WriteClose(websocket.CloseNormalClosure, "terminated") }()
	awaitErr(t, "WriteClose after a timed-out write", closed)
}

func TestReadDeadline(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())

	t.Run("past deadline", func(t *testing.T) {
		_, server := connect(t, srv, ch, graphqlTransportWS)
		if err := server.(transport.WebsocketReadDeadliner).SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatalf("SetReadDeadline: %v", err)
		}
		r := awaitRead(t, nextMessage(server))
		var ne net.Error
		if !errors.As(r.err, &ne) || !ne.Timeout() {
			t.Errorf("NextReader = %v, want a timeout error", r.err)
		}
	})

	t.Run("deadline set while reading", func(t *testing.T) {
		// gqlgen's ping loop sets the deadline from another goroutine while
		// the read loop is blocked in NextReader.
		_, server := connect(t, srv, ch, graphqlTransportWS)
		reads := nextMessage(server)
		if err := server.(transport.WebsocketReadDeadliner).SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatalf("SetReadDeadline: %v", err)
		}
		r := awaitRead(t, reads)
		var ne net.Error
		if !errors.As(r.err, &ne) || !ne.Timeout() {
			t.Errorf("NextReader = %v, want a timeout error", r.err)
		}
	})

	t.Run("zero clears the deadline", func(t *testing.T) {
		client, server := connect(t, srv, ch, graphqlTransportWS)
		d := server.(transport.WebsocketReadDeadliner)
		if err := d.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := d.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := client.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`)); err != nil {
			t.Fatal(err)
		}
		if r := awaitRead(t, nextMessage(server)); r.err != nil {
			t.Errorf("NextReader after clearing the deadline = %v", r.err)
		}
	})
}

func TestConcurrentWriters(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)

	const writers, perWriter = 8, 50
	type msg struct {
		Writer int    `json:"writer"`
		Seq    int    `json:"seq"`
		Pad    string `json:"pad"`
	}
	writeErrs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for s := range perWriter {
				if err := server.WriteJSON(msg{Writer: w, Seq: s, Pad: strings.Repeat("p", 5000)}); err != nil {
					writeErrs <- err
					return
				}
			}
		})
	}

	next := make([]int, writers)
	if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	for range writers * perWriter {
		_, data, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("client read: %v", err)
		}
		var m msg
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("corrupt message %q: %v", data, err)
		}
		if m.Writer < 0 || m.Writer >= writers || m.Seq != next[m.Writer] {
			t.Fatalf("message %+v out of order; next expected per writer: %v", m, next)
		}
		next[m.Writer]++
	}
	wg.Wait()
	close(writeErrs)
	for err := range writeErrs {
		t.Errorf("WriteJSON: %v", err)
	}
}

func TestWriteCloseConcurrentWithWriteJSON(t *testing.T) {
	srv, ch := startServer(t, New(Options{}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)

	// The client reads throughout so writers never block on a full buffer.
	if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	clientDone := make(chan error, 1)
	go func() { clientDone <- readUntilErr(client) }()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := server.WriteJSON(map[string]string{"type": "next"}); err != nil {
					return // ErrCloseSent once the close frame is out
				}
			}
		})
	}
	closeErr := make(chan error, 1)
	go func() { closeErr <- server.WriteClose(websocket.CloseNormalClosure, "terminated") }()
	if err := awaitErr(t, "WriteClose", closeErr); err != nil {
		t.Errorf("WriteClose: %v", err)
	}
	// Every frame before the close is intact; the close frame arrives.
	err := awaitErr(t, "client reader", clientDone)
	close(stop)
	wg.Wait()
	if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("client got %v, want close 1000", err)
	}
}

func TestAnswersPeerPing(t *testing.T) {
	t.Run("default", func(t *testing.T) { testAnswersPeerPing(t, Options{}) })
	// Our own pings (and pong handler) do not change how the peer's are answered.
	t.Run("with PingInterval", func(t *testing.T) { testAnswersPeerPing(t, Options{PingInterval: time.Hour}) })
}

func testAnswersPeerPing(t *testing.T, opts Options) {
	srv, ch := startServer(t, New(opts), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)

	pongs := make(chan string, 1)
	client.SetPongHandler(func(appData string) error {
		pongs <- appData
		return nil
	})
	if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	clientDone := make(chan error, 1)
	go func() { clientDone <- readUntilErr(client) }() // processes the pong
	reads := nextMessage(server)                       // processes the ping

	if err := client.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-pongs:
		if got != "hello" {
			t.Errorf("pong payload = %q, want hello", got)
		}
	case <-time.After(waitBound):
		t.Fatal("no pong received")
	}

	if err := server.WriteClose(websocket.CloseNormalClosure, "terminated"); err != nil {
		t.Fatal(err)
	}
	awaitErr(t, "client reader", clientDone)
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	awaitRead(t, reads)
}

// countingPool records buffer pool traffic.
type countingPool struct {
	pool       sync.Pool
	gets, puts atomic.Int64
}

func (p *countingPool) Get() any  { p.gets.Add(1); return p.pool.Get() }
func (p *countingPool) Put(v any) { p.puts.Add(1); p.pool.Put(v) }

func TestConnectionsShareWriteBufferPool(t *testing.T) {
	impl := New(Options{})
	pool := &countingPool{}
	impl.upgrader.WriteBufferPool = pool // before any Accept
	srv, ch := startServer(t, impl, gqlgenAcceptOptions())

	const conns = 3
	for i := range conns {
		client, server := connect(t, srv, ch, graphqlTransportWS)
		if err := server.WriteJSON(fmt.Sprintf("hello %d", i)); err != nil {
			t.Fatal(err)
		}
		if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := client.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	// Every connection took its buffer from the shared pool and returned it:
	// idle connections hold no write buffer.
	gets, puts := pool.gets.Load(), pool.puts.Load()
	if gets < conns || gets != puts {
		t.Errorf("pool gets=%d puts=%d, want gets >= %d and gets == puts", gets, puts, conns)
	}
}

func TestCompressionNegotiated(t *testing.T) {
	srv, ch := startServer(t, New(Options{EnableCompression: true}), gqlgenAcceptOptions())
	d := websocket.Dialer{Subprotocols: []string{graphqlTransportWS}, EnableCompression: true, HandshakeTimeout: waitBound}
	client, resp, err := d.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server := awaitAccept(t, ch)
	if ext := resp.Header.Get("Sec-Websocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("extensions = %q, want permessage-deflate", ext)
	}
	want := strings.Repeat("compressible ", 1000)
	if err := server.WriteJSON(want); err != nil {
		t.Fatal(err)
	}
	if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := client.ReadJSON(&got); err != nil || got != want {
		t.Fatalf("ReadJSON = (%d chars, %v)", len(got), err)
	}
}

func TestTruncateCloseReason(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"terminated", "terminated"},
		{strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{strings.Repeat("a", 124), strings.Repeat("a", 123)},
		{strings.Repeat("a", 122) + "é", strings.Repeat("a", 122)}, // é would straddle byte 123
		{strings.Repeat("€", 50), strings.Repeat("€", 41)},         // 3-byte runes: 41*3 = 123
	}
	for _, tt := range tests {
		if got := truncateCloseReason(tt.in); got != tt.want {
			t.Errorf("truncateCloseReason(%d bytes) = %d bytes %q, want %d bytes", len(tt.in), len(got), got, len(tt.want))
		}
	}
}
