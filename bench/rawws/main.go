// Command rawws is the physical-limit baseline for the websocket fan-out
// benchmarks: a bare gorilla/websocket server with no GraphQL at all.
//
// GET /ws upgrades the connection (ReadBufferSize 1024, a shared
// WriteBufferPool, subprotocol graphql-transport-ws accepted when asked for)
// and registers it. POST /emit?jobs=K fabricates K jobs and, for each, encodes
// once the three graphql-transport-ws "next" frames a real subscriber of
// `jobUpdated` would get (PENDING, PROCESSING, COMPLETED, updatedAt = the
// moment of emission) as gorilla PreparedMessages, then hands the whole batch
// to every registered connection. Each connection has one writer goroutine fed
// by a buffered channel, so a slow client never stalls the others; a batch
// that does not fit in a full channel is dropped and counted (GET /stats).
// The response of /emit is {"ids":[...]} with the fabricated job ids.
//
// What the fanout tool measures against this server is therefore the cost of
// websocket framing, syscalls and the client itself: the ceiling any GraphQL
// server on this machine can approach.
//
// Configuration mirrors the product server: PORT (0 = a free port), LOG_FORMAT
// (json for JSON log lines on stderr). Once listening it prints
// "listening addr=HOST:PORT" on stdout and a log line with "msg":"listening"
// and "addr" on stderr.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// queueLen is the per-connection channel capacity, in batches (one batch per
// /emit call), so 256 calls may be in flight for a client before drops.
const queueLen = 256

type batch []*websocket.PreparedMessage

type client struct {
	conn *websocket.Conn
	out  chan batch
	done chan struct{}
}

type server struct {
	mu      sync.Mutex
	clients map[*client]struct{}

	nextID  atomic.Int64
	dropped atomic.Int64
	emitted atomic.Int64
	log     *slog.Logger

	upgrader websocket.Upgrader
}

func newServer(log *slog.Logger) *server {
	s := &server{clients: make(map[*client]struct{}), log: log}
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{"graphql-transport-ws"},
		CheckOrigin:     func(*http.Request) bool { return true },
	}
	return s
}

func (s *server) handleWS(w http.ResponseWriter, r *http.Request) {
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade already answered with an error.
	}
	c := &client{conn: conn, out: make(chan batch, queueLen), done: make(chan struct{})}
	s.mu.Lock()
	s.clients[c] = struct{}{}
	s.mu.Unlock()

	go s.writeLoop(c)
	// The read loop answers control frames and notices the client leaving.
	conn.SetReadLimit(64 << 10)
	for {
		if _, _, err := conn.NextReader(); err != nil {
			break
		}
	}
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
	close(c.done)
	conn.Close()
}

func (s *server) writeLoop(c *client) {
	for {
		select {
		case <-c.done:
			return
		case b := <-c.out:
			for _, pm := range b {
				if err := c.conn.WritePreparedMessage(pm); err != nil {
					c.conn.Close() // makes the read loop end and unregister
					return
				}
			}
		}
	}
}

type jobUpdate struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	UpdatedAt string `json:"updatedAt"`
	Version   int    `json:"version"`
}

type nextMsg struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Payload struct {
		Data struct {
			JobUpdated jobUpdate `json:"jobUpdated"`
		} `json:"data"`
	} `json:"payload"`
}

// frames encodes the three messages of one job's life, stamped now.
func (s *server) frames(ids []string) (batch, error) {
	b := make(batch, 0, 3*len(ids))
	for i := range ids {
		id := "raw-" + strconv.FormatInt(s.nextID.Add(1), 10)
		ids[i] = id
		now := time.Now().UTC().Format(time.RFC3339Nano)
		for v, st := range []string{"PENDING", "PROCESSING", "COMPLETED"} {
			var m nextMsg
			m.ID, m.Type = "1", "next"
			m.Payload.Data.JobUpdated = jobUpdate{ID: id, Status: st, UpdatedAt: now, Version: v + 1}
			data, err := json.Marshal(&m)
			if err != nil {
				return nil, err
			}
			pm, err := websocket.NewPreparedMessage(websocket.TextMessage, data)
			if err != nil {
				return nil, err
			}
			b = append(b, pm)
		}
	}
	return b, nil
}

func (s *server) handleEmit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	k := 1
	if v := r.URL.Query().Get("jobs"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			http.Error(w, "jobs must be 1..100000", http.StatusBadRequest)
			return
		}
		k = n
	}
	ids := make([]string, k)
	b, err := s.frames(ids)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	targets := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		targets = append(targets, c)
	}
	s.mu.Unlock()
	for _, c := range targets {
		select {
		case c.out <- b:
		default:
			s.dropped.Add(1)
		}
	}
	s.emitted.Add(int64(k))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"ids": ids, "connections": len(targets)})
}

func (s *server) handleStats(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	n := len(s.clients)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int64{
		"connections":     int64(n),
		"jobs_emitted":    s.emitted.Load(),
		"batches_dropped": s.dropped.Load(),
	})
}

func main() {
	addrFlag := flag.String("addr", "", "listen address (default 127.0.0.1:$PORT, PORT=0 picks a free port)")
	flag.Parse()

	var h slog.Handler
	if os.Getenv("LOG_FORMAT") == "json" {
		h = slog.NewJSONHandler(os.Stderr, nil)
	} else {
		h = slog.NewTextHandler(os.Stderr, nil)
	}
	log := slog.New(h)

	addr := *addrFlag
	if addr == "" {
		port := os.Getenv("PORT")
		if port == "" {
			port = "0"
		}
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}

	s := newServer(log)
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", s.handleWS)
	mux.HandleFunc("/emit", s.handleEmit)
	mux.HandleFunc("/stats", s.handleStats)
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap")) // ?gc=1 collects garbage first, as the fan-out tool's idle mode asks
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	fmt.Printf("listening addr=%s\n", ln.Addr())
	log.Info("listening", "addr", ln.Addr().String(), "pid", os.Getpid())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut) // hijacked websocket conns die with the process
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
