package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	jobsvc "github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/logtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// stallStore is a store whose listings hang until the caller gives up.
type stallStore struct{ *memory.Store }

func (stallStore) List(ctx context.Context, _ store.ListQuery) (store.ListPage, error) {
	<-ctx.Done()
	return store.ListPage{}, fmt.Errorf("list jobs: %w", ctx.Err())
}

// limitedServer serves the HTTP surface over st with the given time bounds.
func limitedServer(t *testing.T, st store.Store, d httpapi.Deps) *httptest.Server {
	t.Helper()
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	svc := jobsvc.New(st, brokertest.New(t, broker.Options{}), jobsvc.Options{MaxPayloadBytes: maxPayloadBytes, RESTListMax: listMax})
	d.Jobs, d.Logger, d.Streams = svc, log, httpapi.NewStreams()
	d.GraphQL = graph.NewHandler(&graph.Resolver{Service: svc, Logger: log}, graph.ServerOptions{ComplexityLimit: 25000, RequestTimeout: d.RequestTimeout})
	if d.MaxBodyBytes == 0 {
		d.MaxBodyBytes = maxBodyBytes
	}
	srv := httptest.NewServer(httpapi.NewHandler(d))
	t.Cleanup(srv.Close)
	return srv
}

// A query or REST request that outlives REQUEST_TIMEOUT is answered with
// TIMEOUT (GraphQL) or 503 (REST), not left hanging.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	log, logs := logtest.Logger()
	srv := limitedServer(t, stallStore{memory.New(nil)}, httpapi.Deps{RequestTimeout: 50 * time.Millisecond, Logger: log})

	// Two fields run out of time: two errors, one log line.
	resp, err := http.Post(srv.URL+"/query", "application/json", strings.NewReader(`{"query":"{ a: jobs { nodes { id } } b: jobs { nodes { id } } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Errors []struct {
			Extensions struct{ Code string } `json:"extensions"`
		} `json:"errors"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	_ = resp.Body.Close()
	if err != nil || len(out.Errors) != 2 || out.Errors[0].Extensions.Code != graph.CodeTimeout || out.Errors[1].Extensions.Code != graph.CodeTimeout {
		t.Fatalf("GraphQL: %+v, %v; want two TIMEOUT errors", out, err)
	}
	if n := logs.Count("graphql request timed out"); n != 1 || !strings.Contains(logs.String(), `"client":"127.0.0.1:`) {
		t.Fatalf("logged %d timeouts (%s), want one with the client's address", n, logs.String())
	}

	// A query sent as a stream (SSE) is bounded the same way.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/query", strings.NewReader(`{"query":"{ jobs { nodes { id } } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sse, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(sse), `"code":"TIMEOUT"`) {
		t.Fatalf("SSE query: %q, want a TIMEOUT error", sse)
	}

	resp, err = http.Get(srv.URL + "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("REST: %d %q, want 503 with Retry-After and a JSON error", resp.StatusCode, body)
	}
}

// A body that never arrives frees its connection after BODY_TIMEOUT with
// 408, whether its length was declared or it is chunked and stalls.
func TestBodyTimeout(t *testing.T) {
	t.Parallel()
	srv := limitedServer(t, memory.New(nil), httpapi.Deps{BodyTimeout: 100 * time.Millisecond})
	for name, request := range map[string]string{
		"declared length, no body": "POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
		"chunked, stalls":          "POST /query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"que\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(waitBound))
			if _, err := io.WriteString(c, request); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "not received within") {
				t.Fatalf("%d %q, want 408 with a JSON error", resp.StatusCode, body)
			}
			// The server closes the connection.
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the 408 read %v, want EOF", err)
			}
		})
	}
}

// Over the connection limit, a new connection gets 503 with Retry-After
// (or its /health answered) and is closed; a closed connection gives its
// place back.
func TestLimitListener(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	health := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	ln := httpapi.LimitListener(tcp, 1, health, slog.New(slog.DiscardHandler))
	defer ln.Close()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(waitBound))
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ask := func(c net.Conn, path string) (*http.Response, string) {
		t.Helper()
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET %s over the limit: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body) // ends: the connection is closed
		return resp, string(body)
	}

	dial()
	first := <-accepted
	if resp, body := ask(dial(), "/query"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "too many open connections") {
		t.Fatalf("over the limit: %d %q, want 503 with Retry-After", resp.StatusCode, body)
	}
	if resp, body := ask(dial(), "/health"); resp.StatusCode != http.StatusOK || body != `{"status":"ok"}` {
		t.Fatalf("/health over the limit: %d %q, want 200 from the handler", resp.StatusCode, body)
	}
	_ = first.Close()
	dial()
	if c := <-accepted; c == nil {
		t.Fatal("a connection after one closed was not handed on")
	} else {
		_ = c.Close()
	}
}

// A listing larger than MAX_RESPONSE_BYTES is refused with 400 instead of
// built; a smaller ?limit= is answered.
func TestRESTListResponseBudget(t *testing.T) {
	t.Parallel()
	st := memory.New(nil)
	srv := limitedServer(t, st, httpapi.Deps{MaxResponseBytes: 30 << 10}) // listMax (3) jobs are over it
	for range 4 {
		if _, err := st.Create(context.Background(), domain.NewJob{Type: "big", Payload: json.RawMessage(`"` + strings.Repeat("x", 10<<10) + `"`)}); err != nil {
			t.Fatal(err)
		}
	}
	for limit, want := range map[int]int{2: http.StatusOK, 3: http.StatusBadRequest} {
		resp, err := http.Get(fmt.Sprintf("%s/jobs?limit=%d", srv.URL, limit))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want || (want == http.StatusBadRequest && !strings.Contains(string(body), "larger than the server's limit")) {
			t.Fatalf("?limit=%d: %d %.200s, want %d", limit, resp.StatusCode, body, want)
		}
	}
}

// gateStore's listings of type "slow" wait until released.
type gateStore struct {
	*memory.Store
	entered chan struct{}
	release chan struct{}
}

func (g gateStore) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	if q.Type == "slow" {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Store.List(ctx, q)
}

// Large listings (100 jobs or more) take one of LargeListings slots; a
// small one never waits for them.
func TestLargeListingsShareTheirSlots(t *testing.T) {
	t.Parallel()
	g := gateStore{Store: memory.New(nil), entered: make(chan struct{}, 2), release: make(chan struct{})}
	srv := limitedServer(t, g, httpapi.Deps{LargeListings: 1})
	get := func(query string, done chan<- int) {
		resp, err := http.Get(srv.URL + "/jobs" + query)
		if err != nil {
			t.Error(err)
			done <- 0
			return
		}
		_ = resp.Body.Close()
		done <- resp.StatusCode
	}
	first, second := make(chan int, 1), make(chan int, 1)
	go get("?limit=100&type=slow", first)
	<-g.entered // the first holds the slot, inside the store
	go get("?type=slow", second)
	// A small listing is answered while the slot is taken.
	small := make(chan int, 1)
	get("?limit=5", small)
	if code := <-small; code != http.StatusOK {
		t.Fatalf("small listing: %d", code)
	}
	select {
	case <-g.entered:
		t.Fatal("a second large listing reached the store while the slot was taken")
	default:
	}
	close(g.release)
	if code := <-first; code != http.StatusOK {
		t.Fatalf("first large listing: %d", code)
	}
	if code := <-second; code != http.StatusOK {
		t.Fatalf("second large listing: %d", code)
	}
}
