package httpapi

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Connection limits of LimitListener.
const (
	// overflowAnswers is how many connections over the limit are answered
	// at once; more are closed without an answer.
	overflowAnswers = 32
	// overflowDeadline bounds reading the request of, and answering, a
	// connection over the limit.
	overflowDeadline = 2 * time.Second
)

// LimitListener returns a listener that hands at most max connections to
// its caller at once (websockets included: a hijacked connection counts
// until it is closed), so that clients that hold connections open cannot
// exhaust the process's file descriptors. A connection over the limit is
// answered on the spot and closed: GET /health as usual, so that a load
// balancer still sees the process alive (h, the server's handler, serves
// it), anything else by 503 with
// Retry-After and a JSON body. At most a few such answers run at once,
// each within two seconds; beyond them a connection is closed at once.
// Close waits for the answers in progress. Refusals are logged at warn, at
// most once a second (with how many there were since and the last
// client's address): under a flood, one line per connection would be a
// flood of its own.
func LimitListener(ln net.Listener, max int, h http.Handler, log *slog.Logger) net.Listener {
	return &limitListener{Listener: ln, max: int64(max), health: h, log: log, overflow: make(chan struct{}, overflowAnswers)}
}

type limitListener struct {
	net.Listener
	max    int64
	health http.Handler
	log    *slog.Logger
	open   atomic.Int64

	logMu    sync.Mutex
	logged   time.Time     // when the last refusal was logged
	refused  int           // refusals since
	overflow chan struct{} // semaphore of the answers over the limit
	answers  sync.WaitGroup
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, open: &l.open}, nil
		}
		l.open.Add(-1)
		l.logRefusal(c.RemoteAddr())
		select {
		case l.overflow <- struct{}{}:
			l.answers.Go(func() {
				defer func() { <-l.overflow }()
				l.answerOverflow(c)
			})
		default:
			_ = c.Close()
		}
	}
}

func (l *limitListener) logRefusal(client net.Addr) {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	l.refused++
	if now := time.Now(); now.Sub(l.logged) >= time.Second {
		l.log.Warn("connections refused: MAX_CONNECTIONS open", "max_connections", l.max, "refused", l.refused, "client", client.String())
		l.logged, l.refused = now, 0
	}
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.answers.Wait()
	return err
}

// answerOverflow answers one request on a connection over the limit and
// closes it.
func (l *limitListener) answerOverflow(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(overflowDeadline))
	req, err := http.ReadRequest(bufio.NewReaderSize(io.LimitReader(c, 16<<10), 4096))
	if err != nil {
		return
	}
	w := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	if req.Method == http.MethodGet && req.URL.Path == "/health" {
		l.health.ServeHTTP(w, req)
	} else {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "too many open connections; retry shortly")
	}
	resp := &http.Response{
		StatusCode:    w.status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(&w.body),
		ContentLength: int64(w.body.Len()),
		Close:         true,
	}
	_ = resp.Write(c)
}

// countedConn gives its place back when closed.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// bufferedResponse is a ResponseWriter that keeps a small response to
// write it whole.
type bufferedResponse struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.header }

func (w *bufferedResponse) WriteHeader(status int) {
	if !w.wrote {
		w.status, w.wrote = status, true
	}
}

func (w *bufferedResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(p) > 64<<10 {
		return 0, errTooLong
	}
	return w.body.Write(p)
}

var errTooLong = errors.New("response over 64 KiB")
