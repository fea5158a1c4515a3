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

// writeDeadlines records the write deadlines a handler sets.
type writeDeadlines struct {
	*httptest.ResponseRecorder
	deadlines []time.Time
	writes    int
}

func (d *writeDeadlines) SetWriteDeadline(t time.Time) error {
	d.deadlines = append(d.deadlines, t)
	return nil
}

func (d *writeDeadlines) Write(p []byte) (int, error) {
	if len(d.deadlines) <= d.writes {
		return 0, io.ErrShortWrite // no deadline was set before this write
	}
	d.writes++
	return d.ResponseRecorder.Write(p)
}

// Every write and flush of a response gets its own deadline, so a client
// that stops reading is dropped after WRITE_TIMEOUT.
func TestLimitWritesSetsADeadlinePerWrite(t *testing.T) {
	rec := &writeDeadlines{ResponseRecorder: httptest.NewRecorder()}
	h := limitWrites(time.Second, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 3 {
			if _, err := io.WriteString(w, "event\n"); err != nil {
				t.Errorf("write: %v", err)
			}
			w.(http.Flusher).Flush()
		}
	}))
	start := time.Now()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/query", nil))
	if rec.writes != 3 || len(rec.deadlines) != 6 {
		t.Fatalf("%d writes, %d deadlines; want a deadline before each of 3 writes and 3 flushes", rec.writes, len(rec.deadlines))
	}
	for _, d := range rec.deadlines {
		if d.Before(start.Add(time.Second)) {
			t.Fatalf("deadline %v, want a second after the write", d)
		}
	}
}
