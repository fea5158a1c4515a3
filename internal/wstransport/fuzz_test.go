package wstransport_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// closeCodes are the codes the server may end a connection with: a normal
// close, a message over the read limit, and the protocol's own.
var closeCodes = map[int]bool{
	websocket.CloseNormalClosure:        true,
	websocket.CloseMessageTooBig:        true,
	wstransport.CloseBadRequest:         true,
	wstransport.CloseUnauthorized:       true,
	wstransport.CloseForbidden:          true,
	wstransport.CloseInitTimeout:        true,
	wstransport.CloseSubscriberExists:   true,
	wstransport.CloseTooManyInitRequest: true,
}

// FuzzMessages sends any sequence of messages (one per line) over either
// protocol. Whatever they are, the server neither panics nor hangs: when
// the client closes, the connection ends with a close frame of a known
// code, and no subscription is left behind in the broker.
func FuzzMessages(f *testing.F) {
	for _, seed := range []string{
		`{"type":"connection_init"}` + "\n" + `{"id":"1","type":"subscribe","payload":{"query":"subscription { jobUpdated { id status } }"}}`,
		`{"type":"connection_init"}` + "\n" + `{"id":"1","type":"start","payload":{"query":"subscription { jobUpdated { id } }"}}` + "\n" + `{"id":"1","type":"stop"}`,
		`{"type":"connection_init"}` + "\n" + `{"id":"d","type":"subscribe","payload":{"query":"subscription { jobUpdated { id } }"}}` + "\n" + `{"id":"d","type":"subscribe","payload":{"query":"subscription { jobUpdated { id } }"}}` + "\n" + `{"id":"d","type":"complete"}`,
		`{"type":"connection_init","payload":3}`,
		`{"type":"connection_init"}` + "\n" + `{"type":"connection_init"}`,
		`{"id":"1","type":"subscribe","payload":{"query":"subscription { jobUpdated { id } }"}}`,
		`{"type":`,
		`[` + strings.Repeat("[", 5000) + strings.Repeat("]", 5001),
		`{"type":"connection_init"}` + "\n" + `{"id":"1","type":"subscribe","payload":{"query":"{ __typename }","variables":{"a":[1,2,{"b":null}]}}}`,
		`{"type":"connection_init"}` + "\n" + `{"id":"1","type":"subscribe","payload":{"query":"subscription($id: ID) { jobUpdated(id: $id) { id } }","variables":{"id":12}}}`,
		`{"type":"connection_init"}` + "\n" + `{"id":"` + strings.Repeat("x", 4096) + `","type":"subscribe","payload":{"query":"subscription { jobUpdated { id } }"}}`,
		`{"type":"ping"}` + "\n" + `{"type":"pong"}` + "\n" + `{"type":"connection_terminate"}`,
		"\x00\xff",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	b := setup(f, wstransport.Options{ReadLimit: 64 << 10, MaxSubscriptions: 10, InitTimeout: 5 * time.Second})
	f.Fuzz(func(t *testing.T, messages string, legacy bool) {
		protocol := "graphql-transport-ws"
		if legacy {
			protocol = "graphql-ws"
		}
		c := b.dial(t, protocol)
		for _, m := range strings.SplitN(messages, "\n", 32) {
			if err := c.Conn.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
				break // the server has closed the connection already
			}
		}
		_ = c.Conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		for {
			_, err := c.Read()
			if err == nil {
				continue
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("the connection ended with %v, want a close frame", err)
			}
			if !closeCodes[ce.Code] {
				t.Fatalf("closed with %d %q, want a known code", ce.Code, ce.Text)
			}
			break
		}
		brokertest.WaitSubscribers(t, b.broker, 0, "the connection's subscriptions to leave the broker")
	})
}
