package wstransport_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// BenchmarkIdleSubscriber reports what an idle subscriber costs the
// server: b.N connections, each acknowledged and holding one jobUpdated
// subscription, then the growth of the live heap and of goroutine stacks
// per connection after a collection. It runs the transport, the schema's
// resolvers and the broker, not the server's own gqlgen extensions; the
// clients are bare sockets written by hand (about 0.4 KiB of heap each,
// included). bench/run.sh's idle mode measures the whole server's RSS
// instead. Each connection takes two file descriptors:
//
//	go test -run '^$' -bench IdleSubscriber -benchtime 2000x ./internal/wstransport
func BenchmarkIdleSubscriber(b *testing.B) {
	bundle := setup(b, wstransport.Options{})
	addr := strings.TrimPrefix(bundle.srv.URL, "http://")
	subscribeFrame := clientFrame(`{"id":"1","type":"subscribe","payload":{"query":"subscription { jobUpdated { id status updatedAt version } }"}}`)
	initFrame := clientFrame(`{"type":"connection_init"}`)
	baseline := runtime.NumGoroutine()
	before := memStats()

	conns := make([]net.Conn, 0, b.N)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range b.N {
		c, err := handshake(addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(initFrame); err != nil {
			b.Fatal(err)
		}
		if err := readAck(c); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(subscribeFrame); err != nil {
			b.Fatal(err)
		}
	}
	brokertest.WaitSubscribers(b, bundle.broker, b.N, "every subscription")
	waitGoroutines(b, baseline+b.N, "one goroutine per idle connection")
	after := memStats()
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heap-B/sub")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/float64(b.N), "stack-B/sub")
}

func memStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// handshake opens a websocket connection speaking graphql-transport-ws.
func handshake(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(waitBound))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n", addr)
	// The server sends nothing after the 101 until it is spoken to, so a
	// buffered read cannot take frames away from readAck.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = c.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	return c, nil
}

// clientFrame is a masked text frame (the key is zero: masking is a no-op).
func clientFrame(text string) []byte {
	b := []byte{0x81, 0}
	if n := len(text); n <= 125 {
		b[1] = 0x80 | byte(n)
	} else {
		b[1] = 0x80 | 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, text...)
}

// readAck reads the server's first frame, which must be connection_ack.
func readAck(c net.Conn) error {
	h := make([]byte, 2)
	if _, err := io.ReadFull(c, h); err != nil {
		return err
	}
	p := make([]byte, h[1]&0x7f) // connection_ack is short
	if _, err := io.ReadFull(c, p); err != nil {
		return err
	}
	if !strings.Contains(string(p), "connection_ack") {
		return fmt.Errorf("first frame %q, want connection_ack", p)
	}
	return nil
}
