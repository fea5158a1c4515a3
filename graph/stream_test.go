package graph_test

import (
	"net/http"
	"testing"

	"github.com/jobqueue/jobqueue/graph"
)

func TestIsStream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		header http.Header
		want   bool
	}{
		{"websocket upgrade", http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"Server-Sent Events", http.Header{"Accept": {"text/event-stream"}}, true},
		{"plain request", http.Header{"Accept": {"application/json"}}, false},
		// Not a websocket: wstransport.IsUpgrade decides.
		{"h2c upgrade", http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}}, false},
		{"upgrade without connection", http.Header{"Upgrade": {"websocket"}}, false},
	} {
		if got := graph.IsStream(tc.header); got != tc.want {
			t.Errorf("%s: IsStream = %v, want %v", tc.name, got, tc.want)
		}
	}
}
