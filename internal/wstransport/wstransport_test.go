package wstransport_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitBound bounds every wait of these tests.
const waitBound = 10 * time.Second

type bundle struct {
	store     *memory.Store
	broker    *broker.Broker
	transport *wstransport.Transport
	srv       *httptest.Server
	// executions counts gqlgen's response handler calls (executions of a
	// result).
	executions atomic.Int64
	// socketWrites counts write(2) calls on upgraded connections.
	socketWrites atomic.Int64
	stop         func() // stops the transport's Run and waits for it
}

// setup serves the project's GraphQL schema (no workers) with only the
// websocket transport, built by opts.
func setup(t testing.TB, opts wstransport.Options) *bundle {
	t.Helper()
	b := &bundle{}
	b.broker = broker.New(broker.Options{})
	t.Cleanup(b.broker.Close)
	b.store = memory.New(b.broker)
	b.transport = wstransport.New(opts)
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: &graph.Resolver{
		Service: jobs.New(b.store, b.broker, jobs.Options{}), Logger: slog.New(slog.DiscardHandler),
	}}))
	srv.AddTransport(b.transport)
	srv.AroundResponses(func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		b.executions.Add(1)
		return next(ctx)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.transport.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(b.stop)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.ServeHTTP(&countingWriter{ResponseWriter: w, writes: &b.socketWrites}, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// countingWriter counts the socket writes of the connection it hijacks.
type countingWriter struct {
	http.ResponseWriter
	writes *atomic.Int64
}

func (w *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	return &countingConn{Conn: c, writes: w.writes}, brw, err
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

type msg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type client struct {
	t *testing.T
	c *websocket.Conn
}

func (b *bundle) dial(t *testing.T, protocol string) *client {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol}, HandshakeTimeout: waitBound}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(b.srv.URL, "http"), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", protocol, err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	if c.Subprotocol() != protocol {
		t.Fatalf("negotiated %q, want %q", c.Subprotocol(), protocol)
	}
	return &client{t: t, c: c}
}

func (c *client) send(m msg) {
	c.t.Helper()
	if err := c.c.WriteJSON(m); err != nil {
		c.t.Fatalf("send %s: %v", m.Type, err)
	}
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if err := c.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("send %s: %v", s, err)
	}
}

// read returns the next message other than keep-alives.
func (c *client) read() (msg, error) {
	for {
		if err := c.c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			return msg{}, err
		}
		var m msg
		if err := c.c.ReadJSON(&m); err != nil {
			return msg{}, err
		}
		if m.Type != "ka" {
			return m, nil
		}
	}
}

func (c *client) expect(typ, id string) msg {
	c.t.Helper()
	m, err := c.read()
	if err != nil {
		c.t.Fatalf("waiting for %s %s: %v", typ, id, err)
	}
	if m.Type != typ || m.ID != id {
		c.t.Fatalf("got %s %s %s, want %s %s", m.Type, m.ID, m.Payload, typ, id)
	}
	return m
}

func (c *client) init() {
	c.t.Helper()
	c.send(msg{Type: "connection_init"})
	c.expect("connection_ack", "")
}

// closed reads until the connection ends and returns its close frame.
func (c *client) closed() *websocket.CloseError {
	c.t.Helper()
	for {
		_, err := c.read()
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

func subscribe(id, query string, vars map[string]any) msg {
	p, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	return msg{ID: id, Type: "subscribe", Payload: p}
}

const allJobs = `subscription { jobUpdated { id status version } }`
const oneJob = `subscription($id: ID) { jobUpdated(id: $id) { id status version } }`

// waitFor polls cond (state the test cannot wait on otherwise, such as the
// broker's subscriber count) until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitBound)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func TestCloseCodes(t *testing.T) {
	t.Parallel()
	refuse := errors.New("no entry")
	b := setup(t, wstransport.Options{
		InitTimeout: 300 * time.Millisecond,
		InitFunc: func(ctx context.Context, p map[string]any) (context.Context, error) {
			if p["token"] == "bad" {
				return nil, refuse
			}
			return ctx, nil
		},
	})
	job, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		protocol string
		run      func(c *client)
		code     int
		reason   string
	}{
		{"invalid json", "graphql-transport-ws", func(c *client) { c.sendRaw(`{"type":`) }, 4400, "Invalid message"},
		{"unknown type", "graphql-transport-ws", func(c *client) { c.init(); c.send(msg{Type: "start"}) }, 4400, "unexpected type start"},
		{"subscribe without payload", "graphql-transport-ws", func(c *client) { c.init(); c.send(msg{ID: "1", Type: "subscribe"}) }, 4400, "Invalid message"},
		{"init payload not an object", "graphql-transport-ws", func(c *client) { c.sendRaw(`{"type":"connection_init","payload":3}`) }, 4400, "Invalid message"},
		{"subscribe before ack", "graphql-transport-ws", func(c *client) { c.send(subscribe("1", allJobs, nil)) }, 4401, "Unauthorized"},
		{"legacy start before ack", "graphql-ws", func(c *client) { c.send(msg{ID: "1", Type: "start", Payload: subscribe("1", allJobs, nil).Payload}) }, 4401, "Unauthorized"},
		{"refused by InitFunc", "graphql-transport-ws", func(c *client) {
			c.send(msg{Type: "connection_init", Payload: json.RawMessage(`{"token":"bad"}`)})
		}, 4403, "Forbidden"},
		{"no connection_init", "graphql-transport-ws", func(*client) {}, 4408, "Connection initialisation timeout"},
		{"legacy no connection_init", "graphql-ws", func(*client) {}, 4408, "Connection initialisation timeout"},
		{"duplicate subscription id", "graphql-transport-ws", func(c *client) {
			c.init()
			c.send(subscribe("dup", oneJob, map[string]any{"id": job.ID}))
			c.expect("next", "dup")
			c.send(subscribe("dup", allJobs, nil))
		}, 4409, "Subscriber for dup already exists"},
		{"second connection_init", "graphql-transport-ws", func(c *client) { c.init(); c.send(msg{Type: "connection_init"}) }, 4429, "Too many initialisation requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The server's init deadline starts once the handshake is
			// done, so time from before the dial: never earlier than it.
			start := time.Now()
			c := b.dial(t, tc.protocol)
			c.t = t
			tc.run(c)
			ce := c.closed()
			if ce.Code != tc.code || !strings.Contains(ce.Text, tc.reason) {
				t.Fatalf("close %d %q, want %d %q", ce.Code, ce.Text, tc.code, tc.reason)
			}
			if tc.code == 4408 && time.Since(start) < 300*time.Millisecond {
				t.Fatalf("closed after %v, before the init timeout", time.Since(start))
			}
			// Nothing is left behind: the first "dup" subscription too
			// has left the broker.
			waitFor(t, "the connection's subscriptions to leave the broker", func() bool { return b.broker.Subscribers() == 0 })
		})
	}
}

func TestLegacyRefusedInitGetsConnectionError(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{InitFunc: func(context.Context, map[string]any) (context.Context, error) {
		return nil, errors.New("token expired")
	}})
	c := b.dial(t, "graphql-ws")
	c.send(msg{Type: "connection_init"})
	m := c.expect("connection_error", "")
	if !strings.Contains(string(m.Payload), "token expired") {
		t.Fatalf("connection_error %s, want the InitFunc's message", m.Payload)
	}
	if ce := c.closed(); ce.Code != wstransport.CloseForbidden {
		t.Fatalf("close %d, want 4403", ce.Code)
	}
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	b := setup(t, wstransport.Options{KeepAlive: interval})

	// A legacy client gets ka after the ack and then every interval, and
	// websocket pings, which gorilla's client answers while reading.
	legacy := b.dial(t, "graphql-ws")
	legacy.send(msg{Type: "connection_init"})
	legacy.expect("connection_ack", "")
	pings := make(chan struct{}, 16)
	legacy.c.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return legacy.c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	start := time.Now()
	kas := 0
	for kas < 5 {
		if err := legacy.c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			t.Fatal(err)
		}
		var m msg
		if err := legacy.c.ReadJSON(&m); err != nil {
			t.Fatalf("after %d ka in %v: %v", kas, time.Since(start), err)
		}
		if m.Type != "ka" {
			t.Fatalf("got %s, want ka", m.Type)
		}
		kas++
	}
	// Five ka (one at the ack, four from the timer) span four intervals,
	// more than the two a silent client gets: answering pings keeps it.
	if len(pings) < 3 {
		t.Fatalf("%d pings in %v, want one per %v", len(pings), time.Since(start), interval)
	}

	// A client that answers no ping is dropped after two intervals.
	silent := b.dial(t, "graphql-transport-ws")
	silent.init()
	silent.c.SetPingHandler(func(string) error { return nil })
	start = time.Now()
	for {
		if err := silent.c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := silent.c.ReadMessage(); err != nil {
			break
		}
	}
	if d := time.Since(start); d < 2*interval {
		t.Fatalf("silent client dropped after %v, before two intervals", d)
	}
}

func TestSharedResultsExecuteOncePerOperationAndChange(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	const conns, subsEach = 20, 3
	clients := make([]*client, conns)
	for i := range clients {
		c := b.dial(t, "graphql-transport-ws")
		c.init()
		for s := range subsEach {
			c.send(subscribe(string(rune('a'+s)), allJobs, nil))
		}
		clients[i] = c
	}
	waitFor(t, "every subscription", func() bool { return b.broker.Subscribers() == conns*subsEach })
	before := b.executions.Load()
	const jobs = 5
	for range jobs {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	var first json.RawMessage
	for _, c := range clients {
		for range jobs * subsEach {
			m, err := c.read()
			if err != nil || m.Type != "next" {
				t.Fatalf("got %+v, %v; want next", m, err)
			}
			if first == nil {
				first = m.Payload
			}
		}
	}
	if n := b.executions.Load() - before; n != jobs {
		t.Fatalf("%d executions for %d changes to %d identical subscriptions, want one per change", n, jobs, conns*subsEach)
	}
	if !strings.Contains(string(first), `"jobUpdated":{"id":`) {
		t.Fatalf("payload %s", first)
	}
}

func TestWritesAreCoalesced(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	c := b.dial(t, "graphql-transport-ws")
	c.init()
	c.send(subscribe("all", allJobs, nil))
	waitFor(t, "the subscription", func() bool { return b.broker.Subscribers() == 1 })
	before := b.socketWrites.Load()
	const jobs = 300
	for range jobs {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	for range jobs {
		c.expect("next", "all")
	}
	if n := b.socketWrites.Load() - before; n > jobs/4 {
		t.Fatalf("%d socket writes for %d messages, want them coalesced", n, jobs)
	}
}

func TestAtMostOneGoroutinePerIdleConnection(t *testing.T) {
	b := setup(t, wstransport.Options{})
	baseline := runtime.NumGoroutine()
	const conns = 40
	for i := range conns {
		c := b.dial(t, "graphql-transport-ws")
		c.init()
		for s := range 5 {
			c.send(subscribe(string(rune('a'+s)), allJobs, map[string]any{"n": i}))
		}
	}
	waitFor(t, "every subscription", func() bool { return b.broker.Subscribers() == conns*5 })
	// Each connection keeps its reader; its writer exits once the acks are
	// written, and its subscriptions have none. (The client side of the
	// test holds no goroutine per connection.)
	waitFor(t, "idle connections to hold one goroutine each", func() bool {
		return runtime.NumGoroutine()-baseline <= conns
	})
}

func TestWaitSentThenRunClosesAfterQueuedFrames(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	c := b.dial(t, "graphql-transport-ws")
	c.init()
	c.send(subscribe("all", allJobs, nil))
	waitFor(t, "the subscription", func() bool { return b.broker.Subscribers() == 1 })
	const jobs = 50
	for range jobs {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	// Shutdown's order: the broker hands every change on, the transport
	// queues them, then Run's context ends.
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := b.broker.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.transport.WaitSent(ctx); err != nil {
		t.Fatal(err)
	}
	b.stop() // returns once the connection is closed and its goroutines exited
	got := 0
	for {
		m, err := c.read()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
				t.Fatalf("after %d changes: %v, want a close frame 1000", got, err)
			}
			break
		}
		if m.Type != "next" || m.ID != "all" {
			t.Fatalf("got %s %s", m.Type, m.ID)
		}
		got++
	}
	if got != jobs {
		t.Fatalf("%d changes before the close frame, want all %d", got, jobs)
	}
	if n := b.broker.Subscribers(); n != 0 {
		t.Fatalf("%d subscriptions left in the broker after Run returned", n)
	}
}

func TestQueriesAndClientComplete(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	c := b.dial(t, "graphql-transport-ws")
	c.init()
	q, _ := json.Marshal(map[string]any{"query": `{ __typename }`})
	c.send(msg{ID: "q", Type: "subscribe", Payload: q})
	if m := c.expect("next", "q"); string(m.Payload) != `{"data":{"__typename":"Query"}}` {
		t.Fatalf("query result %s", m.Payload)
	}
	c.expect("complete", "q")

	// A validation error is the protocol's error message, then complete.
	bad, _ := json.Marshal(map[string]any{"query": `{ nope }`})
	c.send(msg{ID: "bad", Type: "subscribe", Payload: bad})
	c.expect("error", "bad")
	c.expect("complete", "bad")

	// The client's complete ends a live subscription: nothing follows for
	// it but the server's complete, and it leaves the broker.
	c.send(subscribe("s", allJobs, nil))
	waitFor(t, "the subscription", func() bool { return b.broker.Subscribers() == 1 })
	c.send(msg{ID: "s", Type: "complete"})
	c.expect("complete", "s")
	waitFor(t, "the subscription to leave the broker", func() bool { return b.broker.Subscribers() == 0 })
	if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	c.send(msg{Type: "ping"})
	c.expect("pong", "")
}

func TestMaxSubscriptions(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{MaxSubscriptions: 1})
	c := b.dial(t, "graphql-transport-ws")
	c.init()
	c.send(subscribe("1", allJobs, nil))
	c.send(subscribe("2", allJobs, nil))
	m := c.expect("error", "2")
	if !strings.Contains(string(m.Payload), wstransport.CodeTooManySubscriptions) {
		t.Fatalf("error %s, want %s", m.Payload, wstransport.CodeTooManySubscriptions)
	}
	// Queries do not count.
	q, _ := json.Marshal(map[string]any{"query": `{ __typename }`})
	c.send(msg{ID: "q", Type: "subscribe", Payload: q})
	c.expect("next", "q")
	c.expect("complete", "q")
}

// stallingWriter makes the first socket write carrying a "next" message of
// the connection it hijacks block until release is closed: a client that
// stops reading.
type stallingWriter struct {
	http.ResponseWriter
	blocked, release chan struct{}
	once             *sync.Once
}

func (w *stallingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	return &stallingConn{Conn: c, w: w}, brw, err
}

type stallingConn struct {
	net.Conn
	w *stallingWriter
}

func (c *stallingConn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), `"type":"next"`) {
		c.w.once.Do(func() {
			close(c.w.blocked)
			<-c.w.release
		})
	}
	return c.Conn.Write(p)
}

// TestStalledConnectionDelaysNoOther: a connection whose socket write
// blocks holds up neither the shared result nor other connections.
func TestStalledConnectionDelaysNoOther(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	stall := &stallingWriter{blocked: make(chan struct{}), release: make(chan struct{}), once: new(sync.Once)}
	defer close(stall.release)
	inner := b.srv.Config.Handler
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := *stall
		sw.ResponseWriter = w
		inner.ServeHTTP(&sw, r)
	}))
	t.Cleanup(stalled.Close)
	slow := (&bundle{srv: stalled}).dial(t, "graphql-transport-ws")
	slow.init()
	slow.send(subscribe("s", allJobs, nil))
	fast := b.dial(t, "graphql-transport-ws")
	fast.init()
	fast.send(subscribe("f", allJobs, nil))
	waitFor(t, "both subscriptions", func() bool { return b.broker.Subscribers() == 2 })
	if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stall.blocked:
	case <-time.After(waitBound):
		t.Fatal("the stalled connection never wrote its change")
	}
	for range 3 {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		fast.expect("next", "f")
	}
}
