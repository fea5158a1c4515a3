package graph_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/requestid"
)

// An internal error names the request's id to the client, and its one log
// line carries the same id.
func TestInternalErrorCarriesTheRequestID(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	log := slog.New(requestid.Handler(slog.NewJSONHandler(&logs, nil)))
	ctx := requestid.NewContext(context.Background(), "req-42")
	e := graph.ErrorPresenter(log)(ctx, errors.New("disk on fire"))
	if e.Extensions["code"] != graph.CodeInternal || e.Extensions["requestId"] != "req-42" || strings.Contains(e.Message, "disk") {
		t.Fatalf("error = %q %v; want INTERNAL_SERVER_ERROR with requestId req-42 and no cause", e.Message, e.Extensions)
	}
	if got := logs.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, `"request_id":"req-42"`) || !strings.Contains(got, "disk on fire") {
		t.Fatalf("log = %s; want one line with the cause and request_id", got)
	}
	var recovered *gqlerror.Error
	if err := graph.Recover(log)(ctx, "bug"); !errors.As(err, &recovered) || recovered.Extensions["requestId"] != "req-42" {
		t.Fatalf("recovered panic: %v; want the request id", err)
	}
}
