package graph

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jobqueue/jobqueue/graph/model"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

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

func (r *Resolver) listJobs(ctx context.Context, q store.ListQuery) (*model.JobConnection, error) {
	conn := &model.JobConnection{PageInfo: &model.PageInfo{}, Edges: []*model.JobEdge{}, Nodes: []*domain.Job{}}
	if q.Limit == 0 {
		// first: 0 asks only for totals and pageInfo.
		page, err := r.Store.List(ctx, store.ListQuery{Status: q.Status, Type: q.Type, BeforeSeq: q.BeforeSeq, Limit: 1})
		if err != nil {
			return nil, err
		}
		conn.TotalCount = page.Total
		conn.PageInfo.HasNextPage = len(page.Jobs) > 0
		return conn, nil
	}
	page, err := r.Store.List(ctx, q)
	if err != nil {
		return nil, err
	}
	conn.TotalCount = page.Total
	conn.Nodes = page.Jobs
	conn.Edges = make([]*model.JobEdge, len(page.Jobs))
	for i, j := range page.Jobs {
		conn.Edges[i] = &model.JobEdge{Cursor: encodeCursor(j.Seq), Node: j}
	}
	conn.PageInfo.HasNextPage = page.HasMore
	if n := len(conn.Edges); n > 0 {
		conn.PageInfo.EndCursor = &conn.Edges[n-1].Cursor
	}
	return conn, nil
}

func typeSuffix(t string) string {
	if t == "" {
		return ""
	}
	return fmt.Sprintf(" and type %q", t)
}

type subscriptionCounterKey struct{}

// WithSubscriptionCounter marks ctx as one websocket connection's: the
// subscriptions started under it are counted against the per-connection
// limit. The websocket transport's InitFunc calls it.
func WithSubscriptionCounter(ctx context.Context) context.Context {
	return context.WithValue(ctx, subscriptionCounterKey{}, new(atomic.Int64))
}

// countSubscription enforces MaxSubscriptionsPerConn; the slot is freed when
// the subscription's context ends.
func (r *Resolver) countSubscription(ctx context.Context) error {
	n, _ := ctx.Value(subscriptionCounterKey{}).(*atomic.Int64)
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
