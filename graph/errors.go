package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/requestid"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// Error codes put in extensions.code.
const (
	CodeBadUserInput         = "BAD_USER_INPUT"
	CodeBadRequest           = "BAD_REQUEST"
	CodeNotFound             = "NOT_FOUND"
	CodeConflict             = "CONFLICT"
	CodeTooManySubscriptions = wstransport.CodeTooManySubscriptions // given by the websocket transport
	CodeSlowSubscriber       = "SLOW_SUBSCRIBER"
	CodeInternal             = "INTERNAL_SERVER_ERROR"
	// CodeUnavailable: the job store cannot be reached (a database down or
	// restarting); the same request may succeed shortly.
	CodeUnavailable = "SERVICE_UNAVAILABLE"
	// CodeTimeout: the request took longer than the server allows
	// (REQUEST_TIMEOUT).
	CodeTimeout = "TIMEOUT"
	// CodeForbidden: the caller's role may not do the operation on any
	// job (a job it may not see is NOT_FOUND instead).
	CodeForbidden = "FORBIDDEN"
	// CodeTooManyErrors ends a response whose other errors were left out.
	CodeTooManyErrors = "TOO_MANY_ERRORS"
)

// codedError is a GraphQL error with extensions.code at the current path.
func codedError(ctx context.Context, code, format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{
		Path:       graphql.GetPath(ctx),
		Message:    fmt.Sprintf(format, args...),
		Extensions: map[string]any{"code": code},
	}
}

// ErrorPresenter turns resolver errors into GraphQL errors: validation
// errors become BAD_USER_INPUT naming the field; an operation the caller's
// role does not allow, FORBIDDEN; errors that already carry a code pass
// through; anything else is logged and shown as a generic
// INTERNAL_SERVER_ERROR so internals never leak to clients.
func ErrorPresenter(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) && gqlErr.Extensions["code"] != nil {
			// gqlgen's parse and validation errors quote names from the
			// document, which may be as long as the document.
			gqlErr.Message = shorten(gqlErr.Message, maxMessage)
			return gqlErr
		}
		var ve *domain.ValidationError
		if errors.As(err, &ve) {
			return codedError(ctx, CodeBadUserInput, "%s", ve.Error())
		}
		if fe := forbiddenError(ctx, err); fe != nil {
			return fe
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// Logged once per response, by logTimeouts.
			return codedError(ctx, CodeTimeout, "the request took longer than the server allows; try a smaller one")
		}
		if errors.Is(err, domain.ErrUnavailable) {
			log.WarnContext(ctx, "graphql request failed: job store unavailable", "path", graphql.GetPath(ctx).String(), "err", err)
			return codedError(ctx, CodeUnavailable, "the job store is unavailable; try again shortly")
		}
		var ie internalError
		if errors.As(err, &gqlErr) && !errors.As(err, &ie) {
			// gqlgen's own errors (parsing, validation, coercion of
			// arguments): the client's mistake, message kept, except the
			// request body that gqlgen's POST transport quotes in one of
			// them: an answer never echoes the request.
			e := graphql.DefaultErrorPresenter(ctx, err)
			if strings.HasPrefix(e.Message, undecodableBody) {
				if i := strings.Index(e.Message, " body:"); i >= 0 {
					e.Message = e.Message[:i]
				}
			}
			e.Message = shorten(e.Message, maxMessage)
			if e.Extensions == nil {
				e.Extensions = map[string]any{}
			}
			if e.Extensions["code"] == nil {
				e.Extensions["code"] = CodeBadUserInput
			}
			return e
		}
		log.ErrorContext(ctx, "graphql resolver failed", "path", graphql.GetPath(ctx).String(), "err", err)
		return internalServerError(ctx)
	}
}

// internalServerError is the error a client sees for a failure it cannot
// act on: the request id names it in the server's logs.
func internalServerError(ctx context.Context) *gqlerror.Error {
	e := codedError(ctx, CodeInternal, "internal server error")
	if id := requestid.FromContext(ctx); id != "" {
		e.Extensions["requestId"] = id
	}
	return e
}

// countOperations counts each query and mutation by operation type and
// the code of its first error. Subscriptions are counted as they start
// (countSubscriptions): each of their events is a response.
func countOperations(m *metrics.Metrics) graphql.ResponseMiddleware {
	return func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		resp := next(ctx)
		op := ""
		if graphql.HasOperationContext(ctx) {
			if o := graphql.GetOperationContext(ctx).Operation; o != nil {
				if o.Operation == ast.Subscription {
					return resp
				}
				op = string(o.Operation)
			}
		}
		code := ""
		if resp != nil && len(resp.Errors) > 0 {
			code, _ = resp.Errors[0].Extensions["code"].(string)
			if code == "" {
				code = "unknown"
			}
		}
		m.GraphQLOperation(op, code)
		return resp
	}
}

// countSubscriptions counts each subscription operation as it starts.
func countSubscriptions(m *metrics.Metrics) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		if o := graphql.GetOperationContext(ctx).Operation; o != nil && o.Operation == ast.Subscription {
			m.GraphQLOperation(string(o.Operation), "")
		}
		return next(ctx)
	}
}

// timeLimit bounds each response of a query or mutation to timeout through
// its context (resolvers and store calls stop there: TIMEOUT), whatever the
// transport; a subscription's events are not bounded.
func timeLimit(timeout time.Duration) graphql.ResponseMiddleware {
	return func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		if !graphql.HasOperationContext(ctx) {
			return next(ctx) // an error before the operation: nothing runs
		}
		if op := graphql.GetOperationContext(ctx).Operation; op != nil && op.Operation == ast.Subscription {
			return next(ctx)
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return next(ctx)
	}
}

// logTimeouts logs a response that ran out of time once at warn, however
// many of its fields did.
func logTimeouts(log *slog.Logger) graphql.ResponseMiddleware {
	return func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		resp := next(ctx)
		if resp != nil && slices.ContainsFunc(resp.Errors, func(e *gqlerror.Error) bool { return e.Extensions["code"] == CodeTimeout }) {
			log.WarnContext(ctx, "graphql request timed out", "code", CodeTimeout, "client", clientAddr(ctx))
		}
		return resp
	}
}

// maxMessage bounds the message of an error about the client's request.
const maxMessage = 300

// shorten cuts s to at most max bytes, on a character boundary, marking
// the cut.
func shorten(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// undecodableBody starts the message of gqlgen's POST transport for a body
// that is not a GraphQL request in JSON; gqlgen appends the whole body.
const undecodableBody = "json request body could not be decoded: "

// maxErrors bounds the errors of one response: a request that breaks a
// rule many times over (thousands of invalid directives, say) gets the
// first ones and a count of the rest, not an answer larger than itself.
const maxErrors = 20

// capErrors keeps a response's first maxErrors-1 errors and replaces the
// others with one that says how many were left out.
func capErrors(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp == nil || len(resp.Errors) <= maxErrors {
		return resp
	}
	dropped := len(resp.Errors) - (maxErrors - 1)
	resp.Errors = append(resp.Errors[:maxErrors-1:maxErrors-1], &gqlerror.Error{
		Message:    fmt.Sprintf("%d more errors left out", dropped),
		Extensions: map[string]any{"code": CodeTooManyErrors},
	})
	return resp
}

// Recover turns a resolver panic into an INTERNAL_SERVER_ERROR, after logging
// it: a bug in one request must not take the server down.
func Recover(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "graphql resolver panicked", "panic", p)
		return internalServerError(ctx)
	}
}

// subscriptionEndError is the error a subscription ended with, for the
// client.
func subscriptionEndError(ctx context.Context, err error) *gqlerror.Error {
	if errors.Is(err, broker.ErrSlowSubscriber) {
		return codedError(ctx, CodeSlowSubscriber, "%v", err)
	}
	if errors.Is(err, domain.ErrUnavailable) {
		return codedError(ctx, CodeUnavailable, "the job store is unavailable; try again shortly")
	}
	return codedError(ctx, CodeInternal, "subscription ended: %v", err)
}

// forbiddenError is the client's FORBIDDEN error for an operation the
// jobs service refused for the caller's role, or nil when err is not one.
func forbiddenError(ctx context.Context, err error) *gqlerror.Error {
	var fe *jobs.ForbiddenError
	if errors.As(err, &fe) {
		return codedError(ctx, CodeForbidden, "%s", fe.Error())
	}
	if errors.Is(err, domain.ErrForbidden) {
		return codedError(ctx, CodeForbidden, "your role may not do this")
	}
	return nil
}

// jobError turns the jobs service's error about one job into the client's
// error: FORBIDDEN, NOT_FOUND, and CONFLICT with the job's current status;
// anything else is the server's own failure (see internal).
func jobError(ctx context.Context, id string, err error) error {
	var conflict *jobs.ConflictError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, domain.ErrForbidden):
		return forbiddenError(ctx, err)
	case errors.Is(err, domain.ErrNotFound):
		return codedError(ctx, CodeNotFound, "no job with id %q", id)
	case errors.As(err, &conflict):
		if conflict.Status == "" {
			return codedError(ctx, CodeConflict, "cannot %s job %q in its current status", conflict.Op, id)
		}
		return codedError(ctx, CodeConflict, "cannot %s job %q: it is %s", conflict.Op, id, strings.ToUpper(string(conflict.Status)))
	}
	return internal(err)
}

// periodicError turns the jobs service's error about the periodic job
// name into the client's: FORBIDDEN, NOT_FOUND, CONFLICT for one of the
// server's PERIODIC_FILE (the message names the file), BAD_USER_INPUT (by
// the presenter); anything else is the server's own failure.
func periodicError(ctx context.Context, name string, err error) error {
	var conflict *jobs.PeriodicConflictError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, domain.ErrForbidden):
		return forbiddenError(ctx, err)
	case errors.As(err, &conflict):
		return codedError(ctx, CodeConflict, "%s", conflict.Error())
	case errors.Is(err, domain.ErrNotFound):
		return codedError(ctx, CodeNotFound, "no periodic job named %q", name)
	}
	return internal(err)
}

// watchError turns the jobs service's refusal to watch into the client's
// error: FORBIDDEN for a role that may not watch, NOT_FOUND for a job that
// does not exist (or not with the type asked for, or not the caller's to
// see); anything else is the server's own failure.
func watchError(ctx context.Context, req jobs.WatchRequest, err error) error {
	if fe := forbiddenError(ctx, err); fe != nil {
		return fe
	}
	if !errors.Is(err, domain.ErrNotFound) {
		return internal(err)
	}
	msg := fmt.Sprintf("no job with id %q", req.ID)
	if req.Type != "" {
		msg += fmt.Sprintf(" and type %q", req.Type)
	}
	if req.Tag != "" {
		msg += fmt.Sprintf(" carrying tag %q", req.Tag)
	}
	return codedError(ctx, CodeNotFound, "%s", msg)
}

// internalError marks an error of the server's own (a failing store), so
// that the presenter does not take it for one of gqlgen's errors about the
// client's request (gqlgen wraps both kinds alike).
type internalError struct{ err error }

func (e internalError) Error() string { return e.err.Error() }
func (e internalError) Unwrap() error { return e.err }

// internal marks err (nil stays nil) as the server's own failure.
func internal(err error) error {
	if err == nil {
		return nil
	}
	return internalError{err}
}
