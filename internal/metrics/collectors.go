package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// QueueReader is the part of the store the queue's gauges read at each
// scrape: counts kept on every change and one index seek, never a scan.
type QueueReader interface {
	Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error)
	OldestRunnable(ctx context.Context, now time.Time) (time.Time, error)
}

// WatchQueue registers jobqueue_jobs (jobs by status) and
// jobqueue_oldest_runnable_job_age_seconds, read from st at each scrape
// within timeout; a store that does not answer in time leaves them out of
// that scrape. No-op on nil.
func (m *Metrics) WatchQueue(st QueueReader, timeout time.Duration) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&queueCollector{st: st, timeout: timeout})
}

var (
	jobsDesc = prometheus.NewDesc(Namespace+"_jobs", "Jobs in the store by status (all instances' jobs).", []string{"status"}, nil)
	lagDesc  = prometheus.NewDesc(Namespace+"_oldest_runnable_job_age_seconds", "How long the pending job that has been runnable longest has waited since its runAt (0 when none is due; paused types' jobs left out): the queue's lag.", nil, nil)
)

type queueCollector struct {
	st      QueueReader
	timeout time.Duration
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- lagDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if s, err := c.st.Stats(ctx, store.StatsQuery{}); err == nil {
		for _, v := range []struct {
			status domain.Status
			n      int
		}{
			{domain.StatusPending, s.Pending},
			{domain.StatusProcessing, s.Processing},
			{domain.StatusCompleted, s.Completed},
			{domain.StatusFailed, s.Failed},
			{domain.StatusCancelled, s.Cancelled},
		} {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(v.n), string(v.status))
		}
	}
	now := time.Now()
	if oldest, err := c.st.OldestRunnable(ctx, now); err == nil {
		age := 0.0
		if !oldest.IsZero() {
			age = max(now.Sub(oldest), 0).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, age)
	}
}

// CounterFunc registers a counter whose value f returns at each scrape
// (a count a part keeps itself). No-op on nil.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, f))
}

// GaugeFunc registers a gauge whose value f returns at each scrape. No-op
// on nil.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, f))
}

// Subscriptions are the counts the subscription parts keep themselves
// (the broker, the websocket transport, the SSE streams), read at each
// scrape.
type Subscriptions struct {
	WebsocketConnections   func() int
	WebsocketSubscriptions func() int64
	WebsocketMessages      func() int64
	SSEStreams             func() int
	Coalesced              func() int64
	SlowSubscribers        func() int64
	TooManySubscriptions   func() int64
}

// WatchSubscriptions registers the subscription metrics read from s. No-op
// on nil.
func (m *Metrics) WatchSubscriptions(s Subscriptions) {
	if m == nil {
		return
	}
	i := func(f func() int) func() float64 { return func() float64 { return float64(f()) } }
	i64 := func(f func() int64) func() float64 { return func() float64 { return float64(f()) } }
	m.GaugeFunc("websocket_connections", "Websocket connections open.", i(s.WebsocketConnections))
	m.GaugeFunc("sse_streams", "Server-Sent Events streams open (each one subscription).", i(s.SSEStreams))
	const subsHelp = "Subscriptions active, by transport (websocket, sse)."
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "subscriptions", Help: subsHelp, ConstLabels: prometheus.Labels{"transport": "websocket"}}, i64(s.WebsocketSubscriptions)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "subscriptions", Help: subsHelp, ConstLabels: prometheus.Labels{"transport": "sse"}}, i(s.SSEStreams)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "subscription_messages_total", Help: messagesHelp, ConstLabels: prometheus.Labels{"transport": "websocket"}}, i64(s.WebsocketMessages)),
	)
	m.CounterFunc("subscription_changes_coalesced_total", "Job changes a lagging subscriber skipped because a newer change of the same job replaced them.", i64(s.Coalesced))
	m.CounterFunc("subscriptions_slow_total", "Subscriptions ended with SLOW_SUBSCRIBER (too far behind).", i64(s.SlowSubscribers))
	m.CounterFunc("subscriptions_refused_total", "Subscriptions refused with TOO_MANY_SUBSCRIPTIONS (MAX_SUBSCRIPTIONS_PER_CONN).", i64(s.TooManySubscriptions))
}

const messagesHelp = "Subscription events sent to clients, by transport (websocket, sse)."
