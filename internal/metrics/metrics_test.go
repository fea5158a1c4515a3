package metrics_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/metrics/metricstest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/store/postgres"
	"github.com/jobqueue/jobqueue/internal/store/sqlite"
)

type labels = metricstest.Labels

// Past MaxTypes distinct job types, the others are counted as _other.
func TestTypeLabelsAreCapped(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{MaxTypes: 2, Backend: "memory"})
	st := m.Store(memory.New(nil))
	for _, typ := range []string{"a", "b", "a", "c", "d", "b", "_other"} {
		if _, err := st.Create(context.Background(), domain.NewJob{Type: typ}); err != nil {
			t.Fatal(err)
		}
	}
	for typ, want := range map[string]float64{"a": 2, "b": 2, metrics.OtherType: 3} {
		if got := metricstest.Value(t, m.Registry(), "jobqueue_jobs_created_total", labels{"type": typ}); got != want {
			t.Errorf("jobs_created_total{type=%q} = %v, want %v", typ, got, want)
		}
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "type" && (l.GetValue() == "c" || l.GetValue() == "d") {
					t.Errorf("%s has a series for type %q past the cap", f.GetName(), l.GetValue())
				}
			}
		}
	}
}

// backends opens each store the server can run on (PostgreSQL when
// TEST_DATABASE_URL reaches one), on a schema or file of its own.
// onEveryBackend runs test in parallel on each backend, with metrics for
// that backend and its store wrapped by them.
func onEveryBackend(t *testing.T, test func(t *testing.T, name string, m *metrics.Metrics, st store.Store)) {
	t.Helper()
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := metrics.New(metrics.Options{Backend: name})
			test(t, name, m, m.Store(open(t)))
		})
	}
}

func backends(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"memory": func(t *testing.T) store.Store { return memory.New(nil) },
		"sqlite": func(t *testing.T) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		},
		"postgres": func(t *testing.T) store.Store {
			url := os.Getenv("TEST_DATABASE_URL")
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if url == "" || err != nil {
				if os.Getenv("JOBQUEUE_REQUIRE_POSTGRES") == "1" {
					t.Fatalf("PostgreSQL is required but unreachable at TEST_DATABASE_URL: %v", err)
				}
				t.Skipf("!!! SKIPPED: PostgreSQL unreachable at TEST_DATABASE_URL (%v)", err)
			}
			schema := "jobqueue_metrics_" + strings.ToLower(rand.Text()[:12])
			t.Cleanup(func() {
				_, _ = conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
				_ = conn.Close(ctx)
			})
			st, err := postgres.Open(ctx, url, postgres.Options{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(st.Close)
			return st
		},
	}
}

// Known actions on each backend, through the instrumented store, give
// known counts: creations (an idempotent repeat none), claims and waits,
// final statuses and end-to-end times, rescues, retention deletions,
// store errors, and the queue's gauges read at scrape.
func TestStoreMetricsOnEveryBackend(t *testing.T) {
	t.Parallel()
	onEveryBackend(t, func(t *testing.T, name string, m *metrics.Metrics, st store.Store) {
		m.WatchQueue(st, 5*time.Second)
		ctx := context.Background()
		reg := m.Registry()
		value := func(metric string, l labels) float64 { t.Helper(); return metricstest.Value(t, reg, metric, l) }
		expect := func(metric string, l labels, want float64) {
			t.Helper()
			if got := value(metric, l); got != want {
				t.Errorf("%s%v = %v, want %v", metric, l, got, want)
			}
		}
		create := func(nj domain.NewJob) *domain.Job {
			t.Helper()
			j, err := st.Create(ctx, nj)
			if err != nil {
				t.Fatal(err)
			}
			return j
		}
		for range 3 {
			create(domain.NewJob{Type: "a", MaxAttempts: 1})
		}
		create(domain.NewJob{Type: "b", MaxAttempts: 1})
		create(domain.NewJob{Type: "k", MaxAttempts: 1, IdempotencyKey: "once"})
		create(domain.NewJob{Type: "k", MaxAttempts: 1, IdempotencyKey: "once"})
		if _, err := st.CreateMany(ctx, []domain.NewJob{
			{Type: "c", MaxAttempts: 3},
			{Type: "c", MaxAttempts: 3, IdempotencyKey: "x"},
			{Type: "c", MaxAttempts: 3, IdempotencyKey: "x"},
		}); err != nil {
			t.Fatal(err)
		}
		later := create(domain.NewJob{Type: "later", RunAt: time.Now().Add(time.Hour)})
		for typ, want := range map[string]float64{"a": 3, "b": 1, "k": 1, "c": 2, "later": 1} {
			expect("jobqueue_jobs_created_total", labels{"type": typ}, want)
		}
		expect("jobqueue_jobs", labels{"status": "pending"}, 8)

		now := time.Now()
		claimed, err := st.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 100, Now: now, LeaseUntil: now.Add(time.Minute)})
		if err != nil || len(claimed) != 7 {
			t.Fatalf("claim = %d jobs, %v; want 7", len(claimed), err)
		}
		if n, sum := metricstest.Histogram(t, reg, "jobqueue_claim_jobs", nil); n != 1 || sum != 7 {
			t.Errorf("claim_jobs: %d claims of %v jobs, want 1 of 7", n, sum)
		}
		if n, _ := metricstest.Histogram(t, reg, "jobqueue_job_wait_seconds", labels{"type": "a"}); n != 3 {
			t.Errorf("job_wait_seconds{type=a}: %d observations, want 3", n)
		}
		byType := map[string][]*domain.Job{}
		for _, j := range claimed {
			byType[j.Type] = append(byType[j.Type], j)
		}
		for _, j := range byType["a"] {
			if _, err := st.Complete(ctx, store.LeaseOf(j, "o"), nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Fail(ctx, store.LeaseOf(byType["b"][0], "o"), "no", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Finish(ctx, store.LeaseOf(byType["k"][0], "o"), domain.StatusCancelled, ""); err != nil {
			t.Fatal(err)
		}
		c1, c2 := byType["c"][0], byType["c"][1]
		if _, err := st.Fail(ctx, store.LeaseOf(c1, "o"), "again", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Release(ctx, store.LeaseOf(c2, "o")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Cancel(ctx, later.ID); err != nil {
			t.Fatal(err)
		}
		// A write under a lease that no longer stands is an error.
		if _, err := st.Complete(ctx, store.LeaseOf(c2, "o"), nil); !errors.Is(err, domain.ErrLeaseLost) {
			t.Fatalf("complete of a released job: %v, want a lost lease", err)
		}
		for k, want := range map[[2]string]float64{
			{"a", "completed"}: 3, {"b", "failed"}: 1, {"k", "cancelled"}: 1, {"later", "cancelled"}: 1,
		} {
			expect("jobqueue_jobs_finished_total", labels{"type": k[0], "status": k[1]}, want)
		}
		// c's jobs never finished: its series are made when used.
		if n := metricstest.Series(t, reg, "jobqueue_jobs_finished_total", labels{"type": "c"}); n != 0 {
			t.Errorf("jobs_finished_total{type=c}: %d series, want none", n)
		}
		if n, _ := metricstest.Histogram(t, reg, "jobqueue_job_end_to_end_seconds", labels{"type": "a"}); n != 3 {
			t.Errorf("job_end_to_end_seconds{type=a}: %d observations, want 3", n)
		}
		expect("jobqueue_store_errors_total", labels{"backend": name, "operation": "complete"}, 1)
		expect("jobqueue_store_errors_total", labels{"backend": name, "operation": "create"}, 0)
		if n, _ := metricstest.Histogram(t, reg, "jobqueue_store_call_duration_seconds", labels{"backend": name, "operation": "create"}); n != 7 {
			t.Errorf("store_call_duration_seconds{operation=create}: %d calls, want 7", n)
		}
		// c2 is pending and due; c1 waits for its retry.
		for status, want := range map[string]float64{"pending": 2, "processing": 0, "completed": 3, "failed": 1, "cancelled": 2} {
			expect("jobqueue_jobs", labels{"status": status}, want)
		}
		if age := value("jobqueue_oldest_runnable_job_age_seconds", nil); age <= 0 || age > 60 {
			t.Errorf("oldest_runnable_job_age_seconds = %v, want the age of the released job", age)
		}

		// A lease that expired is rescued.
		now = time.Now()
		if _, err := st.Claim(ctx, store.ClaimRequest{Owner: "o", Limit: 1, Now: now, LeaseUntil: now.Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.RescueExpired(ctx, time.Now(), 10); err != nil {
			t.Fatal(err)
		}
		expect("jobqueue_jobs_rescued_total", nil, 1)

		if _, err := st.DeleteFinished(ctx, time.Now().Add(time.Hour), 100); err != nil {
			t.Fatal(err)
		}
		expect("jobqueue_jobs_deleted_total", nil, 6)
		expect("jobqueue_build_info", labels{"backend": name}, 1)
	})
}
