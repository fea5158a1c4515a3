package gorillaws

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// defaultCoalesceLimit bounds the bytes a connection buffers for its flusher.
// A writer that would go past it waits until the flusher has taken the buffer.
const defaultCoalesceLimit = 256 << 10

// maxPooledBuffer is the largest coalescing buffer returned to bufferPool.
const maxPooledBuffer = 64 << 10

// bufferPool holds coalescing buffers (*[]byte) shared by all connections: a
// connection holds one only while it has bytes to send.
var bufferPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

func putBuffer(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	bufferPool.Put(b)
}

// flushHooks lets tests observe and pause a flushConn. nil in production.
type flushHooks struct {
	// beforeSocketWrite runs on the flusher goroutine before every socket
	// write, with no lock held; p is what is about to be written.
	beforeSocketWrite func(p []byte)
	// writerBlocked runs (with flushConn.mu held: it must not call back into
	// the connection) when a Write waits because the buffer is full.
	writerBlocked func()
}

// flushConn is the net.Conn gorilla writes to. Write copies the frame bytes
// into a per-connection buffer and returns; a flusher goroutine, started when
// bytes are buffered and none is running, writes the buffer to the socket and
// exits once it is empty. While the flusher is in a write(2), later frames
// accumulate and leave together in its next write, so a burst of messages to
// one connection costs a few syscalls instead of one per message, while a lone
// message still leaves at once (nothing waits for a timer). An idle
// connection holds neither a goroutine nor a buffer.
//
// Errors: every socket write gets a deadline of now+timeout. The first failed
// write is sticky: the socket is closed at once (which also ends a pending
// read) and every later Write returns that error, so it surfaces from the
// next WriteJSON or WriteClose. Buffered bytes are then dropped.
//
// Memory: a Write waits (until the flusher makes room, fails, or Close) while
// adding p would take the buffer past limit; a Write into an empty buffer is
// always accepted, so one frame larger than limit does not deadlock.
//
// Write deadlines belong to flushConn: SetWriteDeadline is a no-op and
// SetDeadline only sets the read deadline.
type flushConn struct {
	net.Conn
	timeout time.Duration
	limit   int
	hooks   *flushHooks

	mu            sync.Mutex
	cond          sync.Cond // L is &mu; broadcast when room frees, the flusher exits, or Close
	pending       *[]byte   // bytes not yet handed to the socket; nil when idle
	spare         *[]byte   // a buffer to swap in while the flusher writes
	flushing      bool      // a flusher goroutine is running
	closed        bool      // Close was called: Write fails
	sockClosed    bool      // the socket has been closed
	err           error     // first socket write error
	closeDeadline time.Time // set by Close: bounds the final flush

	socketWrites atomic.Int64 // for tests and benchmarks
}

func newFlushConn(c net.Conn, timeout time.Duration, limit int, hooks *flushHooks) *flushConn {
	f := &flushConn{Conn: c, timeout: timeout, limit: limit, hooks: hooks}
	f.cond.L = &f.mu
	return f
}

// Write buffers p and makes sure a flusher will send it. It returns an error
// only if a previous socket write failed or the connection is closed.
func (f *flushConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	for {
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return 0, err
		}
		if f.closed {
			f.mu.Unlock()
			return 0, &net.OpError{Op: "write", Net: "tcp", Source: f.LocalAddr(), Addr: f.RemoteAddr(), Err: net.ErrClosed}
		}
		if f.pending == nil || len(*f.pending) == 0 || len(*f.pending)+len(p) <= f.limit {
			break
		}
		if f.hooks != nil && f.hooks.writerBlocked != nil {
			f.hooks.writerBlocked()
		}
		f.cond.Wait()
	}
	if f.pending == nil {
		f.pending = bufferPool.Get().(*[]byte)
	}
	*f.pending = append(*f.pending, p...)
	if !f.flushing {
		f.flushing = true
		go f.flush()
	}
	f.mu.Unlock()
	return len(p), nil
}

// flush is the flusher goroutine: it writes the pending buffer until it is
// empty or a write fails, then releases the buffers and exits.
func (f *flushConn) flush() {
	f.mu.Lock()
	for f.err == nil && f.pending != nil && len(*f.pending) > 0 {
		out := f.pending
		f.pending, f.spare = f.spare, nil // nil is fine: Write takes one from the pool
		deadline := time.Now().Add(f.timeout)
		if !f.closeDeadline.IsZero() && f.closeDeadline.Before(deadline) {
			deadline = f.closeDeadline
		}
		f.mu.Unlock()
		f.cond.Broadcast() // the buffer writers wait on is empty again

		err := f.writeSocket(*out, deadline)

		f.mu.Lock()
		if f.spare == nil {
			*out = (*out)[:0]
			f.spare = out
		} else {
			putBuffer(out)
		}
		if err != nil {
			f.err = err
			if !f.sockClosed {
				f.sockClosed = true
				_ = f.Conn.Close() // the stream may hold a partial frame; end it
			}
		}
	}
	for _, b := range []*[]byte{f.pending, f.spare} {
		if b != nil {
			putBuffer(b) // after an error this drops unsent bytes
		}
	}
	f.pending, f.spare = nil, nil
	f.flushing = false
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *flushConn) writeSocket(p []byte, deadline time.Time) error {
	if err := f.Conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if f.hooks != nil && f.hooks.beforeSocketWrite != nil {
		f.hooks.beforeSocketWrite(p)
	}
	f.socketWrites.Add(1)
	_, err := f.Conn.Write(p)
	return err
}

// Close waits until the flusher has sent what was buffered before the call
// (bounded by the write timeout from now), then closes the socket. Writes
// waiting for room, and later Writes, fail. Close returns nil if the socket
// was already closed by a failed write.
func (f *flushConn) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return &net.OpError{Op: "close", Net: "tcp", Source: f.LocalAddr(), Addr: f.RemoteAddr(), Err: net.ErrClosed}
	}
	f.closed = true
	f.closeDeadline = time.Now().Add(f.timeout)
	f.cond.Broadcast()
	for f.flushing {
		f.cond.Wait()
	}
	alreadyClosed := f.sockClosed
	f.sockClosed = true
	f.mu.Unlock()
	if alreadyClosed {
		return nil
	}
	return f.Conn.Close()
}

// SetDeadline sets only the read deadline: write deadlines are set by the
// flusher for every socket write.
func (f *flushConn) SetDeadline(t time.Time) error { return f.Conn.SetReadDeadline(t) }

// SetWriteDeadline does nothing; see flushConn.
func (f *flushConn) SetWriteDeadline(time.Time) error { return nil }

// writeFailure returns the socket write error that closed the connection, if
// any.
func (f *flushConn) writeFailure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// hijackWriter is the http.ResponseWriter given to gorilla's Upgrade: its
// Hijack wraps the hijacked connection in a flushConn. Everything else is the
// wrapped ResponseWriter's (gorilla writes HTTP error responses through it),
// Unwrap lets http.ResponseController reach the original, and Flush is
// forwarded.
type hijackWriter struct {
	http.ResponseWriter
	timeout time.Duration
	limit   int
	hooks   *flushHooks
	brw     *bufio.ReadWriter // from Hijack
}

// Hijack hijacks the wrapped ResponseWriter (directly or through Unwrap) and
// returns the connection wrapped in a flushConn, with the original
// bufio.ReadWriter: gorilla checks that its reader holds no early client data
// (and, with the buffer sizes New sets, neither keeps nor reads it) and only
// borrows its writer's buffer to format the 101 response, which it writes
// to the returned connection.
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("gorillaws: hijack: %w", err)
	}
	w.brw = brw
	return newFlushConn(c, w.timeout, w.limit, w.hooks), brw, nil
}

// releaseBuffers shrinks, in place, the bufio.Reader and bufio.Writer that
// Hijack returned, once the upgrade is done. With net/http they are the
// connection's own read and write buffers (4 KiB each), and net/http's
// response object still points to them for as long as the handler runs,
// which for gqlgen is the life of the websocket, even if the handler chain
// hands the connection to another goroutine. After Hijack they belong to us
// (http.Hijacker), and neither is needed any more: gorilla checked that the
// reader holds no client data and reads through its own buffer (New always
// sets ReadBufferSize), and it borrowed the writer's buffer only to format
// the 101 response, already copied into the flushConn (New always sets a
// WriteBufferPool, so gorilla does not keep it either). Replacing their
// contents with minimal ones lets the 8 KiB be collected; should anything
// still use them, the reader reports EOF and the writer discards.
func (w *hijackWriter) releaseBuffers() {
	if w.brw == nil {
		return
	}
	if w.brw.Reader != nil {
		*w.brw.Reader = *bufio.NewReaderSize(eofReader{}, 16)
	}
	if w.brw.Writer != nil {
		*w.brw.Writer = *bufio.NewWriterSize(io.Discard, 1)
	}
	w.brw = nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *hijackWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }
