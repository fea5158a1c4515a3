package httpapi

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jobqueue/jobqueue/internal/metrics"
)

// hijackable is a recorder whose connection can be taken over.
type hijackable struct{ *httptest.ResponseRecorder }

func (hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) { return nil, nil, nil }

// Requests answered at once are timed by route; a streamed response (SSE)
// and a hijacked connection (websocket) are not, as they last as long as
// their client.
func TestObserveLeavesStreamsOutOfTheDurations(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{Backend: "memory"})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /plain", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "data: 1\n\n")
		_ = http.NewResponseController(w).Flush()
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := http.NewResponseController(w).Hijack(); err != nil {
			t.Error(err)
		}
	})
	h := observe(slog.New(slog.DiscardHandler), m, mux, mux)
	for _, path := range []string{"/plain", "/sse", "/ws"} {
		h.ServeHTTP(hijackable{httptest.NewRecorder()}, httptest.NewRequest(http.MethodGet, path, nil))
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]uint64{}
	for _, f := range families {
		if f.GetName() != "jobqueue_http_request_duration_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "route" {
					routes[l.GetValue()] += s.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if len(routes) != 1 || routes["GET /plain"] != 1 {
		t.Errorf("requests timed by route = %v, want only GET /plain, once", routes)
	}
}
