package graph

import (
	"context"
	"sync"
)

// request is what the operations of one plain HTTP request (not a stream)
// share with conformHTTP, which wraps gqlgen's handler in this package: an
// HTTP status gqlgen cannot set (503 for SERVER_BUSY), and what to do once
// the response is written (give back a heavy slot, the response's bytes).
// Safe for concurrent use.
type request struct {
	mu         sync.Mutex
	status     int
	retryAfter int // seconds; with status 429 or 503
	done       []func()
}

type requestKey struct{}

func withRequest(ctx context.Context, r *request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// requestFrom returns the plain HTTP request ctx belongs to, or nil (a
// websocket or SSE operation).
func requestFrom(ctx context.Context) *request {
	r, _ := ctx.Value(requestKey{}).(*request)
	return r
}

func (r *request) setStatus(status int) {
	r.mu.Lock()
	r.status = status
	r.mu.Unlock()
}

func (r *request) getStatus() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *request) setRetryAfter(seconds int) {
	r.mu.Lock()
	r.retryAfter = seconds
	r.mu.Unlock()
}

func (r *request) getRetryAfter() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.retryAfter
}

// onDone runs f once the response is written.
func (r *request) onDone(f func()) {
	r.mu.Lock()
	r.done = append(r.done, f)
	r.mu.Unlock()
}

// finish runs what onDone registered.
func (r *request) finish() {
	r.mu.Lock()
	done := r.done
	r.done = nil
	r.mu.Unlock()
	for _, f := range done {
		f()
	}
}
