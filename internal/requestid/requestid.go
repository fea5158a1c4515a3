// Package requestid gives each HTTP request an id: the caller's
// X-Request-Id when it is sane, or a new one. The id travels in the
// request's context, so that every log line written with that context
// carries it (Handler) and an internal error can name it to the client.
package requestid

import (
	"context"
	"crypto/rand"
	"log/slog"
)

// Header is the HTTP header that carries the id, both ways.
const Header = "X-Request-Id"

// MaxLength bounds an id taken from a request.
const MaxLength = 128

type key struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// FromContext returns the id ctx carries, or "".
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}

// Sane reports whether a caller's id may be used: 1 to MaxLength
// printable ASCII characters, no space (it goes into logs and headers
// as is).
func Sane(id string) bool {
	if id == "" || len(id) > MaxLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// New returns a fresh random id (26 characters, 130 bits).
func New() string { return rand.Text() }

// Attr is the log attribute's key.
const Attr = "request_id"

// Handler returns a slog.Handler that adds request_id to every record
// logged with a context carrying an id, and passes the rest to next.
func Handler(next slog.Handler) slog.Handler { return handler{next} }

type handler struct{ next slog.Handler }

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	if id := FromContext(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String(Attr, id))
	}
	return h.next.Handle(ctx, r)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return handler{h.next.WithAttrs(attrs)}
}

func (h handler) WithGroup(name string) slog.Handler { return handler{h.next.WithGroup(name)} }
