package wstransport_test

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/wstransport"
	"github.com/jobqueue/jobqueue/internal/wstransport/wstest"
)

// dialRaw dials like dial and also returns the client's socket, to write
// frames gorilla's client would not.
func (b *bundle) dialRaw(t *testing.T, protocol string) (*wstest.Client, net.Conn) {
	t.Helper()
	return dialRaw(t, b.srv.URL, protocol)
}

// dialRaw dials the server at url (its http:// address) like wstest.Dial
// and also returns the client's socket.
func dialRaw(t *testing.T, url, protocol string) (*wstest.Client, net.Conn) {
	t.Helper()
	var sock net.Conn
	d := websocket.Dialer{
		Subprotocols:     []string{protocol},
		HandshakeTimeout: waitBound,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			sock = c
			return c, err
		},
	}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(url, "http"), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", protocol, err)
	}
	_ = resp.Body.Close()
	return wstest.New(t, c), sock
}

// frame encodes a client frame: first is its first byte (FIN, reserved
// bits, opcode); masked frames use a fixed key.
func frame(first byte, payload []byte, masked bool) []byte {
	b := []byte{first, 0}
	switch n := len(payload); {
	case n <= 125:
		b[1] = byte(n)
	case n <= 0xFFFF:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	b[1] |= 0x80
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i&3])
	}
	return b
}

const (
	fin          = 0x80
	opContinue   = 0x0
	opText       = 0x1
	opClose      = 0x8
	opPing       = 0x9
	opPong       = 0xA
	reservedBit1 = 0x40
)

func write(t *testing.T, sock net.Conn, frames ...[]byte) {
	t.Helper()
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	if _, err := sock.Write(all); err != nil {
		t.Fatalf("write frames: %v", err)
	}
}

// A message may come in fragments with control frames between them, and
// frames of any length; what arrives together is all handled.
func TestFragmentsControlFramesAndLengths(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	c, sock := b.dialRaw(t, "graphql-transport-ws")
	pongs := make(chan string, 300)
	c.Conn.SetPongHandler(func(p string) error {
		pongs <- p
		return nil
	})
	write(t, sock,
		frame(opText, []byte(`{"type":`), true),
		frame(fin|opPing, []byte("between"), true),
		frame(opContinue, []byte(`"connection`), true),
		frame(fin|opContinue, []byte(`_init"}`), true),
	)
	c.Expect("connection_ack", "")
	if p := <-pongs; p != "between" {
		t.Fatalf("pong %q, want the ping's payload", p)
	}

	// A ping answered whatever else arrived with it: 200 frames in one
	// write, more than one read buffer holds.
	var pings [][]byte
	for range 200 {
		pings = append(pings, frame(fin|opPing, []byte("0123456789abcdefghij"), true))
	}
	write(t, sock, pings...)
	// Payload lengths in 16 and 64 bits: each message is read whole (the
	// pong echoes the shorter one; a payload over 1 KiB is left out).
	for _, n := range []int{300, 70000} {
		id := strings.Repeat("x", n)
		write(t, sock, frame(fin|opText, []byte(`{"type":"ping","payload":{"id":"`+id+`"}}`), true))
		m := c.Expect("pong", "")
		if echoed := strings.Contains(string(m.Payload), id); echoed != (n < wstransport.MaxPongPayload) {
			t.Fatalf("pong payload of %d bytes for a %d-byte id", len(m.Payload), n)
		}
	}
	if len(pongs) != 200 {
		t.Fatalf("%d pongs for 200 pings", len(pongs))
	}
}

// Frames a server must refuse close the connection with 1002.
func TestProtocolErrorsClose1002(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	closeCode := func(code int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(code)) }
	for _, tc := range []struct {
		name   string
		frames [][]byte
		reason string
	}{
		{"unmasked", [][]byte{frame(fin|opText, []byte(`{"type":"ping"}`), false)}, "bad MASK"},
		{"reserved bit", [][]byte{frame(fin|reservedBit1|opText, []byte(`{}`), true)}, "reserved bits"},
		{"unknown opcode", [][]byte{frame(fin|0x3, nil, true)}, "bad opcode 3"},
		{"continuation first", [][]byte{frame(fin|opContinue, []byte(`{}`), true)}, "continuation after FIN"},
		{"message inside a message", [][]byte{frame(opText, []byte(`{`), true), frame(fin|opText, []byte(`{}`), true)}, "data before FIN"},
		{"fragmented control frame", [][]byte{frame(opPing, nil, true)}, "FIN not set on control"},
		{"long control frame", [][]byte{frame(fin|opPing, make([]byte, 126), true)}, "len > 125 for control"},
		{"one-byte close frame", [][]byte{frame(fin|opClose, []byte{3}, true)}, "bad close frame"},
		{"reserved close code", [][]byte{frame(fin|opClose, closeCode(1005), true)}, "bad close code 1005"},
		{"close reason not UTF-8", [][]byte{frame(fin|opClose, append(closeCode(4000), 0xff), true)}, "invalid utf8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sock := b.dialRaw(t, "graphql-transport-ws")
			c.Init()
			write(t, sock, tc.frames...)
			ce := c.Closed()
			if ce.Code != websocket.CloseProtocolError || !strings.Contains(ce.Text, tc.reason) {
				t.Fatalf("close %d %q, want 1002 %q", ce.Code, ce.Text, tc.reason)
			}
		})
	}
}

// A client's close frame is answered with its code, and ends the
// connection's subscriptions.
func TestClientCloseIsAnswered(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	for _, tc := range []struct {
		name    string
		payload []byte
		code    int
	}{
		{"with a code", append(binary.BigEndian.AppendUint16(nil, 4321), "bye"...), 4321},
		{"empty", nil, websocket.CloseNoStatusReceived},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sock := b.dialRaw(t, "graphql-transport-ws")
			c.Init()
			c.Send(wstest.Subscribe("s", allJobs, nil))
			brokertest.WaitSubscribers(t, b.broker, 1, "the subscription")
			write(t, sock, frame(fin|opClose, tc.payload, true))
			if ce := c.Closed(); ce.Code != tc.code || ce.Text != "" {
				t.Fatalf("close %d %q, want %d without a reason", ce.Code, ce.Text, tc.code)
			}
			brokertest.WaitSubscribers(t, b.broker, 0, "the subscription to leave the broker")
		})
	}
}
