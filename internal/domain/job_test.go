package domain

import (
	"errors"
	"strings"
	"testing"
)

func TestCanTransition(t *testing.T) {
	t.Parallel()
	allowed := map[[2]Status]bool{
		{StatusPending, StatusProcessing}:   true,
		{StatusPending, StatusCancelled}:    true,
		{StatusProcessing, StatusCompleted}: true,
		{StatusProcessing, StatusFailed}:    true,
		{StatusProcessing, StatusCancelled}: true,
		{StatusProcessing, StatusPending}:   true,
		{StatusFailed, StatusPending}:       true,
		{StatusCancelled, StatusPending}:    true,
	}
	for _, from := range Statuses {
		for _, to := range Statuses {
			if got, want := CanTransition(from, to), allowed[[2]Status{from, to}]; got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	for _, to := range Statuses {
		if CanTransition(StatusCompleted, to) {
			t.Errorf("completed can move to %s", to)
		}
	}
}

func TestValidateType(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"email", "a", "send.mail:v2_x-y", strings.Repeat("x", MaxTypeLength)} {
		if err := ValidateType(ok); err != nil {
			t.Errorf("ValidateType(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "with space", "ümlaut", "semi;colon", strings.Repeat("x", MaxTypeLength+1)} {
		err := ValidateType(bad)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "type" || !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateType(%q) = %v, want a ValidationError on field type", bad, err)
		}
	}
}
