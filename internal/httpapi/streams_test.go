package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Run ends the streams open when its ctx is done, and does not return
// before their handlers have: shutdown relies on it to let SSE responses
// end with their complete event before the server closes.
func TestStreamsRunWaitsForOpenStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewStreams()
		ended, release := make(chan struct{}), make(chan struct{})
		h := s.track(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // ended by Run
			close(ended)
			<-release // still writing its last event
		}))
		stream := func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/query", nil)
			r.Header.Set("Accept", "text/event-stream")
			return r
		}
		go h.ServeHTTP(httptest.NewRecorder(), stream())
		synctest.Wait() // the stream is open

		ctx, stop := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		go func() {
			_ = s.Run(ctx)
			close(runDone)
		}()
		synctest.Wait()
		select {
		case <-runDone:
			t.Fatal("Run returned before its ctx was done")
		default:
		}
		stop()
		<-ended
		synctest.Wait()
		select {
		case <-runDone:
			t.Fatal("Run returned while a stream handler was still running")
		default:
		}
		close(release)
		<-runDone

		// A stream opened afterwards is ended at once.
		late := make(chan struct{})
		s.track(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			close(late)
		})).ServeHTTP(httptest.NewRecorder(), stream())
		<-late
	})
}

// deadlineRecorder records the read deadlines a handler sets.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	deadlines []time.Time
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	d.deadlines = append(d.deadlines, t)
	return nil
}

// readBody bounds the body's arrival, then clears the deadline: the
// handler (an SSE stream) runs without one.
func TestReadBodyClearsItsDeadline(t *testing.T) {
	rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	var during []time.Time
	h := readBody(slog.New(slog.DiscardHandler), 1<<20, 5*time.Second, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		during = slices.Clone(rec.deadlines)
		if b, _ := io.ReadAll(r.Body); string(b) != `{"query":"x"}` {
			t.Errorf("handler read %q", b)
		}
	}))
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/query", strings.NewReader(`{"query":"x"}`)))
	if len(during) != 2 || during[0].IsZero() || !during[1].IsZero() {
		t.Fatalf("read deadlines before the handler ran: %v, want one set, then cleared", during)
	}
}
