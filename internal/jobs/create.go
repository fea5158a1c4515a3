package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// CreateRequest is a new job as the APIs receive it. A nil field was not
// sent: the service applies its default. Field names in errors are the
// APIs' (schema.graphqls, which REST's POST /jobs shares).
type CreateRequest struct {
	// Type is required: nil gives "type: is required" (GraphQL's schema
	// makes it non-null; REST's body may leave it out).
	Type *string
	// Payload is JSON text of any value. It is stored compacted, and its
	// size is measured against Options.MaxPayloadBytes once compacted, so
	// that both APIs count the same bytes. Nil or JSON null means none.
	Payload json.RawMessage
	// IdempotencyKey, when given, must not be empty (at most
	// domain.MaxIdempotencyKeyLength bytes).
	IdempotencyKey *string
	// TimeoutSeconds bounds each attempt (domain.MinTimeout to
	// domain.MaxTimeout); nil means the worker's default.
	TimeoutSeconds *int
	// MaxAttempts, 1 to domain.MaxMaxAttempts; nil means
	// Options.DefaultMaxAttempts.
	MaxAttempts *int
	// RunAt delays the job; nil means now.
	RunAt *time.Time
	// Priority, domain.MinPriority to domain.MaxPriority; nil means 0.
	Priority *int
	// Tags label the job: each valid as a type is (domain.ValidateTag; an
	// error names "tags[i]", its index here), duplicates collapsed, then
	// at most domain.MaxTags of them. The job has them sorted.
	Tags []string
}

// newJob turns req into the store's NewJob, applying the defaults and
// every rule of a new job, in the order both APIs have always reported
// them: the first broken rule is the error.
func (s *Service) newJob(req CreateRequest) (domain.NewJob, error) {
	var nj domain.NewJob
	if req.Type == nil {
		return nj, &domain.ValidationError{Field: "type", Message: "is required"}
	}
	nj.Type = *req.Type
	if len(req.Payload) > 0 {
		p, err := compact(req.Payload)
		if err != nil {
			return nj, &domain.ValidationError{Field: "payload", Message: err.Error()}
		}
		nj.Payload = p
	}
	if req.TimeoutSeconds != nil {
		if *req.TimeoutSeconds <= 0 {
			return nj, &domain.ValidationError{Field: "timeoutSeconds", Message: fmt.Sprintf("must be positive, got %d", *req.TimeoutSeconds)}
		}
		nj.Timeout = time.Duration(*req.TimeoutSeconds) * time.Second
	}
	nj.MaxAttempts = s.opts.DefaultMaxAttempts
	if req.MaxAttempts != nil {
		if *req.MaxAttempts < 1 {
			return nj, maxAttemptsError(*req.MaxAttempts)
		}
		nj.MaxAttempts = *req.MaxAttempts
	}
	if req.IdempotencyKey != nil {
		if *req.IdempotencyKey == "" {
			return nj, &domain.ValidationError{Field: "idempotencyKey", Message: "must not be empty when given"}
		}
		nj.IdempotencyKey = *req.IdempotencyKey
	}
	if req.RunAt != nil {
		nj.RunAt = req.RunAt.UTC()
	}
	if req.Priority != nil {
		nj.Priority = *req.Priority
	}

	if err := domain.ValidateType(nj.Type); err != nil {
		return nj, err
	}
	if limit := s.opts.MaxPayloadBytes; limit > 0 && len(nj.Payload) > limit {
		return nj, &domain.ValidationError{Field: "payload", Message: fmt.Sprintf("must be at most %d bytes once encoded, got %d", limit, len(nj.Payload))}
	}
	if nj.Timeout != 0 && (nj.Timeout < domain.MinTimeout || nj.Timeout > domain.MaxTimeout) {
		return nj, &domain.ValidationError{Field: "timeoutSeconds", Message: fmt.Sprintf("must be between %d and %d, got %g", int(domain.MinTimeout.Seconds()), int(domain.MaxTimeout.Seconds()), nj.Timeout.Seconds())}
	}
	if nj.MaxAttempts > domain.MaxMaxAttempts {
		return nj, maxAttemptsError(nj.MaxAttempts)
	}
	if nj.Priority < domain.MinPriority || nj.Priority > domain.MaxPriority {
		return nj, &domain.ValidationError{Field: "priority", Message: fmt.Sprintf("must be between %d and %d, got %d", domain.MinPriority, domain.MaxPriority, nj.Priority)}
	}
	if len(nj.IdempotencyKey) > domain.MaxIdempotencyKeyLength {
		return nj, &domain.ValidationError{Field: "idempotencyKey", Message: fmt.Sprintf("must be at most %d bytes, got %d", domain.MaxIdempotencyKeyLength, len(nj.IdempotencyKey))}
	}
	for i, tag := range req.Tags {
		if err := domain.ValidateTag(tag, fmt.Sprintf("tags[%d]", i)); err != nil {
			return nj, err
		}
	}
	nj.Tags = domain.NormalizeTags(req.Tags)
	if len(nj.Tags) > domain.MaxTags {
		return nj, &domain.ValidationError{Field: "tags", Message: fmt.Sprintf("must be at most %d different tags, got %d", domain.MaxTags, len(nj.Tags))}
	}
	if string(nj.Payload) == "null" {
		nj.Payload = nil
	}
	if err := s.opts.Types.Check(nj.Type); err != nil {
		return nj, err
	}
	return nj, nil
}

func maxAttemptsError(n int) error {
	return &domain.ValidationError{Field: "maxAttempts", Message: fmt.Sprintf("must be between 1 and %d, got %d", domain.MaxMaxAttempts, n)}
}

// compact returns the JSON text p without insignificant space, or an error
// when p is not JSON. Text that is already compact (GraphQL's JSON scalar
// re-encodes its value) is returned as is, without a copy.
func compact(p json.RawMessage) (json.RawMessage, error) {
	if !bytes.ContainsAny(p, " \t\r\n") && json.Valid(p) {
		return p, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(p))
	if err := json.Compact(&buf, p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// TypeFilter accepts or rejects job types at creation: when handlers are
// configured, only their types. A nil TypeFilter accepts every type. It is
// read-only once given to New.
type TypeFilter map[string]bool

// Check returns a *domain.ValidationError for a type no handler serves.
func (f TypeFilter) Check(typ string) error {
	if f == nil || f[typ] {
		return nil
	}
	known := make([]string, 0, len(f))
	for t := range f {
		known = append(known, t)
	}
	slices.Sort(known)
	return &domain.ValidationError{Field: "type", Message: fmt.Sprintf("no handler is configured for type %q (configured: %s)", typ, strings.Join(known, ", "))}
}
