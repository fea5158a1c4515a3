// Command fanout measures how well a server fans job updates out to many
// websocket subscribers.
//
// It opens -n websocket connections (gorilla Dialer with small buffers, at most
// -dial-concurrency handshakes at a time). With -protocol graphql (the product
// server) each connection speaks graphql-transport-ws: connection_init, waits
// for connection_ack, then subscribes once to
// `subscription { jobUpdated { id status updatedAt version } }` (no id: every
// change of every job). With -protocol raw (bench/rawws) it just reads frames.
// One reader goroutine per connection decodes only the envelope type, the job
// id, status and updatedAt, and answers server pings with pongs.
//
// Because a subscribe is not acknowledged by graphql-transport-ws, readiness
// is proven by traffic: warm-up jobs are created (createJob over HTTP, or
// POST /emit on the raw server) until every connection has received a
// COMPLETED; messages of warm-up jobs are then ignored and measuring starts.
//
// Modes:
//
//	steady  creates -rate jobs/s for -duration; for every COMPLETED on every
//	        connection records delay = arrival time - updatedAt. Reports the
//	        expected vs received COMPLETED count, messages/s and p50/p99/max
//	        delay.
//	burst   creates -jobs jobs at once (concurrently) and waits (at most
//	        -deadline) until every connection has every COMPLETED. Reports
//	        messages received, messages/s from the first create to the last
//	        message, and lost COMPLETED messages.
//	idle    reads VmRSS of -pid from /proc before connecting and once all
//	        subscribers are ready, each time polling until the value has been
//	        stable for 1s; reports KiB per idle subscriber.
//
// Output: one JSON line on stdout (machine-readable) and one human line on
// stderr. The exit status is non-zero only when the run itself could not be
// done (connections refused, never ready); lost messages are a result.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const (
	subscriptionQuery = `subscription { jobUpdated { id status updatedAt version } }`
	createJobQuery    = `mutation { createJob(input:{type:"bench", payload:{n:1}}) { id status } }`
	subID             = "1"
)

type config struct {
	addr        string
	protocol    string
	mode        string
	n           int
	rate        float64
	duration    time.Duration
	jobs        int
	pid         int
	gcURL       string
	dialConc    int
	deadline    time.Duration
	drain       time.Duration
	readyTimout time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "server host:port (or a URL, whose host is used)")
	flag.StringVar(&cfg.protocol, "protocol", "graphql", "graphql (product server, /query) or raw (bench/rawws, /ws and /emit)")
	flag.StringVar(&cfg.mode, "mode", "steady", "steady, burst or idle")
	flag.IntVar(&cfg.n, "n", 2000, "websocket connections, one subscription each")
	flag.Float64Var(&cfg.rate, "rate", 10, "steady: jobs created per second")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "steady: how long jobs are created")
	flag.IntVar(&cfg.jobs, "jobs", 100, "burst: jobs created at once")
	flag.IntVar(&cfg.pid, "pid", 0, "idle: server process id whose VmRSS is read")
	flag.StringVar(&cfg.gcURL, "gc-url", "", "idle: URL that makes the server collect garbage (e.g. its /debug/pprof/heap?gc=1); when set, RSS is read again after it")
	flag.IntVar(&cfg.dialConc, "dial-concurrency", 200, "websocket handshakes in flight at a time")
	flag.DurationVar(&cfg.deadline, "deadline", 120*time.Second, "burst: how long to wait for every COMPLETED")
	flag.DurationVar(&cfg.drain, "drain", 15*time.Second, "steady: how long to wait for stragglers after the last create")
	flag.DurationVar(&cfg.readyTimout, "ready-timeout", 90*time.Second, "how long connecting plus warm-up may take")
	flag.Parse()

	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------- clients --

// sub is one websocket connection with its subscription. Fields below ws are
// written only by the connection's reader goroutine and read after it ended,
// except the atomics.
type sub struct {
	ws *websocket.Conn

	warm        atomic.Bool  // saw a COMPLETED during warm-up
	lastArrival atomic.Int64 // unix nanos of the last measured message

	completed int     // measured COMPLETED messages
	delays    []int64 // nanoseconds, one per measured COMPLETED
	readErr   error
}

// bench holds the shared state of a run.
type bench struct {
	cfg      config
	wsURL    string
	httpURL  string
	http     *http.Client
	dialer   *websocket.Dialer
	subs     []*sub
	readers  sync.WaitGroup
	measured atomic.Bool
	warmIDs  map[string]struct{} // frozen before measured is set

	warmReady atomic.Int64 // connections that saw a warm-up COMPLETED
	completed atomic.Int64 // measured COMPLETED, all connections
	messages  atomic.Int64 // measured "next" messages, all connections
	finalBad  atomic.Int64 // measured FAILED/CANCELLED
	badStatus atomic.Int64 // unparsable or unexpected messages
	subErrors atomic.Int64 // "error" messages from the server
	completes atomic.Int64 // "complete" messages (the stream ended)
	closed    atomic.Int64 // connections that ended while measuring
	firstErr  atomic.Pointer[string]
}

func (b *bench) noteErr(s string) {
	b.firstErr.CompareAndSwap(nil, &s)
}

func run(cfg config) error {
	debug.SetGCPercent(400) // the client should spend its CPU reading, not collecting

	host := cfg.addr
	if u, err := url.Parse(cfg.addr); err == nil && u.Host != "" {
		host = u.Host
	}
	if strings.HasPrefix(host, "[::]:") || strings.HasPrefix(host, "0.0.0.0:") {
		host = "127.0.0.1:" + host[strings.LastIndex(host, ":")+1:]
	}
	b := &bench{cfg: cfg}
	switch cfg.protocol {
	case "graphql":
		b.wsURL = "ws://" + host + "/query"
		b.httpURL = "http://" + host + "/query"
	case "raw":
		b.wsURL = "ws://" + host + "/ws"
		b.httpURL = "http://" + host + "/emit"
	default:
		return fmt.Errorf("unknown -protocol %q", cfg.protocol)
	}
	switch cfg.mode {
	case "steady", "burst", "idle":
	default:
		return fmt.Errorf("unknown -mode %q", cfg.mode)
	}
	if cfg.mode == "idle" && cfg.pid <= 0 {
		return errors.New("-mode idle needs -pid")
	}
	b.http = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     60 * time.Second,
		},
	}
	b.dialer = &websocket.Dialer{
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  512,
		WriteBufferPool:  &sync.Pool{},
	}
	if cfg.protocol == "graphql" {
		b.dialer.Subprotocols = []string{"graphql-transport-ws"}
	}

	var rssBefore int64
	if cfg.mode == "idle" {
		v, _, err := stableRSS(cfg.pid, 20*time.Second)
		if err != nil {
			return err
		}
		rssBefore = v
	}

	readyCtx, cancel := context.WithTimeout(context.Background(), cfg.readyTimout)
	defer cancel()
	t0 := time.Now()
	if err := b.connectAll(readyCtx); err != nil {
		b.closeAll()
		return err
	}
	connectDur := time.Since(t0)
	warmJobs, err := b.warmUp(readyCtx)
	if err != nil {
		b.closeAll()
		return err
	}
	readyDur := time.Since(t0)

	res := map[string]any{
		"tool":        "fanout",
		"mode":        cfg.mode,
		"protocol":    cfg.protocol,
		"addr":        host,
		"conns":       cfg.n,
		"connect_s":   round(connectDur.Seconds(), 3),
		"ready_s":     round(readyDur.Seconds(), 3),
		"warmup_jobs": warmJobs,
	}
	var human string
	switch cfg.mode {
	case "steady":
		human, err = b.steady(res)
	case "burst":
		human, err = b.burst(res)
	case "idle":
		human, err = b.idle(res, rssBefore)
	}
	if err != nil {
		b.closeAll()
		return err
	}
	res["sub_errors"] = b.subErrors.Load()
	res["sub_completes"] = b.completes.Load()
	res["conns_closed"] = b.closed.Load()
	res["bad_messages"] = b.badStatus.Load()
	if p := b.firstErr.Load(); p != nil {
		res["first_error"] = *p
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	fmt.Fprintln(os.Stderr, human)
	return nil
}

// connectAll dials every connection, -dial-concurrency at a time, and
// subscribes; each gets its reader goroutine.
func (b *bench) connectAll(ctx context.Context) error {
	b.subs = make([]*sub, b.cfg.n)
	sem := make(chan struct{}, b.cfg.dialConc)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	for i := range b.subs {
		sem <- struct{}{}
		if ctx.Err() != nil || failed.Load() > 0 {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var s *sub
			var err error
			for attempt := 0; attempt < 3; attempt++ {
				if s, err = b.connect(ctx); err == nil {
					break
				}
				time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			b.subs[i] = s
			b.readers.Add(1)
			go b.read(s)
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return fmt.Errorf("connecting %d subscribers: %d failed, first: %w", b.cfg.n, failed.Load(), *p)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("connecting %d subscribers: %w", b.cfg.n, err)
	}
	return nil
}

func (b *bench) connect(ctx context.Context) (*sub, error) {
	ws, resp, err := b.dialer.DialContext(ctx, b.wsURL, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %s)", b.wsURL, err, resp.Status)
		}
		return nil, fmt.Errorf("dial %s: %w", b.wsURL, err)
	}
	if b.cfg.protocol == "raw" {
		return &sub{ws: ws}, nil
	}
	if ws.Subprotocol() != "graphql-transport-ws" {
		ws.Close()
		return nil, fmt.Errorf("server chose subprotocol %q, want graphql-transport-ws", ws.Subprotocol())
	}
	fail := func(err error) (*sub, error) { ws.Close(); return nil, err }
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_init","payload":{}}`)); err != nil {
		return fail(fmt.Errorf("connection_init: %w", err))
	}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return fail(fmt.Errorf("waiting for connection_ack: %w", err))
		}
		var m struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return fail(fmt.Errorf("waiting for connection_ack: bad message %q", trunc(data)))
		}
		if m.Type == "ping" {
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`)); err != nil {
				return fail(err)
			}
			continue
		}
		if m.Type == "connection_ack" {
			break
		}
		return fail(fmt.Errorf("waiting for connection_ack: got %q", trunc(data)))
	}
	_ = ws.SetReadDeadline(time.Time{})
	msg, _ := json.Marshal(map[string]any{
		"id":      subID,
		"type":    "subscribe",
		"payload": map[string]any{"query": subscriptionQuery, "variables": map[string]any{}},
	})
	if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		return fail(fmt.Errorf("subscribe: %w", err))
	}
	return &sub{ws: ws}, nil
}

func (b *bench) closeAll() {
	for _, s := range b.subs {
		if s != nil {
			s.ws.Close()
		}
	}
	b.readers.Wait()
}

// read is the reader goroutine of one connection.
func (b *bench) read(s *sub) {
	defer b.readers.Done()
	var buf bytes.Buffer
	pong := []byte(`{"type":"pong"}`)
	for {
		_, r, err := s.ws.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			s.readErr = err
			if b.measured.Load() {
				b.closed.Add(1)
				if !isClosedErr(err) {
					b.noteErr("connection ended: " + err.Error())
				}
			}
			return
		}
		now := time.Now()
		m, ok := parse(buf.Bytes())
		if !ok {
			b.badStatus.Add(1)
			b.noteErr("unparsable message: " + trunc(buf.Bytes()))
			continue
		}
		switch m.typ {
		case "next":
		case "ping":
			_ = s.ws.WriteMessage(websocket.TextMessage, pong)
			continue
		case "pong", "connection_ack":
			continue
		case "error":
			b.subErrors.Add(1)
			b.noteErr("subscription error: " + trunc(buf.Bytes()))
			continue
		case "complete":
			b.completes.Add(1)
			b.noteErr("subscription completed by the server: " + trunc(buf.Bytes()))
			continue
		default:
			b.badStatus.Add(1)
			b.noteErr("unexpected message: " + trunc(buf.Bytes()))
			continue
		}
		if !b.measured.Load() {
			if m.status == "COMPLETED" && !s.warm.Load() {
				s.warm.Store(true)
				b.warmReady.Add(1)
			}
			continue
		}
		if _, warm := b.warmIDs[m.id]; warm {
			continue
		}
		b.messages.Add(1)
		s.lastArrival.Store(now.UnixNano())
		switch m.status {
		case "COMPLETED":
			t, err := time.Parse(time.RFC3339Nano, m.updatedAt)
			if err != nil {
				b.badStatus.Add(1)
				b.noteErr("bad updatedAt: " + trunc(buf.Bytes()))
			} else {
				s.delays = append(s.delays, now.Sub(t).Nanoseconds())
			}
			s.completed++
			b.completed.Add(1)
		case "PENDING", "PROCESSING":
		case "FAILED", "CANCELLED":
			b.finalBad.Add(1)
			b.noteErr("job did not complete: " + trunc(buf.Bytes()))
		default:
			b.badStatus.Add(1)
			b.noteErr("unexpected status: " + trunc(buf.Bytes()))
		}
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway)
}

// ----------------------------------------------------------------- decode --

type message struct {
	typ, id, status, updatedAt string
}

// parse extracts type, and for "next" the job's id, status and updatedAt. The
// fast path scans compact JSON for the few keys needed; anything it does not
// recognise goes through encoding/json.
func parse(data []byte) (message, bool) {
	var m message
	typ, ok := strValue(data, `"type":"`)
	if !ok {
		return parseSlow(data)
	}
	m.typ = typ
	if typ != "next" {
		return m, true
	}
	i := bytes.Index(data, []byte(`"jobUpdated":{`))
	if i < 0 {
		return parseSlow(data)
	}
	obj := data[i:]
	if m.id, ok = strValue(obj, `"id":"`); !ok {
		return parseSlow(data)
	}
	if m.status, ok = strValue(obj, `"status":"`); !ok {
		return parseSlow(data)
	}
	if m.updatedAt, ok = strValue(obj, `"updatedAt":"`); !ok {
		return parseSlow(data)
	}
	return m, true
}

// strValue returns the string value following key (which ends with the
// opening quote), when it holds no escapes.
func strValue(data []byte, key string) (string, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

func parseSlow(data []byte) (message, bool) {
	var env struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(data, &env); err != nil || env.Type == "" {
		return message{}, false
	}
	m := message{typ: env.Type}
	if env.Type != "next" {
		return m, true
	}
	var p struct {
		Data struct {
			JobUpdated *struct {
				ID        string `json:"id"`
				Status    string `json:"status"`
				UpdatedAt string `json:"updatedAt"`
			} `json:"jobUpdated"`
		} `json:"data"`
	}
	if err := json.Unmarshal(env.Payload, &p); err != nil || p.Data.JobUpdated == nil {
		return message{}, false
	}
	j := p.Data.JobUpdated
	m.id, m.status, m.updatedAt = j.ID, j.Status, j.UpdatedAt
	return m, true
}

// ------------------------------------------------------------ create jobs --

// create makes k jobs (k createJob calls in graphql mode, one /emit?jobs=k in
// raw mode) and returns their ids.
func (b *bench) create(ctx context.Context, k int) ([]string, error) {
	if b.cfg.protocol == "raw" {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.httpURL+"?jobs="+strconv.Itoa(k), nil)
		resp, err := b.http.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("emit: HTTP %s: %s", resp.Status, trunc(body))
		}
		var r struct {
			IDs []string `json:"ids"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, fmt.Errorf("emit: %w", err)
		}
		return r.IDs, nil
	}
	ids := make([]string, 0, k)
	for range k {
		id, err := b.createJob(ctx)
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

var createBody, _ = json.Marshal(map[string]any{"query": createJobQuery})

func (b *bench) createJob(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.httpURL, bytes.NewReader(createBody))
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("createJob: HTTP %s: %s", resp.Status, trunc(body))
	}
	var r struct {
		Data struct {
			CreateJob *struct {
				ID string `json:"id"`
			} `json:"createJob"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("createJob: %w: %s", err, trunc(body))
	}
	if len(r.Errors) > 0 && string(r.Errors) != "null" || r.Data.CreateJob == nil {
		return "", fmt.Errorf("createJob: %s", trunc(body))
	}
	return r.Data.CreateJob.ID, nil
}

// warmUp creates jobs until every connection has seen a COMPLETED, then
// freezes the warm-up ids and switches to measuring.
func (b *bench) warmUp(ctx context.Context) (int, error) {
	warm := make(map[string]struct{})
	n := int64(b.cfg.n)
	jobs := 0
	for b.warmReady.Load() < n {
		ids, err := b.create(ctx, 1)
		for _, id := range ids {
			warm[id] = struct{}{}
		}
		jobs++
		if err != nil {
			return jobs, fmt.Errorf("warm-up job: %w", err)
		}
		// Wait while the job is still reaching subscribers; once nobody new
		// has received a COMPLETED for 1.5s, the missing subscriptions were
		// registered too late for it and need another job.
		seen, lastProgress := b.warmReady.Load(), time.Now()
		for b.warmReady.Load() < n && time.Since(lastProgress) < 1500*time.Millisecond {
			if ctx.Err() != nil {
				return jobs, fmt.Errorf("warm-up: only %d of %d subscribers received a job: %w (%s)",
					b.warmReady.Load(), n, ctx.Err(), b.errSummary())
			}
			time.Sleep(10 * time.Millisecond)
			if now := b.warmReady.Load(); now != seen {
				seen, lastProgress = now, time.Now()
			}
		}
	}
	b.warmIDs = warm
	b.measured.Store(true)
	return jobs, nil
}

func (b *bench) errSummary() string {
	if p := b.firstErr.Load(); p != nil {
		return "first problem: " + *p
	}
	return "no error message seen"
}

// ------------------------------------------------------------------ modes --

func (b *bench) steady(res map[string]any) (string, error) {
	cfg := b.cfg
	if cfg.rate <= 0 {
		return "", errors.New("-rate must be > 0")
	}
	ctx := context.Background()
	interval := time.Duration(float64(time.Second) / cfg.rate)
	var created, createErrs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(interval)
	for time.Since(start) < cfg.duration {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, err := b.create(ctx, 1)
			created.Add(int64(len(ids)))
			if err != nil {
				createErrs.Add(1)
				b.noteErr(err.Error())
			}
		}()
		<-tick.C
	}
	tick.Stop()
	wg.Wait()
	lastCreate := time.Now()
	expected := created.Load() * int64(cfg.n)
	for b.completed.Load() < expected && time.Since(lastCreate) < cfg.drain {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let duplicates, if any, show up
	b.closeAll()

	st := b.collect(int64(created.Load()))
	elapsed := time.Duration(st.lastArrival - start.UnixNano()).Seconds()
	msgsPerS := 0.0
	if elapsed > 0 {
		msgsPerS = float64(b.messages.Load()) / elapsed
	}
	res["rate"] = cfg.rate
	res["duration_s"] = cfg.duration.Seconds()
	res["jobs_created"] = created.Load()
	res["create_errors"] = createErrs.Load()
	res["expected_completed"] = expected
	res["received_completed"] = b.completed.Load()
	res["lost"] = st.lost
	res["extra"] = st.extra
	res["conns_short"] = st.short
	res["messages"] = b.messages.Load()
	res["msgs_per_s"] = round(msgsPerS, 1)
	res["p50_ms"] = st.p50
	res["p99_ms"] = st.p99
	res["max_ms"] = st.max
	res["failed_or_cancelled"] = b.finalBad.Load()
	human := fmt.Sprintf("fanout steady %s n=%d rate=%g/s: COMPLETED %d/%d (lost %d), %.0f msgs/s, delay p50 %.2f ms p99 %.2f ms max %.2f ms",
		cfg.protocol, cfg.n, cfg.rate, b.completed.Load(), expected, st.lost, msgsPerS, st.p50, st.p99, st.max)
	return human, nil
}

func (b *bench) burst(res map[string]any) (string, error) {
	cfg := b.cfg
	ctx := context.Background()
	var created, createErrs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	if cfg.protocol == "raw" {
		ids, err := b.create(ctx, cfg.jobs)
		created.Add(int64(len(ids)))
		if err != nil {
			createErrs.Add(1)
			b.noteErr(err.Error())
		}
	} else {
		for range cfg.jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids, err := b.create(ctx, 1)
				created.Add(int64(len(ids)))
				if err != nil {
					createErrs.Add(1)
					b.noteErr(err.Error())
				}
			}()
		}
		wg.Wait()
	}
	createDur := time.Since(start)
	expected := created.Load() * int64(cfg.n)
	timedOut := false
	for b.completed.Load() < expected {
		if time.Since(start) > cfg.deadline {
			timedOut = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	b.closeAll()

	st := b.collect(created.Load())
	elapsed := time.Duration(st.lastArrival - start.UnixNano()).Seconds()
	msgsPerS := 0.0
	if elapsed > 0 {
		msgsPerS = float64(b.messages.Load()) / elapsed
	}
	expMsgs := 3 * expected
	res["jobs"] = cfg.jobs
	res["jobs_created"] = created.Load()
	res["create_errors"] = createErrs.Load()
	res["create_s"] = round(createDur.Seconds(), 3)
	res["expected_completed"] = expected
	res["received_completed"] = b.completed.Load()
	res["lost"] = st.lost
	res["extra"] = st.extra
	res["conns_short"] = st.short
	res["expected_messages"] = expMsgs
	res["messages"] = b.messages.Load()
	res["skipped_intermediate"] = expMsgs - b.messages.Load() - st.lost + st.extra
	res["elapsed_s"] = round(elapsed, 3)
	res["msgs_per_s"] = round(msgsPerS, 1)
	res["timed_out"] = timedOut
	res["p50_ms"] = st.p50
	res["p99_ms"] = st.p99
	res["max_ms"] = st.max
	res["failed_or_cancelled"] = b.finalBad.Load()
	human := fmt.Sprintf("fanout burst %s n=%d jobs=%d: %d msgs in %.2fs = %.0f msgs/s, COMPLETED %d/%d (lost %d)%s, delay p99 %.1f ms",
		cfg.protocol, cfg.n, cfg.jobs, b.messages.Load(), elapsed, msgsPerS, b.completed.Load(), expected, st.lost,
		map[bool]string{true: " TIMED OUT", false: ""}[timedOut], st.p99)
	return human, nil
}

func (b *bench) idle(res map[string]any, before int64) (string, error) {
	after, stable, err := stableRSS(b.cfg.pid, 20*time.Second)
	if err != nil {
		return "", err
	}
	per := float64(after-before) / float64(b.cfg.n)
	res["pid"] = b.cfg.pid
	res["rss_before_kib"] = before
	res["rss_after_kib"] = after
	res["rss_stable"] = stable
	res["kib_per_sub"] = round(per, 2)
	human := fmt.Sprintf("fanout idle %s n=%d: server RSS %d KiB -> %d KiB = %.2f KiB per idle subscriber%s",
		b.cfg.protocol, b.cfg.n, before, after, per, map[bool]string{true: "", false: " (RSS never stable)"}[stable])
	if b.cfg.gcURL != "" {
		// The first reading includes the garbage of N handshakes that the
		// collector has not reclaimed yet; a long-lived server sheds it.
		// Read RSS again after a collection, with the subscribers still
		// connected.
		resp, err := http.Get(b.cfg.gcURL)
		if err != nil {
			return "", fmt.Errorf("gc url: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		gcAfter, gcStable, err := stableRSS(b.cfg.pid, 20*time.Second)
		if err != nil {
			return "", err
		}
		gcPer := float64(gcAfter-before) / float64(b.cfg.n)
		res["rss_after_gc_kib"] = gcAfter
		res["kib_per_sub_after_gc"] = round(gcPer, 2)
		human += fmt.Sprintf("; after a GC %d KiB = %.2f KiB per idle subscriber%s",
			gcAfter, gcPer, map[bool]string{true: "", false: " (RSS never stable)"}[gcStable])
	}
	b.closeAll()
	return human, nil
}

type stats struct {
	lost, extra, short int64
	p50, p99, max      float64
	lastArrival        int64
}

// collect aggregates per-connection results; readers must have ended.
func (b *bench) collect(jobs int64) stats {
	var st stats
	var all []int64
	for _, s := range b.subs {
		c := int64(s.completed)
		if c < jobs {
			st.lost += jobs - c
			st.short++
		} else {
			st.extra += c - jobs
		}
		all = append(all, s.delays...)
		st.lastArrival = max(st.lastArrival, s.lastArrival.Load())
	}
	slices.Sort(all)
	st.p50 = ms(percentile(all, 0.50))
	st.p99 = ms(percentile(all, 0.99))
	if len(all) > 0 {
		st.max = ms(all[len(all)-1])
	}
	return st
}

func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(ns int64) float64 { return round(float64(ns)/1e6, 3) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// -------------------------------------------------------------------- RSS --

func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(rest) // "12345 kB"
			if len(fields) >= 1 {
				return strconv.ParseInt(fields[0], 10, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// stableRSS polls VmRSS every 100ms until the readings of the last second
// differ by at most max(0.5%, 256 KiB), or until the deadline; it returns the
// last reading and whether it was stable.
func stableRSS(pid int, deadline time.Duration) (int64, bool, error) {
	const window = 11 // 1s of readings at 100ms
	var hist []int64
	end := time.Now().Add(deadline)
	for {
		v, err := readRSS(pid)
		if err != nil {
			return 0, false, fmt.Errorf("reading RSS of pid %d: %w", pid, err)
		}
		hist = append(hist, v)
		if len(hist) > window {
			hist = hist[1:]
		}
		if len(hist) == window {
			lo, hi := slices.Min(hist), slices.Max(hist)
			if hi-lo <= max(256, hi/200) {
				return v, true, nil
			}
		}
		if time.Now().After(end) {
			return v, false, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}
