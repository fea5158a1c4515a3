package wstransport

import (
	"net/http"
	"testing"
)

func TestIsUpgrade(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		header http.Header
		want   bool
	}{
		{"browser", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"any case", http.Header{"Connection": {"UPGRADE"}, "Upgrade": {"WebSocket"}}, true},
		{"connection list", http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"connection in two fields", http.Header{"Connection": {"keep-alive", " upgrade "}, "Upgrade": {"websocket"}}, true},
		{"operations on a websocket", websocketHeader, true},
		{"no headers", http.Header{}, false},
		{"upgrade without connection", http.Header{"Upgrade": {"websocket"}}, false},
		{"connection without upgrade", http.Header{"Connection": {"Upgrade"}}, false},
		{"connection keep-alive", http.Header{"Connection": {"keep-alive"}, "Upgrade": {"websocket"}}, false},
		{"h2c", http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}}, false},
		{"token inside a word", http.Header{"Connection": {"upgraded"}, "Upgrade": {"websockets"}}, false},
	} {
		r := &http.Request{Header: tc.header}
		if got := IsUpgrade(r); got != tc.want {
			t.Errorf("%s: IsUpgrade(%v) = %v, want %v", tc.name, tc.header, got, tc.want)
		}
		if got := IsUpgradeHeader(tc.header); got != tc.want {
			t.Errorf("%s: IsUpgradeHeader(%v) = %v, want %v", tc.name, tc.header, got, tc.want)
		}
	}
	if !(&Transport{}).Supports(&http.Request{Header: websocketHeader}) {
		t.Error("Supports refused an upgrade")
	}
}
