package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/jobqueue/jobqueue/internal/gqllimit"
)

// Limits bound what one GraphQL request may cost; README's "Limits"
// section lists them with their defaults.
type Limits struct {
	// Query bounds the document before gqlgen parses it: QUERY_TOO_LARGE.
	// Its token limit is also gqlgen's parser's.
	Query gqllimit.Limits
	// JobsPerRequest bounds the jobs the mutation a request runs may
	// create: its createJob fields, aliases and fragments included, plus
	// the inputs of its createJobs fields. Over it: TOO_MANY_JOBS, refused
	// before any job is created; BAD_USER_INPUT naming inputs when the
	// jobs are those of one createJobs list.
	JobsPerRequest int
	// PayloadBytes is the largest payload a job may have
	// (MAX_PAYLOAD_BYTES); the payload and result fields are priced by it.
	PayloadBytes int
}

// payloadUnit is how many bytes of MAX_PAYLOAD_BYTES make one point of
// complexity for a payload or result field (64 KiB: 16 points). The unit
// keeps the largest page a client reasonably reads, 500 jobs with their
// payload and a dozen other fields (1 + 500 × 32 = 16,001), within the
// default COMPLEXITY_LIMIT of 25,000, while 24 such pages in one query,
// which built a 720 MB response, now cost 384,000. Bytes as such are the
// response budget's to bound; complexity bounds the work of a query.
const payloadUnit = 4 << 10

// payloadComplexity is what a payload or result field costs.
func payloadComplexity(maxPayloadBytes int) int {
	return max(1, (maxPayloadBytes+payloadUnit-1)/payloadUnit)
}

// Codes of requests refused for their size or cost, before any work. They
// are request errors (no data; HTTP 4xx, a websocket's error message).
const (
	CodeQueryTooLarge   = "QUERY_TOO_LARGE"
	CodeComplexityLimit = "COMPLEXITY_LIMIT_EXCEEDED"
	CodeTooManyJobs     = "TOO_MANY_JOBS"
)

// refusalStatus is the HTTP status of a refusal's code: 413 for a
// document too large to read, 400 for one that asks for too much. ok is
// false for any other code.
func refusalStatus(code string) (status int, ok bool) {
	switch code {
	case CodeQueryTooLarge:
		return http.StatusRequestEntityTooLarge, true
	case CodeComplexityLimit, CodeTooManyJobs:
		return http.StatusBadRequest, true
	}
	return 0, false
}

// gqlgen's transports choose status codes and websocket messages by the
// kind registered for an error's code; its registry is global.
func init() {
	for _, code := range []string{CodeQueryTooLarge, CodeComplexityLimit, CodeTooManyJobs} {
		errcode.RegisterErrorType(code, errcode.KindProtocol)
	}
}

// limiter is the gqlgen extension that enforces Limits and the complexity
// limit. Before gqlgen parses a document (MutateOperationParameters) it
// measures the document with gqllimit and counts the jobs it would create;
// after validation (MutateOperationContext) it prices the operation with
// gqlgen's complexity walker plus its introspection fields, which the
// walker skips or undercounts. It replaces gqlgen's ComplexityLimit
// extension, whose walker would run first and without those bounds.
type limiter struct {
	limits          Limits
	complexityLimit int
	log             *slog.Logger
	es              graphql.ExecutableSchema
	// ignoreType leaves __type to IntrospectionCost, which counts its
	// lists, out of gqlgen's walk.
	ignoreType complexity.Option
}

func newLimiter(limits Limits, complexityLimit int, log *slog.Logger) *limiter {
	return &limiter{
		limits:          limits,
		complexityLimit: complexityLimit,
		log:             log,
		ignoreType:      complexity.WithIgnoreFields(map[string]struct{}{"Query.__type": {}}),
	}
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationContextMutator
} = (*limiter)(nil)

func (l *limiter) ExtensionName() string { return "Limits" }

func (l *limiter) Validate(es graphql.ExecutableSchema) error {
	l.es = es
	return nil
}

func (l *limiter) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	doc, err := gqllimit.Check(p.Query, l.limits.Query)
	var exceeded *gqllimit.ExceededError
	switch {
	case errors.As(err, &exceeded):
		return l.refuse(ctx, CodeQueryTooLarge, exceeded.Error())
	case err != nil:
		e := gqlerror.Errorf("%v", err)
		errcode.Set(e, errcode.ValidationFailed)
		return e
	case doc == nil:
		return nil // a syntax error, which gqlgen's parser reports
	}
	if limit := l.limits.JobsPerRequest; limit > 0 {
		single, op, ok := doc.RootFields(p.OperationName, "createJob")
		if !ok || op != ast.Mutation {
			return nil
		}
		many, _, _ := doc.RootListItems(p.OperationName, "createJobs", "inputs", p.Variables)
		n := math.MaxInt // both saturate at it: so does their sum
		if single <= math.MaxInt-many {
			n = single + many
		}
		if fields, _, _ := doc.RootFields(p.OperationName, "createJobs"); n > limit && single == 0 && fields == 1 {
			// One createJobs list longer than any request may create: a
			// bad argument, which no other request shape could fix.
			return l.refuse(ctx, CodeBadUserInput, fmt.Sprintf("inputs: at most %d inputs (MAX_JOBS_PER_REQUEST, jobs one request may create), got %d", limit, n))
		}
		if n > limit {
			return l.refuse(ctx, CodeTooManyJobs, fmt.Sprintf("a request may create at most %d jobs; this one asks for %d (createJob fields and createJobs inputs)", limit, n))
		}
	}
	return nil
}

func (l *limiter) MutateOperationContext(ctx context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	limit := l.complexityLimit
	c := complexity.Calculate(ctx, l.es, rc.Operation, rc.Variables, l.ignoreType)
	if c > limit {
		return l.refuse(ctx, CodeComplexityLimit, fmt.Sprintf("operation has complexity %d, which exceeds the limit of %d", c, limit))
	}
	// Introspection is priced last, only up to what the limit leaves.
	ic := gqllimit.IntrospectionCost(l.es.Schema(), rc.Operation, rc.Variables, limit-c)
	if ic > limit-c {
		return l.refuse(ctx, CodeComplexityLimit, fmt.Sprintf("operation has complexity over the limit of %d, counting what its introspection fields return", limit))
	}
	// Recorded where gqlgen's own limit records it (extension.
	// GetComplexityStats), for heavyOperations; not for subscriptions, whose
	// statistics would stay with them for their whole life, unread.
	if rc.Operation != nil && rc.Operation.Operation != ast.Subscription {
		rc.Stats.SetExtension(complexityStatsKey, &extension.ComplexityStats{Complexity: c + ic, ComplexityLimit: limit})
	}
	return nil
}

// complexityStatsKey is the name gqlgen's extension.GetComplexityStats
// reads the statistics under.
const complexityStatsKey = "ComplexityLimit"

// refuse logs a refused request once, with the client's address and
// never its document, and returns the client's error.
func (l *limiter) refuse(ctx context.Context, code, msg string) *gqlerror.Error {
	l.log.WarnContext(ctx, "graphql request refused", "code", code, "reason", msg, "client", clientAddr(ctx))
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": code}}
}

type clientAddrKey struct{}

// withClientAddr remembers the client's address for the log lines of the
// requests it sends (websocket operations included: their context derives
// from the upgrade request's).
func withClientAddr(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientAddrKey{}, r.RemoteAddr)))
	})
}

func clientAddr(ctx context.Context) string {
	s, _ := ctx.Value(clientAddrKey{}).(string)
	return s
}
