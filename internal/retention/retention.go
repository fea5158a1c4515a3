// Package retention deletes finished jobs once they are older than the
// retention period, so that a long-running server's memory and storage stay
// bounded.
package retention

import (
	"context"
	"log/slog"
	"time"
)

// Store is the part of the job store the sweeper needs.
type Store interface {
	DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error)
}

// batch bounds one delete, so a large backlog is deleted in steps that
// each hold the store only briefly.
const batch = 1000

// Sweeper deletes jobs that finished more than Retention ago, every
// Interval. It is not safe to run twice at once on one store (it would only
// waste work).
type Sweeper struct {
	Store     Store
	Retention time.Duration
	Interval  time.Duration
	Logger    *slog.Logger
}

// Run sweeps until ctx is done; it returns then. The first sweep happens
// at once, so a restarted server catches up.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
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
		n, err := s.Store.DeleteFinished(ctx, before, batch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.Error("retention: delete finished jobs", "err", err)
			}
			return
		}
		if n < batch {
			break
		}
	}
	if total > 0 {
		s.Logger.Info("retention: deleted finished jobs", "count", total, "finished_before", before)
	}
}
