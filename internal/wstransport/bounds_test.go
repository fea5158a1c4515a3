package wstransport_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/wstransport"
	"github.com/jobqueue/jobqueue/internal/wstransport/wstest"
)

// peak records the largest value it is given, and closes reached once a
// value is at least at.
type peak struct {
	max     atomic.Int64
	at      int
	reached chan struct{}
	once    sync.Once
}

func newPeak(at int) *peak { return &peak{at: at, reached: make(chan struct{})} }

func (p *peak) see(n int) {
	for {
		old := p.max.Load()
		if int64(n) <= old || p.max.CompareAndSwap(old, int64(n)) {
			break
		}
	}
	if n >= p.at {
		p.once.Do(func() { close(p.reached) })
	}
}

func (p *peak) waitReached(t *testing.T, what string) {
	t.Helper()
	select {
	case <-p.reached:
	case <-time.After(waitBound):
		t.Fatalf("%s: peak %d, never %d", what, p.max.Load(), p.at)
	}
}

// createJobs stores n jobs with a payload of size bytes each.
func (b *bundle) createJobs(t *testing.T, n, size int) {
	t.Helper()
	payload := json.RawMessage(`"` + strings.Repeat("x", size) + `"`)
	for range n {
		if _, err := b.store.Create(context.Background(), domain.NewJob{Type: "t", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
}

// A client that sends many operations with large answers and reads
// nothing: its connection queues at most MaxQueuedBytes plus one answer
// (its writer starts no operation while a write's worth is queued),
// at most MaxWaiting operations wait (the rest stay unread in the socket),
// and once the client reads, every answer arrives, in order.
func TestUnreadConnectionHoldsBoundedQueue(t *testing.T) {
	t.Parallel()
	const bound = 256 << 10 // less than what the waiting operations answer
	queued, waiting := newPeak(bound), newPeak(wstransport.MaxWaiting)
	b := setup(t, wstransport.WithProbes(wstransport.Options{MaxQueuedBytes: bound}, queued.see, waiting.see))
	b.createJobs(t, 20, 1<<10) // answers of over 20 KiB
	stall := b.stalling(t, containsNext)
	c := wstest.Dial(t, stall.srv.URL, "graphql-transport-ws")
	c.Init()

	const ops = 200
	query := `{ jobs(first: 20) { nodes { id payload } } }`
	for i := range ops {
		c.Send(wstest.Subscribe(strconv.Itoa(i), query, nil))
	}
	stall.waitBlocked(t)
	waiting.waitReached(t, "operations waiting while the client reads nothing")

	stall.open()
	answer := 0
	for i := range ops {
		id := strconv.Itoa(i)
		m := c.Expect("next", id)
		if n := strings.Count(string(m.Payload), `"payload":`); n != 20 {
			t.Fatalf("answer %s holds %d jobs, want 20", id, n)
		}
		answer = max(answer, len(m.Payload))
		c.Expect("complete", id)
	}
	if n := waiting.max.Load(); n > wstransport.MaxWaiting {
		t.Fatalf("%d operations waited, want at most %d", n, wstransport.MaxWaiting)
	}
	// One message: the answer, its id and type, a frame header.
	if n, bound := queued.max.Load(), bound+answer+64; n > int64(bound) {
		t.Fatalf("%d bytes queued, want at most %d (the bound and one answer)", n, bound)
	}
}

// An answer larger than MaxQueuedBytes is still written whole, and the
// operations after it are answered once it is.
func TestAnswerLargerThanTheBound(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{MaxQueuedBytes: 1 << 10})
	b.createJobs(t, 20, 1<<10)
	c := b.dial(t, "graphql-transport-ws")
	c.Init()
	for _, id := range []string{"big", "small"} {
		c.Send(wstest.Subscribe(id, `{ jobs(first: 20) { nodes { id payload } } }`, nil))
	}
	for _, id := range []string{"big", "small"} {
		if m := c.Expect("next", id); len(m.Payload) < 20<<10 {
			t.Fatalf("answer of %d bytes, want over 20 KiB", len(m.Payload))
		}
		c.Expect("complete", id)
	}
}

// A flood of websocket pings from a client that reads nothing queues pongs
// only up to MaxQueuedBytes (then the server stops reading); once the
// client reads, every ping has its pong, in order.
func TestPingFloodStaysWithinTheBound(t *testing.T) {
	t.Parallel()
	const bound = 16 << 10
	queued := newPeak(bound)
	b := setup(t, wstransport.WithProbes(wstransport.Options{MaxQueuedBytes: bound}, queued.see, nil))
	isPong := func(p []byte) bool { return len(p) > 0 && p[0] == 0x80|opPong }
	stall := b.stalling(t, isPong)
	c, sock := dialRaw(t, stall.srv.URL, "graphql-transport-ws")
	c.Init()
	var pongs atomic.Int64
	c.Conn.SetPongHandler(func(string) error {
		pongs.Add(1)
		return nil
	})

	const pings = 2000 // 254,000 bytes of pongs
	var flood [][]byte
	for range pings {
		flood = append(flood, frame(fin|opPing, []byte(strings.Repeat("p", 125)), true))
	}
	// A last message whose pong follows every other.
	flood = append(flood, frame(fin|opText, []byte(`{"type":"ping"}`), true))
	written := make(chan error, 1)
	go func() {
		var all []byte
		for _, f := range flood {
			all = append(all, f...)
		}
		_, err := sock.Write(all) // blocks while the server does not read
		written <- err
	}()
	stall.waitBlocked(t)
	queued.waitReached(t, "pongs queued")

	stall.open()
	c.Expect("pong", "")
	if err := <-written; err != nil {
		t.Fatalf("write the pings: %v", err)
	}
	if n := pongs.Load(); n != pings {
		t.Fatalf("%d pongs for %d pings", n, pings)
	}
	// The server stops reading at the bound: one more pong at most.
	if n := queued.max.Load(); n > bound+2+125 {
		t.Fatalf("%d bytes queued, want at most the bound %d and one pong", n, bound)
	}
}

// A graphql-transport-ws ping message's payload comes back in the pong up
// to 1 KiB; a larger one is left out.
func TestPongPayloadCap(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	c := b.dial(t, "graphql-transport-ws")
	c.Init()
	for _, n := range []int{wstransport.MaxPongPayload, wstransport.MaxPongPayload + 1, 100 << 10} {
		payload := `"` + strings.Repeat("x", n-2) + `"` // a JSON string of n bytes
		c.SendRaw(`{"type":"ping","payload":` + payload + `}`)
		m := c.Expect("pong", "")
		if want := n <= wstransport.MaxPongPayload; (string(m.Payload) == payload) != want || !want && m.Payload != nil {
			t.Fatalf("ping payload of %d bytes: pong payload of %d bytes", n, len(m.Payload))
		}
	}
}

// Without Options.MaxSubscriptions a connection holds at most
// DefaultMaxSubscriptions.
func TestMaxSubscriptionsDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{})
	c := b.dial(t, "graphql-transport-ws")
	c.Init()
	const max = wstransport.DefaultMaxSubscriptions
	for i := range max + 1 {
		c.Send(wstest.Subscribe(strconv.Itoa(i), allJobs, nil))
	}
	m := c.Expect("error", strconv.Itoa(max))
	if !strings.Contains(string(m.Payload), wstransport.CodeTooManySubscriptions) {
		t.Fatalf("error %s, want %s", m.Payload, wstransport.CodeTooManySubscriptions)
	}
	brokertest.WaitSubscribers(t, b.broker, max, "the subscriptions within the limit")
}
