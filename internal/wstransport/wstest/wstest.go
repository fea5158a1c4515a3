// Package wstest is a raw GraphQL-over-websocket client for tests. It
// writes and reads the messages of graphql-transport-ws and of the legacy
// graphql-ws protocol by hand, so that a test can send what a real client
// never would and see every message and close frame the server sends.
package wstest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Timeout bounds the handshake and each read.
const Timeout = 10 * time.Second

// Msg is one protocol message, in either protocol.
type Msg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Subscribe returns a graphql-transport-ws subscribe message of query with
// vars. (Legacy clients send the same payload in a "start" message.)
func Subscribe(id, query string, vars map[string]any) Msg {
	return Msg{ID: id, Type: "subscribe", Payload: Payload(query, vars)}
}

// Payload returns the payload of a subscribe or start message: query and
// its variables. vars must be plain JSON values.
func Payload(query string, vars map[string]any) json.RawMessage {
	p, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		panic("wstest: variables that are not JSON: " + err.Error())
	}
	return p
}

// Client is one websocket connection of one test. Its methods fail that
// test (t.Fatalf) on errors they do not return, so call them from the
// test's goroutine.
type Client struct {
	// Conn is the connection, for what the methods do not cover (control
	// frames, reads without the keep-alive filter).
	Conn *websocket.Conn
	t    testing.TB
}

// Dial opens a websocket to the server at url (its http:// address and
// path) asking for subprotocol, and fails the test unless the server
// chose it. The connection is closed when the test ends.
func Dial(t testing.TB, url, subprotocol string) *Client {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: Timeout}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(url, "http"), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", subprotocol, err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	if c.Subprotocol() != subprotocol {
		t.Fatalf("negotiated subprotocol %q, want %q", c.Subprotocol(), subprotocol)
	}
	return &Client{Conn: c, t: t}
}

// New wraps a connection the test dialled itself (to reach its socket,
// say); it is closed when the test ends.
func New(t testing.TB, c *websocket.Conn) *Client {
	t.Cleanup(func() { _ = c.Close() })
	return &Client{Conn: c, t: t}
}

// Send writes m.
func (c *Client) Send(m Msg) {
	c.t.Helper()
	if err := c.Conn.WriteJSON(m); err != nil {
		c.t.Fatalf("send %s: %v", m.Type, err)
	}
}

// SendRaw writes s as a text message, as it is: for messages that are not
// valid protocol messages.
func (c *Client) SendRaw(s string) {
	c.t.Helper()
	if err := c.Conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("send %s: %v", s, err)
	}
}

// Read returns the next message other than a keep-alive (legacy "ka"), or
// the error that ended the connection (a *websocket.CloseError for a close
// frame). It waits at most Timeout for each message.
func (c *Client) Read() (Msg, error) {
	for {
		if err := c.Conn.SetReadDeadline(time.Now().Add(Timeout)); err != nil {
			return Msg{}, err
		}
		var m Msg
		if err := c.Conn.ReadJSON(&m); err != nil {
			return Msg{}, err
		}
		if m.Type != "ka" {
			return m, nil
		}
	}
}

// Expect reads the next message and fails the test unless it has type typ
// and id id.
func (c *Client) Expect(typ, id string) Msg {
	c.t.Helper()
	m, err := c.Read()
	if err != nil {
		c.t.Fatalf("waiting for %s %s: %v", typ, id, err)
	}
	if m.Type != typ || m.ID != id {
		c.t.Fatalf("got %s %s %s, want %s %s", m.Type, m.ID, m.Payload, typ, id)
	}
	return m
}

// Init sends connection_init and expects connection_ack.
func (c *Client) Init() {
	c.t.Helper()
	c.Send(Msg{Type: "connection_init"})
	c.Expect("connection_ack", "")
}

// Closed reads, skipping messages, until the connection ends, and returns
// its close frame; it fails the test if the connection ended without one.
func (c *Client) Closed() *websocket.CloseError {
	c.t.Helper()
	for {
		_, err := c.Read()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("connection ended with %v, want a close frame", err)
		}
		return ce
	}
}
