package graph

import (
	"context"
	"encoding/base64"
	"errors"
	"github.com/99designs/gqlgen/graphql"
	"strconv"
	"strings"

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

// createRequest is a CreateJobInput as the jobs service takes it.
func createRequest(input *model.CreateJobInput) jobs.CreateRequest {
	return jobs.CreateRequest{
		Type:           &input.Type,
		Payload:        input.Payload,
		IdempotencyKey: input.IdempotencyKey,
		TimeoutSeconds: input.TimeoutSeconds,
		MaxAttempts:    input.MaxAttempts,
		RunAt:          input.RunAt,
		Priority:       input.Priority,
		Tags:           input.Tags,
	}
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
func (r *Resolver) jobUpdated(ctx context.Context, id, typ, tag *string) (<-chan *domain.Job, error) {
	var req jobs.WatchRequest
	if id != nil {
		req.ID = *id
	}
	if typ != nil {
		req.Type = *typ
	}
	if tag != nil {
		req.Tag = *tag
	}
	sub, err := r.Service.Watch(watchContext(ctx), req)
	if err != nil {
		return nil, watchError(ctx, req, err)
	}
	return deliver(ctx, sub), nil
}

// bulkRequest translates a bulk mutation's arguments.
func bulkRequest(f model.JobFilter, limit *int) jobs.BulkRequest {
	req := jobs.BulkRequest{Limit: limit}
	if f.Status != nil {
		req.Status = *f.Status
	}
	if f.Type != nil {
		req.Type = *f.Type
	}
	if f.Tag != nil {
		req.Tag = *f.Tag
	}
	if f.CreatedBefore != nil {
		req.CreatedBefore = *f.CreatedBefore
	}
	if f.CreatedAfter != nil {
		req.CreatedAfter = *f.CreatedAfter
	}
	return req
}

// periodicRequest is a PeriodicJobInput as the jobs service takes it.
func periodicRequest(input model.PeriodicJobInput) jobs.PeriodicRequest {
	req := jobs.PeriodicRequest{Name: input.Name, Schedule: input.Schedule, Timezone: input.Timezone, Paused: input.Paused}
	if input.Job != nil {
		req.Job = createRequest(input.Job)
	}
	return req
}
