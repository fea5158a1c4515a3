package wstransport

import (
	"encoding/binary"
	"encoding/json"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The outgoing side of a connection.
//
// Frames are appended to the connection's buffer (taken from a pool shared
// by all connections, released while empty) by whoever produces them: the
// reader (acks, pongs, close replies), the keep-alive timer, gorilla (the
// 101 response, through sockConn) and the writer itself (operation and
// subscription results).
// The writer goroutine is started when there is work and none runs; it
// starts the waiting operations and drains the subscriptions that have
// changes until one write's worth (gatherLimit) is queued, writes the
// buffer with one write(2) (under a deadline of Options.WriteTimeout) while
// later frames accumulate for its next turn, and exits when there is
// nothing left. After a close frame it closes the socket. The first failed
// write closes the socket at once and drops what is queued.
//
// What is queued and not yet written (the buffer and the write under way)
// is bounded by Options.MaxQueuedBytes: the writer produces results only
// below gatherLimit (at most that bound), so while a write blocks it adds
// nothing; the reader reads no frame while the bound is reached (waitRoom),
// which bounds what it adds (a pong, a reply) to one frame's worth; and the
// rare producers of their own (subscriptions not using Feed) wait likewise.

// coalesceLimit is how many bytes the writer gathers before it writes them;
// it also bounds how far a connection runs ahead of a slow client: the
// writer takes no more changes while a write blocks, so they wait in the
// broker, which ends the subscription (SLOW_SUBSCRIBER) if it falls too far
// behind.
const coalesceLimit = 64 << 10

// maxPooledBuffer is the largest buffer returned to the pool.
const maxPooledBuffer = 256 << 10

// buffers holds the connections' output buffers (*[]byte). A new one is
// small: most turns carry a message or two, and while the writer yields
// (see write) every connection being written holds one, so after a burst
// the pool holds as many as there were connections.
var buffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

func putBuffer(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	buffers.Put(b)
}

// appendLocked appends what add appends to the queue, unless a close frame
// is queued already: nothing may follow it. c.mu is held.
func (c *conn) appendLocked(add func([]byte) []byte) {
	if c.closeSent {
		return
	}
	if c.out == nil {
		c.out = buffers.Get().(*[]byte)
	}
	*c.out = add(*c.out)
	if p := c.t.opts.probes; p != nil && p.queued != nil {
		p.queued(c.queuedLocked())
	}
}

// queuedLocked returns the bytes queued and not yet written: the buffer
// and the write under way. c.mu is held.
func (c *conn) queuedLocked() int {
	n := c.inFlight
	if c.out != nil {
		n += len(*c.out)
	}
	return n
}

// gatherLimit is how much the writer queues before it writes.
func (c *conn) gatherLimit() int {
	return min(coalesceLimit, c.t.opts.MaxQueuedBytes)
}

// hasRoomLocked reports whether the connection may take more from its
// client: its queue is below the bound and fewer than maxWaiting
// operations wait. c.mu is held.
func (c *conn) hasRoomLocked() bool {
	return c.queuedLocked() < c.t.opts.MaxQueuedBytes && len(c.starts) < maxWaiting
}

// signalRoomLocked wakes those waiting in waitRoom once there is room or
// the connection is closing. Whoever makes room (the writer, after a write
// or when it takes an operation to start) or closes the connection calls
// it. c.mu is held.
func (c *conn) signalRoomLocked() {
	if c.room != nil && (c.closing || c.hasRoomLocked()) {
		close(c.room)
		c.room = nil
	}
}

// waitRoom blocks until the connection has room (hasRoomLocked) or is
// closing; ok is false once it is closing, and waited tells whether it
// blocked. The reader calls it before each frame, and subscriptions that
// do not use Feed before each result.
func (c *conn) waitRoom() (ok, waited bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.closing && !c.hasRoomLocked() {
		waited = true
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.mu.Unlock()
		<-room
		c.mu.Lock()
	}
	return !c.closing, waited
}

// queueRaw queues what gorilla writes (the 101 response), reporting false
// once the socket is closed.
func (c *conn) queueRaw(p []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sockClosed || c.failed != nil {
		return false
	}
	c.appendLocked(func(b []byte) []byte { return append(b, p...) })
	c.kickLocked()
	return true
}

// queueMessage queues a protocol message with an optional id and payload
// (already encoded JSON).
func (c *conn) queueMessage(id, typ string, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.appendLocked(func(b []byte) []byte { return appendMessage(b, id, typ, payload) })
	c.kickLocked()
}

// kickLocked starts the writer if there is work for it and it is not
// running. c.mu is held.
func (c *conn) kickLocked() {
	if c.writing || c.sockClosed {
		return
	}
	if (c.out == nil || len(*c.out) == 0) && len(c.ready) == 0 && len(c.starts) == 0 && !c.closing {
		return
	}
	c.writing = true
	c.t.goStarted()
	go c.write()
}

// write is the writer goroutine (see above). It exits when there is
// nothing left to do, or after closing the socket.
func (c *conn) write() {
	defer c.t.goDone()
	gather := c.gatherLimit()
	var ready []*operation
	for {
		c.mu.Lock()
		for len(c.starts) > 0 && !c.closing && c.queuedLocked() < gather {
			op := c.starts[0]
			c.starts[0] = nil
			c.starts = c.starts[1:]
			c.signalRoomLocked()
			c.mu.Unlock()
			op.begin()
			c.mu.Lock()
		}
		if c.closing || len(c.starts) == 0 {
			c.starts = nil
		}
		if c.queuedLocked() < gather {
			ready, c.ready = c.ready, ready[:0]
		}
		c.mu.Unlock()
		// Drain subscriptions until enough is gathered for one write.
		// Once they are drained, yield once before writing: under load
		// the broker's fan-out and other connections run meanwhile, and
		// changes they hand this connection leave in the same write(2)
		// (several per write instead of one); when the process is idle
		// the yield returns at once.
		yielded := false
		for len(ready) > 0 {
			n, full := 0, false
			for n < len(ready) && !full {
				full = ready[n].pump(gather)
				ready[n] = nil
				n++
			}
			c.mu.Lock()
			if full {
				// The rest go back in front of the queue for the next
				// turn, ahead of those that queued meanwhile.
				c.ready = append(slices.Clone(ready[n:]), c.ready...)
				ready = ready[:0]
				c.mu.Unlock()
				break
			}
			ready, c.ready = c.ready, ready[:0]
			c.mu.Unlock()
			if len(ready) == 0 && !yielded {
				yielded = true
				runtime.Gosched()
				c.mu.Lock()
				ready, c.ready = c.ready, ready[:0]
				c.mu.Unlock()
			}
		}
		c.mu.Lock()
		out := c.out
		c.out = nil
		if out == nil || len(*out) == 0 || c.failed != nil || c.sockClosed {
			if out != nil {
				putBuffer(out)
			}
			if (len(c.ready) > 0 || len(c.starts) > 0) && c.failed == nil && !c.sockClosed {
				c.mu.Unlock()
				continue
			}
			closing := c.closing && !c.sockClosed
			c.writing = false
			c.mu.Unlock()
			if closing {
				c.closeSocket()
			}
			return
		}
		c.inFlight = len(*out)
		c.mu.Unlock()

		err := c.sock.SetWriteDeadline(time.Now().Add(c.t.opts.WriteTimeout))
		if err == nil {
			_, err = c.sock.Write(*out)
		}
		putBuffer(out)
		c.mu.Lock()
		c.inFlight = 0
		if err != nil {
			c.failed = err
		}
		c.signalRoomLocked()
		c.mu.Unlock()
		if err != nil {
			c.closeSocket() // ends the reader, which ends the operations
			c.closeWith(0, "")
		}
	}
}

// appendFrame appends an unmasked, final websocket frame (server frames are
// never masked).
func appendFrame(b []byte, opcode int, payload []byte) []byte {
	b = appendHeader(b, opcode, len(payload))
	return append(b, payload...)
}

func appendHeader(b []byte, opcode, n int) []byte {
	b = append(b, 0x80|byte(opcode))
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// appendMessage appends a text frame holding the protocol message
// {"id":id,"type":typ,"payload":payload}; id and payload are left out when
// empty, as gqlgen did.
func appendMessage(b []byte, id, typ string, payload []byte) []byte {
	var idJSON []byte
	if id != "" {
		idJSON, _ = json.Marshal(id) // a string always encodes
	}
	return appendEncodedMessage(b, idJSON, typ, payload)
}

// appendEncodedMessage is appendMessage with the id already encoded as a
// JSON string (nil: none).
func appendEncodedMessage(b []byte, idJSON []byte, typ string, payload []byte) []byte {
	n := len(`{"type":""}`) + len(typ)
	if idJSON != nil {
		n += len(`"id":,`) + len(idJSON)
	}
	if len(payload) > 0 {
		n += len(`,"payload":`) + len(payload)
	}
	b = appendHeader(b, websocket.TextMessage, n)
	b = append(b, '{')
	if idJSON != nil {
		b = append(b, `"id":`...)
		b = append(b, idJSON...)
		b = append(b, ',')
	}
	b = append(b, `"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	if len(payload) > 0 {
		b = append(b, `,"payload":`...)
		b = append(b, payload...)
	}
	return append(b, '}')
}
