package jobs_test

import (
	"context"
	"testing"

	"github.com/jobqueue/jobqueue/internal/jobs"
)

// With handlers configured, pausing or limiting a type none of them
// serves is BAD_USER_INPUT naming "name" (a misspelt type), and stores
// nothing; a served type is accepted.
func TestTypeControlsOnlyForServedTypes(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.Options{Types: jobs.TypeFilter{"email": true}})
	ctx := context.Background()
	wantValidation(t, func() error { _, err := b.svc.PauseType(ctx, "emial", true); return err }(),
		`name: no handler is configured for type "emial" (configured: email)`)
	one := 1
	wantValidation(t, func() error {
		_, err := b.svc.SetTypeLimits(ctx, "emial", jobs.LimitsRequest{Concurrency: &one})
		return err
	}(), `name: no handler is configured for type "emial" (configured: email)`)
	types, err := b.svc.JobTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(types) != 0 {
		t.Fatalf("job types after refused controls: %+v, want none", types)
	}
	if _, err := b.svc.PauseType(ctx, "email", true); err != nil {
		t.Fatalf("pause a served type: %v", err)
	}
}
