package sqlite

import (
	"errors"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// unavailableError is a failure of the database rather than of the request:
// SQLITE_BUSY once the busy timeout passed, I/O errors, a full disk, a
// closed store. It matches both the cause (errors.As to *sqlite.Error
// works) and domain.ErrUnavailable, so the API can answer "try again
// later".
type unavailableError struct {
	err error
}

func (e *unavailableError) Error() string { return e.err.Error() }

// Unwrap returns the cause and domain.ErrUnavailable.
func (e *unavailableError) Unwrap() []error { return []error{e.err, domain.ErrUnavailable} }

// errClosed is the cause of every call made after Close.
var errClosed = errors.New("sqlite store closed")

// dbError marks err as unavailability when it comes from the database
// itself, and returns it unchanged otherwise (nil, the caller's context, a
// constraint the caller broke).
func dbError(err error) error {
	if err == nil || !unavailable(err) {
		return err
	}
	var ue *unavailableError
	if errors.As(err, &ue) {
		return err
	}
	return &unavailableError{err: err}
}

func unavailable(err error) bool {
	if errors.Is(err, errClosed) {
		return true
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // the primary result code of an extended one
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
		sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB:
		return true
	}
	return false
}
