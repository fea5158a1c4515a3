package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	jobsvc "github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

// downStore is a store whose database is down.
type downStore struct{ *memory.Store }

var errDown = fmt.Errorf("dial tcp 127.0.0.1:5432: connection refused: %w", domain.ErrUnavailable)

func (downStore) Create(context.Context, domain.NewJob) (*domain.Job, error) { return nil, errDown }
func (downStore) Get(context.Context, string) (*domain.Job, error)           { return nil, errDown }
func (downStore) List(context.Context, store.ListQuery) (store.ListPage, error) {
	return store.ListPage{}, errDown
}
func (downStore) Stats(context.Context, store.StatsQuery) (domain.Stats, error) {
	return domain.Stats{}, errors.New("disk on fire")
}

// While the store is unreachable both APIs answer at once with an error
// that says so (503 / SERVICE_UNAVAILABLE), never a hang or a generic 500.
func TestUnavailableStoreGivesAClearError(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	events := brokertest.New(t, broker.Options{})
	st := downStore{memory.New(nil)}
	svc := jobsvc.New(st, events, jobsvc.Options{MaxPayloadBytes: maxPayloadBytes, RESTListMax: listMax})
	gql := graph.NewHandler(&graph.Resolver{Service: svc, Logger: log}, graph.ServerOptions{ComplexityLimit: 25000})
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Deps{Jobs: svc, GraphQL: gql, Logger: log, Streams: httpapi.NewStreams(), MaxBodyBytes: maxBodyBytes}))
	t.Cleanup(srv.Close)

	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/jobs", `{"type":"email"}`},
		{http.MethodGet, "/jobs", ""},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct{ Error string }
		if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "unavailable") || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s = %d %s (Retry-After %q); want 503 with a JSON error saying the store is unavailable", c.method, c.path, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	for _, q := range []string{
		`{"query":"mutation { createJob(input: {type: \"email\"}) { id } }"}`,
		`{"query":"{ jobs { totalCount } }"}`,
		`{"query":"{ job(id: \"x\") { id } }"}`,
	} {
		resp, err := http.Post(srv.URL+"/query", "application/json", strings.NewReader(q))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Errors []struct {
				Message    string
				Extensions map[string]any
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || len(out.Errors) != 1 || out.Errors[0].Extensions["code"] != graph.CodeUnavailable || strings.Contains(out.Errors[0].Message, "5432") {
			t.Errorf("%s = %+v, %v; want one SERVICE_UNAVAILABLE error that does not leak internals", q, out, err)
		}
	}
	// Other failures of the server stay generic, and the client's own
	// mistakes in arguments stay BAD_USER_INPUT with their message.
	for q, want := range map[string]string{
		`{"query":"{ stats { pending } }"}`:                                                     graph.CodeInternal,
		`{"query":"mutation { createJob(input: {type: \"x\", runAt: \"yesterday\"}) { id } }"}`: graph.CodeBadUserInput,
	} {
		resp, err := http.Post(srv.URL+"/query", "application/json", strings.NewReader(q))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Errors []struct {
				Message    string
				Extensions map[string]any
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || len(out.Errors) != 1 || out.Errors[0].Extensions["code"] != want || strings.Contains(out.Errors[0].Message, "fire") {
			t.Errorf("%s = %+v, %v; want one %s error", q, out, err, want)
		}
	}
}

// A type filter no job can match (invalid UTF-8, NUL, punctuation) is
// answered with nothing, without asking the store: a database may refuse
// such bytes, and the client's odd filter is not the server's failure.
func TestImpossibleTypeFilterMatchesNothing(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	events := brokertest.New(t, broker.Options{})
	st := downStore{memory.New(nil)} // List fails if asked
	svc := jobsvc.New(st, events, jobsvc.Options{MaxPayloadBytes: maxPayloadBytes, RESTListMax: listMax})
	gql := graph.NewHandler(&graph.Resolver{Service: svc, Logger: log}, graph.ServerOptions{ComplexityLimit: 25000})
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Deps{Jobs: svc, GraphQL: gql, Logger: log, Streams: httpapi.NewStreams(), MaxBodyBytes: maxBodyBytes}))
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/jobs?type=%ff%00")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("GET /jobs?type=%%ff%%00 = %d %s; want 200 []", resp.StatusCode, body)
	}
	q := `{"query":"{ jobs(type: \"a\\u0000b\") { totalCount nodes { id } } stats(type: \"x y\") { pending } }"}`
	resp, err = http.Post(srv.URL+"/query", "application/json", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"data":{"jobs":{"totalCount":0,"nodes":[]},"stats":{"pending":0}}}`; strings.TrimSpace(string(body)) != want {
		t.Fatalf("jobs/stats with impossible types = %s; want %s", body, want)
	}
}
