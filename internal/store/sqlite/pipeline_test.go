//go:build pipeline

package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/sqlite"
	"github.com/jobqueue/jobqueue/internal/worker"
)

// BenchmarkPipeline burns down b.N no-op jobs through a worker pool: the
// backlog exists before the timer starts (backlog) or is created while
// the pool runs (live). It needs the pipeline build tag (it depends on
// internal/worker, which the store's own tests should not):
//
//	go test -tags pipeline -run '^$' -bench Pipeline -benchtime 20000x ./internal/store/sqlite
func BenchmarkPipeline(b *testing.B) {
	for _, mode := range []string{"backlog", "live"} {
		for _, workers := range []int{8, 32} {
			b.Run(fmt.Sprintf("%s/workers=%d", mode, workers), func(b *testing.B) {
				var completed atomic.Int64
				done := make(chan struct{})
				target := int64(b.N)
				inbox := worker.NewInbox()
				pub := store.Publishers{inbox, store.PublisherFunc(func(j *domain.Job) {
					if j.Status == domain.StatusCompleted && completed.Add(1) == target {
						close(done)
					}
				})}
				s := open(b, filepath.Join(b.TempDir(), "jobs.db"), sqlite.Options{Publisher: pub})
				if mode == "backlog" {
					fill(b, s, b.N)
				}
				p := worker.New(s, inbox, worker.Options{Workers: workers, Default: worker.HandlerFunc(func(context.Context, *domain.Job) error { return nil })})
				b.ResetTimer()
				stop := runtest.Start(b, p)
				if mode == "live" {
					fill(b, s, b.N)
				}
				<-done
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
				if err := stop(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
