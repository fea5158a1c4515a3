package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// newCountingBatcher returns a batcher whose statement answers every call
// with a job named after its argument, counting batches and the largest.
func newCountingBatcher(ctx context.Context, executors int, linger time.Duration) (*batcher[string], *atomic.Int64, *atomic.Int64) {
	var batches, largest atomic.Int64
	b := newBatcher(ctx, 50, executors, linger, func(batch []*call[string]) error {
		batches.Add(1)
		for n := int64(len(batch)); ; {
			old := largest.Load()
			if n <= old || largest.CompareAndSwap(old, n) {
				break
			}
		}
		for _, c := range batch {
			c.answer(&domain.Job{ID: c.arg}, nil)
		}
		return nil
	})
	return b, &batches, &largest
}

// waitIdle fails the test unless every executor of b returns by itself
// once nothing is queued: an idle batcher holds no goroutine.
func waitIdle(t *testing.T, b *batcher[string]) {
	t.Helper()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("executors still running with nothing queued")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running != 0 {
		t.Fatalf("running = %d after the executors returned", b.running)
	}
}

// Calls made one after the other each start an executor that returns
// after answering; none is stranded between an executor leaving and the
// next call arriving (a stranded call would hang until its deadline).
func TestBatcherSequentialCallsNeverStranded(t *testing.T) {
	b, batches, _ := newCountingBatcher(context.Background(), 2, 0)
	for i := range 2000 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		j, err := b.do(ctx, "job")
		cancel()
		if err != nil || j.ID != "job" {
			t.Fatalf("call %d: %v, %v", i, j, err)
		}
	}
	waitIdle(t, b)
	if n := batches.Load(); n != 2000 {
		t.Fatalf("%d statements for 2000 lone calls, want one each", n)
	}
}

// Concurrent calls are gathered into fewer statements by at most the
// configured number of executors, and every caller gets its own answer.
func TestBatcherCoalescesConcurrentCalls(t *testing.T) {
	const callers, perCaller = 64, 50
	b, batches, largest := newCountingBatcher(context.Background(), 2, time.Millisecond)
	var wg sync.WaitGroup
	var peak atomic.Int64
	for i := range callers {
		wg.Go(func() {
			for k := range perCaller {
				arg := string(rune('A'+i%26)) + string(rune('a'+k%26))
				j, err := b.do(context.Background(), arg)
				if err != nil || j.ID != arg {
					t.Errorf("caller %d: got %v, %v for %q", i, j, err, arg)
					return
				}
				b.mu.Lock()
				if r := int64(b.running); r > peak.Load() {
					peak.Store(r)
				}
				b.mu.Unlock()
			}
		})
	}
	wg.Wait()
	waitIdle(t, b)
	if p := peak.Load(); p > 2 {
		t.Fatalf("%d executors ran at once, want at most 2", p)
	}
	if n := batches.Load(); n >= callers*perCaller || largest.Load() < 2 {
		t.Fatalf("%d statements for %d calls, largest batch %d: nothing was coalesced", n, callers*perCaller, largest.Load())
	}
}

// After close, queued and new calls are answered with errClosed.
func TestBatcherClosed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b, _, _ := newCountingBatcher(ctx, 1, 0)
	cancel()
	b.close()
	if _, err := b.do(context.Background(), "late"); err != errClosed {
		t.Fatalf("call after close: %v, want errClosed", err)
	}
	waitIdle(t, b)
}
