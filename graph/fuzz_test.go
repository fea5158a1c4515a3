package graph_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzGraphQLRequest sends arbitrary POST bodies to the GraphQL endpoint
// with the server's default limits. Whatever the body, the answer is a
// GraphQL response in JSON, never a 5xx, and a refusal has its status and
// a short message. `make fuzz` runs it for a fixed time; `go test` runs the
// seeds in testdata/fuzz/FuzzGraphQLRequest: issue 10's attacks (at the
// size that meets each limit: the fuzzer minimizes a large input slowly,
// and TestIssue10AttacksRefused sends them at full size), real clients'
// queries, malformed bodies.
func FuzzGraphQLRequest(f *testing.F) {
	b := setup(f, withServerLimits)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/query", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		b.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d: %.300s", rec.Code, rec.Body)
		}
		var resp struct {
			Data   json.RawMessage `json:"data"`
			Errors []gqlError      `json:"errors"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("status %d, body %.300s is not JSON: %v", rec.Code, rec.Body, err)
		}
		if len(resp.Data) == 0 && len(resp.Errors) == 0 {
			t.Fatalf("status %d, body %.300s has neither data nor errors", rec.Code, rec.Body)
		}
		// No answer echoes its request: errors are few and short.
		if len(resp.Errors) > 20 {
			t.Fatalf("%d errors, want at most 20", len(resp.Errors))
		}
		for _, e := range resp.Errors {
			if len(e.Message) > 310 {
				t.Fatalf("an error message of %d bytes: %.300s", len(e.Message), e.Message)
			}
		}
		for _, e := range resp.Errors {
			status, refused := refusalStatus[e.code()]
			if !refused {
				continue
			}
			if rec.Code != status || len(resp.Errors) != 1 || len(e.Message) > 160 {
				t.Fatalf("refusal %s: status %d, body %.300s; want %d and one short error", e.code(), rec.Code, rec.Body, status)
			}
		}
	})
}
