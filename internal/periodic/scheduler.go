package periodic

import (
	"context"
	"log/slog"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Store is the part of the job store a Scheduler uses.
type Store interface {
	ListPeriodic(ctx context.Context) ([]*domain.PeriodicJob, error)
	EnqueuePeriodic(ctx context.Context, t store.PeriodicTick) (*domain.Job, error)
}

// Options configure a Scheduler.
type Options struct {
	// Refresh, when positive, is the longest the scheduler goes without
	// reading the definitions again: the bound on how late it learns of
	// changes made by other processes sharing the store. Zero: it reads
	// them at its ticks and when woken only (a store that no other
	// process changes).
	Refresh time.Duration
	// Timeout bounds each store call. Default 10 seconds.
	Timeout time.Duration
	// Logger reports failures and, at debug level, each job created.
	// Default: discard.
	Logger *slog.Logger
	// Metrics counts the jobs created and the ticks missed before a
	// catch-up; nil records nothing.
	Metrics *metrics.Metrics
}

// Scheduler creates the jobs of the periodic jobs' ticks. Every process
// sharing a store may run one: the store creates one job per tick, and
// the others find the tick taken.
//
// At each pass it reads the definitions and, for each one not paused,
// asks the store for the job of its latest tick due (after its last run,
// or after its last change, whichever is later): after an outage that is
// one job, however many ticks were missed, and the schedule goes on from
// there. Then it sleeps until the earliest next tick, Refresh, or Wake.
type Scheduler struct {
	store Store
	opts  Options
	wake  chan struct{}
	// parsed keeps the schedules of the last pass by their text, so
	// that a pass parses only the definitions that changed. Only Run's
	// goroutine uses it.
	parsed map[scheduleKey]parsedSchedule
}

// scheduleKey names a schedule by its text and time zone.
type scheduleKey struct{ schedule, timezone string }

// parsedSchedule is a schedule as Parse read it, error included (a
// stored schedule that does not parse is reported once, not at every
// pass).
type parsedSchedule struct {
	sched Schedule
	err   error
}

// New returns a scheduler over st.
func New(st Store, opts Options) *Scheduler {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{store: st, opts: opts, wake: make(chan struct{}, 1), parsed: make(map[scheduleKey]parsedSchedule)}
}

// Wake makes the scheduler read the definitions again at once: call it
// after changing one. It never blocks, and is safe for concurrent use.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Retry delays after a failing pass: from the first to the last, doubling.
const (
	firstRetry = time.Second
	lastRetry  = 30 * time.Second
)

// Run makes passes until ctx is done, and returns nil then. The first
// pass is at once, so that ticks missed while no process ran are caught
// up at start. A failing store is logged and tried again shortly, never
// returned. Run starts no goroutine.
func (s *Scheduler) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	retry := firstRetry
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
		next, err := s.pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil:
			// The failure is tried again soon, without holding back
			// the ticks of the other periodic jobs.
			s.opts.Logger.Error("periodic jobs: pass failed", "err", err, "retry_in", retry)
			wait, retry = retry, min(2*retry, lastRetry)
			if !next.IsZero() {
				wait = min(wait, max(time.Until(next), 0))
			}
		case next.IsZero():
			wait, retry = -1, firstRetry
		default:
			wait, retry = max(time.Until(next), 0), firstRetry
		}
		if r := s.opts.Refresh; r > 0 && (wait < 0 || wait > r) {
			wait = r
		}
		timer.Stop()
		if wait >= 0 {
			timer.Reset(wait)
		}
	}
}

// pass creates the jobs of the ticks due and returns the earliest next
// tick of the definitions not paused (zero for none). A failure to create
// one job is returned after the other definitions had their turn, and the
// next tick is then that of the others (the failed one is retried).
func (s *Scheduler) pass(ctx context.Context) (time.Time, error) {
	lctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defs, err := s.store.ListPeriodic(lctx)
	cancel()
	if err != nil {
		return time.Time{}, err
	}
	now := time.Now()
	var (
		next    time.Time
		failure error
	)
	parsed := make(map[scheduleKey]parsedSchedule, len(s.parsed))
	for _, p := range defs {
		if p.Paused {
			continue
		}
		key := scheduleKey{p.Schedule, p.Timezone}
		ps, known := s.parsed[key]
		if !known {
			ps.sched, ps.err = Parse(p.Schedule, p.Timezone)
			if ps.err != nil {
				s.opts.Logger.Warn("periodic jobs: a stored schedule does not parse", "name", p.Name, "err", ps.err)
			}
		}
		parsed[key] = ps
		if ps.err != nil {
			continue
		}
		sched := ps.sched
		base := Since(p)
		if tick, due := sched.Latest(base, now); due {
			if err := s.enqueue(ctx, p, tick, sched.Between(base, tick)); err != nil {
				failure = err
				continue
			}
			base = tick
		}
		if n := sched.Next(base); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	s.parsed = parsed // the schedules no definition uses any more are dropped
	return next, failure
}

// enqueue asks the store for the job of p's tick, the first after missed
// ticks that got none. The instance that creates the job counts them.
func (s *Scheduler) enqueue(ctx context.Context, p *domain.PeriodicJob, tick time.Time, missed int) error {
	ectx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	j, err := s.store.EnqueuePeriodic(ectx, store.PeriodicTick{Name: p.Name, Revision: p.Revision, At: tick, Job: p.Job.NewJob()})
	if err != nil {
		return err
	}
	if j != nil {
		s.opts.Logger.Debug("periodic job created", "name", p.Name, "tick", tick, "id", j.ID, "missed", missed)
		s.opts.Metrics.PeriodicJobCreated(p.Name, missed)
	}
	return nil
}

// Since returns the time after which p's ticks are due: its last run, or
// its last change when that is later (ticks before a definition changed,
// or was resumed, are not caught up).
func Since(p *domain.PeriodicJob) time.Time {
	if p.LastRunAt != nil && p.LastRunAt.After(p.UpdatedAt) {
		return *p.LastRunAt
	}
	return p.UpdatedAt
}
