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
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/wstransport"
	"github.com/jobqueue/jobqueue/internal/wstransport/wstest"
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
	stop         func() error // stops the transport's Run and returns its error
}

// setup serves the project's GraphQL schema (no workers) with only the
// websocket transport, built by opts; configure adds to gqlgen's server.
func setup(t testing.TB, opts wstransport.Options, configure ...func(*handler.Server)) *bundle {
	t.Helper()
	b := &bundle{}
	b.broker = brokertest.New(t, broker.Options{})
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
	for _, f := range configure {
		f(srv)
	}
	b.stop = runtest.Start(t, b.transport)
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

// dial connects to the transport (served at the root) with protocol.
func (b *bundle) dial(t *testing.T, protocol string) *wstest.Client {
	t.Helper()
	return wstest.Dial(t, b.srv.URL, protocol)
}

const allJobs = `subscription { jobUpdated { id status version } }`
const oneJob = `subscription($id: ID) { jobUpdated(id: $id) { id status version } }`

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
		run      func(c *wstest.Client)
		code     int
		reason   string
	}{
		{"invalid json", "graphql-transport-ws", func(c *wstest.Client) { c.SendRaw(`{"type":`) }, 4400, "Invalid message"},
		{"unknown type", "graphql-transport-ws", func(c *wstest.Client) { c.Init(); c.Send(wstest.Msg{Type: "start"}) }, 4400, "unexpected type start"},
		{"subscribe without payload", "graphql-transport-ws", func(c *wstest.Client) { c.Init(); c.Send(wstest.Msg{ID: "1", Type: "subscribe"}) }, 4400, "Invalid message"},
		{"init payload not an object", "graphql-transport-ws", func(c *wstest.Client) { c.SendRaw(`{"type":"connection_init","payload":3}`) }, 4400, "Invalid message"},
		{"subscribe before ack", "graphql-transport-ws", func(c *wstest.Client) { c.Send(wstest.Subscribe("1", allJobs, nil)) }, 4401, "Unauthorized"},
		{"legacy start before ack", "graphql-ws", func(c *wstest.Client) {
			c.Send(wstest.Msg{ID: "1", Type: "start", Payload: wstest.Payload(allJobs, nil)})
		}, 4401, "Unauthorized"},
		{"refused by InitFunc", "graphql-transport-ws", func(c *wstest.Client) {
			c.Send(wstest.Msg{Type: "connection_init", Payload: json.RawMessage(`{"token":"bad"}`)})
		}, 4403, "Forbidden"},
		{"no connection_init", "graphql-transport-ws", func(*wstest.Client) {}, 4408, "Connection initialisation timeout"},
		{"legacy no connection_init", "graphql-ws", func(*wstest.Client) {}, 4408, "Connection initialisation timeout"},
		{"duplicate subscription id", "graphql-transport-ws", func(c *wstest.Client) {
			c.Init()
			c.Send(wstest.Subscribe("dup", oneJob, map[string]any{"id": job.ID}))
			c.Expect("next", "dup")
			c.Send(wstest.Subscribe("dup", allJobs, nil))
		}, 4409, "Subscriber for dup already exists"},
		{"second connection_init", "graphql-transport-ws", func(c *wstest.Client) { c.Init(); c.Send(wstest.Msg{Type: "connection_init"}) }, 4429, "Too many initialisation requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The server's init deadline starts once the handshake is
			// done, so time from before the dial: never earlier than it.
			start := time.Now()
			c := b.dial(t, tc.protocol)
			tc.run(c)
			ce := c.Closed()
			if ce.Code != tc.code || !strings.Contains(ce.Text, tc.reason) {
				t.Fatalf("close %d %q, want %d %q", ce.Code, ce.Text, tc.code, tc.reason)
			}
			if tc.code == 4408 && time.Since(start) < 300*time.Millisecond {
				t.Fatalf("closed after %v, before the init timeout", time.Since(start))
			}
			// Nothing is left behind: the first "dup" subscription too
			// has left the broker.
			brokertest.WaitSubscribers(t, b.broker, 0, "the connection's subscriptions to leave the broker")
		})
	}
}

func TestLegacyRefusedInitGetsConnectionError(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{InitFunc: func(context.Context, map[string]any) (context.Context, error) {
		return nil, errors.New("token expired")
	}})
	c := b.dial(t, "graphql-ws")
	c.Send(wstest.Msg{Type: "connection_init"})
	m := c.Expect("connection_error", "")
	if !strings.Contains(string(m.Payload), "token expired") {
		t.Fatalf("connection_error %s, want the InitFunc's message", m.Payload)
	}
	if ce := c.Closed(); ce.Code != wstransport.CloseForbidden {
		t.Fatalf("close %d, want 4403", ce.Code)
	}
}

// A connection whose credential expires (WithExpiry) is closed with 4403
// at that time, its subscriptions ended; legacy clients are told why
// first.
func TestConnectionClosesWhenItsCredentialExpires(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{"graphql-transport-ws", "graphql-ws"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			var expires time.Time
			b := setup(t, wstransport.Options{InitFunc: func(ctx context.Context, _ map[string]any) (context.Context, error) {
				expires = time.Now().Add(200 * time.Millisecond)
				return wstransport.WithExpiry(ctx, expires), nil
			}})
			c := b.dial(t, protocol)
			c.Init()
			start := "subscribe"
			if protocol == "graphql-ws" {
				start = "start"
			}
			c.Send(wstest.Msg{ID: "1", Type: start, Payload: wstest.Payload(`subscription { jobUpdated { id } }`, nil)})
			brokertest.WaitSubscribers(t, b.broker, 1, "the subscription")
			if protocol == "graphql-ws" {
				if m := c.Expect("connection_error", ""); !strings.Contains(string(m.Payload), "expired") {
					t.Fatalf("connection_error %s", m.Payload)
				}
			}
			ce := c.Closed()
			if ce == nil || ce.Code != wstransport.CloseForbidden {
				t.Fatalf("closed with %v, want 4403", ce)
			}
			if time.Now().Before(expires) {
				t.Fatal("closed before the credential expired")
			}
			brokertest.WaitSubscribers(t, b.broker, 0, "no subscription left")
		})
	}
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	b := setup(t, wstransport.Options{KeepAlive: interval})

	// A legacy client gets ka after the ack and then every interval, and
	// websocket pings, which gorilla's client answers while reading.
	legacy := b.dial(t, "graphql-ws")
	legacy.Send(wstest.Msg{Type: "connection_init"})
	legacy.Expect("connection_ack", "")
	pings := make(chan struct{}, 16)
	legacy.Conn.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return legacy.Conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	start := time.Now()
	kas := 0
	for kas < 5 {
		if err := legacy.Conn.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			t.Fatal(err)
		}
		var m wstest.Msg
		if err := legacy.Conn.ReadJSON(&m); err != nil {
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
	silent.Init()
	silent.Conn.SetPingHandler(func(string) error { return nil })
	start = time.Now()
	for {
		if err := silent.Conn.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := silent.Conn.ReadMessage(); err != nil {
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
	clients := make([]*wstest.Client, conns)
	for i := range clients {
		c := b.dial(t, "graphql-transport-ws")
		c.Init()
		for s := range subsEach {
			c.Send(wstest.Subscribe(string(rune('a'+s)), allJobs, nil))
		}
		clients[i] = c
	}
	brokertest.WaitSubscribers(t, b.broker, conns*subsEach, "every subscription")
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
			m, err := c.Read()
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
	c.Init()
	c.Send(wstest.Subscribe("all", allJobs, nil))
	brokertest.WaitSubscribers(t, b.broker, 1, "the subscription")
	before := b.socketWrites.Load()
	const jobs = 300
	for range jobs {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	for range jobs {
		c.Expect("next", "all")
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
		c.Init()
		for s := range 5 {
			c.Send(wstest.Subscribe(string(rune('a'+s)), allJobs, map[string]any{"n": i}))
		}
	}
	brokertest.WaitSubscribers(t, b.broker, conns*5, "every subscription")
	// Each connection keeps its reader; its writer exits once the acks are
	// written, and its subscriptions have none. (The client side of the
	// test holds no goroutine per connection.)
	waitGoroutines(t, baseline+conns, "at most one goroutine per idle connection")
}

// waitGoroutines waits until at most max goroutines run. Goroutines that
// exit give no signal: this is the one wait of these tests that polls.
func waitGoroutines(t testing.TB, max int, what string) {
	t.Helper()
	for deadline := time.Now().Add(waitBound); runtime.NumGoroutine() > max; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines, want at most %d", what, runtime.NumGoroutine(), max)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWaitSentThenRunClosesAfterQueuedFrames(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	c := b.dial(t, "graphql-transport-ws")
	c.Init()
	c.Send(wstest.Subscribe("all", allJobs, nil))
	brokertest.WaitSubscribers(t, b.broker, 1, "the subscription")
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
	// Run returns once the connection is closed and its goroutines exited.
	if err := b.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := 0
	for {
		m, err := c.Read()
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
	c.Init()
	c.Send(wstest.Subscribe("q", `{ __typename }`, nil))
	if m := c.Expect("next", "q"); string(m.Payload) != `{"data":{"__typename":"Query"}}` {
		t.Fatalf("query result %s", m.Payload)
	}
	c.Expect("complete", "q")

	// A validation error is the protocol's error message, which ends the
	// operation: no complete follows (the next message is the next
	// operation's).
	c.Send(wstest.Subscribe("bad", `{ nope }`, nil))
	c.Expect("error", "bad")
	c.Send(wstest.Subscribe("q2", `{ __typename }`, nil))
	c.Expect("next", "q2")
	c.Expect("complete", "q2")

	// The client's complete ends a live subscription: nothing follows for
	// it but the server's complete, and it leaves the broker.
	c.Send(wstest.Subscribe("s", allJobs, nil))
	brokertest.WaitSubscribers(t, b.broker, 1, "the subscription")
	c.Send(wstest.Msg{ID: "s", Type: "complete"})
	c.Expect("complete", "s")
	brokertest.WaitSubscribers(t, b.broker, 0, "the subscription to leave the broker")
	if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	c.Send(wstest.Msg{Type: "ping"})
	c.Expect("pong", "")
}

func TestMaxSubscriptions(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{MaxSubscriptions: 1})
	c := b.dial(t, "graphql-transport-ws")
	c.Init()
	c.Send(wstest.Subscribe("1", allJobs, nil))
	c.Send(wstest.Subscribe("2", allJobs, nil))
	m := c.Expect("error", "2")
	if !strings.Contains(string(m.Payload), wstransport.CodeTooManySubscriptions) {
		t.Fatalf("error %s, want %s", m.Payload, wstransport.CodeTooManySubscriptions)
	}
	// A refused subscription frees no slot: the next one is refused too.
	c.Send(wstest.Subscribe("3", allJobs, nil))
	c.Expect("error", "3")
	// Queries do not count.
	c.Send(wstest.Subscribe("q", `{ __typename }`, nil))
	c.Expect("next", "q")
	c.Expect("complete", "q")
	if n := b.transport.Subscriptions(); n != 1 {
		t.Fatalf("Subscriptions() = %d, want 1", n)
	}
	if n := b.transport.RefusedSubscriptions(); n != 2 {
		t.Fatalf("RefusedSubscriptions() = %d, want 2", n)
	}
}

// stalling serves b's handler on a server of its own whose connections
// block their first socket write that match accepts until the test calls
// release (or ends): a client that stops reading.
func (b *bundle) stalling(t *testing.T, match func([]byte) bool) *stalled {
	t.Helper()
	s := &stalled{blocked: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(s.open)
	inner := b.srv.Config.Handler
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(&stallingWriter{ResponseWriter: w, s: s, match: match}, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

type stalled struct {
	srv              *httptest.Server
	blocked, release chan struct{}
	blockOnce        sync.Once
	releaseOnce      sync.Once
}

// open lets the blocked write, and every later one, through.
func (s *stalled) open() { s.releaseOnce.Do(func() { close(s.release) }) }

// waitBlocked waits until a write is blocked.
func (s *stalled) waitBlocked(t *testing.T) {
	t.Helper()
	select {
	case <-s.blocked:
	case <-time.After(waitBound):
		t.Fatal("no socket write blocked")
	}
}

func containsNext(p []byte) bool { return strings.Contains(string(p), `"type":"next"`) }

type stallingWriter struct {
	http.ResponseWriter
	s     *stalled
	match func([]byte) bool
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
	if c.w.match(p) {
		c.w.s.blockOnce.Do(func() {
			close(c.w.s.blocked)
			<-c.w.s.release
		})
	}
	return c.Conn.Write(p)
}

// TestStalledConnectionDelaysNoOther: a connection whose socket write
// blocks holds up neither the shared result nor other connections.
func TestStalledConnectionDelaysNoOther(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	stall := b.stalling(t, containsNext)
	slow := wstest.Dial(t, stall.srv.URL, "graphql-transport-ws")
	slow.Init()
	slow.Send(wstest.Subscribe("s", allJobs, nil))
	fast := b.dial(t, "graphql-transport-ws")
	fast.Init()
	fast.Send(wstest.Subscribe("f", allJobs, nil))
	brokertest.WaitSubscribers(t, b.broker, 2, "both subscriptions")
	if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	stall.waitBlocked(t)
	for range 3 {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		fast.Expect("next", "f")
	}
}
