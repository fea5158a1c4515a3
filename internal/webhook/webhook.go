// Package webhook delivers jobs to HTTP endpoints: the handler for job
// types configured with a URL.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/worker"
)

// maxResponseBytes bounds the response body kept as the job's result.
const maxResponseBytes = 1 << 20

// Handler POSTs each job to URL as JSON {"id","type","payload","attempt"}.
//
//   - 2xx completes the job; a JSON body becomes its result (another body
//     is kept as a JSON string).
//   - 5xx, 408, 429, a timeout or a connection error fail the attempt: the
//     job is retried while attempts remain.
//   - Any other status fails the job for good (worker.Permanent): the
//     receiver refuses it and would refuse it again. Redirects are not
//     followed (the client Load builds returns them as they are).
//
// A 2xx body over 1 MiB is not kept as the result.
//
// The request carries the job's context, so its timeout and cancellation
// end the request. Safe for concurrent use.
type Handler struct {
	URL    string
	Client *http.Client // nil means http.DefaultClient
	// Metrics counts the requests by job type and status class, and
	// their durations; nil counts none.
	Metrics *metrics.Metrics
}

type delivery struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	Attempt int             `json:"attempt"`
}

// Handle delivers one attempt.
func (h Handler) Handle(ctx context.Context, job *domain.Job) error {
	payload := job.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	body, err := json.Marshal(delivery{ID: job.ID, Type: job.Type, Payload: payload, Attempt: job.Attempts})
	if err != nil {
		return worker.Permanent(fmt.Errorf("webhook: encode job: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return worker.Permanent(fmt.Errorf("webhook: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", fmt.Sprintf("%s/%d", job.ID, job.Attempts))
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		h.Metrics.Webhook(job.Type, 0, time.Since(start))
		if ctx.Err() != nil {
			return fmt.Errorf("webhook %s: %w", h.URL, ctx.Err())
		}
		return fmt.Errorf("webhook %s: %w", h.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	h.Metrics.Webhook(job.Type, resp.StatusCode, time.Since(start))
	if err != nil {
		return fmt.Errorf("webhook %s: read response: %w", h.URL, err)
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		if len(data) > maxResponseBytes {
			// The receiver did the work: complete, without the oversized
			// body as result.
			return nil
		}
		return setResult(ctx, data)
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return fmt.Errorf("webhook %s answered %s", h.URL, resp.Status)
	default:
		return worker.Permanent(fmt.Errorf("webhook %s answered %s", h.URL, resp.Status))
	}
}

func setResult(ctx context.Context, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !json.Valid(body) {
		body, _ = json.Marshal(string(body))
	}
	if err := worker.SetResult(ctx, body); err != nil && !errors.Is(err, worker.ErrNotInHandler) {
		return err
	}
	return nil
}

// Config maps job types to endpoints, as read from a HANDLERS_FILE:
//
//	{"email": {"url": "https://mailer.internal/jobs"}, "resize": {"url": "http://images:8080/resize"}}
type Config map[string]struct {
	URL string `json:"url"`
}

// Load reads a handlers file and returns a handler per type, each
// counting its requests in m (nil: none).
func Load(path string, client *http.Client, m *metrics.Metrics) (map[string]worker.Handler, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("handlers file: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("handlers file %s: %w", path, err)
	}
	if len(cfg) == 0 {
		return nil, fmt.Errorf("handlers file %s: no handlers (every job would be refused)", path)
	}
	if client == nil {
		client = &http.Client{}
	}
	// Redirects would turn the POST into a GET without the job.
	noRedirects := *client
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client = &noRedirects
	handlers := make(map[string]worker.Handler, len(cfg))
	for typ, c := range cfg {
		if err := domain.ValidateType(typ); err != nil {
			return nil, fmt.Errorf("handlers file %s: %w", path, err)
		}
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("handlers file %s: type %q: url %q is not an http(s) URL", path, typ, c.URL)
		}
		handlers[typ] = Handler{URL: c.URL, Client: client, Metrics: m}
	}
	return handlers, nil
}
