package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/jobwatch"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
	failing := job(`{"durationMs": 0, "failTimes": 2}`)
	for attempt, wantErr := range []bool{true, true, false} {
		failing.Attempts = attempt + 1
		if err := h.Handle(ctx, failing); (err != nil) != wantErr {
			t.Fatalf("failTimes 2, attempt %d: err = %v, want failure %v", attempt+1, err, wantErr)
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

func TestProgressAndResultThroughAPool(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var progress []int
	jobs := jobwatch.New()
	inbox := worker.NewInbox()
	st := memory.New(store.Publishers{inbox, store.PublisherFunc(func(j *domain.Job) {
		if j.Status == domain.StatusProcessing && j.Progress != nil {
			mu.Lock()
			progress = append(progress, *j.Progress)
			mu.Unlock()
		}
	}), jobs})
	pool := worker.New(st, inbox, worker.Options{Default: Handler{}, ProgressInterval: time.Nanosecond})
	runtest.Start(t, pool)
	created, err := st.Create(context.Background(), domain.NewJob{Type: "t", Payload: json.RawMessage(`{"durationMs": 20, "progress": true}`)})
	if err != nil {
		t.Fatal(err)
	}
	j := jobs.WaitFinal(t, created.ID)[0]
	if j.Status != domain.StatusCompleted || string(j.Result) != `{"durationMs":20,"simulated":true}` {
		t.Fatalf("job = %s result %s", j.Status, j.Result)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(progress) != 10 || progress[0] != 10 || progress[9] != 100 {
		t.Fatalf("progress reports %v, want 10, 20, … 100", progress)
	}
}
