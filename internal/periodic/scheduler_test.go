package periodic_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/logtest"
	"github.com/jobqueue/jobqueue/internal/metrics"
	"github.com/jobqueue/jobqueue/internal/metrics/metricstest"
	"github.com/jobqueue/jobqueue/internal/periodic"
	"github.com/jobqueue/jobqueue/internal/runtest"
	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// define stores a periodic job named name of type "report".
func define(t *testing.T, st store.Store, name, schedule, timezone string, paused bool) *domain.PeriodicJob {
	t.Helper()
	p, err := st.PutPeriodic(context.Background(), domain.PeriodicJob{
		Name: name, Schedule: schedule, Timezone: timezone, Paused: paused, Source: domain.PeriodicFromAPI,
		Job: domain.JobTemplate{Type: "report", MaxAttempts: 1, Tags: []string{domain.PeriodicTag(name)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// created returns the jobs of the periodic job name, oldest first.
func created(t *testing.T, st store.Store, name string) []*domain.Job {
	t.Helper()
	page, err := st.List(context.Background(), store.ListQuery{Tag: domain.PeriodicTag(name), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(page.Jobs)
	return page.Jobs
}

// lastRun returns the last tick of the periodic job name.
func lastRun(t *testing.T, st store.Store, name string) time.Time {
	t.Helper()
	defs, err := st.ListPeriodic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range defs {
		if p.Name == name && p.LastRunAt != nil {
			return *p.LastRunAt
		}
	}
	return time.Time{}
}

// Synctest's clock starts at midnight UTC, 1 January 2000.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// The scheduler creates one job at each tick, at the tick's time, with
// the template and the periodic job's tag.
func TestSchedulerCreatesAJobAtEachTick(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		define(t, st, "hourly", "@hourly", "UTC", false)
		runtest.Start(t, periodic.New(st, periodic.Options{}))
		time.Sleep(time.Hour - time.Second)
		synctest.Wait()
		if jobs := created(t, st, "hourly"); len(jobs) != 0 {
			t.Fatalf("%d jobs before the first tick", len(jobs))
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		jobs := created(t, st, "hourly")
		if len(jobs) != 3 {
			t.Fatalf("%d jobs after 3 ticks; want 3", len(jobs))
		}
		for i, j := range jobs {
			if want := epoch.Add(time.Duration(i+1) * time.Hour); !j.CreatedAt.Equal(want) || j.Type != "report" {
				t.Fatalf("job %d: %s created at %v; want a report at %v", i, j.Type, j.CreatedAt, want)
			}
		}
		if got := lastRun(t, st, "hourly"); !got.Equal(epoch.Add(3 * time.Hour)) {
			t.Fatalf("last run = %v; want 03:00", got)
		}
	})
}

// After an outage the first scheduler to run creates one job, for the
// last tick missed, and the schedule goes on from there.
func TestSchedulerCatchesUpOnceAfterAnOutage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		define(t, st, "hourly", "0 * * * *", "UTC", false)
		stop := runtest.Start(t, periodic.New(st, periodic.Options{}))
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(created(t, st, "hourly")); n != 1 {
			t.Fatalf("%d jobs after one tick; want 1", n)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5*time.Hour + 30*time.Minute) // ticks 02:00 to 06:00 missed
		runtest.Start(t, periodic.New(st, periodic.Options{}))
		synctest.Wait()
		jobs := created(t, st, "hourly")
		if len(jobs) != 2 || !jobs[1].CreatedAt.Equal(epoch.Add(6*time.Hour+30*time.Minute)) {
			t.Fatalf("after 5 missed ticks: %d jobs; want 2 (one caught up at once)", len(jobs))
		}
		if got := lastRun(t, st, "hourly"); !got.Equal(epoch.Add(6 * time.Hour)) {
			t.Fatalf("last run = %v; want the last tick missed, 06:00", got)
		}
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		if n := len(created(t, st, "hourly")); n != 3 {
			t.Fatalf("%d jobs at 07:00; want 3 (the schedule goes on)", n)
		}
	})
}

// The scheduler counts the jobs it creates by periodic job, and the ticks
// an outage skipped before the one it catches up on.
func TestSchedulerCountsJobsCreatedAndTicksMissed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		m := metrics.New(metrics.Options{})
		define(t, st, "hourly", "0 * * * *", "UTC", false)
		value := func(name string, l metricstest.Labels) float64 {
			t.Helper()
			return metricstest.Value(t, m.Registry(), name, l)
		}
		stop := runtest.Start(t, periodic.New(st, periodic.Options{Metrics: m}))
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if got := value("jobqueue_periodic_jobs_created_total", metricstest.Labels{"periodic": "hourly"}); got != 2 {
			t.Fatalf("periodic_jobs_created_total = %v after 2 ticks; want 2", got)
		}
		if got := value("jobqueue_periodic_ticks_missed_total", nil); got != 0 {
			t.Fatalf("periodic_ticks_missed_total = %v without an outage; want 0", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5*time.Hour + 30*time.Minute) // ticks 03:00 to 07:00 missed
		runtest.Start(t, periodic.New(st, periodic.Options{Metrics: m}))
		synctest.Wait()
		if got := value("jobqueue_periodic_jobs_created_total", metricstest.Labels{"periodic": "hourly"}); got != 3 {
			t.Fatalf("periodic_jobs_created_total = %v after the catch-up; want 3", got)
		}
		if got := value("jobqueue_periodic_ticks_missed_total", nil); got != 4 {
			t.Fatalf("periodic_ticks_missed_total = %v; want 4 (03:00 to 06:00; 07:00 caught up)", got)
		}
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		if got := value("jobqueue_periodic_jobs_created_total", metricstest.Labels{"periodic": "hourly"}); got != 4 {
			t.Fatalf("periodic_jobs_created_total = %v at 08:00; want 4", got)
		}
		if got := value("jobqueue_periodic_ticks_missed_total", nil); got != 4 {
			t.Fatalf("periodic_ticks_missed_total = %v at 08:00; want still 4", got)
		}
	})
}

// A paused periodic job creates nothing; resumed, it goes on from its
// next tick, without catching up on the ticks it was paused for.
func TestSchedulerSkipsPausedJobs(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		define(t, st, "minutely", "* * * * *", "UTC", true)
		s := periodic.New(st, periodic.Options{})
		runtest.Start(t, s)
		time.Sleep(10*time.Minute + 30*time.Second)
		synctest.Wait()
		if n := len(created(t, st, "minutely")); n != 0 {
			t.Fatalf("a paused periodic job created %d jobs", n)
		}
		define(t, st, "minutely", "* * * * *", "UTC", false)
		s.Wake()
		synctest.Wait()
		if n := len(created(t, st, "minutely")); n != 0 {
			t.Fatalf("resuming created %d jobs at once; want none (paused ticks are not caught up)", n)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := len(created(t, st, "minutely")); n != 1 {
			t.Fatalf("%d jobs at the first tick after resuming; want 1", n)
		}
	})
}

// A schedule ticks at its times in its own time zone.
func TestSchedulerFollowsTheTimezone(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		define(t, st, "morning", "0 9 * * *", "America/New_York", false) // 09:00 EST is 14:00 UTC
		runtest.Start(t, periodic.New(st, periodic.Options{}))
		time.Sleep(14*time.Hour - time.Second)
		synctest.Wait()
		if n := len(created(t, st, "morning")); n != 0 {
			t.Fatalf("%d jobs before 09:00 in New York", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := lastRun(t, st, "morning"); !got.Equal(epoch.Add(14 * time.Hour)) {
			t.Fatalf("last run = %v; want 14:00 UTC", got)
		}
	})
}

// Without Refresh, an idle scheduler sleeps until woken, and a definition
// stored meanwhile ticks once it is.
func TestSchedulerWakesOnChanges(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		s := periodic.New(st, periodic.Options{})
		runtest.Start(t, s)
		time.Sleep(time.Hour)
		define(t, st, "soon", "@every 10s", "UTC", false)
		s.Wake()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := len(created(t, st, "soon")); n != 1 {
			t.Fatalf("%d jobs 10 s after the definition; want 1", n)
		}
	})
}

// Schedulers sharing a store create one job per tick between them.
func TestSchedulersShareTicks(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		define(t, st, "fast", "@every 1s", "UTC", false)
		for range 3 {
			runtest.Start(t, periodic.New(st, periodic.Options{}))
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		jobs := created(t, st, "fast")
		if len(jobs) != 10 {
			t.Fatalf("3 schedulers made %d jobs in 10 ticks; want 10", len(jobs))
		}
	})
}

// failingStore fails every tick of the periodic job named broken.
type failingStore struct{ *memory.Store }

func (f failingStore) EnqueuePeriodic(ctx context.Context, t store.PeriodicTick) (*domain.Job, error) {
	if t.Name == "broken" {
		return nil, errors.New("refused")
	}
	return f.Store.EnqueuePeriodic(ctx, t)
}

// A periodic job whose ticks keep failing is tried again, backing off,
// and holds back no other periodic job's ticks.
func TestSchedulerFailureHoldsBackNoOtherTick(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		define(t, st, "broken", "@every 1s", "UTC", false)
		define(t, st, "fine", "@every 1s", "UTC", false)
		runtest.Start(t, periodic.New(failingStore{st}, periodic.Options{}))
		time.Sleep(90 * time.Second)
		synctest.Wait()
		if n := len(created(t, st, "fine")); n != 90 {
			t.Fatalf("%d jobs of a 1 s schedule in 90 s beside a failing one; want 90", n)
		}
	})
}

// A pass parses only the schedules that changed since the last: a stored
// schedule that does not parse is reported once, not at every pass, and
// reported again once it changed.
func TestSchedulerParsesEachScheduleOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := memory.New(nil)
		define(t, st, "broken", "every now and then", "UTC", false)
		define(t, st, "often", "@every 1s", "UTC", false)
		log, logs := logtest.Logger()
		runtest.Start(t, periodic.New(st, periodic.Options{Logger: log}))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := len(created(t, st, "often")); n < 10 {
			t.Fatalf("%d jobs of an @every 1s schedule in 10 s; want a pass at each tick", n)
		}
		const warning = "periodic jobs: a stored schedule does not parse"
		if n := logs.Count(warning); n != 1 {
			t.Fatalf("the broken schedule was reported %d times over 10 passes; want once", n)
		}
		define(t, st, "broken", "still not cron", "UTC", false)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := logs.Count(warning); n != 2 {
			t.Fatalf("the changed broken schedule: %d reports in all; want 2", n)
		}
	})
}
