package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/ratelimit"
)

// restHandlers keep the original REST service's behaviour: the same
// routes, JSON shapes and lowercase statuses. They translate requests to
// the jobs service, which applies every rule and default, and its errors to
// status codes; reading the body and the query string is theirs.
type restHandlers struct {
	jobs *jobs.Service
	log  *slog.Logger
	// maxResponse bounds a listing's encoded size; 0: no bound.
	maxResponse int64
	// listSlots bounds the large listings built at once (nil: no bound).
	listSlots chan struct{}
	// mutations limits job creation per caller (nil: no limit).
	mutations *ratelimit.Limiter
}

// Large listings: from this many jobs a GET /jobs takes one of listSlots
// (as a heavy GraphQL query takes one of its slots), waiting at most
// listWait for it, then 503.
const (
	largeListing = 100
	listWait     = 5 * time.Second
)

// jobJSON is a job as the REST API shows it.
type jobJSON struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Payload    json.RawMessage `json:"payload"`
	Status     domain.Status   `json:"status"`
	Attempts   int             `json:"attempts"`
	Error      *string         `json:"error"`
	CreatedAt  time.Time       `json:"createdAt"`
	UpdatedAt  time.Time       `json:"updatedAt"`
	StartedAt  *time.Time      `json:"startedAt"`
	FinishedAt *time.Time      `json:"finishedAt"`
	Version    int64           `json:"version"`
	// Shown only when set, so the original service's shape is unchanged.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// The identity that created the job; shown only when it has one
	// (never with authentication off), for the same reason.
	Owner string `json:"owner,omitempty"`
	// The job's tags, sorted; shown only when it has some, for the same
	// reason.
	Tags []string `json:"tags,omitempty"`
}

func toJSON(j *domain.Job) jobJSON {
	return jobJSON{
		ID: j.ID, Type: j.Type, Payload: j.Payload, Status: j.Status, Attempts: j.Attempts,
		Error: j.ErrorMessage(), CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
		StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, Version: j.Version,
		IdempotencyKey: j.IdempotencyKey, Owner: j.Owner, Tags: j.Tags,
	}
}

func (h *restHandlers) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *restHandlers) createJob(w http.ResponseWriter, r *http.Request) {
	if ok, wait := h.mutations.Allow(ratelimit.KeyFrom(r.Context()), 1, time.Now()); !ok {
		secs := int(wait / time.Second)
		h.log.WarnContext(r.Context(), "http request refused", "status", http.StatusTooManyRequests, "reason", "rate limited", "retry_after_seconds", secs, "client", r.RemoteAddr)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many jobs created: retry in %d s (RATE_LIMIT)", secs))
		return
	}
	var in struct {
		Type           *string         `json:"type"`
		Payload        json.RawMessage `json:"payload"`
		IdempotencyKey string          `json:"idempotencyKey"`
		Tags           []string        `json:"tags"`
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid JSON body: more than one JSON value")
		return
	}
	req := jobs.CreateRequest{Type: in.Type, Payload: in.Payload, Tags: in.Tags}
	// The original service took an empty key for none; GraphQL, which
	// has null for that, refuses an empty one.
	if in.IdempotencyKey != "" {
		req.IdempotencyKey = &in.IdempotencyKey
	}
	j, err := h.jobs.Create(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toJSON(j))
}

func (h *restHandlers) listJobs(w http.ResponseWriter, r *http.Request) {
	req := jobs.ListRequest{Pages: jobs.RESTPages, SkipTotal: true} // the array has no total
	if s := r.URL.Query().Get("limit"); s != "" {
		// A positive integer is the parameter's syntax (the message
		// quotes the text as sent), as GraphQL's Int is first's.
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: must be a positive integer, got %q", s))
			return
		}
		req.Limit = &n
	}
	req.Status = domain.Status(r.URL.Query().Get("status"))
	req.Type = r.URL.Query().Get("type")
	req.Tag = r.URL.Query().Get("tag")
	if h.listSlots != nil && (req.Limit == nil || *req.Limit >= largeListing) {
		timer := time.NewTimer(listWait)
		defer timer.Stop()
		select {
		case h.listSlots <- struct{}{}:
			defer func() { <-h.listSlots }() // once the answer is written
		case <-timer.C:
			h.log.WarnContext(r.Context(), "http request refused", "status", http.StatusServiceUnavailable, "reason", "large listings at their limit", "client", r.RemoteAddr)
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "the server is building as many large listings as it allows; retry shortly, or ask for fewer jobs with ?limit=")
			return
		case <-r.Context().Done():
			return
		}
	}
	page, err := h.jobs.List(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]jobJSON, len(page.Jobs))
	var size int64
	for i, j := range page.Jobs {
		out[i] = toJSON(j)
		// An upper bound of the job's encoding: its variable parts and
		// room for the rest.
		size += int64(len(j.Payload)+len(j.ID)+len(j.Type)+len(j.IdempotencyKey)+len(j.Owner)+len(j.Error)) + 400
		for _, tag := range j.Tags {
			size += int64(len(tag)) + 3
		}
	}
	if h.maxResponse > 0 && size > h.maxResponse {
		h.log.WarnContext(r.Context(), "http request refused", "status", http.StatusBadRequest, "reason", "response too large", "path", r.URL.Path, "limit", h.maxResponse, "client", r.RemoteAddr)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("the response would be larger than the server's limit of %d bytes; ask for fewer jobs with ?limit=", h.maxResponse))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// fail answers a request the jobs service refused or could not serve: 400
// with the broken rule, 403 when the caller's role may not do it, 503 with
// Retry-After while the store is unreachable (the client may try again),
// 500 otherwise.
func (h *restHandlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		writeError(w, http.StatusBadRequest, ve.Error())
		return
	}
	var fe *jobs.ForbiddenError
	if errors.As(err, &fe) {
		writeError(w, http.StatusForbidden, fe.Error())
		return
	}
	h.log.ErrorContext(r.Context(), "rest request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the request took longer than the server allows; try again shortly")
		return
	}
	if errors.Is(err, domain.ErrUnavailable) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the job store is unavailable; try again shortly")
		return
	}
	writeError(w, http.StatusInternalServerError, "internal server error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
