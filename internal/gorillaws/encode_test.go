package gorillaws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// oddStrings exercise every escaping rule of encoding/json's string encoder.
var oddStrings = []string{
	"",
	"plain-ASCII_id 42",
	`quote " backslash \ slash /`,
	"<script>alert('x')</script> & more",
	"tab\tnewline\ncr\rbackspace\bformfeed\f",
	"\x00\x01\x02\x1f\x7f",
	"line sep \u2028 para sep \u2029",
	"unicode: é ü 日本語 🎉",
	"invalid utf-8: \xff\xfe \xc3",
	"\ufffd replacement char",
	strings.Repeat("long ", 200),
}

// gqlgenLikeType mirrors gqlgen's graphqltransportwsMessageType: a string
// type with a value-receiver MarshalText.
type gqlgenLikeType string

func (t gqlgenLikeType) MarshalText() ([]byte, error) { return []byte(string(t)), nil }

// gqlgenLikeMessage has the fields and tags of gqlgen's
// graphqltransportwsMessage and graphqlwsMessage.
type gqlgenLikeMessage struct {
	Payload json.RawMessage `json:"payload,omitempty"`
	ID      string          `json:"id,omitempty"`
	Type    gqlgenLikeType  `json:"type"`
	noOp    bool
}

type kitchenSink struct {
	Untagged  string
	Renamed   string          `json:"renamed_key-1"`
	NoName    string          `json:",omitempty"`
	Skipped   string          `json:"-"`
	Dash      string          `json:"-,"`
	Raw       json.RawMessage `json:"raw"`
	RawOmit   json.RawMessage `json:"rawOmit,omitempty"`
	Flag      bool            `json:"flag"`
	FlagOmit  bool            `json:"flagOmit,omitempty"`
	Int       int64           `json:"int"`
	IntOmit   int8            `json:"intOmit,omitempty"`
	Uint      uint16          `json:"uint"`
	UintOmit  uintptr         `json:"uintOmit,omitempty"`
	Unknown   string          `json:"unknown,nonsense,omitempty"`
	Text      gqlgenLikeType  `json:"text"`
	TextOmit  gqlgenLikeType  `json:"textOmit,omitempty"`
	unexposed string
}

func assertSameAsEncodingJSON(t *testing.T, v any) {
	t.Helper()
	p := planFor(reflect.TypeOf(v))
	if !p.ok {
		t.Fatalf("%T is not planned; want the fast path", v)
	}
	got, ok := p.appendValue(nil, reflect.ValueOf(v))
	if !ok {
		t.Fatalf("%T: plan declined %#v", v, v)
	}
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%#v): %v", v, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("encoding of %#v\n got %s\nwant %s", v, got, want)
	}
	viaAppend, err := appendJSON([]byte("prefix"), v)
	if err != nil || string(viaAppend) != "prefix"+string(want) {
		t.Errorf("appendJSON = (%s, %v), want prefix%s", viaAppend, err, want)
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	payloads := []json.RawMessage{
		nil,
		{},
		json.RawMessage(`{"data":{"jobUpdated":{"id":"j1","status":"RUNNING"}}}`),
		json.RawMessage(`[{"message":"\u003cb\u003e \"quoted\"","path":["a",1]}]`),
		json.RawMessage(`null`),
	}
	types := []gqlgenLikeType{"", "next", "connection_ack", "complete"}
	for _, s := range oddStrings {
		for _, pl := range payloads {
			for _, typ := range types {
				m := gqlgenLikeMessage{Payload: pl, ID: s, Type: typ}
				assertSameAsEncodingJSON(t, &m) // gqlgen passes pointers
				assertSameAsEncodingJSON(t, m)
				m = gqlgenLikeMessage{ID: "1", Type: gqlgenLikeType(s)}
				assertSameAsEncodingJSON(t, &m)
			}
		}
	}
	assertSameAsEncodingJSON(t, (*gqlgenLikeMessage)(nil))

	for _, s := range oddStrings {
		assertSameAsEncodingJSON(t, &kitchenSink{Untagged: s, Renamed: s, Text: gqlgenLikeType(s), Raw: json.RawMessage(`1`)})
	}
	assertSameAsEncodingJSON(t, kitchenSink{}) // nil Raw without omitempty: null
	assertSameAsEncodingJSON(t, &kitchenSink{
		NoName: "n", Skipped: "s", Dash: "d", RawOmit: json.RawMessage(`{"a":[1,2]}`),
		Flag: true, FlagOmit: true, Int: -1 << 63, IntOmit: -8, Uint: 65535, UintOmit: 7,
		Unknown: "u", TextOmit: "t", unexposed: "x",
	})
	assertSameAsEncodingJSON(t, struct{}{})
}

func TestEncodeDefersToEncodingJSON(t *testing.T) {
	type embedded struct{ A string }
	type withEmbedded struct {
		embedded
		B string
	}
	type quoted struct {
		N int `json:"n,string"`
	}
	type omitZero struct {
		S string `json:"s,omitzero"`
	}
	type withFloat struct{ F float64 }
	type withPointer struct{ P *string }
	type withBytes struct{ B []byte }
	type withInterface struct{ V any }
	type escapedKey struct {
		S string `json:"a<b"`
	}
	// Built at run time: go vet rejects duplicate tags in source.
	duplicate := reflect.StructOf([]reflect.StructField{
		{Name: "A", Type: reflect.TypeFor[string](), Tag: `json:"x"`},
		{Name: "B", Type: reflect.TypeFor[string](), Tag: `json:"x"`},
	})
	dup := reflect.New(duplicate).Elem()
	dup.Field(0).SetString("a")
	dup.Field(1).SetString("b")
	s := "s"
	cases := []any{
		map[string]any{"type": "next"},
		[]string{"a"},
		"just a string",
		42,
		withEmbedded{embedded{"a"}, "b"},
		quoted{7},
		omitZero{"z"},
		withFloat{1.5},
		withPointer{&s},
		withBytes{[]byte("hi")},
		withInterface{map[string]int{"a": 1}},
		escapedKey{"x"},
		dup.Interface(),
		&marshalsItself{},
		textMarshalsItself{},
		ptrTextField{S: "x"},
		jsonMarshalerField{S: "x"},
	}
	for _, v := range cases {
		if planFor(reflect.TypeOf(v)).ok {
			t.Errorf("%T is planned; want encoding/json", v)
		}
		want, wantErr := json.Marshal(v)
		got, err := appendJSON(nil, v)
		if !bytes.Equal(got, want) || (err == nil) != (wantErr == nil) {
			t.Errorf("appendJSON(%#v) = (%s, %v), want (%s, %v)", v, got, err, want, wantErr)
		}
	}

	// Values of a planned type that encoding/json rejects: same error.
	for _, v := range []any{
		&gqlgenLikeMessage{Type: "x", Payload: nil},
		&struct {
			P json.RawMessage `json:"p"`
		}{P: json.RawMessage{}},
		&struct {
			T failingText `json:"t"`
		}{T: "boom"},
	} {
		_, wantErr := json.Marshal(v)
		got, err := appendJSON([]byte("keep"), v)
		if wantErr == nil {
			if err != nil {
				t.Errorf("appendJSON(%#v) error %v, json.Marshal succeeded", v, err)
			}
			continue
		}
		if err == nil || err.Error() != wantErr.Error() || string(got) != "keep" {
			t.Errorf("appendJSON(%#v) = (%q, %v), want (\"keep\", %v)", v, got, err, wantErr)
		}
	}
}

type marshalsItself struct{ A string }

func (*marshalsItself) MarshalJSON() ([]byte, error) { return []byte(`"custom"`), nil }

type textMarshalsItself struct{ A string }

func (textMarshalsItself) MarshalText() ([]byte, error) { return []byte("custom"), nil }

type ptrText string

func (*ptrText) MarshalText() ([]byte, error) { return []byte("from pointer"), nil }

type ptrTextField struct{ S ptrText }

type jsonString string

func (jsonString) MarshalJSON() ([]byte, error) { return []byte(`"j"`), nil }

type jsonMarshalerField struct{ S jsonString }

type failingText string

func (failingText) MarshalText() ([]byte, error) { return nil, errors.New("boom") }

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	check := func(s string) {
		want, _ := json.Marshal(s)
		if got := appendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendString(%q) = %s, want x%s", s, got, want)
		}
		if got := appendString([]byte("x"), []byte(s)); string(got) != "x"+string(want) {
			t.Errorf("appendString([]byte(%q)) = %s, want x%s", s, got, want)
		}
	}
	for _, s := range oddStrings {
		check(s)
	}
	for b := range 256 {
		check(string([]byte{'a', byte(b), 'z'}))
	}
	for r := rune(0); r < 0x3000; r++ {
		check(string(r))
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestEncodeGQLGenMessageAllocations(t *testing.T) {
	m := &gqlgenLikeMessage{
		Payload: json.RawMessage(`{"data":{"jobUpdated":{"id":"42","status":"COMPLETED","updatedAt":"2024-01-01T00:00:00Z","version":3}}}`),
		ID:      "1",
		Type:    "next",
	}
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = appendJSON(buf[:0], m)
	})
	// MarshalText's result is the only allocation; json.Marshal makes
	// several (and copies and validates the payload).
	if allocs > 1 {
		t.Errorf("appendJSON allocates %.0f times per message, want at most 1", allocs)
	}
}

// ---- gqlgen's real message types -----------------------------------------

type recordedWrite struct {
	typ     reflect.Type
	planned bool
	fast    []byte
	fastOK  bool
	std     []byte
	stdErr  error
}

// recordingImpl wraps Implementation and records, for every value gqlgen
// passes to WriteJSON, the plan's encoding and json.Marshal's.
type recordingImpl struct {
	inner  *Implementation
	mu     sync.Mutex
	writes []recordedWrite
}

func (r *recordingImpl) Accept(w http.ResponseWriter, req *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := r.inner.Accept(w, req, opts)
	if err != nil {
		return nil, err
	}
	return &recordingConn{WebsocketConn: c, rec: r}, nil
}

func (r *recordingImpl) recorded() []recordedWrite {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.writes)
}

type recordingConn struct {
	transport.WebsocketConn
	rec *recordingImpl
}

func (c *recordingConn) WriteJSON(v any) error {
	w := recordedWrite{typ: reflect.TypeOf(v)}
	if p := planFor(w.typ); p.ok {
		w.planned = true
		w.fast, w.fastOK = p.appendValue(nil, reflect.ValueOf(v))
	}
	w.std, w.stdErr = json.Marshal(v)
	c.rec.mu.Lock()
	c.rec.writes = append(c.rec.writes, w)
	c.rec.mu.Unlock()
	return c.WebsocketConn.WriteJSON(v)
}

func (c *recordingConn) SetReadLimit(n int64) {
	c.WebsocketConn.(transport.WebsocketReadLimiter).SetReadLimit(n)
}

func (c *recordingConn) SetReadDeadline(t time.Time) error {
	return c.WebsocketConn.(transport.WebsocketReadDeadliner).SetReadDeadline(t)
}

// oddID is a subscription id, chosen by the client and echoed by gqlgen in
// next/data, error and complete messages, that needs every kind of escaping.
const oddID = "id \"<1>\" & \\ \u2028 é \x01\t日本"

func startRecordingServer(t *testing.T, ws transport.Websocket) (*recordingImpl, *testserver.TestServer, string) {
	t.Helper()
	rec := &recordingImpl{inner: New(Options{})}
	ws.Implementation = rec
	schema := testserver.New()
	schema.AddTransport(ws)
	srv := httptest.NewServer(schema)
	t.Cleanup(srv.Close)
	return rec, schema, wsURL(srv)
}

func dialURL(t *testing.T, url, subprotocol string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: waitBound}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	return c
}

// checkRecorded asserts that gqlgen sent every type in wantTypes, and that
// every message was encoded by a plan, byte for byte as json.Marshal does.
func checkRecorded(t *testing.T, writes []recordedWrite, wantTypes ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, w := range writes {
		if !strings.HasPrefix(w.typ.String(), "*transport.graphql") {
			t.Errorf("gqlgen wrote a %v; want its message structs", w.typ)
		}
		if !w.planned || !w.fastOK {
			t.Errorf("%v not encoded by a plan (planned=%v ok=%v)", w.typ, w.planned, w.fastOK)
			continue
		}
		if w.stdErr != nil {
			t.Errorf("json.Marshal failed on a gqlgen message: %v", w.stdErr)
			continue
		}
		if !bytes.Equal(w.fast, w.std) {
			t.Errorf("%v:\n got %s\nwant %s", w.typ, w.fast, w.std)
		}
		var m struct{ Type string }
		if err := json.Unmarshal(w.std, &m); err != nil {
			t.Fatal(err)
		}
		seen[m.Type] = true
	}
	for _, typ := range wantTypes {
		if !seen[typ] {
			t.Errorf("gqlgen sent no %q message; saw %v", typ, seen)
		}
	}
}

func TestEncodeGQLGenGraphQLTransportWSMessages(t *testing.T) {
	rec, schema, url := startRecordingServer(t, transport.Websocket{
		InitFunc: func(ctx context.Context, _ transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			return ctx, &transport.InitPayload{"note": `<b>"hi"</b> & é`, "n": 1}, nil
		},
		PingPongInterval: 20 * time.Millisecond,
		MissingPongOk:    true,
	})
	c := dialURL(t, url, graphqlTransportWS)

	send(t, c, wsMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	send(t, c, wsMsg{ID: oddID, Type: "subscribe", Payload: json.RawMessage(`{"query":"subscription { name }"}`)})
	schema.SendNextSubscriptionMessage()
	next := expectSkippingPings(t, c, "next")
	if next.ID != oddID {
		t.Errorf("next id = %q, want %q", next.ID, oddID)
	}
	send(t, c, wsMsg{ID: oddID, Type: "complete"})
	expectSkippingPings(t, c, "complete")
	send(t, c, wsMsg{ID: "bad<&>", Type: "subscribe", Payload: json.RawMessage(`{"query":"subscription { nope }"}`)})
	expectSkippingPings(t, c, "error") // validation errors are protocol errors
	expectSkippingPings(t, c, "complete")
	send(t, c, wsMsg{Type: "ping", Payload: json.RawMessage(`{"echo":"plain"}`)})
	expectSkippingPings(t, c, "pong")
	expect(t, c, "ping") // gqlgen's PingPongInterval ping (empty payload)
	send(t, c, wsMsg{Type: "pong"})
	closeAndDrain(t, c)

	checkRecorded(t, rec.recorded(), "connection_ack", "next", "complete", "error", "ping", "pong")
}

func TestEncodeGQLGenGraphQLWSMessages(t *testing.T) {
	rec, schema, url := startRecordingServer(t, transport.Websocket{KeepAlivePingInterval: 20 * time.Millisecond})
	c := dialURL(t, url, graphqlWS)

	send(t, c, wsMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	expect(t, c, "ka")
	send(t, c, wsMsg{ID: oddID, Type: "start", Payload: json.RawMessage(`{"query":"subscription { name }"}`)})
	schema.SendNextSubscriptionMessage()
	if data := expectSkipping(t, c, "data", "ka"); data.ID != oddID {
		t.Errorf("data id = %q, want %q", data.ID, oddID)
	}
	send(t, c, wsMsg{ID: oddID, Type: "stop"})
	expectSkipping(t, c, "complete", "ka")
	send(t, c, wsMsg{ID: "2", Type: "start", Payload: json.RawMessage(`{"query":"subscription {"}`)})
	expectSkipping(t, c, "error", "ka") // a parse error is a protocol error
	expectSkipping(t, c, "complete", "ka")
	send(t, c, wsMsg{Type: "connection_ack"}) // not a client message
	expectSkipping(t, c, "connection_error", "ka")
	if err := readUntilErr(c); !websocket.IsCloseError(err, websocket.CloseProtocolError) {
		t.Errorf("client got %v, want close 1002", err)
	}

	checkRecorded(t, rec.recorded(), "connection_ack", "ka", "data", "complete", "error", "connection_error")
}

// A graphql-transport-ws pong echoes the client's ping payload as the client
// sent it; that RawMessage is written unchanged rather than compacted and
// HTML-escaped as json.Marshal would. The message is still valid JSON with
// the same meaning.
func TestEncodeEchoedClientPayloadIsWrittenAsIs(t *testing.T) {
	rec, _, url := startRecordingServer(t, transport.Websocket{})
	c := dialURL(t, url, graphqlTransportWS)
	send(t, c, wsMsg{Type: "connection_init"})
	expect(t, c, "connection_ack")
	const raw = `{ "x" : "<b>" }`
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","payload":`+raw+`}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"payload":` + raw + `,"type":"pong"}`; string(got) != want {
		t.Errorf("pong = %s, want %s", got, want)
	}
	closeAndDrain(t, c)

	writes := rec.recorded()
	w := writes[len(writes)-1]
	var a, b any
	if !json.Valid(w.fast) || json.Unmarshal(w.fast, &a) != nil || json.Unmarshal(w.std, &b) != nil || !reflect.DeepEqual(a, b) {
		t.Errorf("echoed pong %s is not equivalent to json.Marshal's %s", w.fast, w.std)
	}
}

func expectSkipping(t *testing.T, c *websocket.Conn, wantType, skip string) wsMsg {
	t.Helper()
	for {
		var m wsMsg
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for %s: %v", wantType, err)
		}
		if m.Type == skip && wantType != skip {
			continue
		}
		if m.Type != wantType {
			t.Fatalf("got message %+v, want type %s", m, wantType)
		}
		return m
	}
}

func expectSkippingPings(t *testing.T, c *websocket.Conn, wantType string) wsMsg {
	t.Helper()
	return expectSkipping(t, c, wantType, "ping")
}

// closeAndDrain performs a normal close from the client and reads until the
// server's echo, so the server side is done writing.
func closeAndDrain(t *testing.T, c *websocket.Conn) {
	t.Helper()
	if err := c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	if err := readUntilErr(c); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("client got %v, want the close echo", err)
	}
}

// benchMessage is what gqlgen hands WriteJSON for one jobUpdated event of the
// fan-out benchmark (same field types and tags as gqlgen's message struct).
var benchMessage = &gqlgenLikeMessage{
	Payload: json.RawMessage(`{"data":{"jobUpdated":{"id":"4f9c2a1e-8b7d-4c3f-9e2a-1b5d7f3c9a08","status":"COMPLETED","updatedAt":"2025-06-01T12:34:56.789012Z","version":3}}}`),
	ID:      "1",
	Type:    "next",
}

// BenchmarkWriteJSON compares the old WriteJSON (json.Marshal, one write(2)
// per message) with the new one (planned encoder, coalesced writes).
//
//	encode/*: encoding one message only.
//	conn/*:   WriteJSON end to end over loopback to a client that reads
//	          everything; socket-writes/msg is write(2) calls per message.
func BenchmarkWriteJSON(b *testing.B) {
	b.Run("encode/json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(benchMessage); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/plan", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			var err error
			if buf, err = appendJSON(buf[:0], benchMessage); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("conn/old", func(b *testing.B) {
		// The previous adapter's write path on a plain gorilla connection.
		benchConn(b, func(w http.ResponseWriter, r *http.Request) (func(any) error, func() int64, func()) {
			u := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{}}
			raw := &countingConn{}
			ws, err := u.Upgrade(&countingHijacker{ResponseWriter: w, conn: raw}, r, nil)
			if err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			write := func(v any) error {
				data, err := json.Marshal(v)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				_ = ws.SetWriteDeadline(time.Now().Add(DefaultWriteTimeout))
				return ws.WriteMessage(websocket.TextMessage, data)
			}
			return write, raw.writes.Load, func() { _ = ws.Close() }
		})
	})
	b.Run("conn/new", func(b *testing.B) {
		impl := New(Options{})
		benchConn(b, func(w http.ResponseWriter, r *http.Request) (func(any) error, func() int64, func()) {
			c, err := impl.Accept(w, r, gqlgenAcceptOptions())
			if err != nil {
				b.Fatal(err)
			}
			fc := c.(*conn).fc
			return c.WriteJSON, fc.socketWrites.Load, func() { _ = c.Close() }
		})
	})
}

// benchConn runs b.N WriteJSON calls of benchMessage from one goroutine to a
// client that reads as fast as it can.
func benchConn(b *testing.B, accept func(http.ResponseWriter, *http.Request) (write func(any) error, writes func() int64, closeFn func())) {
	type server struct {
		write   func(any) error
		writes  func() int64
		closeFn func()
	}
	ch := make(chan server, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write, writes, closeFn := accept(w, r)
		ch <- server{write, writes, closeFn}
	}))
	defer srv.Close()
	client, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	s := <-ch
	defer s.closeFn()

	received := make(chan int, 1)
	go func() {
		n := 0
		for {
			if _, _, err := client.NextReader(); err != nil {
				received <- n
				return
			}
			n++
			if n == b.N {
				received <- n
				return
			}
		}
	}()
	before := s.writes()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.write(benchMessage); err != nil {
			b.Fatal(err)
		}
	}
	if n := <-received; n != b.N {
		b.Fatalf("client received %d of %d", n, b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(s.writes()-before)/float64(b.N), "socket-writes/msg")
}

// countingHijacker hijacks into a countingConn, for the old write path.
type countingHijacker struct {
	http.ResponseWriter
	conn *countingConn
}

func (h *countingHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.conn.Conn = c
	return h.conn, brw, err
}

type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}
