package gorillaws

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// These tests run gqlgen's real websocket transport on top of the adapter,
// using gqlgen's codegen-free test schema (subscription { name }).

type gqlServer struct {
	url    string
	schema *testserver.TestServer
	errs   chan error // ErrorFunc calls
	closes chan int   // CloseFunc calls
}

func startGQLServer(t *testing.T, ws transport.Websocket) *gqlServer {
	t.Helper()
	return startGQLServerWith(t, ws, Options{})
}

func startGQLServerWith(t *testing.T, ws transport.Websocket, opts Options) *gqlServer {
	t.Helper()
	s := &gqlServer{
		schema: testserver.New(),
		errs:   make(chan error, 16),
		closes: make(chan int, 16),
	}
	ws.Implementation = New(opts)
	ws.ErrorFunc = func(_ context.Context, err error) {
		select {
		case s.errs <- err:
		default:
		}
	}
	ws.CloseFunc = func(_ context.Context, code int) { s.closes <- code }
	s.schema.AddTransport(ws)
	srv := httptest.NewServer(s.schema)
	t.Cleanup(srv.Close)
	s.url = wsURL(srv)
	return s
}

func (s *gqlServer) dial(t *testing.T, subprotocol string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: waitBound}
	c, _, err := d.Dial(s.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	return c
}

// awaitClose waits for gqlgen's CloseFunc, which runs once the server side of
// the connection is fully torn down.
func (s *gqlServer) awaitClose(t *testing.T) int {
	t.Helper()
	select {
	case code := <-s.closes:
		return code
	case <-time.After(waitBound):
		t.Fatal("gqlgen did not close the connection in time")
		return 0
	}
}

type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func send(t *testing.T, c *websocket.Conn, m wsMsg) {
	t.Helper()
	if err := c.WriteJSON(m); err != nil {
		t.Fatalf("client write %s: %v", m.Type, err)
	}
}

func expect(t *testing.T, c *websocket.Conn, wantType string) wsMsg {
	t.Helper()
	var m wsMsg
	if err := c.ReadJSON(&m); err != nil {
		t.Fatalf("waiting for %s: %v", wantType, err)
	}
	if m.Type != wantType {
		t.Fatalf("got message %+v, want type %s", m, wantType)
	}
	return m
}

func TestGQLGenSubscriptionAndNormalClose(t *testing.T) {
	s := startGQLServer(t, transport.Websocket{})
	c := s.dial(t, graphqlTransportWS)
	if c.Subprotocol() != graphqlTransportWS {
		t.Fatalf("subprotocol = %q", c.Subprotocol())
	}

	send(t, c, wsMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	send(t, c, wsMsg{ID: "1", Type: "subscribe", Payload: json.RawMessage(`{"query":"subscription { name }"}`)})
	s.schema.SendNextSubscriptionMessage()
	next := expect(t, c, "next")
	if next.ID != "1" || string(next.Payload) != `{"data":{"name":"test"}}` {
		t.Errorf("next = %+v", next)
	}
	send(t, c, wsMsg{ID: "1", Type: "complete"})
	expect(t, c, "complete")

	// A normal client close must not be reported through ErrorFunc.
	if err := c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	if code := s.awaitClose(t); code != websocket.CloseNormalClosure {
		t.Errorf("CloseFunc code = %d, want 1000", code)
	}
	select {
	case err := <-s.errs:
		t.Errorf("ErrorFunc called for a normal close: %v", err)
	default:
	}
}

func TestGQLGenAbnormalClientCloseIsReported(t *testing.T) {
	s := startGQLServer(t, transport.Websocket{})
	c := s.dial(t, graphqlTransportWS)
	send(t, c, wsMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")

	if err := c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "client crashed"), time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	s.awaitClose(t)
	select {
	case err := <-s.errs:
		var we transport.WebsocketError
		if !errors.As(err, &we) || !we.IsReadError || !websocket.IsCloseError(we.Err, websocket.CloseInternalServerErr) {
			t.Errorf("ErrorFunc got %#v, want a read WebsocketError wrapping close 1011", err)
		}
	default:
		t.Error("ErrorFunc was not called for close 1011")
	}
}

func TestGQLGenServerCloseFrame(t *testing.T) {
	s := startGQLServer(t, transport.Websocket{
		InitFunc: func(ctx context.Context, _ transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			ctx = transport.WithWebsocketCloseCode(ctx, 4403)
			ctx = transport.AppendCloseReason(ctx, "forbidden")
			return ctx, nil, errors.New("not authorised")
		},
	})
	c := s.dial(t, graphqlTransportWS)
	send(t, c, wsMsg{Type: "connection_init"})

	err := readUntilErr(c)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4403 || ce.Text != "forbidden" {
		t.Errorf("client got %v, want close frame 4403 \"forbidden\"", err)
	}
	if code := s.awaitClose(t); code != 4403 {
		t.Errorf("CloseFunc code = %d, want 4403", code)
	}
}

func TestGQLGenMissingPongClosesConnection(t *testing.T) {
	// gqlgen enforces pongs through WebsocketReadDeadliner.SetReadDeadline.
	s := startGQLServer(t, transport.Websocket{PingPongInterval: 50 * time.Millisecond})
	c := s.dial(t, graphqlTransportWS)
	send(t, c, wsMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	expect(t, c, "ping") // and never answer

	s.awaitClose(t)
	select {
	case err := <-s.errs:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("ErrorFunc got %v, want a read timeout", err)
		}
	default:
		t.Error("ErrorFunc was not called for the read timeout")
	}
}

func TestGQLGenLegacyGraphQLWS(t *testing.T) {
	s := startGQLServer(t, transport.Websocket{})
	c := s.dial(t, graphqlWS)
	if c.Subprotocol() != graphqlWS {
		t.Fatalf("subprotocol = %q", c.Subprotocol())
	}
	send(t, c, wsMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	expect(t, c, "ka")
	send(t, c, wsMsg{Type: "connection_terminate"})
	if code := s.awaitClose(t); code != websocket.CloseNormalClosure {
		t.Errorf("CloseFunc code = %d, want 1000", code)
	}
	if err := readUntilErr(c); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("client got %v, want close 1000", err)
	}
}
