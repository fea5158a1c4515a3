package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/metrics/metricstest"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/jobwatch"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/webhook"
	"github.com/jobqueue/jobqueue/internal/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run creates one job handled by h and returns it once final.
func run(t *testing.T, h worker.Handler, nj domain.NewJob) *domain.Job {
	t.Helper()
	jobs := jobwatch.New()
	inbox := worker.NewInbox()
	st := memory.New(store.Publishers{inbox, jobs})
	pool := worker.New(st, inbox, worker.Options{Default: h, RetryBackoff: time.Millisecond, RetryBackoffMax: time.Millisecond, JobTimeout: 5 * time.Second})
	runtest.Start(t, pool)
	j, err := st.Create(context.Background(), nj)
	if err != nil {
		t.Fatal(err)
	}
	return jobs.WaitFinal(t, j.ID)[0]
}

func TestDeliveryAndResult(t *testing.T) {
	t.Parallel()
	var got struct {
		ID, Type string
		Payload  map[string]any
		Attempt  int
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
		_, _ = io.WriteString(w, `{"messageId": "m-1"}`)
	}))
	defer srv.Close()
	j := run(t, webhook.Handler{URL: srv.URL}, domain.NewJob{Type: "email", Payload: json.RawMessage(`{"to":"a@b.c"}`)})
	if j.Status != domain.StatusCompleted || string(j.Result) != `{"messageId":"m-1"}` {
		t.Fatalf("job = %s result %s", j.Status, j.Result)
	}
	if got.ID != j.ID || got.Type != "email" || got.Payload["to"] != "a@b.c" || got.Attempt != 1 {
		t.Fatalf("delivered %+v", got)
	}
}

func TestRetryableAndPermanentFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status   int
		attempts int // with maxAttempts 3
		want     domain.Status
	}{
		{http.StatusServiceUnavailable, 3, domain.StatusFailed},
		{http.StatusTooManyRequests, 3, domain.StatusFailed},
		{http.StatusRequestTimeout, 3, domain.StatusFailed},
		{http.StatusNotFound, 1, domain.StatusFailed},
		{http.StatusUnprocessableEntity, 1, domain.StatusFailed},
	} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(tc.status)
		}))
		j := run(t, webhook.Handler{URL: srv.URL}, domain.NewJob{Type: "t", MaxAttempts: 3})
		srv.Close()
		if j.Status != tc.want || j.Attempts != tc.attempts || int(calls.Load()) != tc.attempts || !strings.Contains(j.Error, http.StatusText(tc.status)) {
			t.Errorf("status %d: job %s after %d attempts (%d calls), error %q; want %s after %d", tc.status, j.Status, j.Attempts, calls.Load(), j.Error, tc.want, tc.attempts)
		}
	}
}

func TestRecoveryAfterFailures(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "ok, plain text")
	}))
	defer srv.Close()
	j := run(t, webhook.Handler{URL: srv.URL}, domain.NewJob{Type: "t", MaxAttempts: 2})
	if j.Status != domain.StatusCompleted || j.Attempts != 2 || string(j.Result) != `"ok, plain text"` || len(j.Errors) != 1 {
		t.Fatalf("job = %s attempts %d result %s errors %v", j.Status, j.Attempts, j.Result, j.Errors)
	}
}

func TestSlowEndpointTimesOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done(): // the client gave up: the request was cancelled
		}
	}))
	defer srv.Close()
	defer close(release)
	j := run(t, webhook.Handler{URL: srv.URL}, domain.NewJob{Type: "t", Timeout: 50 * time.Millisecond})
	if j.Status != domain.StatusFailed || !strings.Contains(j.Error, "timed out") {
		t.Fatalf("job = %s %q, want failed for timing out", j.Status, j.Error)
	}
}

func TestConnectionErrorIsRetryable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	err := webhook.Handler{URL: url}.Handle(context.Background(), &domain.Job{ID: "1", Type: "t", Attempts: 1})
	if err == nil {
		t.Fatal("delivery to a closed port succeeded")
	}
	if j := run(t, webhook.Handler{URL: url}, domain.NewJob{Type: "t", MaxAttempts: 2}); j.Attempts != 2 {
		t.Fatalf("a connection error was not retried: %d attempts", j.Attempts)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	_ = os.WriteFile(good, []byte(`{"email": {"url": "http://127.0.0.1:1/x"}}`), 0o600)
	h, err := webhook.Load(good, nil, nil)
	if err != nil || len(h) != 1 || h["email"] == nil {
		t.Fatalf("load = %v, %v", h, err)
	}
	for name, content := range map[string]string{
		"bad-json.json":  `{`,
		"no-url.json":    `{"email": {}}`,
		"bad-type.json":  `{"bad type": {"url": "http://x"}}`,
		"no-scheme.json": `{"email": {"url": "localhost:8080/x"}}`,
		"empty.json":     `{}`,
	} {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(content), 0o600)
		if _, err := webhook.Load(p, nil, nil); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := webhook.Load(filepath.Join(dir, "missing.json"), nil, nil); err == nil {
		t.Error("a missing file accepted")
	}
}

// Each request is counted by job type and status class, with its
// duration; a request that got no answer counts as "error".
func TestMetricsCountRequests(t *testing.T) {
	t.Parallel()
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	m := metrics.New(metrics.Options{})
	h := webhook.Handler{URL: srv.URL, Client: srv.Client(), Metrics: m}
	job := &domain.Job{ID: "1", Type: "email", Attempts: 1}
	ctx := context.Background()
	_ = h.Handle(ctx, job)
	_ = h.Handle(ctx, job)
	status = http.StatusNotFound
	_ = h.Handle(ctx, job)
	srv.Close()
	_ = h.Handle(ctx, job)
	if n := metricstest.Series(t, m.Registry(), "jobqueue_webhook_requests_total", metricstest.Labels{"type": "email", "class": "2xx"}); n != 0 {
		t.Errorf("webhook_requests_total{class=2xx}: %d series, want none (made when used)", n)
	}
	for class, want := range map[string]float64{"5xx": 2, "4xx": 1, "error": 1} {
		if got := metricstest.Value(t, m.Registry(), "jobqueue_webhook_requests_total", metricstest.Labels{"type": "email", "class": class}); got != want {
			t.Errorf("webhook_requests_total{class=%q} = %v, want %v", class, got, want)
		}
	}
	if n, _ := metricstest.Histogram(t, m.Registry(), "jobqueue_webhook_request_duration_seconds", metricstest.Labels{"type": "email"}); n != 4 {
		t.Errorf("webhook_request_duration_seconds: %d observations, want 4", n)
	}
}
