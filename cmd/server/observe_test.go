package main

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jobqueue/jobqueue/internal/auth"
	"github.com/jobqueue/jobqueue/internal/requestid"
)

// get sends GET url with the headers and returns the status, the
// response's headers and body.
func get(t *testing.T, client *http.Client, url string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// scrape parses a /metrics answer in the Prometheus text format.
func scrape(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return families
}

// A request's id is the caller's X-Request-Id when sane, or a new one; it
// comes back in the response and is on the request's log line.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{})
	_, h, _ := get(t, s.client, s.url+"/health", http.Header{requestid.Header: {"trace-abc.123"}})
	if got := h.Get(requestid.Header); got != "trace-abc.123" {
		t.Fatalf("X-Request-Id answered %q, want the caller's", got)
	}
	for _, bad := range []string{strings.Repeat("x", requestid.MaxLength+1), "two words", "tab\tin", "é"} {
		_, h, _ := get(t, s.client, s.url+"/health", http.Header{requestid.Header: {bad}})
		if got := h.Get(requestid.Header); got == bad || !requestid.Sane(got) {
			t.Errorf("X-Request-Id %q answered %q, want a new sane id", bad, got)
		}
	}
	_, h, _ = get(t, s.client, s.url+"/jobs/none", nil)
	generated := h.Get(requestid.Header)
	if !requestid.Sane(generated) {
		t.Fatalf("no X-Request-Id generated: %q", generated)
	}
	seen := map[string]map[string]any{}
	for _, l := range s.logs.Lines() {
		if l["msg"] == "http request" {
			id, _ := l[requestid.Attr].(string)
			seen[id] = l
		}
	}
	if l := seen["trace-abc.123"]; l == nil || l["route"] != "GET /health" || l["status"] != float64(200) || l["method"] != "GET" {
		t.Errorf("access log line of the caller's id: %v", l)
	}
	if l := seen[generated]; l == nil || l["route"] != "/" || l["status"] != float64(404) {
		t.Errorf("access log line of the generated id (route /, never the raw path): %v", l)
	}
}

// /metrics serves the Prometheus text format (and OpenMetrics when asked),
// with the counts of what happened, on every backend; its routes are
// patterns, not paths.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	backends := map[string]string{"memory": "memory:", "sqlite": "sqlite:" + filepath.Join(t.TempDir(), "jobs.db")}
	if pg := postgresURL(t); pg != "" {
		backends["postgres"] = pg
	}
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testMetricsEndpoint(t, name, url)
		})
	}
}

func testMetricsEndpoint(t *testing.T, backend, url string) {
	s := start(t, map[string]string{"PROCESSING_TIME": "0", "DATABASE_URL": url})
	id := s.createJob(t, `{"type":"email"}`)
	s.waitStatus(t, id, "COMPLETED")
	get(t, s.client, s.url+"/jobs/"+id, nil)
	status, h, body := get(t, s.client, s.url+"/metrics", nil)
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", status, h.Get("Content-Type"))
	}
	families := scrape(t, body)
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := families[name]
		if f == nil {
			t.Fatalf("/metrics has no %s", name)
		}
	next:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == k && l.GetValue() == v)
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("/metrics has no %s%v", name, labels)
		return 0
	}
	if got := value("jobqueue_jobs_created_total", map[string]string{"type": "email"}); got != 1 {
		t.Errorf("jobs_created_total{type=email} = %v, want 1", got)
	}
	if got := value("jobqueue_jobs", map[string]string{"status": "completed"}); got != 1 {
		t.Errorf("jobs{status=completed} = %v, want 1", got)
	}
	if got := value("jobqueue_http_request_duration_seconds", map[string]string{"route": "POST /jobs", "code": "2xx"}); got != 1 {
		t.Errorf("http_request_duration_seconds{route=POST /jobs} count = %v, want 1", got)
	}
	for name := range families {
		if f := families[name]; name == "jobqueue_http_request_duration_seconds" {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "route" && strings.Contains(l.GetValue(), id) {
						t.Errorf("a route label holds a raw path: %q", l.GetValue())
					}
				}
			}
		}
	}
	if got := value("jobqueue_build_info", map[string]string{"backend": backend}); got != 1 {
		t.Errorf("build_info{backend=%q} = %v, want 1", backend, got)
	}
	if got := value("jobqueue_store_call_duration_seconds", map[string]string{"backend": backend, "operation": "create"}); got != 1 {
		t.Errorf("store_call_duration_seconds{operation=create} count = %v, want 1", got)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "jobqueue_build_info", "jobqueue_workers"} {
		if families[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	_, h, body = get(t, s.client, s.url+"/metrics", http.Header{"Accept": {"application/openmetrics-text; version=1.0.0"}})
	if !strings.HasPrefix(h.Get("Content-Type"), "application/openmetrics-text") || !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics asked for: %s, body ends %q", h.Get("Content-Type"), body[max(len(body)-20, 0):])
	}
}

// With access control on, /metrics needs a viewer or admin identity;
// METRICS_ADDR moves it off the public port; METRICS=off removes it.
func TestMetricsAccess(t *testing.T) {
	t.Parallel()
	var entries []auth.TokenEntry
	tokens := map[auth.Role]string{}
	for _, role := range []auth.Role{auth.RoleAdmin, auth.RoleViewer, auth.RoleUser} {
		token, entry, err := auth.NewToken(rand.Reader, string(role), role)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry)
		tokens[role] = token
	}
	b, _ := json.Marshal(map[string]any{"tokens": entries})
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, map[string]string{"AUTH": "token", "API_TOKENS_FILE": path})
	for who, want := range map[string]int{"": 401, "admin": 200, "viewer": 200, "user": 403} {
		h := http.Header{}
		if who != "" {
			h.Set("Authorization", "Bearer "+tokens[auth.Role(who)])
		}
		if got, _, _ := get(t, s.client, s.url+"/metrics", h); got != want {
			t.Errorf("GET /metrics as %q: %d, want %d", who, got, want)
		}
	}
	if got, _, _ := get(t, s.client, s.url+"/ready", nil); got != 200 {
		t.Errorf("GET /ready without a token: %d, want 200", got)
	}
	_, _, body := get(t, s.client, s.url+"/metrics", http.Header{"Authorization": {"Bearer " + tokens[auth.RoleAdmin]}})
	families := scrape(t, body)
	for reason, want := range map[string]float64{"unauthenticated": 1, "forbidden": 1} {
		var got float64
		for _, m := range families["jobqueue_access_refusals_total"].GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				got = m.Counter.GetValue()
			}
		}
		if got != want {
			t.Errorf("access_refusals_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}

	off := start(t, map[string]string{"METRICS": "off"})
	if got, _, _ := get(t, off.client, off.url+"/metrics", nil); got != http.StatusNotFound {
		t.Errorf("METRICS=off: GET /metrics %d, want 404", got)
	}
}

// metricsAddr returns the address the metrics listener logged.
func (s *server) metricsAddr(t *testing.T) string {
	t.Helper()
	for _, l := range s.logs.Lines() {
		if l["msg"] == "metrics listener" {
			return "http://" + strings.Replace(l["addr"].(string), "[::]", "127.0.0.1", 1)
		}
	}
	t.Fatal("no metrics listener logged")
	return ""
}

// On METRICS_ADDR, /metrics and /ready are served (not on the public
// port); once the server is asked to stop, /ready answers 503 "shutting
// down" at once while a running job finishes, and the job does finish.
func TestReadyThroughShutdown(t *testing.T) {
	t.Parallel()
	running := make(chan struct{})
	release := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(running)
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	handlers := filepath.Join(t.TempDir(), "handlers.json")
	if err := os.WriteFile(handlers, []byte(`{"slow": {"url": "`+hook.URL+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := start(t, map[string]string{"METRICS_ADDR": "127.0.0.1:0", "HANDLERS_FILE": handlers, "DATABASE_URL": "sqlite:" + filepath.Join(dir, "jobs.db")})
	maddr := s.metricsAddr(t)
	if got, _, _ := get(t, s.client, s.url+"/metrics", nil); got != http.StatusNotFound {
		t.Errorf("public /metrics with METRICS_ADDR set: %d, want 404", got)
	}
	if got, _, body := get(t, s.client, maddr+"/metrics", nil); got != 200 || !strings.Contains(body, "jobqueue_build_info") {
		t.Errorf("GET /metrics on METRICS_ADDR: %d", got)
	}
	if got, _, body := get(t, s.client, maddr+"/ready", nil); got != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("GET /ready before shutdown: %d %s", got, body)
	}
	id := s.createJob(t, `{"type":"slow"}`)
	<-running
	s.stop()
	// Shutdown marks the server not ready before anything else: once the
	// public port refuses connections (its step 1), /ready must say so.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := s.client.Get(s.url + "/health")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the public port still accepts connections after the stop")
		}
	}
	status, _, body := get(t, s.client, maddr+"/ready", nil)
	var answer struct {
		Ready  bool
		Reason string
	}
	_ = json.Unmarshal([]byte(body), &answer)
	if status != http.StatusServiceUnavailable || answer.Ready || answer.Reason != "shutting down" {
		t.Fatalf("GET /ready while draining: %d %s; want 503 shutting down", status, body)
	}
	close(release)
	if err := <-s.done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	s.done <- nil // for the cleanup
	// The running job finished before the store closed.
	again := start(t, map[string]string{"DATABASE_URL": "sqlite:" + filepath.Join(dir, "jobs.db"), "HANDLERS_FILE": handlers})
	if got := again.status(t, id); got != "completed" {
		t.Fatalf("job after the drain: %q, want completed", got)
	}
}

// The subscription metrics follow a websocket: its connection, its
// subscriptions, the events sent and a subscription over the bound.
func TestSubscriptionMetrics(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"MAX_SUBSCRIPTIONS_PER_CONN": "1", "PROCESSING_TIME": "0", "SHUTDOWN_TIMEOUT": "100ms"})
	done := s.createJob(t, `{"type":"t"}`)
	s.waitStatus(t, done, "COMPLETED")
	id := s.createJob(t, `{"type":"t","payload":{"durationMs":60000}}`) // not finished while the test runs: its subscription stays open
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.url, "http", "ws", 1)+"/query", http.Header{"Sec-WebSocket-Protocol": {"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	send := func(m map[string]any) {
		t.Helper()
		if err := ws.WriteJSON(m); err != nil {
			t.Fatal(err)
		}
	}
	read := func(want string) {
		t.Helper()
		var m struct{ Type string }
		if err := ws.ReadJSON(&m); err != nil || m.Type != want {
			t.Fatalf("read %q, %v; want %s", m.Type, err, want)
		}
	}
	send(map[string]any{"type": "connection_init"})
	read("connection_ack")
	sub := map[string]any{"query": `subscription($id: ID) { jobUpdated(id: $id) { status } }`, "variables": map[string]any{"id": id}}
	send(map[string]any{"type": "subscribe", "id": "1", "payload": sub})
	read("next") // the job's current state
	send(map[string]any{"type": "subscribe", "id": "2", "payload": sub})
	read("error") // TOO_MANY_SUBSCRIPTIONS
	_, _, body := get(t, s.client, s.url+"/metrics", nil)
	families := scrape(t, body)
	one := func(name, label, value string) float64 {
		t.Helper()
		for _, m := range families[name].GetMetric() {
			if label == "" || slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == label && l.GetValue() == value }) {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
		t.Fatalf("/metrics has no %s{%s=%q}", name, label, value)
		return 0
	}
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"jobqueue_websocket_connections", "", "", 1},
		{"jobqueue_subscriptions", "transport", "websocket", 1},
		{"jobqueue_subscriptions_refused_total", "", "", 1},
		{"jobqueue_sse_streams", "", "", 0},
		{"jobqueue_graphql_operations_total", "operation", "subscription", 2},
	} {
		if got := one(c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	// waitStatus's subscription saw the job's changes, this one its state.
	if got := one("jobqueue_subscription_messages_total", "transport", "websocket"); got < 2 {
		t.Errorf("subscription_messages_total{transport=websocket} = %v, want at least 2", got)
	}
}

// With SHUTDOWN_DRAIN_DELAY the public port stays open after the signal:
// /ready answers 503 there while other requests are still served, so a
// load balancer polling it stops sending requests before the port closes.
func TestReadyDrainDelay(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"DATABASE_URL": "memory:", "SHUTDOWN_DRAIN_DELAY": "5s"})
	if got, _, body := get(t, s.client, s.url+"/ready", nil); got != http.StatusOK {
		t.Fatalf("GET /ready before shutdown: %d %s", got, body)
	}
	s.stop()
	// The signal reaches shutdown on another goroutine: ask until it has.
	deadline := time.Now().Add(4 * time.Second)
	for {
		resp, err := s.client.Get(s.url + "/ready")
		if err != nil {
			t.Fatalf("the public port closed before /ready answered 503: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			if !strings.Contains(string(body), "shutting down") {
				t.Fatalf("GET /ready while draining: %s, want the reason", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /ready after the signal: still %d", resp.StatusCode)
		}
	}
	if got, _, _ := get(t, s.client, s.url+"/health", nil); got != http.StatusOK {
		t.Fatalf("GET /health while draining: %d, want 200 (still serving)", got)
	}
	if err := <-s.done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	s.done <- nil // for the cleanup
}
