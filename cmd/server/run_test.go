package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/logtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type server struct {
	url    string
	logs   *logtest.Buffer
	stop   context.CancelFunc
	done   chan error
	client *http.Client
}

// start runs the server in process with env on a free port and returns
// once it accepts connections.
func start(t testing.TB, env map[string]string) *server {
	t.Helper()
	env["PORT"] = "0"
	env["LOG_FORMAT"] = "json"
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{logs: &logtest.Buffer{}, stop: cancel, done: make(chan error, 1), client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	listening := make(chan net.Addr, 1)
	go func() {
		s.done <- serve(ctx, nil, func(k string) string { return env[k] }, io.Discard, s.logs, func(a net.Addr) { listening <- a })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	select {
	case a := <-listening:
		s.url = "http://127.0.0.1:" + strconv.Itoa(a.(*net.TCPAddr).Port)
	case err := <-s.done:
		t.Fatalf("server stopped before listening: %v", err)
	}
	return s
}

func (s *server) createJob(t *testing.T, body string) string {
	t.Helper()
	resp, err := s.client.Post(s.url+"/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var j struct{ ID, Status string }
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /jobs: %d %v", resp.StatusCode, err)
	}
	return j.ID
}

func (s *server) status(t *testing.T, id string) string {
	t.Helper()
	resp, err := s.client.Get(s.url + "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jobs []struct{ ID, Status string }
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.ID == id {
			return j.Status
		}
	}
	return ""
}

// waitStatus waits until the job with id has the status (as GraphQL
// names it, e.g. COMPLETED), watching it through a jobUpdated
// subscription: the job's current state first, then every change.
func (s *server) waitStatus(t *testing.T, id, status string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.url, "http", "ws", 1)+"/query", http.Header{"Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	if err := ws.WriteJSON(map[string]any{"type": "connection_init"}); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{
		"query": `subscription($id: ID) { jobUpdated(id: $id) { status } }`, "variables": map[string]any{"id": id}}}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		var m struct {
			Type    string
			Payload struct {
				Data struct{ JobUpdated struct{ Status string } }
			}
		}
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for job %s to be %s (seen %v): %v", id, status, seen, err)
		}
		switch m.Type {
		case "next":
			if got := m.Payload.Data.JobUpdated.Status; got == status {
				return
			} else {
				seen = append(seen, got)
			}
		case "complete", "error":
			t.Fatalf("job %s ended without being %s (seen %v): %s", id, status, seen, m.Type)
		}
	}
}

func TestRunProcessesJobs(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"PROCESSING_TIME": "0", "WORKERS": "2"})
	id := s.createJob(t, `{"type":"email","payload":{"to":"user@example.com"}}`)
	s.waitStatus(t, id, "COMPLETED")
}

func TestShutdownReturnsRunningJobToPendingAndClosesWebsockets(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"PROCESSING_TIME": "1h", "SHUTDOWN_TIMEOUT": "100ms", "LOG_LEVEL": "debug"})
	id := s.createJob(t, `{"type":"slow"}`)
	s.waitStatus(t, id, "PROCESSING")

	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.url, "http", "ws", 1)+"/query", http.Header{"Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"type": "connection_init"}); err != nil {
		t.Fatal(err)
	}
	var ack struct{ Type string }
	if err := ws.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("init: %v %v", ack, err)
	}

	s.stop()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("run returned %v, want nil (exit 0)", err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after shutdown")
	}

	// The websocket got a proper close frame.
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue // keep-alives
		}
		if !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
			t.Fatalf("websocket ended with %v, want a close frame", err)
		}
		break
	}

	// The interrupted job went back to pending, not failed, with its attempt
	// counted.
	var released bool
	for _, l := range s.logs.Lines() {
		if l["msg"] == "job changed" && l["id"] == id && l["status"] == "pending" && l["version"] == float64(3) && l["attempts"] == float64(1) {
			released = true
		}
		if l["msg"] == "job changed" && l["id"] == id && l["status"] == "failed" {
			t.Fatal("interrupted job was failed")
		}
	}
	if !released {
		t.Fatal("no log of the job returning to pending")
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, s := range settings() {
		if !strings.Contains(out.String(), s.env) || !strings.Contains(out.String(), "-"+flagName(s.env)) {
			t.Errorf("-h output lacks %s / -%s", s.env, flagName(s.env))
		}
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WORKERS": "zero", "PROCESSING_TIME": "soon", "LOG_FORMAT": "xml"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for k := range env {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not name %s", err, k)
		}
	}
	// A flag wins over the environment.
	c, err := parseConfig([]string{"-workers", "3"}, func(k string) string { return map[string]string{"WORKERS": "2", "PORT": "9000"}[k] }, io.Discard)
	if err != nil || c.Workers != 3 || c.Port != 9000 || c.ProcessingTime != time.Second || c.QueueCapacity != 100 {
		t.Fatalf("config = %+v, %v; want workers 3 from the flag, port 9000 from env, defaults otherwise", c, err)
	}
}

// A job that finishes within the shutdown grace period reaches its
// subscriber as COMPLETED before the close frame.
func TestShutdownDeliversFinalStates(t *testing.T) {
	t.Parallel()
	const servers = 20
	for i := range servers {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			s := start(t, map[string]string{"PROCESSING_TIME": "300ms", "SHUTDOWN_TIMEOUT": "5s"})
			id := s.createJob(t, `{"type":"slow"}`)
			ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.url, "http", "ws", 1)+"/query", http.Header{"Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			type msg struct {
				Type    string
				Payload struct {
					Data struct{ JobUpdated struct{ Status string } }
				}
			}
			_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
			if err := ws.WriteJSON(map[string]any{"type": "connection_init"}); err != nil {
				t.Fatal(err)
			}
			var m msg
			if err := ws.ReadJSON(&m); err != nil || m.Type != "connection_ack" {
				t.Fatalf("init: %+v %v", m, err)
			}
			if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{
				"query": `subscription($id: ID) { jobUpdated(id: $id) { status } }`, "variables": map[string]any{"id": id}}}); err != nil {
				t.Fatal(err)
			}
			for m.Payload.Data.JobUpdated.Status != "PROCESSING" {
				m = msg{}
				if err := ws.ReadJSON(&m); err != nil {
					t.Fatalf("waiting for PROCESSING: %v", err)
				}
			}
			s.stop()
			var got []string
			for {
				m = msg{}
				if err := ws.ReadJSON(&m); err != nil {
					got = append(got, err.Error())
					break
				}
				got = append(got, m.Type+":"+m.Payload.Data.JobUpdated.Status)
			}
			if !slices.Contains(got, "next:COMPLETED") {
				var warnings []any
				for _, l := range s.logs.Lines() {
					if l["level"] != "INFO" && l["level"] != "DEBUG" {
						warnings = append(warnings, l)
					}
				}
				t.Fatalf("messages after SIGTERM: %v, want COMPLETED before the close; server warnings: %v", got, warnings)
			}
		})
	}
}

func TestWebhookHandlersFromFile(t *testing.T) {
	t.Parallel()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var d struct{ Type string }
		_ = json.NewDecoder(r.Body).Decode(&d)
		_, _ = io.WriteString(w, `{"delivered":"`+d.Type+`"}`)
	}))
	defer hook.Close()
	file := filepath.Join(t.TempDir(), "handlers.json")
	if err := os.WriteFile(file, []byte(`{"email": {"url": "`+hook.URL+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, map[string]string{"HANDLERS_FILE": file})
	id := s.createJob(t, `{"type":"email"}`)
	s.waitStatus(t, id, "COMPLETED")

	resp, err := s.client.Post(s.url+"/query", "application/json", strings.NewReader(`{"query":"{ job(id: \"`+id+`\") { result } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"result":{"delivered":"email"}`) {
		t.Fatalf("job result: %s", body)
	}
	// A type without a handler is refused.
	resp, err = s.client.Post(s.url+"/jobs", "application/json", strings.NewReader(`{"type":"sms"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "no handler") {
		t.Fatalf("unconfigured type: %d %s", resp.StatusCode, body)
	}
}

// A part that stops on its own fails the group: the server shuts down,
// and serve's error names the part; the other parts keep running until
// shutdown stops them.
func TestGroupPartStoppingOnItsOwnFailsTheGroup(t *testing.T) {
	t.Parallel()
	g := newGroup(context.Background(), slog.New(slog.DiscardHandler))
	other := g.start("other", runFunc(func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	}))
	g.start("listener", runFunc(func(context.Context) error { return errors.New("connection refused") }))
	<-g.failed
	select {
	case <-other.done:
		t.Fatal("a sibling stopped with the failed part; shutdown must stop it in its order")
	default:
	}
	other.halt()
	if err := g.g.Wait(); err == nil || !strings.Contains(err.Error(), "listener: connection refused") {
		t.Fatalf("Wait: %v, want the failed part's error", err)
	}
}
