package maintenance

import (
	"context"
	"log/slog"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// RescuerStore is the part of the job store the Rescuer needs.
type RescuerStore interface {
	RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error)
}

// Rescuer gives back, every Interval, the jobs whose lease expired: their
// worker died or lost touch with the store (store.Store.RescueExpired
// says what becomes of them). Every process sharing a store may run one;
// the store lets one at a time do the work.
type Rescuer struct {
	Store RescuerStore
	// Interval is the time between two passes; the server uses half the
	// lease duration, so a lost job waits at most one and a half leases.
	Interval time.Duration
	// Timeout bounds each store call, so that a hung connection cannot
	// hold the rescuer past its turn. Default 10 seconds.
	Timeout time.Duration
	// Logger gets a warning per rescued job. Default: discard.
	Logger *slog.Logger
}

// rescueBatch bounds one RescueExpired call.
const rescueBatch = 500

// Run passes every Interval until ctx is done and returns nil then. The
// first pass comes one Interval after the start: leases that expired
// while no process ran are given back then.
func (r *Rescuer) Run(ctx context.Context) error {
	timeout, log := r.Timeout, r.Logger
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ticker := time.NewTicker(r.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		rescue(ctx, r.Store, timeout, log)
	}
}

// rescue gives back every expired lease, in batches.
func rescue(ctx context.Context, st RescuerStore, timeout time.Duration, log *slog.Logger) {
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		jobs, err := st.RescueExpired(rctx, time.Now(), rescueBatch)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Error("rescue jobs with expired leases", "err", err)
			}
			return
		}
		for _, j := range jobs {
			log.Warn("rescued a job whose worker was lost", "id", j.ID, "type", j.Type, "attempt", j.Attempts, "status", j.Status)
		}
		if len(jobs) < rescueBatch {
			return
		}
	}
}
