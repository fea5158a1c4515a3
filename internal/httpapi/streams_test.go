package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
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
