// Package metrics owns the server's Prometheus registry and every metric
// in it (prefix jobqueue_). Parts record through a *Metrics they are
// given; a nil *Metrics records nothing (METRICS=off), so every method is
// safe to call on nil and callers need no switch of their own.
//
// Hot paths stay cheap: the children of labelled metrics are resolved
// once (per job type, per outcome) and kept, so recording an event is an
// atomic add or a histogram observation, with no allocation. Job types
// come from clients: past Options.MaxTypes distinct types, the rest are
// counted under OtherType.
package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// Namespace prefixes every metric's name.
const Namespace = "jobqueue"

// OtherType is the type label of the job types past Options.MaxTypes.
const OtherType = "_other"

// DefaultMaxTypes is Options.MaxTypes's default.
const DefaultMaxTypes = 100

// Options configure New.
type Options struct {
	// MaxTypes bounds the distinct values of the type label; later types
	// are counted as OtherType. Default DefaultMaxTypes.
	MaxTypes int
	// Backend names the store (memory, sqlite, postgres): the backend
	// label of store calls, and of jobqueue_build_info.
	Backend string
	// Version is the server's version in jobqueue_build_info; default the
	// module version the binary was built from.
	Version string
}

// Metrics is the registry and the metrics of one server. Create it with
// New. Safe for concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	reg      *prometheus.Registry
	backend  string
	maxTypes int

	// Job types seen, each with its metrics resolved: copied on write,
	// read without a lock.
	typesMu sync.Mutex
	types   atomic.Pointer[map[string]*typeMetrics]
	other   *typeMetrics

	created    *prometheus.CounterVec
	finished   *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	wait       *prometheus.HistogramVec
	attemptDur *prometheus.HistogramVec
	endToEnd   *prometheus.HistogramVec

	rescued      prometheus.Counter
	deleted      prometheus.Counter
	claimJobs    prometheus.Histogram
	workers      prometheus.Gauge
	workersBusy  prometheus.Gauge
	outcomesWait prometheus.Gauge

	webhookReqs *prometheus.CounterVec
	webhookDur  *prometheus.HistogramVec

	graphqlOps *prometheus.CounterVec
	sseSent    atomic.Int64
	httpDur    *prometheus.HistogramVec
	refusals   *prometheus.CounterVec

	storeDur  *prometheus.HistogramVec
	storeErrs *prometheus.CounterVec
	storeOps  [numStoreOps]storeOp

	// Periodic jobs' names seen (a mutex suffices: a job per tick).
	periodicMu      sync.Mutex
	periodicNames   map[string]prometheus.Counter
	periodicCreated *prometheus.CounterVec
	ticksMissed     prometheus.Counter
}

// DurationBuckets are the buckets of the job histograms: 1 ms to 1 h.
var DurationBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
}

// requestBuckets are the buckets of HTTP and store call durations: 100 µs
// to 30 s.
var requestBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
}

// New returns the metrics of one server, with Go's runtime and the
// process's collectors and jobqueue_build_info registered.
func New(opts Options) *Metrics {
	if opts.MaxTypes <= 0 {
		opts.MaxTypes = DefaultMaxTypes
	}
	if opts.Version == "" {
		opts.Version = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			opts.Version = bi.Main.Version
		}
	}
	m := &Metrics{reg: prometheus.NewRegistry(), backend: opts.Backend, maxTypes: opts.MaxTypes}
	f := factory{m.reg}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	f.gaugeVec("build_info", "Always 1: the server's version, Go version and store backend.", "version", "goversion", "backend").
		WithLabelValues(opts.Version, runtime.Version(), opts.Backend).Set(1)

	// Jobs.
	m.created = f.counterVec("jobs_created_total", "Jobs created by this instance, by type (an idempotent repeat creates none).", "type")
	m.finished = f.counterVec("jobs_finished_total", "Jobs that reached a final status through this instance, by type and status (completed, failed, cancelled).", "type", "status")
	m.attempts = f.counterVec("job_attempts_total", "Attempts run by this instance's workers, by type and outcome (completed, failed, retried, timed_out, cancelled, lease_lost, released).", "type", "outcome")
	m.wait = f.histogramVec("job_wait_seconds", "Time from a job's runAt to the start of its attempt, by type.", DurationBuckets, "type")
	m.attemptDur = f.histogramVec("job_attempt_duration_seconds", "Time an attempt's handler ran, by type.", DurationBuckets, "type")
	m.endToEnd = f.histogramVec("job_end_to_end_seconds", "Time from a job's creation to its final status, by type.", DurationBuckets, "type")
	m.rescued = f.counter("jobs_rescued_total", "Jobs given back (or failed) by this instance's lease rescuer after their worker's lease expired.")
	m.deleted = f.counter("jobs_deleted_total", "Finished jobs deleted by this instance's retention sweeper (RETENTION).")

	// Workers.
	m.claimJobs = f.histogram("claim_jobs", "Jobs per claim of this instance's dispatcher (_count: claims, _sum: jobs claimed).", []float64{0, 1, 2, 5, 10, 20, 50, 100, 200, 500})
	m.workers = f.gauge("workers", "Workers configured (WORKERS).")
	m.workersBusy = f.gauge("workers_busy", "Workers running a job.")
	m.outcomesWait = f.gauge("outcome_writes_waiting", "Attempts finished whose outcome is not written to the store yet.")

	// Webhooks.
	m.webhookReqs = f.counterVec("webhook_requests_total", "Webhook requests by job type and status class (2xx, 4xx, 5xx, error for no answer).", "type", "class")
	m.webhookDur = f.histogramVec("webhook_request_duration_seconds", "Webhook request duration by job type.", DurationBuckets, "type")

	// APIs.
	m.graphqlOps = f.counterVec("graphql_operations_total", "GraphQL operations by type (query, mutation, subscription) and the code of their first error (none when they had none).", "operation", "code")
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "subscription_messages_total", Help: messagesHelp, ConstLabels: prometheus.Labels{"transport": "sse"}},
		func() float64 { return float64(m.sseSent.Load()) }))
	m.httpDur = f.histogramVec("http_request_duration_seconds", "HTTP request duration by route (the pattern matched, never the raw path), method and status code class.", requestBuckets, "route", "method", "code")
	m.refusals = f.counterVec("access_refusals_total", "Requests refused by access control, by reason (host, origin, content_type, unauthenticated, forbidden).", "reason")

	// Store.
	m.storeDur = f.histogramVec("store_call_duration_seconds", "Store call duration by backend and operation.", requestBuckets, "backend", "operation")
	m.storeErrs = f.counterVec("store_errors_total", "Store calls that returned an error (a lost lease or a conflict included), by backend and operation.", "backend", "operation")
	for i := range numStoreOps {
		name := storeOpNames[i]
		m.storeOps[i] = storeOp{dur: m.storeDur.WithLabelValues(opts.Backend, name), errs: m.storeErrs.WithLabelValues(opts.Backend, name)}
	}

	// Queue control. The types' controls are gauges read from the store
	// at scrape (WatchTypes); the periodic jobs are counted here.
	m.periodicCreated = f.counterVec("periodic_jobs_created_total", "Jobs created by this instance's scheduler for ticks of periodic jobs, by periodic job name.", "periodic")
	m.periodicNames = map[string]prometheus.Counter{}
	m.ticksMissed = f.counter("periodic_ticks_missed_total", "Ticks of periodic jobs that got no job: those before the one tick a scheduler catches up on after every instance was down, counted by the instance that created the catch-up job.")

	m.other = m.newTypeMetrics(OtherType)
	m.other.makeAll()
	empty := map[string]*typeMetrics{}
	m.types.Store(&empty)
	return m
}

// Registry returns the registry, for parts that bring a collector of
// their own (Register) and for tests that gather it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus's text format or
// OpenMetrics, as the scraper's Accept header asks.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		Timeout:           10 * time.Second,
	})
}

// typeMetrics are one job type's children, each made (and so exported)
// when first used: a type costs only the series it has values for (a type
// that never calls webhooks has none of theirs).
type typeMetrics struct {
	created    lazyCounter
	finished   [numFinal]lazyCounter
	attempts   [numOutcomes]lazyCounter
	wait       lazyObserver
	attemptDur lazyObserver
	endToEnd   lazyObserver
	webhook    [numClasses]lazyCounter
	webhookDur lazyObserver
}

// lazyCounter is the child of vec with labels, made at its first Inc.
type lazyCounter struct {
	once   sync.Once
	c      prometheus.Counter
	vec    *prometheus.CounterVec
	labels []string
}

func (l *lazyCounter) Inc() { l.child().Inc() }

func (l *lazyCounter) child() prometheus.Counter {
	l.once.Do(func() { l.c = l.vec.WithLabelValues(l.labels...) })
	return l.c
}

// lazyObserver is the child of vec with labels, made at its first
// Observe.
type lazyObserver struct {
	once   sync.Once
	o      prometheus.Observer
	vec    *prometheus.HistogramVec
	labels []string
}

func (l *lazyObserver) Observe(v float64) { l.child().Observe(v) }

func (l *lazyObserver) child() prometheus.Observer {
	l.once.Do(func() { l.o = l.vec.WithLabelValues(l.labels...) })
	return l.o
}

// makeAll makes every child of tm now: the OtherType's are exported from
// the start, so that every per-type family has series before any job is
// seen (dashboards and alerts find their metric names at once).
func (tm *typeMetrics) makeAll() {
	tm.created.child()
	tm.wait.child()
	tm.attemptDur.child()
	tm.endToEnd.child()
	tm.webhookDur.child()
	for i := range tm.finished {
		tm.finished[i].child()
	}
	for i := range tm.attempts {
		tm.attempts[i].child()
	}
	for i := range tm.webhook {
		tm.webhook[i].child()
	}
}

// Final statuses, as indexes of typeMetrics.finished.
const (
	finalCompleted = iota
	finalFailed
	finalCancelled
	numFinal
)

var finalNames = [numFinal]string{"completed", "failed", "cancelled"}

func finalIndex(s domain.Status) int {
	switch s {
	case domain.StatusCompleted:
		return finalCompleted
	case domain.StatusFailed:
		return finalFailed
	case domain.StatusCancelled:
		return finalCancelled
	}
	return -1
}

// Outcome is what became of an attempt (the outcome label of
// jobqueue_job_attempts_total).
type Outcome int

// Outcomes of an attempt.
const (
	OutcomeCompleted Outcome = iota
	OutcomeFailed            // failed for good
	OutcomeRetried           // failed, to be run again
	OutcomeTimedOut          // ran out of time (then retried or failed)
	OutcomeCancelled
	OutcomeLeaseLost // its outcome came too late: the lease was lost
	OutcomeReleased  // given back to pending unfinished (shutdown)
	// OutcomeWriteFailed: its outcome could not be written (the store
	// failed through every try, or the job changed or vanished meanwhile):
	// the job is as the store has it, to be rescued if still processing.
	OutcomeWriteFailed
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"completed", "failed", "retried", "timed_out", "cancelled", "lease_lost", "released", "write_failed"}

// String returns the outcome's label value.
func (o Outcome) String() string { return outcomeNames[o] }

// Webhook status classes.
const (
	class2xx = iota
	class3xx
	class4xx
	class5xx
	classError
	numClasses
)

var classNames = [numClasses]string{"2xx", "3xx", "4xx", "5xx", "error"}

func (m *Metrics) newTypeMetrics(t string) *typeMetrics {
	byType := []string{t}
	tm := &typeMetrics{
		created:    lazyCounter{vec: m.created, labels: byType},
		wait:       lazyObserver{vec: m.wait, labels: byType},
		attemptDur: lazyObserver{vec: m.attemptDur, labels: byType},
		endToEnd:   lazyObserver{vec: m.endToEnd, labels: byType},
		webhookDur: lazyObserver{vec: m.webhookDur, labels: byType},
	}
	for i, s := range finalNames {
		tm.finished[i] = lazyCounter{vec: m.finished, labels: []string{t, s}}
	}
	for i, o := range outcomeNames {
		tm.attempts[i] = lazyCounter{vec: m.attempts, labels: []string{t, o}}
	}
	for i, c := range classNames {
		tm.webhook[i] = lazyCounter{vec: m.webhookReqs, labels: []string{t, c}}
	}
	return tm
}

// typ returns the metrics of job type t: its own among the first MaxTypes
// types seen, OtherType's after that. A type already seen costs one map
// lookup without a lock.
func (m *Metrics) typ(t string) *typeMetrics {
	types := *m.types.Load()
	if tm, ok := types[t]; ok {
		return tm
	}
	if len(types) >= m.maxTypes || t == OtherType {
		return m.other
	}
	m.typesMu.Lock()
	defer m.typesMu.Unlock()
	types = *m.types.Load()
	if tm, ok := types[t]; ok {
		return tm
	}
	if len(types) >= m.maxTypes {
		return m.other
	}
	next := make(map[string]*typeMetrics, len(types)+1)
	for k, v := range types {
		next[k] = v
	}
	tm := m.newTypeMetrics(t)
	next[t] = tm
	m.types.Store(&next)
	return tm
}

// factory registers metrics with the namespace.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
