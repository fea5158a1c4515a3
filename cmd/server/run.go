package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	// Aliased: run's own variable jobs is the store.
	jobsvc "github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/maintenance"
	"github.com/jobqueue/jobqueue/internal/simulate"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/webhook"
	"github.com/jobqueue/jobqueue/internal/worker"
	"github.com/jobqueue/jobqueue/internal/wstransport"
)

// run wires the service, serves until ctx is done, then shuts down
// gracefully: it stops accepting requests and claiming jobs, lets running
// jobs finish for up to SHUTDOWN_TIMEOUT (then cancels them and returns
// them to pending), closes websockets with a close frame and returns once
// every goroutine it started has exited.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return serve(ctx, args, getenv, stdout, stderr, nil)
}

// serve is run that also calls listening, when not nil, with the address
// the server listens on as soon as it accepts connections (PORT=0 picks a
// free port): tests learn it so instead of reading the log.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, listening func(net.Addr)) error {
	cfg, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = defaultInstanceID()
	}
	log := newLogger(cfg, stderr)
	log.Info("starting", cfg.logAttrs()...)

	events := broker.New(broker.Options{Buffer: cfg.SubscriberBuffer, MaxBacklog: cfg.SubscriberMaxBacklog})
	defer events.Close()

	// The store publishes every change it commits (only it knows their
	// order): to the broker, for subscribers, and to the worker pool's
	// inbox (pending jobs wake it, cancellation requests reach handlers).
	inbox := worker.NewInbox()
	publishers := store.Publishers{events, inbox}
	if log.Enabled(ctx, slog.LevelDebug) {
		publishers = append(publishers, store.PublisherFunc(func(j *domain.Job) {
			log.Debug("job changed", "id", j.ID, "type", j.Type, "status", j.Status, "version", j.Version, "attempts", j.Attempts, "error", j.Error)
		}))
	}
	jobs, err := openStore(ctx, cfg, publishers, log)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer jobs.close()
	log.Info("store open", "backend", jobs.backend)
	// The store's parts stop before it closes (defers run last first).
	partsCtx, stopParts := context.WithCancel(context.WithoutCancel(ctx))
	var partsDone sync.WaitGroup
	for _, p := range jobs.parts {
		partsDone.Go(func() {
			if err := p.Run(partsCtx); err != nil {
				log.Error("store part stopped", "err", err)
			}
		})
	}
	defer func() {
		stopParts()
		partsDone.Wait()
	}()
	// Handlers: webhooks from HANDLERS_FILE, or the simulated handler for
	// every type, as in the original service.
	var handlers map[string]worker.Handler
	var fallback worker.Handler = simulate.Handler{Duration: cfg.ProcessingTime}
	var types jobsvc.TypeFilter
	if cfg.HandlersFile != "" {
		handlers, err = webhook.Load(cfg.HandlersFile, &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()})
		if err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
		fallback = nil
		types = jobsvc.TypeFilter{}
		for t := range handlers {
			types[t] = true
		}
		log.Info("webhook handlers", "types", len(handlers))
	}
	// The store states its own tuning (claim cooldown, whether it must be
	// polled: only PostgreSQL heeds POLL_INTERVAL).
	pool := worker.New(jobs, inbox, worker.Options{
		Owner:           cfg.InstanceID,
		LeaseDuration:   cfg.LeaseDuration,
		PollInterval:    cfg.PollInterval,
		ShutdownGrace:   cfg.ShutdownTimeout,
		Workers:         cfg.Workers,
		QueueCapacity:   cfg.QueueCapacity,
		Handlers:        handlers,
		Default:         fallback,
		JobTimeout:      cfg.JobTimeout,
		RetryBackoff:    cfg.RetryBackoff,
		RetryBackoffMax: cfg.RetryBackoffMax,
		Logger:          log,
	})

	websockets := wstransport.New(wstransport.Options{
		InitTimeout:      cfg.WSInitTimeout,
		KeepAlive:        cfg.WSKeepAlive,
		WriteTimeout:     cfg.WSWriteTimeout,
		ReadLimit:        cfg.WSReadLimit,
		MaxSubscriptions: cfg.MaxSubscriptionsPerConn,
	})
	// Runs until websockets are closed at shutdown (closeWebsockets);
	// websocketsDone tells when every connection is closed.
	websocketsCtx, closeWebsockets := context.WithCancel(context.WithoutCancel(ctx))
	websocketsDone := make(chan struct{})
	go func() {
		defer close(websocketsDone)
		_ = websockets.Run(websocketsCtx)
	}()
	defer func() {
		closeWebsockets()
		<-websocketsDone
	}()
	// Both APIs call one service: its options are every rule they share.
	service := jobsvc.New(jobs, events, jobsvc.Options{
		MaxPayloadBytes:    cfg.MaxPayloadBytes,
		DefaultMaxAttempts: cfg.MaxAttempts,
		Types:              types,
		RESTListMax:        cfg.RESTListMax,
	})
	gql := graph.NewHandler(&graph.Resolver{
		Service: service,
		Logger:  log,
	}, graph.ServerOptions{
		Websocket:       websockets,
		ComplexityLimit: cfg.ComplexityLimit,
		Limits:          cfg.graphQLLimits(),
	})
	streams := httpapi.NewStreams()
	defer streams.CloseAll()
	srv := &http.Server{
		Handler: httpapi.NewHandler(httpapi.Deps{
			Jobs:         service,
			GraphQL:      gql,
			Logger:       log,
			Streams:      streams,
			MaxBodyBytes: cfg.MaxBodyBytes,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", cfg.Port, err)
	}
	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer stopDebug()
	}
	// The pool runs until stopPool, then stops softly within
	// SHUTDOWN_TIMEOUT (worker.Options.ShutdownGrace).
	poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	poolDone := make(chan error, 1)
	go func() { poolDone <- pool.Run(poolCtx) }()
	// Maintenance: the rescuer gives back the jobs of lost workers (half a
	// lease after their lease expired at worst); the sweeper deletes
	// finished jobs past RETENTION (0 keeps them forever). Both stop last.
	maintCtx, stopMaintenance := context.WithCancel(context.WithoutCancel(ctx))
	var maint errgroup.Group
	maint.Go(func() error {
		return (&maintenance.Rescuer{Store: jobs, Interval: cfg.LeaseDuration / 2, Logger: log}).Run(maintCtx)
	})
	if cfg.Retention > 0 {
		maint.Go(func() error {
			return (&maintenance.Sweeper{Store: jobs, Retention: cfg.Retention, Interval: max(cfg.RetentionSweep, time.Second), Logger: log}).Run(maintCtx)
		})
	}
	defer func() {
		stopMaintenance()
		_ = maint.Wait()
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	if listening != nil {
		listening(ln.Addr())
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down", "shutdown_timeout", cfg.ShutdownTimeout)
	case err := <-serveErr:
		// Serve failed on its own; still stop the workers and streams.
		stopPool()
		<-poolDone
		streams.CloseAll()
		closeWebsockets()
		waitCtx, cancelWait := context.WithTimeout(context.Background(), cfg.WSWriteTimeout+time.Second)
		defer cancelWait()
		_ = streams.Wait(waitCtx)
		<-websocketsDone
		return fmt.Errorf("serve: %w", err)
	}

	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	// Stop accepting requests at once; requests in flight finish meanwhile.
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Shutdown(graceCtx) }()
	// Stop claiming; running jobs get the grace period, then are cancelled
	// and returned to pending.
	stopPool()
	if err := <-poolDone; err != nil {
		log.Warn("workers stopped", "err", err)
	}
	// Subscribers stayed connected while jobs finished. Let the last
	// changes (final states, jobs returned to pending) reach them, then end
	// the streams: websockets get a close frame.
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), flushTimeout)
	defer cancelFlush()
	if err := events.Flush(flushCtx); err != nil {
		log.Warn("shutdown", "err", err)
	} else if err := websockets.WaitSent(flushCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	streams.CloseAll()
	closeWebsockets() // each gets a close frame after what is queued for it
	waitCtx, cancelWait := context.WithTimeout(context.Background(), cfg.WSWriteTimeout+time.Second)
	defer cancelWait()
	if err := streams.Wait(waitCtx); err != nil {
		log.Warn("closing streams", "err", err)
	}
	select {
	case <-websocketsDone:
	case <-waitCtx.Done():
		log.Warn("closing websockets", "err", waitCtx.Err())
	}
	if err := <-httpDone; err != nil {
		log.Warn("http shutdown", "err", err)
		_ = srv.Close()
	}
	<-serveErr
	events.Close()
	log.Info("stopped")
	return nil
}

// flushTimeout bounds how long shutdown waits for subscribers to be handed
// the last job changes; a subscriber that does not read meanwhile misses
// them (and finds the jobs' state when it reconnects).
const flushTimeout = 2 * time.Second

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serveDebug serves net/http/pprof on addr until the returned function is
// called, which waits for the server to stop.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("debug listener", "addr", ln.Addr().String())
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}
