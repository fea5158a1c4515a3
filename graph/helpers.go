package graph

import (
	"context"
	"encoding/base64"
	"errors"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jobqueue/jobqueue/graph/model"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Cursors are GraphQL's: the connection's opaque strings over a job's Seq.
// The jobs service pages by Seq (REST has no cursors), so encoding stays in
// the API that shows it, and decoding is part of reading its arguments.
const cursorPrefix = "job:"

// encodeCursor makes the opaque cursor of a job: its creation sequence.
func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(seq, 10)))
}

func decodeCursor(c string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(raw), cursorPrefix) {
		return 0, errors.New("not a cursor returned by this API")
	}
	seq, err := strconv.ParseInt(strings.TrimPrefix(string(raw), cursorPrefix), 10, 64)
	if err != nil || seq <= 0 {
		return 0, errors.New("not a cursor returned by this API")
	}
	return seq, nil
}

// connection shows a page of jobs as the jobs query's connection.
func connection(page store.ListPage) *model.JobConnection {
	conn := &model.JobConnection{
		PageInfo:   &model.PageInfo{HasNextPage: page.HasMore},
		TotalCount: page.Total,
		Nodes:      page.Jobs,
		Edges:      make([]*model.JobEdge, len(page.Jobs)),
	}
	if conn.Nodes == nil {
		conn.Nodes = []*domain.Job{}
	}
	for i, j := range page.Jobs {
		conn.Edges[i] = &model.JobEdge{Cursor: encodeCursor(j.Seq), Node: j}
	}
	if n := len(conn.Edges); n > 0 {
		conn.PageInfo.EndCursor = &conn.Edges[n-1].Cursor
	}
	return conn
}

// selects reports whether the selection set of the field being resolved
// asks for the field name (directly, or through a fragment).
func selects(ctx context.Context, name string) bool {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil {
		return true
	}
	for _, f := range graphql.CollectFields(graphql.GetOperationContext(ctx), fc.Field.Selections, nil) {
		if f.Name == name {
			return true
		}
	}
	return false
}

// jobUpdated starts the jobs service's watch and returns its channel for
// gqlgen.
func (r *Resolver) jobUpdated(ctx context.Context, id, typ *string) (<-chan *domain.Job, error) {
	if err := r.countSubscription(ctx); err != nil {
		return nil, err
	}
	var req jobs.WatchRequest
	if id != nil {
		req.ID = *id
	}
	if typ != nil {
		req.Type = *typ
	}
	sub, err := r.Service.Watch(ctx, req)
	if err != nil {
		return nil, watchError(ctx, req, err)
	}
	return attach(ctx, sub.C(), sub.Err, sub.Ack), nil
}

// failSubscription reports a subscription that cannot start. On a websocket
// a coded error goes out as the protocol's error message (graphql-ws
// clients call their error callback) instead of a result with errors; other
// transports (SSE) get the result with errors.
func failSubscription(ctx context.Context, err error) (<-chan *domain.Job, error) {
	var gqlErr *gqlerror.Error
	if !onWebsocket(ctx) || !errors.As(err, &gqlErr) || gqlErr.Extensions["code"] == nil {
		return nil, err
	}
	transport.AddSubscriptionError(ctx, gqlErr)
	ch := make(chan *domain.Job)
	close(ch) // ends the operation; the transport then sends the error
	return ch, nil
}

// websocketConnKey marks a websocket connection's context and carries the
// count of its subscriptions.
type websocketConnKey struct{}

// WithSubscriptionCounter marks ctx as one websocket connection's: the
// subscriptions started under it are counted against the per-connection
// limit, and their errors use the protocol's error message. The websocket
// transport's InitFunc calls it.
func WithSubscriptionCounter(ctx context.Context) context.Context {
	return context.WithValue(ctx, websocketConnKey{}, new(atomic.Int64))
}

// onWebsocket reports whether ctx belongs to a websocket connection, where
// transport.AddSubscriptionError is available.
func onWebsocket(ctx context.Context) bool {
	return ctx.Value(websocketConnKey{}) != nil
}

// countSubscription enforces MaxSubscriptionsPerConn; the slot is freed when
// the subscription's context ends.
func (r *Resolver) countSubscription(ctx context.Context) error {
	n, _ := ctx.Value(websocketConnKey{}).(*atomic.Int64)
	if n == nil || r.MaxSubscriptionsPerConn <= 0 {
		return nil
	}
	if n.Add(1) > int64(r.MaxSubscriptionsPerConn) {
		n.Add(-1)
		return codedError(ctx, CodeTooManySubscriptions, "at most %d subscriptions per connection", r.MaxSubscriptionsPerConn)
	}
	context.AfterFunc(ctx, func() { n.Add(-1) })
	return nil
}
