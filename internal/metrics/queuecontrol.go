package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// TypeReader is the part of the store the type controls' gauges read at
// each scrape: the controls (one row per controlled type) and the kept
// counts per type, never a scan of the jobs.
type TypeReader interface {
	TypeControls(ctx context.Context) ([]domain.TypeControl, error)
	TypeStats(ctx context.Context, owner string) (map[string]domain.Stats, error)
}

// WatchTypes registers the gauges of the job types that have controls
// (paused, concurrency limit, rate limit and burst, jobs held back), read
// from st at each scrape within timeout; a store that does not answer in
// time leaves them out of that scrape. Types past Options.MaxTypes are
// summed under OtherType. No-op on nil.
func (m *Metrics) WatchTypes(st TypeReader, timeout time.Duration) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&typeCollector{m: m, st: st, timeout: timeout})
}

var (
	typePausedDesc = prometheus.NewDesc(Namespace+"_job_type_paused",
		"1 when the job type is paused, 0 when it has other controls only (one series per type with controls; under _other, how many of those types are paused).", []string{"type"}, nil)
	typeConcurrencyDesc = prometheus.NewDesc(Namespace+"_job_type_concurrency_limit",
		"The job type's concurrency limit: the most of its jobs processing at once across every instance (types with one only; under _other, the sum).", []string{"type"}, nil)
	typeRateDesc = prometheus.NewDesc(Namespace+"_job_type_rate_limit_per_second",
		"The job type's rate limit: attempts it may start per second across every instance (types with one only; under _other, the sum).", []string{"type"}, nil)
	typeBurstDesc = prometheus.NewDesc(Namespace+"_job_type_rate_limit_burst",
		"The job type's rate limit burst: the most attempts it may start at once after a pause (types with a rate limit only; under _other, the sum).", []string{"type"}, nil)
	typeHeldDesc = prometheus.NewDesc(Namespace+"_job_type_jobs_held_back",
		"Pending jobs (due or not) of a job type that no claim can take at the scrape: it is paused, at its concurrency limit, or out of rate tokens; 0 when it is not (one series per type with controls).", []string{"type"}, nil)
)

type typeCollector struct {
	m       *Metrics
	st      TypeReader
	timeout time.Duration
}

func (c *typeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- typePausedDesc
	ch <- typeConcurrencyDesc
	ch <- typeRateDesc
	ch <- typeBurstDesc
	ch <- typeHeldDesc
}

// typeGauges are one type label's values.
type typeGauges struct {
	paused, concurrency, rate, burst, held float64
	limited, rated                         bool
}

func (c *typeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ctls, err := c.st.TypeControls(ctx)
	if err != nil || len(ctls) == 0 {
		return
	}
	stats, statsErr := c.st.TypeStats(ctx, "")
	now := time.Now()
	byLabel := make(map[string]*typeGauges, len(ctls))
	for _, ctl := range ctls {
		label := c.m.typeLabel(ctl.Name)
		g := byLabel[label]
		if g == nil {
			g = &typeGauges{}
			byLabel[label] = g
		}
		if ctl.Paused {
			g.paused++
		}
		if ctl.Concurrency > 0 {
			g.limited = true
			g.concurrency += float64(ctl.Concurrency)
		}
		if ctl.RatePerSecond > 0 {
			g.rated = true
			g.rate += ctl.RatePerSecond
			g.burst += float64(ctl.RateBurst)
		}
		if s := stats[ctl.Name]; ctl.Quota(s.Processing, now) == 0 {
			g.held += float64(s.Pending)
		}
	}
	for label, g := range byLabel {
		ch <- prometheus.MustNewConstMetric(typePausedDesc, prometheus.GaugeValue, g.paused, label)
		if g.limited {
			ch <- prometheus.MustNewConstMetric(typeConcurrencyDesc, prometheus.GaugeValue, g.concurrency, label)
		}
		if g.rated {
			ch <- prometheus.MustNewConstMetric(typeRateDesc, prometheus.GaugeValue, g.rate, label)
			ch <- prometheus.MustNewConstMetric(typeBurstDesc, prometheus.GaugeValue, g.burst, label)
		}
		if statsErr == nil {
			ch <- prometheus.MustNewConstMetric(typeHeldDesc, prometheus.GaugeValue, g.held, label)
		}
	}
}

// typeLabel returns the type label of job type t: t itself among the
// first MaxTypes types seen, OtherType after that.
func (m *Metrics) typeLabel(t string) string {
	if m.typ(t) == m.other {
		return OtherType
	}
	return t
}

// PeriodicJobCreated records a job created by this instance for a tick of
// the periodic job name, and missed, the ticks before it that got no job
// (the scheduler catches up on the last tick of an outage only). Names
// past Options.MaxTypes are counted as OtherType. No-op on nil.
func (m *Metrics) PeriodicJobCreated(name string, missed int) {
	if m == nil {
		return
	}
	m.periodicMu.Lock()
	c, ok := m.periodicNames[name]
	if !ok {
		if len(m.periodicNames) >= m.maxTypes || name == OtherType {
			c = m.periodicCreated.WithLabelValues(OtherType)
		} else {
			c = m.periodicCreated.WithLabelValues(name)
			m.periodicNames[name] = c
		}
	}
	m.periodicMu.Unlock()
	c.Inc()
	if missed > 0 {
		m.ticksMissed.Add(float64(missed))
	}
}
