package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// unavailableError marks a failure to reach PostgreSQL, or a failure of the
// server that is not the caller's (it is shutting down, out of
// connections): errors.Is matches both the cause and domain.ErrUnavailable.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string {
	return domain.ErrUnavailable.Error() + ": " + e.err.Error()
}

// Unwrap returns the cause and domain.ErrUnavailable.
func (e *unavailableError) Unwrap() []error { return []error{e.err, domain.ErrUnavailable} }

// decodeError is a stored value this package cannot read.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// classify marks err as domain.ErrUnavailable when it is a connection-level
// failure: anything that is not an error reported by the server (dial,
// acquire and I/O failures, a closed pool), and the server errors that mean
// "not now" (SQLSTATE class 08 connection exceptions, 53300 too many
// connections, 57P01-57P03 shutdown and startup). Context errors stay
// context errors; other server errors (constraint violations, bad input)
// are returned as they are.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var (
		unavailable *unavailableError
		scan        pgx.ScanArgError
		decode      *decodeError
	)
	if errors.As(err, &unavailable) || errors.As(err, &scan) || errors.As(err, &decode) {
		return err // marked already, or a row this package cannot read
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgconn.SafeToRetry(err) || connectionSQLState(pgErr.Code) {
		return &unavailableError{err: err}
	}
	return err
}

func connectionSQLState(code string) bool {
	switch code {
	case "53300", "57P01", "57P02", "57P03":
		return true
	}
	return strings.HasPrefix(code, "08")
}

// wrapf wraps a database error with context, classified by classify.
func wrapf(err error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, classify(err))...)
}

// lockNotAvailable is the SQLSTATE of a lock wait ended by lock_timeout.
const lockNotAvailable = "55P03"
