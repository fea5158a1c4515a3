// Package simulate provides the handler that serves every job type when no
// real handlers are configured, so anyone can watch jobs succeed and fail
// from the playground.
package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/worker"
)

// MaxDuration caps payload.durationMs so that a typo cannot park a worker
// for days.
const MaxDuration = time.Hour

// ErrSimulatedFailure is what a job with "fail": true fails with.
var ErrSimulatedFailure = errors.New("simulated failure (payload.fail is true)")

// Handler pretends to work for Duration, then succeeds. A job's JSON
// object payload can change that:
//
//	{"durationMs": 250}  work for 250 ms instead (0 to MaxDuration)
//	{"fail": true}       fail with ErrSimulatedFailure after working
//	{"progress": true}   report progress 10, 20, … 100 while working
//	{"failTimes": 2}     fail the first 2 attempts, then succeed
//
// On success the job's result is {"simulated": true, "durationMs": N}.
//
// Other payloads and other fields are ignored. Handler is safe for
// concurrent use and returns ctx's error as soon as ctx is done.
type Handler struct {
	Duration time.Duration
}

type knobs struct {
	DurationMs *float64 `json:"durationMs"`
	Fail       bool     `json:"fail"`
	Progress   bool     `json:"progress"`
	FailTimes  int      `json:"failTimes"`
}

// Handle runs the simulated work for one job.
func (h Handler) Handle(ctx context.Context, job *domain.Job) error {
	d := h.Duration
	var k knobs
	if p := bytes.TrimSpace(job.Payload); len(p) > 0 && p[0] == '{' {
		if err := json.Unmarshal(p, &k); err != nil {
			return fmt.Errorf("simulated handler: payload knobs: durationMs must be a number and fail a boolean: %w", err)
		}
	}
	if k.DurationMs != nil {
		ms := *k.DurationMs
		if ms < 0 || ms > float64(MaxDuration/time.Millisecond) {
			return fmt.Errorf("simulated handler: payload.durationMs must be between 0 and %d, got %v", MaxDuration/time.Millisecond, ms)
		}
		d = time.Duration(ms * float64(time.Millisecond))
	}
	steps := 1
	if k.Progress {
		steps = 10
	}
	for i := 1; i <= steps; i++ {
		if err := wait(ctx, d/time.Duration(steps)); err != nil {
			return err
		}
		if k.Progress {
			if err := report(worker.ReportProgress(ctx, i*100/steps)); err != nil {
				return err
			}
		}
	}
	if k.Fail {
		return ErrSimulatedFailure
	}
	if k.FailTimes > 0 && job.Attempts <= k.FailTimes {
		return fmt.Errorf("simulated failure of attempt %d (payload.failTimes is %d)", job.Attempts, k.FailTimes)
	}
	result, _ := json.Marshal(map[string]any{"simulated": true, "durationMs": d.Milliseconds()})
	return report(worker.SetResult(ctx, result))
}

// report ignores worker.ErrNotInHandler, so that the handler also runs
// outside a worker pool (tests call it directly).
func report(err error) error {
	if errors.Is(err, worker.ErrNotInHandler) {
		return nil
	}
	return err
}

// wait sleeps for d, or returns ctx's error once it is done.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
