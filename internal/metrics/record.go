package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AttemptEnded records one attempt of a job of type jobType: its outcome
// and how long its handler ran (zero for an attempt that never started).
func (m *Metrics) AttemptEnded(jobType string, o Outcome, took time.Duration) {
	if m == nil {
		return
	}
	tm := m.typ(jobType)
	tm.attempts[o].Inc()
	if took > 0 {
		tm.attemptDur.Observe(took.Seconds())
	}
}

// SetWorkers records how many workers are configured.
func (m *Metrics) SetWorkers(n int) {
	if m == nil {
		return
	}
	m.workers.Set(float64(n))
}

// WorkerBusy adds delta (1 when a worker starts a job, -1 when it is done
// with it) to the busy workers.
func (m *Metrics) WorkerBusy(delta int) {
	if m == nil {
		return
	}
	m.workersBusy.Add(float64(delta))
}

// OutcomeWaiting adds delta to the outcomes waiting to be written.
func (m *Metrics) OutcomeWaiting(delta int) {
	if m == nil {
		return
	}
	m.outcomesWait.Add(float64(delta))
}

// Webhook records a webhook request for a job of type jobType: the status
// of the answer, or 0 when none came (err), and its duration.
func (m *Metrics) Webhook(jobType string, status int, took time.Duration) {
	if m == nil {
		return
	}
	tm := m.typ(jobType)
	c := classError
	switch {
	case status >= 200 && status < 300:
		c = class2xx
	case status >= 300 && status < 400:
		c = class3xx
	case status >= 400 && status < 500:
		c = class4xx
	case status >= 500:
		c = class5xx
	}
	tm.webhook[c].Inc()
	tm.webhookDur.Observe(took.Seconds())
}

// GraphQLOperation records a GraphQL operation of type op (query,
// mutation, subscription; "" for a request that named none it could run)
// and the code of its first error ("" for none).
func (m *Metrics) GraphQLOperation(op, code string) {
	if m == nil {
		return
	}
	if op == "" {
		op = "unknown"
	}
	if code == "" {
		code = "none"
	}
	m.graphqlOps.WithLabelValues(op, code).Inc()
}

// SSEMessage counts one subscription event sent over Server-Sent Events.
func (m *Metrics) SSEMessage() {
	if m == nil {
		return
	}
	m.sseSent.Add(1)
}

// HTTPRequest records a request answered on route (the ServeMux pattern it
// matched) with status after took.
func (m *Metrics) HTTPRequest(route, method string, status int, took time.Duration) {
	if m == nil {
		return
	}
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodHead, http.MethodOptions:
	default:
		method = "other"
	}
	m.httpDur.WithLabelValues(route, method, statusClass(status)).Observe(took.Seconds())
}

func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// Refusal reasons of access control.
const (
	RefusedHost            = "host"
	RefusedOrigin          = "origin"
	RefusedContentType     = "content_type"
	RefusedUnauthenticated = "unauthenticated"
	RefusedForbidden       = "forbidden"
)

// Refused records a request refused by access control for reason (one of
// the Refused constants).
func (m *Metrics) Refused(reason string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(reason).Inc()
}

// Register adds a part's own collector to the registry (it panics on a
// name registered twice, a programming error). No-op on nil.
func (m *Metrics) Register(c prometheus.Collector) {
	if m == nil {
		return
	}
	m.reg.MustRegister(c)
}
