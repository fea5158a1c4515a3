package maintenance

import (
	"context"
	"log/slog"
	"time"
)

// SweeperStore is the part of the job store the Sweeper needs.
type SweeperStore interface {
	DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error)
}

// sweepBatch bounds one delete, so a large backlog is deleted in steps
// that each hold the store only briefly.
const sweepBatch = 1000

// Sweeper deletes jobs that finished more than Retention ago, every
// Interval, so that a long-running server's memory and storage stay
// bounded. Running two at once on one store is safe but wastes work.
type Sweeper struct {
	Store     SweeperStore
	Retention time.Duration
	Interval  time.Duration
	Logger    *slog.Logger
}

// Run sweeps until ctx is done and returns nil then. The first sweep
// happens at once, so a restarted server catches up.
func (s *Sweeper) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.sweep(ctx)
		t.Reset(s.Interval)
	}
}

func (s *Sweeper) sweep(ctx context.Context) {
	before := time.Now().Add(-s.Retention)
	total := 0
	for {
		n, err := s.Store.DeleteFinished(ctx, before, sweepBatch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.Error("retention: delete finished jobs", "err", err)
			}
			return
		}
		if n < sweepBatch {
			break
		}
	}
	if total > 0 {
		s.Logger.Info("retention: deleted finished jobs", "count", total, "finished_before", before)
	}
}
