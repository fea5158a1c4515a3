package jobs_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/jobs"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/store/postgres"
	"github.com/jobqueue/jobqueue/internal/store/sqlite"
)

// benchBackends opens each store the server runs on, publishing to pub,
// on a file or schema of its own that is dropped when b ends. PostgreSQL
// is skipped when TEST_DATABASE_URL reaches none.
func benchBackends() map[string]func(b *testing.B, pub store.Publisher) store.Store {
	return map[string]func(b *testing.B, pub store.Publisher) store.Store{
		"memory": func(b *testing.B, pub store.Publisher) store.Store { return memory.New(pub) },
		"sqlite": func(b *testing.B, pub store.Publisher) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "jobs.db"), sqlite.Options{Publisher: pub})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			return st
		},
		"postgres": func(b *testing.B, pub store.Publisher) store.Store {
			url := os.Getenv("TEST_DATABASE_URL")
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if url == "" || err != nil {
				b.Skipf("PostgreSQL unreachable at TEST_DATABASE_URL (%v)", err)
			}
			schema := "jobqueue_bulk_" + strings.ToLower(rand.Text()[:12])
			b.Cleanup(func() {
				_, _ = conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
				_ = conn.Close(ctx)
			})
			st, err := postgres.Open(ctx, url, postgres.Options{Publisher: pub, Schema: schema})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(st.Close)
			return st
		},
	}
}

// BenchmarkCancelMany cancels 10,000 pending jobs with one CancelMany
// (the cancelJobs mutation at its largest limit) on each backend, the
// store publishing to a broker as the server's does. Each op creates the
// jobs (not timed) and cancels them all; jobs/s is the figure.
//
//	TEST_DATABASE_URL=... go test -run '^$' -bench CancelMany -benchtime 3x ./internal/jobs
func BenchmarkCancelMany(b *testing.B) {
	const n = jobs.MaxBulkLimit
	for _, name := range []string{"memory", "sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			events := brokertest.New(b, broker.Options{})
			st := benchBackends()[name](b, events)
			svc := jobs.New(st, events, jobs.Options{})
			ctx := context.Background()
			njs := make([]domain.NewJob, 1000)
			for i := range njs {
				njs[i] = domain.NewJob{Type: "bench", Payload: []byte(`{"n":1}`), MaxAttempts: 1}
			}
			var cancelled int
			for b.Loop() {
				b.StopTimer()
				for range n / len(njs) {
					if _, err := st.CreateMany(ctx, njs); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				res, err := svc.CancelMany(ctx, jobs.BulkRequest{Limit: ptr(n)})
				if err != nil || res.Count != n || res.More {
					b.Fatalf("cancel many: %+v, %v; want %d and no more", res, err, n)
				}
				cancelled += res.Count
			}
			b.ReportMetric(float64(cancelled)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
