package graph

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/99designs/gqlgen/graphql"
	"github.com/jobqueue/jobqueue/internal/broker"
	"strconv"
	"strings"

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
	if domain.NoJobHasType(q.Type) {
		return conn, nil
	}
	// Counting can cost the store more than the page (PostgreSQL sums a
	// counts table, others keep totals at hand): only when asked.
	q.SkipTotal = !selects(ctx, "totalCount")
	if q.Limit == 0 {
		// first: 0 asks only for totals and pageInfo.
		page, err := r.Store.List(ctx, store.ListQuery{Status: q.Status, Type: q.Type, BeforeSeq: q.BeforeSeq, Limit: 1, SkipTotal: q.SkipTotal})
		if err != nil {
			return nil, internal(err)
		}
		conn.TotalCount = page.Total
		conn.PageInfo.HasNextPage = len(page.Jobs) > 0
		return conn, nil
	}
	page, err := r.Store.List(ctx, q)
	if err != nil {
		return nil, internal(err)
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

func typeSuffix(t string) string {
	if t == "" {
		return ""
	}
	return fmt.Sprintf(" and type %q", t)
}

// jobUpdated subscribes to the broker and returns the channel for gqlgen.
func (r *Resolver) jobUpdated(ctx context.Context, id, typ *string) (<-chan *domain.Job, error) {
	var f broker.Filter
	if id != nil {
		f.ID = *id
	}
	if typ != nil {
		f.Type = *typ
	}
	// Subscribe before reading the current state so that no change made in
	// between is missed; the broker drops what the snapshot already covers.
	sub, err := r.Broker.Subscribe(ctx, f)
	if err != nil {
		return nil, internal(err)
	}
	if f.ID == "" {
		return deliver(ctx, sub), nil
	}
	current, err := r.Store.Get(ctx, f.ID)
	if errors.Is(err, domain.ErrNotFound) || (err == nil && f.Type != "" && current.Type != f.Type) {
		sub.Close()
		return nil, codedError(ctx, CodeNotFound, "no job with id %q%s", f.ID, typeSuffix(f.Type))
	}
	if err != nil {
		sub.Close()
		return nil, internal(err)
	}
	sub.Prime(current)
	return deliver(ctx, sub), nil
}
