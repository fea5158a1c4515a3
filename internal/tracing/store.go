package tracing

import (
	"context"
	"encoding/json"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Store returns st with a client span around each call, named
// "store.Create", "store.Claim" and so on, with the backend's name and the
// job's id as attributes. The periodic calls of the workers and
// maintenance and scheduler that change no job by themselves (Heartbeat,
// NextRunAt, OldestRunnable, RescueExpired, DeleteFinished, ListPeriodic,
// Stats, TypeStats) get a span only inside a trace; the others start one of
// their own when their context has none (a worker's outcomes), linked to
// the creation of the jobs they return. A Claim outside any trace gets a
// span of its own only when it claimed jobs: the empty claims of idle
// polling make no traces.
// It forwards st's Tuning. Off, it returns st.
func (t *Tracing) Store(st store.Store, backend string) store.Store {
	if !t.Enabled() {
		return st
	}
	return &tracedStore{inner: st, tracer: t.tracer, backend: attribute.String("jobqueue.store", backend)}
}

type tracedStore struct {
	inner   store.Store
	tracer  trace.Tracer
	backend attribute.KeyValue
}

var _ store.Store = (*tracedStore)(nil)

// Tuning forwards the backend's.
func (s *tracedStore) Tuning() store.Tuning { return store.TuningOf(s.inner) }

var jobIDKey = attribute.Key("jobqueue.job.id")

// call runs f under a span of op; rootless says whether a call outside any
// trace gets a span. jobs returns the jobs of f's result.
func call[T any](ctx context.Context, s *tracedStore, op string, rootless bool, attrs []attribute.KeyValue, f func(context.Context) (T, error), jobs func(T) []*domain.Job) (T, error) {
	parent := trace.SpanContextFromContext(ctx).IsValid()
	if !parent && !rootless {
		return f(ctx)
	}
	ctx, span := s.tracer.Start(ctx, "store."+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(append(attrs, s.backend)...))
	defer span.End()
	v, err := f(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return v, err
	}
	if !parent && jobs != nil {
		for _, j := range jobs(v) {
			if l, ok := linkTo(j.TraceParent, jobIDKey.String(j.ID)); ok {
				span.AddLink(l)
			}
		}
	}
	return v, err
}

func one(j *domain.Job) []*domain.Job {
	if j == nil {
		return nil
	}
	return []*domain.Job{j}
}

func same(js []*domain.Job) []*domain.Job { return js }

func leaseAttrs(l store.Lease) []attribute.KeyValue {
	return []attribute.KeyValue{jobIDKey.String(l.JobID), attribute.Int("jobqueue.job.attempt", l.Attempt)}
}

func idAttrs(id string) []attribute.KeyValue { return []attribute.KeyValue{jobIDKey.String(id)} }

func (s *tracedStore) Create(ctx context.Context, nj domain.NewJob) (*domain.Job, error) {
	return call(ctx, s, "Create", true, []attribute.KeyValue{attribute.String("jobqueue.job.type", nj.Type)}, func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Create(ctx, nj)
	}, nil)
}

func (s *tracedStore) CreateMany(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error) {
	return call(ctx, s, "CreateMany", true, []attribute.KeyValue{attribute.Int("jobqueue.jobs", len(njs))}, func(ctx context.Context) ([]*domain.Job, error) {
		return s.inner.CreateMany(ctx, njs)
	}, nil)
}

func (s *tracedStore) Get(ctx context.Context, id string) (*domain.Job, error) {
	return call(ctx, s, "Get", true, idAttrs(id), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Get(ctx, id)
	}, nil)
}

func (s *tracedStore) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	return call(ctx, s, "List", true, nil, func(ctx context.Context) (store.ListPage, error) {
		return s.inner.List(ctx, q)
	}, nil)
}

func (s *tracedStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	attrs := []attribute.KeyValue{attribute.Int("jobqueue.claim.limit", req.Limit)}
	claim := func(ctx context.Context) ([]*domain.Job, error) { return s.inner.Claim(ctx, req) }
	if trace.SpanContextFromContext(ctx).IsValid() {
		return call(ctx, s, "Claim", false, attrs, claim, same)
	}
	// Outside any trace, the span is made afterwards, and only when jobs
	// were claimed, with the time the claim started.
	start := time.Now()
	js, err := claim(ctx)
	if err != nil || len(js) == 0 {
		return js, err
	}
	links := make([]trace.Link, 0, len(js))
	for _, j := range js {
		if l, ok := linkTo(j.TraceParent, jobIDKey.String(j.ID)); ok {
			links = append(links, l)
		}
	}
	_, span := s.tracer.Start(ctx, "store.Claim", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
		trace.WithAttributes(append(attrs, s.backend, attribute.Int("jobqueue.claim.jobs", len(js)))...), trace.WithLinks(links...))
	span.End()
	return js, nil
}

func (s *tracedStore) NextRunAt(ctx context.Context, now time.Time) (time.Time, error) {
	return call(ctx, s, "NextRunAt", false, nil, func(ctx context.Context) (time.Time, error) {
		return s.inner.NextRunAt(ctx, now)
	}, nil)
}

func (s *tracedStore) OldestRunnable(ctx context.Context, now time.Time) (time.Time, error) {
	return call(ctx, s, "OldestRunnable", false, nil, func(ctx context.Context) (time.Time, error) {
		return s.inner.OldestRunnable(ctx, now)
	}, nil)
}

func (s *tracedStore) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	return call(ctx, s, "Heartbeat", false, nil, func(ctx context.Context) (int, error) {
		return s.inner.Heartbeat(ctx, owner, ids, until)
	}, nil)
}

func (s *tracedStore) RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error) {
	return call(ctx, s, "RescueExpired", false, nil, func(ctx context.Context) ([]*domain.Job, error) {
		return s.inner.RescueExpired(ctx, now, limit)
	}, same)
}

func (s *tracedStore) Finish(ctx context.Context, l store.Lease, status domain.Status, errMsg string) (*domain.Job, error) {
	return call(ctx, s, "Finish", true, leaseAttrs(l), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Finish(ctx, l, status, errMsg)
	}, one)
}

func (s *tracedStore) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	return call(ctx, s, "Complete", true, leaseAttrs(l), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Complete(ctx, l, result)
	}, one)
}

func (s *tracedStore) Progress(ctx context.Context, l store.Lease, percent int) (*domain.Job, error) {
	return call(ctx, s, "Progress", true, leaseAttrs(l), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Progress(ctx, l, percent)
	}, one)
}

func (s *tracedStore) Release(ctx context.Context, l store.Lease) (*domain.Job, error) {
	return call(ctx, s, "Release", true, leaseAttrs(l), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Release(ctx, l)
	}, one)
}

func (s *tracedStore) Fail(ctx context.Context, l store.Lease, errMsg string, retryAt time.Time) (*domain.Job, error) {
	return call(ctx, s, "Fail", true, leaseAttrs(l), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Fail(ctx, l, errMsg, retryAt)
	}, one)
}

func (s *tracedStore) Cancel(ctx context.Context, id string) (*domain.Job, error) {
	return call(ctx, s, "Cancel", true, idAttrs(id), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Cancel(ctx, id)
	}, nil)
}

func (s *tracedStore) Retry(ctx context.Context, id string) (*domain.Job, error) {
	return call(ctx, s, "Retry", true, idAttrs(id), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Retry(ctx, id)
	}, nil)
}

func (s *tracedStore) CancelJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	return call(ctx, s, "CancelJobs", true, []attribute.KeyValue{attribute.Int("jobqueue.jobs", len(ids))}, func(ctx context.Context) ([]*domain.Job, error) {
		return s.inner.CancelJobs(ctx, ids, owner)
	}, nil)
}

func (s *tracedStore) RetryJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	return call(ctx, s, "RetryJobs", true, []attribute.KeyValue{attribute.Int("jobqueue.jobs", len(ids))}, func(ctx context.Context) ([]*domain.Job, error) {
		return s.inner.RetryJobs(ctx, ids, owner)
	}, nil)
}

func (s *tracedStore) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	return call(ctx, s, "DeleteFinished", false, nil, func(ctx context.Context) (int, error) {
		return s.inner.DeleteFinished(ctx, before, limit)
	}, nil)
}

func (s *tracedStore) Delete(ctx context.Context, id string) (*domain.Job, error) {
	return call(ctx, s, "Delete", true, idAttrs(id), func(ctx context.Context) (*domain.Job, error) {
		return s.inner.Delete(ctx, id)
	}, nil)
}

func (s *tracedStore) Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error) {
	return call(ctx, s, "Stats", false, nil, func(ctx context.Context) (domain.Stats, error) {
		return s.inner.Stats(ctx, q)
	}, nil)
}

func (s *tracedStore) PutPeriodic(ctx context.Context, p domain.PeriodicJob) (*domain.PeriodicJob, error) {
	return call(ctx, s, "PutPeriodic", true, []attribute.KeyValue{periodicKey.String(p.Name)}, func(ctx context.Context) (*domain.PeriodicJob, error) {
		return s.inner.PutPeriodic(ctx, p)
	}, nil)
}

func (s *tracedStore) DeletePeriodic(ctx context.Context, name string, source domain.PeriodicSource) error {
	_, err := call(ctx, s, "DeletePeriodic", true, []attribute.KeyValue{periodicKey.String(name)}, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.inner.DeletePeriodic(ctx, name, source)
	}, nil)
	return err
}

func (s *tracedStore) ListPeriodic(ctx context.Context) ([]*domain.PeriodicJob, error) {
	return call(ctx, s, "ListPeriodic", false, nil, func(ctx context.Context) ([]*domain.PeriodicJob, error) {
		return s.inner.ListPeriodic(ctx)
	}, nil)
}

func (s *tracedStore) EnqueuePeriodic(ctx context.Context, t store.PeriodicTick) (*domain.Job, error) {
	return call(ctx, s, "EnqueuePeriodic", true, []attribute.KeyValue{periodicKey.String(t.Name)}, func(ctx context.Context) (*domain.Job, error) {
		return s.inner.EnqueuePeriodic(ctx, t)
	}, nil)
}

var periodicKey = attribute.Key("jobqueue.periodic.name")

func (s *tracedStore) TypeControls(ctx context.Context) ([]domain.TypeControl, error) {
	return call(ctx, s, "TypeControls", false, nil, func(ctx context.Context) ([]domain.TypeControl, error) {
		return s.inner.TypeControls(ctx)
	}, nil)
}

func (s *tracedStore) SetTypeControl(ctx context.Context, name string, change domain.TypeChange) (domain.TypeControl, error) {
	return call(ctx, s, "SetTypeControl", true, []attribute.KeyValue{jobTypeKey.String(name)}, func(ctx context.Context) (domain.TypeControl, error) {
		return s.inner.SetTypeControl(ctx, name, change)
	}, nil)
}

func (s *tracedStore) TypeStats(ctx context.Context, owner string) (map[string]domain.Stats, error) {
	return call(ctx, s, "TypeStats", false, nil, func(ctx context.Context) (map[string]domain.Stats, error) {
		return s.inner.TypeStats(ctx, owner)
	}, nil)
}

var jobTypeKey = attribute.Key("jobqueue.job.type")
