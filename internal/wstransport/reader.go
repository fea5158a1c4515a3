package wstransport

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// The incoming side of a connection.
//
// A connection keeps one goroutine for its whole life, and its stack is a
// large part of what an idle connection costs: a stack grows while a deep
// call runs on it, and the runtime halves it only while less than a quarter
// is in use, so a reader that handled a message on its own stack would keep
// 4 KiB or more. Reading is therefore split in two. While nothing arrives, the connection's goroutine
// is wait, whose stack stays shallow: it holds no buffer and no frame state,
// and blocks reading one byte. When that byte comes, wait hands the
// connection to a new goroutine, serve, and exits; serve reads the frames
// that arrived through a pooled buffer, answers control frames, handles
// every message (decoding, InitFunc, starting operations), and once all it
// read is handled and no message is half read, starts a new wait and exits.
// Each connection thus has exactly one of them at a time.
//
// gorilla/websocket only performs the handshake. Frames are read as RFC 6455
// requires of a server, as gorilla's reader did: client frames are masked,
// no extension is negotiated (reserved bits are 0), control frames are final
// and at most 125 bytes and may come between the fragments of a message; a
// violation closes the connection with 1002. A message larger than
// Options.ReadLimit closes it with 1009, a ping is answered with a pong, and
// a close frame with a close frame of the same code. Before each frame,
// serve waits while the connection has no room (waitRoom): the replies of
// a client that sends and does not read stay within the outgoing bound.

// frameBufferSize is the size of the pooled buffers frames are read through.
const frameBufferSize = 4096

// maxPooledMessage is the largest message buffer kept for reuse.
const maxPooledMessage = 64 << 10

// frameReader reads frames from one connection while serve runs; it goes
// back to the pool when serve returns to waiting.
type frameReader struct {
	src     io.Reader
	buf     []byte // frameBufferSize bytes; buf[r:w] is read and not yet used
	r, w    int
	msg     []byte // the data message being assembled
	partial bool   // a data frame without FIN was read: continuations follow
	control []byte // a control frame's payload
}

var frameReaders = sync.Pool{New: func() any {
	return &frameReader{buf: make([]byte, frameBufferSize), control: make([]byte, 0, maxControlPayload)}
}}

const maxControlPayload = 125

// need reads until at least n (at most frameBufferSize) bytes are unused.
func (f *frameReader) need(n int) error {
	if f.w-f.r >= n {
		return nil
	}
	if len(f.buf)-f.r < n {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	for f.w-f.r < n {
		m, err := f.src.Read(f.buf[f.w:])
		f.w += m
		if err != nil && f.w-f.r < n {
			return err
		}
	}
	return nil
}

// take returns the next n (at most frameBufferSize) bytes.
func (f *frameReader) take(n int) ([]byte, error) {
	if err := f.need(n); err != nil {
		return nil, err
	}
	p := f.buf[f.r : f.r+n]
	f.r += n
	return p, nil
}

// payload appends the next n bytes to dst, unmasked with key.
func (f *frameReader) payload(dst []byte, n int, key [4]byte) ([]byte, error) {
	start := len(dst)
	for n > 0 {
		if f.r == f.w {
			if err := f.need(1); err != nil {
				return dst, err
			}
		}
		k := min(f.w-f.r, n)
		dst = append(dst, f.buf[f.r:f.r+k]...)
		f.r += k
		n -= k
	}
	for i := range dst[start:] {
		dst[start+i] ^= key[i&3]
	}
	return dst, nil
}

// drained reports whether everything read has been used, at a message
// boundary.
func (f *frameReader) drained() bool { return f.r == f.w && !f.partial }

func (f *frameReader) release() {
	f.src = nil
	f.r, f.w = 0, 0
	f.partial = false
	if cap(f.msg) > maxPooledMessage {
		f.msg = nil
	}
	f.msg = f.msg[:0]
	frameReaders.Put(f)
}

// wait is the connection's goroutine while no message is being read.
func (c *conn) wait() {
	for {
		n, err := c.sock.Read(c.first[:])
		if n == 1 {
			break
		}
		if err != nil {
			c.readFailed(err)
			c.stopReading()
			return
		}
	}
	go c.serve()
}

// serve reads and handles what arrived, starting with the byte wait read,
// then waits again; or ends reading when the connection ends.
func (c *conn) serve() {
	f := frameReaders.Get().(*frameReader)
	f.src = c.sock
	f.buf[0] = c.first[0]
	f.w = 1
	for {
		// Nothing more is read while the connection has no room (see
		// writer.go): the client's socket buffer fills instead of ours.
		ok, waited := c.waitRoom()
		if waited && ok {
			c.resumeReading()
		}
		if !ok || !c.readFrame(f) {
			f.release()
			c.stopReading()
			return
		}
		if f.drained() {
			break
		}
	}
	f.release()
	go c.wait()
}

// resumeReading follows a pause of the reader: pongs that arrived meanwhile
// were not read, so keep-alive gives the client two intervals from now.
func (c *conn) resumeReading() {
	c.mu.Lock()
	armed := !c.pongDue.IsZero()
	c.mu.Unlock()
	if armed {
		c.pong()
	}
}

// stopReading ends the connection's goroutine for good.
func (c *conn) stopReading() {
	c.t.untrack(c)
	c.t.goDone()
}

// readFrame reads one frame and acts on it. It reports false when reading
// ends: the connection is closing.
func (c *conn) readFrame(f *frameReader) bool {
	h, err := f.take(2)
	if err != nil {
		c.readFailed(err)
		return false
	}
	fin, opcode, masked, n := h[0]&0x80 != 0, int(h[0]&0x0f), h[1]&0x80 != 0, int64(h[1]&0x7f)
	var problems []string
	if h[0]&0x70 != 0 {
		problems = append(problems, "reserved bits set")
	}
	control := false
	switch opcode {
	case websocket.CloseMessage, websocket.PingMessage, websocket.PongMessage:
		control = true
		if n > maxControlPayload {
			problems = append(problems, "len > 125 for control")
		}
		if !fin {
			problems = append(problems, "FIN not set on control")
		}
	case websocket.TextMessage, websocket.BinaryMessage:
		if f.partial {
			problems = append(problems, "data before FIN")
		}
	case 0: // continuation
		if !f.partial {
			problems = append(problems, "continuation after FIN")
		}
	default:
		problems = append(problems, "bad opcode "+strconv.Itoa(opcode))
	}
	if !masked {
		problems = append(problems, "bad MASK")
	}
	if problems != nil {
		return c.protocolError(problems)
	}
	switch n {
	case 126:
		p, err := f.take(2)
		if err != nil {
			c.readFailed(err)
			return false
		}
		n = int64(binary.BigEndian.Uint16(p))
	case 127:
		p, err := f.take(8)
		if err != nil {
			c.readFailed(err)
			return false
		}
		n = int64(binary.BigEndian.Uint64(p)) // negative when the top bit is set: too big below
	}
	k, err := f.take(4)
	if err != nil {
		c.readFailed(err)
		return false
	}
	key := [4]byte(k)

	if control {
		p, err := f.payload(f.control[:0], int(n), key)
		if err != nil {
			c.readFailed(err)
			return false
		}
		return c.controlFrame(opcode, p)
	}
	if n < 0 || int64(len(f.msg))+n > c.t.opts.ReadLimit {
		c.closeWith(websocket.CloseMessageTooBig, "")
		return false
	}
	if f.msg, err = f.payload(f.msg, int(n), key); err != nil {
		c.readFailed(err)
		return false
	}
	f.partial = !fin
	if f.partial {
		return true
	}
	msg := f.msg
	f.msg = f.msg[:0]
	return c.message(msg)
}

func (c *conn) protocolError(problems []string) bool {
	reason := problems[0]
	for _, p := range problems[1:] {
		reason += ", " + p
	}
	c.closeWith(websocket.CloseProtocolError, reason)
	return false
}

// controlFrame answers a ping, notes a pong, and answers a close frame.
func (c *conn) controlFrame(opcode int, p []byte) bool {
	switch opcode {
	case websocket.PingMessage:
		c.mu.Lock()
		if !c.closing {
			c.appendLocked(func(b []byte) []byte { return appendFrame(b, websocket.PongMessage, p) })
			c.kickLocked()
		}
		c.mu.Unlock()
		return true
	case websocket.PongMessage:
		if c.t.opts.KeepAlive > 0 {
			c.pong()
		}
		return true
	}
	code := websocket.CloseNoStatusReceived // answered with an empty close frame
	switch {
	case len(p) == 1:
		return c.protocolError([]string{"bad close frame"})
	case len(p) >= 2:
		code = int(binary.BigEndian.Uint16(p))
		if !validCloseCode(code) {
			return c.protocolError([]string{"bad close code " + strconv.Itoa(code)})
		}
		if !utf8.Valid(p[2:]) {
			return c.protocolError([]string{"invalid utf8 payload in close frame"})
		}
	}
	c.closeWith(code, "")
	return false
}

// validCloseCode reports whether a peer may send code in a close frame.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1013:
		return true
	}
	return code >= 3000 && code <= 4999
}

// message decodes and handles a client message.
func (c *conn) message(b []byte) bool {
	var m inMessage
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
		if c.legacy {
			c.queueConnectionError("invalid json")
		}
		c.closeWith(CloseBadRequest, "Invalid message received")
		return false
	}
	return c.handle(&m)
}
