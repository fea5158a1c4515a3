package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"bytes"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// restHandlers keep the original REST service's behaviour: the same
// routes, JSON shapes and lowercase statuses.
type restHandlers struct {
	store       store.Store
	log         *slog.Logger
	maxPayload  int
	listMax     int
	maxAttempts int
	types       domain.TypeFilter
}

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
}

func toJSON(j *domain.Job) jobJSON {
	return jobJSON{
		ID: j.ID, Type: j.Type, Payload: j.Payload, Status: j.Status, Attempts: j.Attempts,
		Error: j.ErrorMessage(), CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
		StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, Version: j.Version,
		IdempotencyKey: j.IdempotencyKey,
	}
}

func (h *restHandlers) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *restHandlers) createJob(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Type           *string         `json:"type"`
		Payload        json.RawMessage `json:"payload"`
		IdempotencyKey string          `json:"idempotencyKey"`
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
	if in.Type == nil {
		writeError(w, http.StatusBadRequest, "type: is required")
		return
	}
	nj := domain.NewJob{Type: *in.Type, IdempotencyKey: in.IdempotencyKey, MaxAttempts: h.maxAttempts}
	if len(in.Payload) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, in.Payload); err != nil {
			writeError(w, http.StatusBadRequest, "payload: "+err.Error())
			return
		}
		nj.Payload = buf.Bytes()
	}
	if err := nj.Validate(h.maxPayload); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := h.types.Check(nj.Type); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	j, err := h.store.Create(r.Context(), nj)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toJSON(j))
}

func (h *restHandlers) listJobs(w http.ResponseWriter, r *http.Request) {
	q := store.ListQuery{Limit: h.listMax, SkipTotal: true} // the array has no total
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: must be a positive integer, got %q", s))
			return
		}
		q.Limit = min(n, h.listMax)
	}
	if s := r.URL.Query().Get("status"); s != "" {
		q.Status = domain.Status(s)
		if !q.Status.Valid() {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("status: unknown status %q", s))
			return
		}
	}
	q.Type = r.URL.Query().Get("type")
	if domain.NoJobHasType(q.Type) {
		writeJSON(w, http.StatusOK, []jobJSON{})
		return
	}
	page, err := h.store.List(r.Context(), q)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]jobJSON, len(page.Jobs))
	for i, j := range page.Jobs {
		out[i] = toJSON(j)
	}
	writeJSON(w, http.StatusOK, out)
}

// fail answers a request the store could not serve: 503 with Retry-After
// while the store is unreachable (the client may try again), 500 otherwise.
func (h *restHandlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.log.ErrorContext(r.Context(), "rest request failed", "method", r.Method, "path", r.URL.Path, "err", err)
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
