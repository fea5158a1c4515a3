package graph

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"testing"
)

// protocolMessage has the shape of gqlgen's websocket protocol messages.
type protocolMessage struct {
	Payload json.RawMessage `json:"payload,omitempty"`
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
}

// recordingConn records the JSON of what is written to it.
type recordingConn struct {
	frames [][]byte
	texts  int // how many came through WriteText
}

func (r *recordingConn) Close() error                        { return nil }
func (r *recordingConn) NextReader() (int, io.Reader, error) { return 0, nil, io.EOF }
func (r *recordingConn) WriteClose(int, string) error        { return nil }
func (r *recordingConn) Subprotocol() string                 { return "graphql-transport-ws" }

func (r *recordingConn) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	r.frames = append(r.frames, b)
	return err
}

type textRecordingConn struct{ *recordingConn }

func (r textRecordingConn) WriteText(p []byte) error {
	r.texts++
	r.frames = append(r.frames, bytes.Clone(p))
	return nil
}

func TestEncodingConnStandInsAndTemplates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		id        string
		withText  bool
		wantTexts int
	}{
		{"WriteText", "1", true, 2},
		{"WriteJSON only", "1", false, 0},
		{"id holding the payload slot", "jobqueue:payload-slot", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recordingConn{}
			c := &encodingConn{WebsocketConn: rec}
			if tc.withText {
				c = &encodingConn{WebsocketConn: textRecordingConn{rec}, text: textRecordingConn{rec}, buffers: new(sync.Pool)}
			}
			want := func(payload string) []byte {
				b, _ := json.Marshal(&protocolMessage{Payload: json.RawMessage(payload), ID: tc.id, Type: "next"})
				return b
			}
			// What gqlgen does with a stand-in: marshal it as the payload.
			writeStandIn := func(standIn any) {
				t.Helper()
				p, err := json.Marshal(standIn)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.WriteJSON(&protocolMessage{Payload: p, ID: tc.id, Type: "next"}); err != nil {
					t.Fatal(err)
				}
			}

			s := c.newStandIn()
			if written, _ := c.writeShared(s, []byte(`{"data":0}`)); written {
				t.Fatal("writeShared wrote before the first stand-in")
			}
			writeStandIn(c.leave(s, []byte(`{"data":1}`)))
			for _, p := range []string{`{"data":2}`, `{"data":{"s":"\u003c"}}`} {
				if written, err := c.writeShared(s, []byte(p)); !written || err != nil {
					t.Fatalf("writeShared(%s) = %v, %v", p, written, err)
				}
			}
			// Other messages pass unchanged.
			if err := c.WriteJSON(&protocolMessage{ID: tc.id, Type: "complete"}); err != nil {
				t.Fatal(err)
			}
			wantFrames := [][]byte{want(`{"data":1}`), want(`{"data":2}`), want(`{"data":{"s":"\u003c"}}`),
				[]byte(`{"id":"` + tc.id + `","type":"complete"}`)}
			if len(rec.frames) != len(wantFrames) {
				t.Fatalf("frames %q, want %q", rec.frames, wantFrames)
			}
			for i := range wantFrames {
				if !bytes.Equal(rec.frames[i], wantFrames[i]) {
					t.Fatalf("frame %d: %s, want %s", i, rec.frames[i], wantFrames[i])
				}
			}
			if rec.texts != tc.wantTexts {
				t.Fatalf("%d frames through WriteText, want %d", rec.texts, tc.wantTexts)
			}

			// Stand-ins of two subscriptions in flight at once get their
			// own encodings, whichever gqlgen writes first.
			s2, s3 := c.newStandIn(), c.newStandIn()
			in2 := c.leave(s2, []byte(`{"data":5}`))
			in3 := c.leave(s3, []byte(`{"data":6}`))
			writeStandIn(in3)
			writeStandIn(in2)
			n := len(rec.frames)
			if !bytes.Equal(rec.frames[n-2], want(`{"data":6}`)) || !bytes.Equal(rec.frames[n-1], want(`{"data":5}`)) {
				t.Fatalf("stand-ins written as %s and %s", rec.frames[n-2], rec.frames[n-1])
			}
			if len(c.inFlight) != 0 {
				t.Fatalf("%d stand-ins still in flight, want none", len(c.inFlight))
			}
		})
	}
}
