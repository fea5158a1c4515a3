package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// runner is a long-running part of the server: Run returns once ctx is
// done and its work is wound down (or earlier, on a failure).
type runner interface {
	Run(ctx context.Context) error
}

// runFunc adapts a function to runner.
type runFunc func(ctx context.Context) error

func (f runFunc) Run(ctx context.Context) error { return f(ctx) }

// group runs the server's parts, each under its own context so that they
// can be stopped one by one in the order shutdown writes, and all under one
// errgroup, whose Wait returns once every one of them has returned. A part
// that returns before it is stopped has failed (the server cannot go on
// without it): failed is then closed, so that the server shuts down.
type group struct {
	base   context.Context // carries values only
	log    *slog.Logger
	g      errgroup.Group
	failed chan struct{}
	once   sync.Once
}

func newGroup(ctx context.Context, log *slog.Logger) *group {
	return &group{base: context.WithoutCancel(ctx), log: log, failed: make(chan struct{})}
}

// part is one runner started by a group.
type part struct {
	name string
	stop context.CancelFunc // ends Run's context; does not wait
	done chan struct{}      // closed when Run has returned
}

// start runs r in a goroutine of the group until the part is stopped.
func (g *group) start(name string, r runner) *part {
	ctx, stop := context.WithCancel(g.base)
	p := &part{name: name, stop: stop, done: make(chan struct{})}
	g.g.Go(func() error {
		defer close(p.done)
		err := r.Run(ctx)
		if ctx.Err() == nil {
			g.once.Do(func() { close(g.failed) })
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		if err != nil {
			g.log.Warn("stopped", "part", name, "err", err)
		}
		return nil
	})
	return p
}

// wait waits until p's Run has returned, or gives up (and logs it) once
// ctx is done; it reports whether p returned.
func (p *part) wait(ctx context.Context, log *slog.Logger) bool {
	select {
	case <-p.done:
		return true
	case <-ctx.Done():
		log.Warn("shutdown: not stopped in time", "part", p.name, "err", ctx.Err())
		return false
	}
}

// halt stops p and waits for it.
func (p *part) halt() {
	p.stop()
	<-p.done
}

// httpServer serves srv on ln until ctx is done, then stops accepting
// connections and waits up to grace for the requests in flight to end
// before closing the connections left.
type httpServer struct {
	srv   *http.Server
	ln    net.Listener
	grace time.Duration
}

func (h httpServer) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(h.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", h.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.grace)
	defer cancel()
	err := h.srv.Shutdown(sctx)
	if err != nil {
		_ = h.srv.Close()
		err = fmt.Errorf("requests still running after %s, closed: %w", h.grace, err)
	}
	<-served // http.ErrServerClosed
	return err
}
