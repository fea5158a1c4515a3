package jobs

import (
	"context"
	"fmt"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Page sizes of GraphQL's jobs query (GraphQLPages). graph's complexity
// function prices a jobs query by the same numbers.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Pages selects the page sizes a listing gets. Each API kept the ones it
// has always had, so the caller names its API's rule rather than numbers:
// the numbers stay here, in one place.
type Pages int

const (
	// GraphQLPages: DefaultPageSize when no Limit is given, at most
	// MaxPageSize; a Limit of 0 asks only for Total and HasMore.
	GraphQLPages Pages = iota
	// RESTPages: Options.RESTListMax when no Limit is given, and at most
	// that.
	RESTPages
)

// ListRequest filters and pages List. Zero values mean "any" and "from the
// newest job".
type ListRequest struct {
	// Status, when not empty, must be a defined status.
	Status domain.Status
	// Type, when not empty, selects jobs of that type.
	Type string
	// Tag, when not empty, selects jobs carrying that tag.
	Tag string
	// BeforeSeq, when positive, lists only jobs older than that Seq: the
	// last job of the previous page. (The APIs' cursors are theirs to
	// encode: GraphQL's are opaque strings, REST has none.)
	BeforeSeq int64
	// Limit is the page size; nil means the default of Pages. It must not
	// be negative; larger than the cap of Pages, it is capped.
	Limit *int
	// Pages selects the page sizes (GraphQLPages when left zero).
	Pages Pages
	// SkipTotal tells the store that ListPage.Total is not needed: counting
	// can cost it more than the page (PostgreSQL sums a counts table).
	SkipTotal bool
}

// List returns the jobs the caller sees that match req, newest first (a
// caller that sees only its own jobs lists only those, whatever req asks).
// An unknown status or a
// negative Limit gives a *domain.ValidationError (on "status" and on
// "first", GraphQL's name of the page size: REST's parser accepts only
// positive limits, so only GraphQL can send a negative one). A type or tag
// no job can have (see domain.NoJobHasType) lists nothing without asking
// the store, which might refuse its bytes.
func (s *Service) List(ctx context.Context, req ListRequest) (store.ListPage, error) {
	a := accessOf(ctx)
	if err := a.allow("list", false); err != nil {
		return store.ListPage{}, err
	}
	q := store.ListQuery{Status: req.Status, Type: req.Type, Tag: req.Tag, Owner: a.scope, BeforeSeq: req.BeforeSeq, Limit: DefaultPageSize, SkipTotal: req.SkipTotal}
	maxLimit := MaxPageSize
	if req.Pages == RESTPages {
		q.Limit, maxLimit = s.opts.RESTListMax, s.opts.RESTListMax
	}
	if req.Limit != nil {
		if *req.Limit < 0 {
			return store.ListPage{}, &domain.ValidationError{Field: "first", Message: fmt.Sprintf("must not be negative, got %d", *req.Limit)}
		}
		q.Limit = min(*req.Limit, maxLimit)
	}
	if q.Status != "" && !q.Status.Valid() {
		return store.ListPage{}, &domain.ValidationError{Field: "status", Message: fmt.Sprintf("unknown status %q", q.Status)}
	}
	if domain.NoJobHasType(q.Type) || domain.NoJobHasTag(q.Tag) {
		return store.ListPage{}, nil
	}
	if q.Limit == 0 {
		// Stores list positive pages: one job tells whether any exists.
		q.Limit = 1
		page, err := s.store.List(ctx, q)
		if err != nil {
			return store.ListPage{}, fmt.Errorf("list jobs: %w", err)
		}
		return store.ListPage{HasMore: len(page.Jobs) > 0, Total: page.Total}, nil
	}
	page, err := s.store.List(ctx, q)
	if err != nil {
		return store.ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	return page, nil
}
