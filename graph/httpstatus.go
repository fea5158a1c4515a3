package graph

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// conformHTTP adapts gqlgen's plain HTTP responses to the GraphQL-over-HTTP
// specification where gqlgen departs from it:
//   - a request error (document parsing, validation, variable coercion)
//     answered as application/json gets 200, as the spec asks for that
//     media type (gqlgen answers 422);
//   - answered as application/graphql-response+json, such a response carries
//     no "data" entry (gqlgen writes "data": null);
//   - a mutation sent with GET gets 405 Method Not Allowed with Allow: POST
//     (gqlgen answers 406);
//   - a method other than GET, POST and OPTIONS gets 405 (gqlgen answers
//     400 "transport not supported");
//   - an operation refused for lack of capacity (SERVER_BUSY) gets 503 with
//     Retry-After, and a mutation over the rate limit (RATE_LIMITED) 429
//     with Retry-After;
//   - a request refused by the limits (QUERY_TOO_LARGE, TOO_MANY_JOBS,
//     COMPLEXITY_LIMIT_EXCEEDED) gets its 4xx (refusalStatus) in either
//     media type: the client must change the request, not retry it.
//
// Websocket and Server-Sent Events requests pass through untouched.
func conformHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodPost, http.MethodOptions:
		default:
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"errors":[{"message":"method ` + r.Method + ` not allowed: use GET or POST"}]}`))
			return
		}
		if IsStream(r.Header) || (r.Method != http.MethodGet && r.Method != http.MethodPost) {
			next.ServeHTTP(w, r)
			return
		}
		req := &request{}
		defer req.finish()
		cw := &conformingWriter{ResponseWriter: w, get: r.Method == http.MethodGet, asked: req}
		next.ServeHTTP(cw, r.WithContext(withRequest(r.Context(), req)))
		cw.finish()
	})
}

// IsStream reports whether a request with these headers asks for a stream
// of responses (a websocket upgrade, as wstransport.IsUpgradeHeader
// defines it, or Server-Sent Events) rather than a single response. It is
// the one such test: the HTTP conformance above, the refusal of
// subscriptions over plain HTTP and the server's tracking of long-lived
// requests all use it.
func IsStream(h http.Header) bool {
	return wstransport.IsUpgradeHeader(h) || strings.Contains(h.Get("Accept"), "text/event-stream")
}

type conformingWriter struct {
	http.ResponseWriter
	get         bool
	asked       *request // for a status the operation asked for, if any
	wroteHeader bool
	// buffering holds a request error's response until finish, which
	// decides its status from its error codes.
	buffering bool
	// graphqlResponse: the response is application/graphql-response+json.
	graphqlResponse bool
	status          int
	buf             bytes.Buffer
}

func (w *conformingWriter) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	if asked := w.asked.getStatus(); asked != 0 {
		switch secs := w.asked.getRetryAfter(); {
		case secs > 0:
			w.Header().Set("Retry-After", strconv.Itoa(secs))
		case asked == http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", "1")
		}
		w.ResponseWriter.WriteHeader(asked)
		return
	}
	ct := w.Header().Get("Content-Type")
	if status == http.StatusNotAcceptable && w.get {
		w.Header().Set("Allow", "POST")
		status = http.StatusMethodNotAllowed
	}
	switch {
	case status == http.StatusUnprocessableEntity && strings.HasPrefix(ct, "application/json"):
		w.buffering, w.status = true, status
		return
	case status >= 400 && status < 500 && strings.HasPrefix(ct, "application/graphql-response+json"):
		w.buffering, w.status, w.graphqlResponse = true, status, true
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *conformingWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.buffering {
		return w.buf.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

// finish writes a buffered request error: with the status of a refusal
// it holds, else 200 as application/json, and as
// application/graphql-response+json gqlgen's status without the null
// data entry.
func (w *conformingWriter) finish() {
	if !w.buffering {
		return
	}
	body := w.buf.Bytes()
	status := w.status
	if !w.graphqlResponse {
		status = http.StatusOK
	}
	var resp struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &resp) == nil {
		for _, e := range resp.Errors {
			if s, ok := refusalStatus(e.Extensions.Code); ok {
				status = s
				break
			}
		}
		if w.graphqlResponse && string(resp.Data) == "null" {
			var all map[string]json.RawMessage
			if json.Unmarshal(body, &all) == nil {
				delete(all, "data")
				if b, err := json.Marshal(all); err == nil {
					body = b
				}
			}
		}
	}
	w.ResponseWriter.WriteHeader(status)
	_, _ = w.ResponseWriter.Write(body)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *conformingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
