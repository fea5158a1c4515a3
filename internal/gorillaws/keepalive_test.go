package gorillaws

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

const testPingInterval = 50 * time.Millisecond

// pingRecorder installs a ping handler on a gorilla client that reports every
// ping and, if answer is set, replies with a pong as gorilla's default
// handler does. Handlers run inside the client's reads.
func pingRecorder(client *websocket.Conn, answer bool) <-chan time.Time {
	pings := make(chan time.Time, 64)
	client.SetPingHandler(func(data string) error {
		select {
		case pings <- time.Now():
		default:
		}
		if !answer {
			return nil
		}
		err := client.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(waitBound))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	return pings
}

// clientReader reads (and discards) on the client until an error, so that
// control frames are processed.
func clientReader(t *testing.T, client *websocket.Conn) <-chan error {
	t.Helper()
	if err := client.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- readUntilErr(client) }()
	return done
}

func awaitPings(t *testing.T, pings <-chan time.Time, n int) []time.Time {
	t.Helper()
	var at []time.Time
	timeout := time.After(waitBound)
	for len(at) < n {
		select {
		case p := <-pings:
			at = append(at, p)
		case <-timeout:
			t.Fatalf("got %d pings, want %d", len(at), n)
		}
	}
	return at
}

func TestPingIntervalPingsAndKeepsAnsweringPeer(t *testing.T) {
	srv, ch := startServer(t, New(Options{PingInterval: testPingInterval}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	pings := pingRecorder(client, true)
	clientReader(t, client)
	reads := nextMessage(server) // processes the pongs

	const n = 8 // 8 intervals: well past the 2-interval read deadline
	at := awaitPings(t, pings, n)
	// Timers never fire early, so n pings span at least n-1 intervals; allow
	// one interval for differences in delivery delay.
	if span := at[n-1].Sub(at[0]); span < (n-2)*testPingInterval {
		t.Errorf("%d pings within %v, want one per %v", n, span, testPingInterval)
	}
	select {
	case r := <-reads:
		t.Fatalf("connection ended although the peer answers every ping: %v", r.err)
	default:
	}
	// Still open both ways.
	if err := client.WriteMessage(websocket.TextMessage, []byte(`{"type":"still here"}`)); err != nil {
		t.Fatal(err)
	}
	if r := awaitRead(t, reads); r.err != nil || string(r.data) != `{"type":"still here"}` {
		t.Errorf("NextReader = (%s, %v)", r.data, r.err)
	}
}

func TestPingIntervalDropsPeerThatDoesNotAnswer(t *testing.T) {
	srv, ch := startServer(t, New(Options{PingInterval: testPingInterval}), gqlgenAcceptOptions())
	accepted := time.Now()
	client, server := connect(t, srv, ch, graphqlTransportWS)
	pings := pingRecorder(client, false) // reads, but never pongs
	clientReader(t, client)

	r := awaitRead(t, nextMessage(server))
	elapsed := time.Since(accepted)
	var ne net.Error
	if !errors.As(r.err, &ne) || !ne.Timeout() {
		t.Fatalf("NextReader = %v, want a read timeout", r.err)
	}
	// The first ping (after one interval) arms a deadline two intervals out.
	if elapsed < 2*testPingInterval {
		t.Errorf("dropped after %v, before the peer had two intervals to answer", elapsed)
	}
	if len(pings) == 0 {
		t.Error("the peer was dropped without being pinged")
	}
}

func TestPingIntervalEarlierUserDeadlineStillApplies(t *testing.T) {
	srv, ch := startServer(t, New(Options{PingInterval: testPingInterval}), gqlgenAcceptOptions())
	client, server := connect(t, srv, ch, graphqlTransportWS)
	pingRecorder(client, true)
	clientReader(t, client)

	start := time.Now()
	const userTimeout = 4 * testPingInterval
	if err := server.(transport.WebsocketReadDeadliner).SetReadDeadline(start.Add(userTimeout)); err != nil {
		t.Fatal(err)
	}
	r := awaitRead(t, nextMessage(server)) // pongs keep extending the keep-alive deadline
	var ne net.Error
	if !errors.As(r.err, &ne) || !ne.Timeout() {
		t.Fatalf("NextReader = %v, want the caller's read timeout", r.err)
	}
	if d := time.Since(start); d < userTimeout {
		t.Errorf("timed out after %v, before the caller's deadline %v", d, userTimeout)
	}
}

func TestPingIntervalStopsOnClose(t *testing.T) {
	srv, ch := startServer(t, New(Options{PingInterval: time.Hour}), gqlgenAcceptOptions())
	_, server := connect(t, srv, ch, graphqlTransportWS)
	c := server.(*conn)
	if c.pingTimer == nil {
		t.Fatal("no ping timer with PingInterval set")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	writes := c.fc.socketWrites.Load()
	c.sendPing() // a tick that was already due when Close ran
	if c.pingTimer.Stop() {
		t.Error("the ping timer was re-armed after Close")
	}
	if got := c.fc.socketWrites.Load(); got != writes {
		t.Errorf("%d socket writes after Close", got-writes)
	}

	// With pings off there is no timer at all.
	srv2, ch2 := startServer(t, New(Options{}), gqlgenAcceptOptions())
	_, plain := connect(t, srv2, ch2, graphqlTransportWS)
	if plain.(*conn).pingTimer != nil {
		t.Error("ping timer armed with PingInterval 0")
	}
}

func TestPingIntervalCloseWhilePinging(t *testing.T) {
	// A tiny interval so Close races with ticks in flight; goleak (TestMain)
	// and -race check that Close leaves nothing running.
	srv, ch := startServer(t, New(Options{PingInterval: 100 * time.Microsecond}), gqlgenAcceptOptions())
	for range 20 {
		client, server := connect(t, srv, ch, graphqlTransportWS)
		pings := pingRecorder(client, true)
		clientReader(t, client)
		reads := nextMessage(server)
		awaitPings(t, pings, 3)
		if err := server.Close(); err != nil {
			t.Fatal(err)
		}
		awaitRead(t, reads)
	}
}

func TestGQLGenWithPingInterval(t *testing.T) {
	t.Run("answering client stays connected", func(t *testing.T) {
		s := startGQLServerWith(t, transport.Websocket{}, Options{PingInterval: testPingInterval})
		c := s.dial(t, graphqlTransportWS)
		pings := pingRecorder(c, true)
		send(t, c, wsMsg{Type: "connection_init"})
		expect(t, c, "connection_ack")
		send(t, c, wsMsg{ID: "1", Type: "subscribe", Payload: []byte(`{"query":"subscription { name }"}`)})
		// Pings are answered while the client waits in ReadJSON.
		nextSeen := make(chan wsMsg, 1)
		go func() {
			var m wsMsg
			_ = c.ReadJSON(&m)
			nextSeen <- m
		}()
		awaitPings(t, pings, 6)
		s.schema.SendNextSubscriptionMessage()
		select {
		case m := <-nextSeen:
			if m.Type != "next" {
				t.Errorf("got %+v, want next", m)
			}
		case <-time.After(waitBound):
			t.Fatal("no next message")
		}
		select {
		case code := <-s.closes:
			t.Errorf("connection closed (%d) although the client answered pings", code)
		default:
		}
		closeAndDrain(t, c)
		s.awaitClose(t)
	})

	t.Run("silent client is dropped", func(t *testing.T) {
		s := startGQLServerWith(t, transport.Websocket{}, Options{PingInterval: testPingInterval})
		c := s.dial(t, graphqlTransportWS)
		pingRecorder(c, false)
		send(t, c, wsMsg{Type: "connection_init"})
		expect(t, c, "connection_ack")
		err := readUntilErr(c) // processes (and ignores) pings until dropped
		if err == nil {
			t.Fatal("client read succeeded")
		}
		s.awaitClose(t)
		select {
		case err := <-s.errs:
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("ErrorFunc got %v, want a read timeout", err)
			}
		default:
			t.Error("ErrorFunc was not called for the missing pongs")
		}
	})
}

func TestNewPingIntervalOption(t *testing.T) {
	for _, tt := range []struct {
		in, want time.Duration
	}{{0, 0}, {-time.Second, 0}, {15 * time.Second, 15 * time.Second}} {
		if got := New(Options{PingInterval: tt.in}).pingInterval; got != tt.want {
			t.Errorf("PingInterval %v: got %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := New(Options{}).coalesceLimit; got != 256<<10 {
		t.Errorf("coalesce limit = %d, want 256 KiB", got)
	}
}
