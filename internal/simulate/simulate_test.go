package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

func job(payload string) *domain.Job {
	j := &domain.Job{ID: "1", Type: "t"}
	if payload != "" {
		j.Payload = json.RawMessage(payload)
	}
	return j
}

func TestKnobs(t *testing.T) {
	t.Parallel()
	h := Handler{Duration: time.Hour} // any test that waits for it fails by timeout
	ctx := context.Background()
	if err := h.Handle(ctx, job(`{"durationMs": 0}`)); err != nil {
		t.Fatalf("durationMs 0: %v", err)
	}
	if err := h.Handle(ctx, job(`{"durationMs": 0, "fail": true}`)); !errors.Is(err, ErrSimulatedFailure) {
		t.Fatalf("fail: err = %v, want ErrSimulatedFailure", err)
	}
	for _, bad := range []string{`{"durationMs": -1}`, `{"durationMs": "soon"}`, `{"durationMs": 1e12}`, `{"fail": "yes"}`} {
		if err := h.Handle(ctx, job(bad)); err == nil || !strings.Contains(err.Error(), "simulated handler") {
			t.Fatalf("payload %s: err = %v, want a knob error", bad, err)
		}
	}
	start := time.Now()
	if err := (Handler{}).Handle(ctx, job(`{"durationMs": 30}`)); err != nil || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("durationMs 30 returned %v after %v", err, time.Since(start))
	}
	if err := (Handler{}).Handle(ctx, job(`[1,2]`)); err != nil {
		t.Fatalf("non-object payload: %v, want it ignored", err)
	}
}

func TestCancelStopsWork(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Handler{Duration: time.Hour}).Handle(ctx, job("")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
