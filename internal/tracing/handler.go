package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/worker"
)

// Handler returns h with a consumer span around each attempt, "process
// <type>", with the job's id, type and attempt as attributes, the root of
// a trace of its own, linked to the span that created the job (the job's
// TraceParent), wherever and whenever that was. The handler runs under it,
// so that a webhook request is its child. A failed attempt (an error or a
// panic) marks the span as an error. Off, or with h nil, it returns h.
func (t *Tracing) Handler(h worker.Handler) worker.Handler {
	if !t.Enabled() || h == nil {
		return h
	}
	return worker.HandlerFunc(func(ctx context.Context, job *domain.Job) (err error) {
		opts := []trace.SpanStartOption{
			trace.WithNewRoot(),
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				semconv.MessagingSystemKey.String("jobqueue"),
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingMessageID(job.ID),
				jobIDKey.String(job.ID),
				attribute.String("jobqueue.job.type", job.Type),
				attribute.Int("jobqueue.job.attempt", job.Attempts),
				attribute.Int("jobqueue.job.max_attempts", job.MaxAttempts),
			),
		}
		if l, ok := linkTo(job.TraceParent, attribute.String("jobqueue.link", "created")); ok {
			opts = append(opts, trace.WithLinks(l))
		}
		ctx, span := t.tracer.Start(ctx, "process "+job.Type, opts...)
		defer func() {
			if p := recover(); p != nil {
				span.SetStatus(codes.Error, fmt.Sprintf("handler panicked: %v", p))
				span.End()
				panic(p)
			}
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
		return h.Handle(ctx, job)
	})
}
