package wstransport_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/wstransport"
	"github.com/jobqueue/jobqueue/internal/wstransport/wstest"
)

// An operation that fails before it runs gets the protocol's error message
// with its errors, in both protocols: one refused by an operation
// middleware (a query, or a subscription whose resolver never runs), and
// one failing in CreateOperationContext with an error of no known code.
func TestRefusedOperationsGetErrorMessages(t *testing.T) {
	t.Parallel()
	b := setup(t, wstransport.Options{}, func(srv *handler.Server) {
		srv.Use(uncodedRefusal{})
		srv.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
			if graphql.GetOperationContext(ctx).Operation.Name == "Refused" {
				return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{Message: "refused here", Extensions: map[string]any{"code": "REFUSED"}}}})
			}
			return next(ctx)
		})
	})
	for _, protocol := range []string{"graphql-transport-ws", "graphql-ws"} {
		c := b.dial(t, protocol)
		c.Init()
		subscribe := "subscribe"
		if protocol == "graphql-ws" {
			subscribe = "start"
		}
		for _, tc := range []struct{ query, message string }{
			{`query Refused { __typename }`, "refused here"},
			{`subscription Refused { jobUpdated { id } }`, "refused here"},
			{`query Uncoded { __typename }`, "no such operation here"},
			{`subscription Uncoded { jobUpdated { id } }`, "no such operation here"},
		} {
			c.Send(wstest.Msg{ID: "x", Type: subscribe, Payload: wstest.Payload(tc.query, nil)})
			m := c.Expect("error", "x")
			var errs gqlerror.List
			if err := json.Unmarshal(m.Payload, &errs); err != nil || len(errs) != 1 || errs[0].Message != tc.message {
				t.Fatalf("%s, %s: error %s, want one error %q", protocol, tc.query, m.Payload, tc.message)
			}
			// Nothing else follows for it: the next message is the next
			// operation's.
			c.Send(wstest.Msg{ID: "q", Type: subscribe, Payload: wstest.Payload(`{ __typename }`, nil)})
			c.Expect(map[string]string{"graphql-transport-ws": "next", "graphql-ws": "data"}[protocol], "q")
			c.Expect("complete", "q")
		}
	}
	brokertest.WaitSubscribers(t, b.broker, 0, "no subscription left")
}

// uncodedRefusal fails operations named Uncoded before gqlgen parses them,
// with an error gqlgen's error kinds do not know.
type uncodedRefusal struct{}

func (uncodedRefusal) ExtensionName() string                   { return "uncodedRefusal" }
func (uncodedRefusal) Validate(graphql.ExecutableSchema) error { return nil }
func (uncodedRefusal) MutateOperationParameters(_ context.Context, p *graphql.RawParams) *gqlerror.Error {
	if strings.Contains(p.Query, "Uncoded") {
		return &gqlerror.Error{Message: "no such operation here"}
	}
	return nil
}
