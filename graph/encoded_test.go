package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/gorillaws"
)

// Shared results reach websocket subscribers encoded once and, after a
// subscription's first one, written without gqlgen (graph/encoded.go). These
// tests pin down that clients cannot tell: same frames, same order, for
// both subprotocols and every way of writing.

// hideText wraps a websocket implementation and hides the connections'
// WriteText from graph for requests with ?plain=1, so that graph writes
// shared results through WriteJSON (its fallback path).
type hideText struct {
	inner transport.WebsocketImplementation
}

func (h hideText) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := h.inner.Accept(w, r, opts)
	if err != nil || r.URL.Query().Get("plain") == "" {
		return c, err
	}
	return forwardingConn{c}, nil // without WriteText
}

// frameReader reads one subscription's data frames as raw bytes.
type frameReader struct {
	t    *testing.T
	name string
	c    *websocket.Conn
	id   string
	next string // "next" or "data"
}

func dialFrames(t *testing.T, url, subprotocol, id string) *frameReader {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: waitBound}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s %s: %v", url, subprotocol, err)
	}
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = c.Close() })
	f := &frameReader{t: t, name: subprotocol + " " + url + " id " + id, c: c, id: id, next: "next"}
	start := "subscribe"
	if subprotocol == "graphql-ws" {
		f.next, start = "data", "start"
	}
	w := &rawWS{t: t, c: c}
	w.init()
	w.send(wsMsg{ID: id, Type: start, Payload: subscribePayload(t, `subscription { jobUpdated { id type status version } }`, nil)})
	return f
}

// frame returns the next data frame, skipping keep-alives.
func (f *frameReader) frame() []byte {
	f.t.Helper()
	return f.frameOf(f.id)
}

// frameOf returns the next data frame, of one of the subscriptions ids.
func (f *frameReader) frameOf(ids ...string) []byte {
	f.t.Helper()
	for {
		if err := f.c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			f.t.Fatal(err)
		}
		_, b, err := f.c.ReadMessage()
		if err != nil {
			f.t.Fatalf("%s: %v", f.name, err)
		}
		var m wsMsg
		if err := json.Unmarshal(b, &m); err != nil {
			f.t.Fatalf("%s: frame %s: %v", f.name, b, err)
		}
		if m.Type == "ka" || m.Type == "ping" || m.Type == "pong" {
			continue
		}
		if m.Type != f.next || !slices.Contains(ids, m.ID) {
			f.t.Fatalf("%s: got %s, want %s for %v", f.name, b, f.next, ids)
		}
		return b
	}
}

type frameJob struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Status  string `json:"status"`
	Version int    `json:"version"`
}

// payloadOf checks that a data frame is compact JSON whose payload is a
// jobUpdated result (never a stand-in) and returns the payload and the job.
func payloadOf(t *testing.T, name string, frame []byte) (json.RawMessage, frameJob) {
	t.Helper()
	var compact bytes.Buffer
	if err := json.Compact(&compact, frame); err != nil || !bytes.Equal(compact.Bytes(), frame) {
		t.Fatalf("%s: frame %s is not compact JSON (%v)", name, frame, err)
	}
	var m wsMsg
	if err := json.Unmarshal(frame, &m); err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data *struct {
			JobUpdated frameJob `json:"jobUpdated"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || r.Data == nil || r.Errors != nil {
		t.Fatalf("%s: payload %s is not a jobUpdated result (%v)", name, m.Payload, err)
	}
	return m.Payload, r.Data.JobUpdated
}

func TestWebsocketSharedResultsSameForEveryWayOfWriting(t *testing.T) {
	t.Parallel()
	for _, impl := range []struct {
		name string
		ws   transport.WebsocketImplementation
	}{
		{"gorilla", hideText{gorillaws.New(gorillaws.Options{})}},
		{"coder", transport.CoderWebsocketImplementation{}},
	} {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *options) { o.websocket = impl.ws })
			srv := b.server(t)
			url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/query"
			readers := []*frameReader{
				dialFrames(t, url, "graphql-transport-ws", "1"),
				dialFrames(t, url+"?plain=1", "graphql-transport-ws", "1"),
				dialFrames(t, url, "graphql-ws", "1"),
				dialFrames(t, url+"?plain=1", "graphql-ws", "1"),
				// An id containing the text graph uses to split a
				// message's encoding: no splitting for this one.
				dialFrames(t, url, "graphql-transport-ws", "jobqueue:payload-slot"),
				dialFrames(t, url, "graphql-transport-ws", `"quoted" <id> & more`),
			}
			// Two subscriptions on one connection share its writer.
			second := &frameReader{t: t, name: "second subscription", c: readers[0].c, id: "2", next: "next"}
			(&rawWS{t: t, c: second.c}).send(wsMsg{ID: "2", Type: "subscribe", Payload: subscribePayload(t, `subscription { jobUpdated { id type status version } }`, nil)})
			waitFor(t, "every subscription", func() bool { return b.broker.Subscribers() == len(readers)+1 })

			const jobs = 20
			for i := range jobs {
				b.create(t, fmt.Sprintf("t%d", i), map[string]any{"durationMs": 0, "note": "<&>"})
			}
			// Frames of the first connection: both subscriptions interleave.
			var first, other [][]byte
			for range 2 * 3 * jobs {
				f := readers[0].frameOf("1", "2")
				if bytes.Contains(f, []byte(`"id":"2"`)) {
					other = append(other, f)
				} else {
					first = append(first, f)
				}
			}
			if len(first) != 3*jobs || len(other) != 3*jobs {
				t.Fatalf("first connection: %d and %d frames, want %d each", len(first), len(other), 3*jobs)
			}
			got := map[string][][]byte{readers[0].name: first, second.name: other}
			for _, r := range readers[1:] {
				for range 3 * jobs {
					got[r.name] = append(got[r.name], r.frame())
				}
			}

			// Every subscription sees every change once, in version order
			// per job, with the same payload bytes.
			payloads := map[string]json.RawMessage{} // job id and version → payload
			for name, frames := range got {
				versions := map[string]int{}
				for _, f := range frames {
					p, j := payloadOf(t, name, f)
					if j.Version != versions[j.ID]+1 {
						t.Fatalf("%s: job %s version %d after %d", name, j.ID, j.Version, versions[j.ID])
					}
					versions[j.ID] = j.Version
					key := fmt.Sprintf("%s/%d", j.ID, j.Version)
					if want, ok := payloads[key]; ok && !bytes.Equal(p, want) {
						t.Fatalf("%s: payload %s, another subscriber got %s", name, p, want)
					}
					payloads[key] = p
				}
				if len(versions) != jobs {
					t.Fatalf("%s: changes of %d jobs, want %d", name, len(versions), jobs)
				}
				for id, v := range versions {
					if v != 3 {
						t.Fatalf("%s: job %s ends at version %d, want 3", name, id, v)
					}
				}
			}
			// Writing directly (WriteText), through WriteJSON, and through
			// gqlgen (each subscription's first frame) give the same
			// frames, in the same order.
			for i := range got[readers[0].name] {
				for _, pair := range [][2]*frameReader{{readers[0], readers[1]}, {readers[2], readers[3]}} {
					if a, b := got[pair[0].name][i], got[pair[1].name][i]; !bytes.Equal(a, b) {
						t.Fatalf("frame %d differs:\n%s: %s\n%s: %s", i, pair[0].name, a, pair[1].name, b)
					}
				}
			}
		})
	}
}

// textStallingWS wraps gorillaws so that, once armed, the first message
// graph writes directly (WriteText) blocks until released: a client that
// stops reading, on the direct path.
type textStallingWS struct {
	inner   transport.WebsocketImplementation
	armed   chan struct{} // closed to arm
	blocked chan struct{}
	release chan struct{}
	once    sync.Once
}

func newTextStallingWS() *textStallingWS {
	return &textStallingWS{inner: gorillaws.New(gorillaws.Options{}), armed: make(chan struct{}),
		blocked: make(chan struct{}), release: make(chan struct{})}
}

type textStallingConn struct {
	forwardingConn
	s *textStallingWS
}

func (s *textStallingWS) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := s.inner.Accept(w, r, opts)
	if err != nil || r.URL.Query().Get("stall") == "" {
		return c, err
	}
	return &textStallingConn{forwardingConn: forwardingConn{c}, s: s}, nil
}

func (c *textStallingConn) WriteText(p []byte) error {
	select {
	case <-c.s.armed:
		c.s.once.Do(func() {
			close(c.s.blocked)
			<-c.s.release
		})
	default:
	}
	return c.WebsocketConn.(interface{ WriteText([]byte) error }).WriteText(p)
}

func TestWebsocketStalledDirectWriteDelaysNoOtherSubscriber(t *testing.T) {
	t.Parallel()
	stall := newTextStallingWS()
	b, release := setupSlowSubscriber(t, stall, stall.release)
	srv := b.server(t)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/query"
	slow := dialFrames(t, url+"?stall=1", "graphql-transport-ws", "s")
	fast := dialFrames(t, url, "graphql-ws", "f")
	waitFor(t, "both subscriptions", func() bool { return b.broker.Subscribers() == 2 })

	// The first change goes through gqlgen for both; then the slow
	// client's direct writes stall.
	b.storeCreate(t, "warm", 1)
	slow.frame()
	fast.frame()
	close(stall.armed)
	b.storeCreate(t, "stuck", 1)
	select {
	case <-stall.blocked:
	case <-time.After(waitBound):
		t.Fatal("the slow client's direct write did not happen")
	}
	// While the slow client's writer is stuck, the other client gets
	// every change, and the slow one is dropped once its backlog overflows.
	// (One change at a time: the fast subscriber has no room to spare
	// either.)
	fast.frame()
	for range 5 {
		b.storeCreate(t, "more", 1)
		if _, j := payloadOf(t, fast.name, fast.frame()); j.Type != "more" || j.Status != "PENDING" {
			t.Fatalf("fast client: got %+v, want a new job", j)
		}
	}
	waitFor(t, "the slow subscriber to be dropped", func() bool { return b.broker.Subscribers() == 1 })
	release()

	// The stuck change arrives, then the protocol's error message.
	for {
		if err := slow.c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			t.Fatal(err)
		}
		var m wsMsg
		if err := slow.c.ReadJSON(&m); err != nil {
			t.Fatalf("slow client: %v, want a SLOW_SUBSCRIBER error", err)
		}
		if m.Type == "next" {
			continue
		}
		errs := subscriptionError(t, m)
		if m.Type != "error" || len(errs) != 1 || errs[0].code() != graph.CodeSlowSubscriber {
			t.Fatalf("slow client: got %s %s, want a SLOW_SUBSCRIBER error", m.Type, m.Payload)
		}
		break
	}
}

// A field error in one result of a subscription is not carried into its
// later results (each is executed with a response context of its own,
// although results after the first are written without gqlgen).
func TestWebsocketDirectResultsDoNotInheritErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	srv := b.server(t)
	w := dialWS(t, srv, "graphql-transport-ws")
	w.init()
	w.send(wsMsg{ID: "1", Type: "subscribe", Payload: subscribePayload(t, `subscription { jobUpdated { id version createdAt } }`, nil)})
	waitFor(t, "the subscription", func() bool { return b.broker.Subscribers() == 1 })
	now := time.Now()
	b.broker.Publish(&domain.Job{ID: "a", Type: "x", Status: domain.StatusPending, Version: 1, CreatedAt: now, UpdatedAt: now, RunAt: now})
	w.expect("next", "1")
	// A zero createdAt cannot be served: a field error.
	b.broker.Publish(&domain.Job{ID: "b", Type: "x", Status: domain.StatusPending, Version: 1, UpdatedAt: now, RunAt: now})
	if m := w.expect("next", "1"); !strings.Contains(string(m.Payload), `"errors"`) {
		t.Fatalf("a job without createdAt: %s, want a field error", m.Payload)
	}
	for v := range int64(3) {
		b.broker.Publish(&domain.Job{ID: "c", Type: "x", Status: domain.StatusPending, Version: 1 + v, CreatedAt: now, UpdatedAt: now, RunAt: now})
		if m := w.expect("next", "1"); strings.Contains(string(m.Payload), `"errors"`) {
			t.Fatalf("a valid job after the failed one: %s, want no errors", m.Payload)
		}
	}
}

// Once the client completes a subscription, its waiting changes are not
// written: at most the one being written when it did.
func TestWebsocketNoDirectResultAfterClientComplete(t *testing.T) {
	t.Parallel()
	stall := newTextStallingWS()
	b := setup(t, func(o *options) { o.startPool = false; o.websocket = stall })
	srv := b.server(t)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/query"
	f := dialFrames(t, url+"?stall=1", "graphql-transport-ws", "1")
	waitFor(t, "the subscription", func() bool { return b.broker.Subscribers() == 1 })
	b.storeCreate(t, "warm", 1)
	f.frame()
	close(stall.armed)
	b.storeCreate(t, "stuck", 1)
	select {
	case <-stall.blocked:
	case <-time.After(waitBound):
		t.Fatal("the direct write did not happen")
	}
	b.storeCreate(t, "waiting", 5)
	(&rawWS{t: t, c: f.c}).send(wsMsg{ID: "1", Type: "complete"})
	waitFor(t, "the subscription to end", func() bool { return b.broker.Subscribers() == 0 })
	close(stall.release)
	n := 0
	for {
		if err := f.c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
			t.Fatal(err)
		}
		var m wsMsg
		if err := f.c.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if m.Type != "next" {
			break
		}
		n++
	}
	if n > 1 {
		t.Fatalf("%d results after the client's complete, want at most the one being written", n)
	}
}

// A result written directly is no longer counted as being sent once
// written: WaitSent (shutdown) returns.
func TestWebsocketDirectResultsCountedAsSent(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.startPool = false })
	srv := b.server(t)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/query"
	f := dialFrames(t, url, "graphql-transport-ws", "1")
	waitFor(t, "the subscription", func() bool { return b.broker.Subscribers() == 1 })
	for range 4 {
		b.storeCreate(t, "t", 1)
		f.frame()
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := b.handler.(*graph.Handler).WaitSent(ctx); err != nil {
		t.Fatalf("after every result was received: %v", err)
	}
}
