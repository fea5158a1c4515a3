package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/jobqueue/jobqueue/graph"
	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/httpapi"
	// Aliased: run's own variable jobs is the store.
	jobsvc "github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/maintenance"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/periodic"
	"github.com/jobqueue/jobqueue/internal/requestid"
	"github.com/jobqueue/jobqueue/internal/simulate"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/tracing"
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
	cfg.Tracing.InstanceID = cfg.InstanceID
	log := newLogger(cfg, stderr)
	log.Info("starting", cfg.logAttrs()...)
	// Off unless an OTLP endpoint is configured: then every hook below
	// returns what it wraps.
	traces, err := tracing.New(ctx, cfg.Tracing)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	access, authn, err := newAccess(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}

	// Everything is built first; nothing runs yet. The parts that hear the
	// store's changes (the broker, the pool's inbox) exist before it.
	events := broker.New(broker.Options{Buffer: cfg.SubscriberBuffer, MaxBacklog: cfg.SubscriberMaxBacklog})
	// The store publishes every change it commits (only it knows their
	// order): to the broker, for subscribers, and to the worker pool's
	// inbox (pending jobs wake it, cancellation requests reach handlers).
	// Both also hear the changes of job types' controls.
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
	defer jobs.close() // after every part has stopped
	jobs.Store = traces.Store(jobs.Store, jobs.backend)
	log.Info("store open", "backend", jobs.backend)
	if err := startTypeControls(ctx, jobs, inbox, cfg.PausedTypes, log); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	// Metrics: every store call is timed, and the jobs' changes counted,
	// at the store's door (METRICS=off: m is nil and records nothing).
	var m *metrics.Metrics
	if cfg.Metrics {
		m = metrics.New(metrics.Options{MaxTypes: cfg.MetricsMaxTypes, Backend: jobs.backend})
		jobs.Store = m.Store(jobs.Store)
		m.WatchQueue(jobs.Store, scrapeStoreTimeout)
		m.WatchTypes(jobs.Store, scrapeStoreTimeout)
		jobs.registerMetrics(m)
	}
	// The store is open, so its migrations are applied.
	readiness := &httpapi.Readiness{Store: jobs.Store}
	readiness.Migrated()
	m.GaugeFunc("ready", "1 when GET /ready would answer 200 (the store answers within 1 s, migrations applied, not shutting down), else 0.", func() float64 {
		if readiness.Check(context.Background()) == "" {
			return 1
		}
		return 0
	})
	// Handlers: webhooks from HANDLERS_FILE, or the simulated handler for
	// every type, as in the original service.
	var handlers map[string]worker.Handler
	var fallback worker.Handler = simulate.Handler{Duration: cfg.ProcessingTime}
	var types jobsvc.TypeFilter
	if cfg.HandlersFile != "" {
		handlers, err = webhook.Load(cfg.HandlersFile, &http.Client{Transport: traces.Transport(http.DefaultTransport.(*http.Transport).Clone())}, m)
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
	// Each attempt gets a span, linked to the job's creation.
	for t, h := range handlers {
		handlers[t] = traces.Handler(h)
	}
	fallback = traces.Handler(fallback)
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
		Metrics:         m,
	})
	// Maintenance: the rescuer gives back the jobs of lost workers (half a
	// lease after their lease expired at worst); the sweeper deletes
	// finished jobs past RETENTION (0 keeps them forever).
	maintenanceParts := []storePart{{"lease rescuer", &maintenance.Rescuer{Store: jobs, Interval: cfg.LeaseDuration / 2, Logger: log}}}
	if cfg.Retention > 0 {
		maintenanceParts = append(maintenanceParts, storePart{"retention sweeper", &maintenance.Sweeper{Store: jobs, Retention: cfg.Retention, Interval: max(cfg.RetentionSweep, time.Second), Logger: log}})
	}
	// Periodic jobs: every process runs a scheduler; the store creates one
	// job per tick among them. Where other processes share the store, the
	// scheduler reads their changes every POLL_INTERVAL.
	var refresh time.Duration
	if jobs.Tuning().MissableWakeups {
		refresh = cfg.PollInterval
	}
	scheduler := periodic.New(jobs, periodic.Options{Refresh: refresh, Logger: log, Metrics: m})
	maintenanceParts = append(maintenanceParts, storePart{"periodic scheduler", scheduler})
	websockets := wstransport.New(wstransport.Options{
		InitTimeout:      cfg.WSInitTimeout,
		KeepAlive:        cfg.WSKeepAlive,
		WriteTimeout:     cfg.WSWriteTimeout,
		ReadLimit:        cfg.WSReadLimit,
		MaxSubscriptions: cfg.MaxSubscriptionsPerConn,
		InitFunc:         access.WebsocketInit(log),
		CheckOrigin:      access.Origins.Allowed,
	})
	// Both APIs call one service: its options are every rule they share.
	service := jobsvc.New(jobs, events, jobsvc.Options{
		MaxPayloadBytes:    cfg.MaxPayloadBytes,
		DefaultMaxAttempts: cfg.MaxAttempts,
		Types:              types,
		RESTListMax:        cfg.RESTListMax,
		TraceParents:       traces.Enabled(),
		PeriodicFile:       cfg.PeriodicFile,
		MaxPeriodicJobs:    cfg.MaxPeriodic,
		PeriodicChanged:    scheduler.Wake,
	})
	if cfg.PeriodicFile != "" {
		if err := applyPeriodicFile(ctx, service, cfg.PeriodicFile, log); err != nil {
			return fmt.Errorf("configuration: PERIODIC_FILE: %w", err)
		}
	}
	// Heavy queries and large listings share the cores: one each.
	heavySlots := cmp.Or(cfg.HeavyQueries, runtime.GOMAXPROCS(0))
	gql := graph.NewHandler(&graph.Resolver{
		Service: service,
		Logger:  log,
	}, graph.ServerOptions{
		Websocket:        websockets,
		ComplexityLimit:  cfg.ComplexityLimit,
		MaxResponseBytes: cfg.MaxResponseBytes,
		HeavyComplexity:  cfg.HeavyComplexity,
		HeavySlots:       heavySlots,

		MaxInFlightResponseBytes: cfg.MaxInFlightResponses,
		RequestTimeout:           cfg.RequestTimeout,
		Limits:                   cfg.graphQLLimits(),
		Mutations:                access.Mutations,
		Metrics:                  m,
		Extensions:               []graphql.HandlerExtension{traces.GraphQL()},
	})
	streams := httpapi.NewStreams()
	m.WatchSubscriptions(metrics.Subscriptions{
		WebsocketConnections:   websockets.Connections,
		WebsocketSubscriptions: websockets.Subscriptions,
		WebsocketMessages:      websockets.MessagesSent,
		SSEStreams:             streams.Open,
		Coalesced:              events.Coalesced,
		SlowSubscribers:        events.SlowSubscribers,
		TooManySubscriptions:   websockets.RefusedSubscriptions,
	})
	deps := httpapi.Deps{
		Jobs:             service,
		GraphQL:          gql,
		Logger:           log,
		Streams:          streams,
		MaxBodyBytes:     cfg.MaxBodyBytes,
		BodyTimeout:      cfg.BodyTimeout,
		RequestTimeout:   cfg.RequestTimeout,
		WriteTimeout:     cfg.WriteTimeout,
		MaxResponseBytes: cfg.MaxResponseBytes,
		LargeListings:    heavySlots,
		Access:           access,
		Metrics:          m,
		Ready:            readiness,
	}
	if m != nil && cfg.MetricsAddr == "" {
		deps.MetricsHandler = m.Handler()
	}
	handler := traces.Middleware(httpapi.NewHandler(deps))
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", cfg.Port, err)
	}
	// Connections are capped below the open-file limit, so that clients
	// holding connections cannot take the descriptors the store, webhooks
	// and /health need.
	fileLimit := raiseOpenFileLimit()
	maxConns := cfg.MaxConnections
	if maxConns == 0 {
		maxConns = defaultMaxConnections(fileLimit)
	}
	log.Info("connections", "max_connections", maxConns, "open_file_limit", fileLimit)
	ln = httpapi.LimitListener(ln, maxConns, handler, log)
	var debugLn net.Listener
	if cfg.DebugAddr != "" {
		if debugLn, err = net.Listen("tcp", cfg.DebugAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("debug listener on %s: %w", cfg.DebugAddr, err)
		}
		log.Info("debug listener", "addr", debugLn.Addr().String())
	}
	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			_ = ln.Close()
			if debugLn != nil {
				_ = debugLn.Close()
			}
			return fmt.Errorf("metrics listener on %s: %w", cfg.MetricsAddr, err)
		}
		log.Info("metrics listener", "addr", metricsLn.Addr().String())
	}

	// Then every part runs, in one group; the HTTP server comes last, so
	// that a request finds everything it needs running.
	g := newGroup(ctx, log)
	p := parts{
		broker:     events,
		transport:  websockets,
		events:     g.start("broker", events),
		websockets: g.start("websockets", websockets),
		streams:    g.start("sse streams", streams),
		pool:       g.start("workers", pool),
	}
	if authn != nil {
		p.authn = g.start("authenticator", authn)
	}
	if traces.Enabled() {
		p.tracing = g.start("tracing", traces)
	}
	for _, sp := range jobs.parts {
		p.store = append(p.store, g.start(sp.name, sp))
	}
	for _, mp := range maintenanceParts {
		p.maintenance = append(p.maintenance, g.start(mp.name, mp))
	}
	if debugLn != nil {
		p.debug = g.start("debug server", httpServer{srv: newDebugServer(), ln: debugLn})
	}
	if metricsLn != nil {
		p.metrics = g.start("metrics server", httpServer{srv: newMetricsServer(m, readiness), ln: metricsLn, grace: time.Second})
	}
	p.readiness = readiness
	// HTTP requests may go on until the streams end (step 6 of shutdown).
	grace := cfg.ShutdownTimeout + flushTimeout + cfg.WSWriteTimeout + time.Second
	p.http = g.start("http server", httpServer{srv: srv, ln: ln, grace: grace})
	log.Info("listening", "addr", ln.Addr().String())
	if listening != nil {
		listening(ln.Addr())
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down", "shutdown_timeout", cfg.ShutdownTimeout)
	case <-g.failed:
		log.Error("shutting down: a part stopped unexpectedly")
	}
	p.shutdown(cfg, log)
	if err := g.g.Wait(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// parts are the server's running parts, as shutdown stops them.
type parts struct {
	http, debug        *part
	metrics            *part // nil without METRICS_ADDR
	pool               *part
	maintenance, store []*part
	events             *part
	websockets         *part
	streams            *part
	authn              *part // nil when authentication is off or needs no refresh
	tracing            *part // nil when tracing is off

	// What shutdown flushes.
	broker    *broker.Broker
	transport *wstransport.Transport
	// What shutdown marks not ready.
	readiness *httpapi.Readiness
}

// shutdown stops the parts in this order, each for a reason:
//
//  0. /ready answers 503 "shutting down" (on METRICS_ADDR, which serves
//     until step 6, load balancers see it while the rest winds down).
//  1. HTTP stops accepting connections; requests in flight go on (a
//     createJob being answered is not cut off).
//  2. The workers stop claiming; running jobs get SHUTDOWN_TIMEOUT to
//     finish, then are cancelled and returned to pending. Subscribers are
//     still connected meanwhile and see them finish.
//  3. Maintenance (rescuer, sweeper, periodic scheduler) stops: it ran
//     while jobs finished, and must stop before the store closes.
//  4. The broker hands every change published so far (final states, jobs
//     returned to pending) to the subscriptions, and their readers take
//     them (Flush), then the websockets write them (WaitSent): 2 seconds
//     at most for both.
//  5. Websockets get a close frame after what is queued for them, SSE
//     streams their complete event; WS_WRITE_TIMEOUT (plus a second) at
//     most for both.
//  6. HTTP waits for what is left of its requests (the SSE streams have
//     just ended), and so does the debug listener. Then the
//     authenticator's key refresh stops: no request is left to check.
//  7. The store's own parts stop (PostgreSQL's listener and counts
//     upkeep): no subscriber is left to hear other processes' changes.
//  8. The broker ends what subscriptions remain. The store closes after
//     this function returns (serve's deferred close).
//  9. Tracing sends the spans not sent yet (5 s at most): every part that
//     makes spans has stopped.
func (p parts) shutdown(cfg config, log *slog.Logger) {
	// 0. Not ready. Load balancers that poll /ready learn it during the
	// drain delay, while everything still works; only then does the port
	// close.
	p.readiness.Drain()
	if cfg.ShutdownDrainDelay > 0 {
		log.Info("draining: /ready answers 503 until the port closes", "shutdown_drain_delay", cfg.ShutdownDrainDelay)
		time.Sleep(cfg.ShutdownDrainDelay)
	}
	// 1. No new connections.
	p.http.stop()
	// 2. Running jobs finish, or are returned to pending.
	p.pool.halt()
	// 3. Maintenance.
	for _, m := range p.maintenance {
		m.halt()
	}
	// 4. The last changes reach the subscribers.
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), flushTimeout)
	defer cancelFlush()
	if err := p.broker.Flush(flushCtx); err != nil {
		log.Warn("shutdown: subscribers may miss the last changes", "err", err)
	} else if err := p.transport.WaitSent(flushCtx); err != nil {
		log.Warn("shutdown: subscribers may miss the last changes", "err", err)
	}
	// 5. Websockets and SSE streams end.
	closeCtx, cancelClose := context.WithTimeout(context.Background(), cfg.WSWriteTimeout+time.Second)
	defer cancelClose()
	p.websockets.stop()
	p.streams.stop()
	p.websockets.wait(closeCtx, log)
	p.streams.wait(closeCtx, log)
	// 6. The last requests.
	if p.debug != nil {
		p.debug.halt()
	}
	if p.metrics != nil {
		p.metrics.halt()
	}
	<-p.http.done
	if p.authn != nil {
		p.authn.halt()
	}
	// 7. The store's parts.
	for _, s := range p.store {
		s.halt()
	}
	// 8. The broker.
	p.events.halt()
	// 9. The last spans.
	if p.tracing != nil {
		p.tracing.halt()
	}
}

// applyPeriodicFile reads PERIODIC_FILE and stores its definitions.
func applyPeriodicFile(ctx context.Context, service *jobsvc.Service, path string, log *slog.Logger) error {
	reqs, err := jobsvc.ReadPeriodicFile(path)
	if err != nil {
		return err
	}
	if err := service.ApplyPeriodicFile(ctx, reqs); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	log.Info("periodic jobs from file", "file", path, "count", len(reqs))
	return nil
}

// maxHeaderBytes bounds a request's headers (net/http's default is 1 MiB):
// room for large tokens and cookies, and no more.
const maxHeaderBytes = 64 << 10

// defaultMaxConnections is MAX_CONNECTIONS's default for an open-file
// limit: nine tenths of it, the rest kept for the store's connections,
// webhooks, logs and the answers to connections over the cap; 10,000 when
// the limit is unknown.
func defaultMaxConnections(fileLimit int) int {
	if fileLimit <= 0 {
		return 10000
	}
	return max(fileLimit-fileLimit/10, 16)
}

// flushTimeout bounds how long shutdown waits for subscribers to be handed
// the last job changes; a subscriber that does not read meanwhile misses
// them (and finds the jobs' state when it reconnects).
const flushTimeout = 2 * time.Second

// newLogger returns the server's logger: every line logged with a
// request's context carries its request_id.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(requestid.Handler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(requestid.Handler(slog.NewTextHandler(w, opts)))
}

// scrapeStoreTimeout bounds the store calls of one scrape (the job counts
// and the queue's lag).
const scrapeStoreTimeout = 2 * time.Second

// newMetricsServer serves METRICS_ADDR: /metrics (unless METRICS=off),
// /ready and /health, with no access control: keep it private.
func newMetricsServer(m *metrics.Metrics, ready *httpapi.Readiness) *http.Server {
	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("GET /metrics", m.Handler())
	}
	mux.Handle("GET /ready", ready)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// newDebugServer serves net/http/pprof.
func newDebugServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// startTypeControls pauses the types of PAUSED_TYPES that the store does
// not know yet (neither stored controls nor jobs), then tells the pool's
// inbox every type's controls (which types have a concurrency limit),
// before the pool runs. A type the store knows keeps what the operators
// made of it: a restart, or another instance starting with the same
// setting, does not pause again a type that was resumed.
func startTypeControls(ctx context.Context, st store.Store, inbox *worker.Inbox, paused []string, log *slog.Logger) error {
	if len(paused) > 0 {
		controls, err := st.TypeControls(ctx)
		if err != nil {
			return err
		}
		stats, err := st.TypeStats(ctx, "")
		if err != nil {
			return err
		}
		known := make(map[string]bool, len(controls)+len(stats))
		isPaused := make(map[string]bool, len(controls))
		for _, c := range controls {
			known[c.Name] = true
			isPaused[c.Name] = c.Paused
		}
		for t := range stats {
			known[t] = true
		}
		yes := true
		for _, t := range paused {
			switch {
			case isPaused[t]:
				continue
			case known[t]:
				// Not an error (a resume must outlive restarts), but the
				// operator who listed it should see that it runs.
				log.Warn("job type in PAUSED_TYPES left running: the store already knows it (it has jobs or stored controls), and only pauseJobType pauses a known type", "type", t)
				continue
			}
			if _, err := st.SetTypeControl(ctx, t, domain.TypeChange{Paused: &yes}); err != nil {
				return fmt.Errorf("pause type %s (PAUSED_TYPES): %w", t, err)
			}
			log.Info("job type paused (PAUSED_TYPES)", "type", t)
		}
	}
	controls, err := st.TypeControls(ctx)
	if err != nil {
		return err
	}
	for _, c := range controls {
		inbox.PublishType(c)
	}
	return nil
}
