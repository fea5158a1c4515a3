package domain

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestTruncateErrorMessage(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, MaxErrorMessageBytes - 1, MaxErrorMessageBytes} {
		msg := strings.Repeat("x", n)
		if got := TruncateErrorMessage(msg); got != msg {
			t.Errorf("a message of %d bytes became %d bytes, want it unchanged", n, len(got))
		}
	}
	for _, msg := range []string{
		strings.Repeat("x", MaxErrorMessageBytes+1),
		strings.Repeat("x", 1<<20),
		// Three-byte characters: the cut falls inside one unless it is
		// moved back to a boundary.
		strings.Repeat("€", MaxErrorMessageBytes),
	} {
		got := TruncateErrorMessage(msg)
		marker := fmt.Sprintf("… [truncated, %d bytes]", len(msg))
		if len(got) > MaxErrorMessageBytes || len(got) < MaxErrorMessageBytes-3 {
			t.Errorf("a message of %d bytes became %d bytes, want %d (or up to 3 fewer, at a character boundary)", len(msg), len(got), MaxErrorMessageBytes)
		}
		if !strings.HasSuffix(got, marker) || !strings.HasPrefix(msg, strings.TrimSuffix(got, marker)) {
			t.Errorf("a message of %d bytes became %q…%q, want its beginning and then %q", len(msg), got[:10], got[len(got)-40:], marker)
		}
		if !utf8.ValidString(got) {
			t.Errorf("a message of %d bytes of valid UTF-8 was cut inside a character", len(msg))
		}
	}
}

func TestFailuresKeepTheNewestErrors(t *testing.T) {
	t.Parallel()
	const keep = 3
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	j := &Job{Status: StatusPending, MaxAttempts: MaxMaxAttempts}
	var snapshots []*Job
	for n := 1; n <= keep+2; n++ {
		j.Claim(now)
		// Each rule that records a failure, in turn.
		switch n % 3 {
		case 0:
			j.Fail(fmt.Sprint("boom ", n), now, now, keep)
		case 1:
			j.Finish(StatusFailed, fmt.Sprint("boom ", n), now, keep)
			if err := j.Retry(now); err != nil {
				t.Fatal(err)
			}
		case 2:
			j.Rescue(fmt.Sprint("boom ", n), now, keep)
		}
		if j.Attempts != n {
			t.Fatalf("after failure %d: attempts = %d", n, j.Attempts)
		}
		want := min(n, keep)
		if len(j.Errors) != want {
			t.Fatalf("after failure %d: %d errors kept, want %d", n, len(j.Errors), want)
		}
		for i, e := range j.Errors {
			if attempt := n - want + 1 + i; e.Attempt != attempt || e.Message != fmt.Sprint("boom ", attempt) {
				t.Errorf("after failure %d: errors[%d] = %+v, want attempt %d", n, i, e, attempt)
			}
		}
		snap := *j
		snapshots = append(snapshots, &snap)
	}
	// Trimming made new slices: no earlier snapshot changed.
	for i, s := range snapshots {
		n := i + 1
		if last := s.Errors[len(s.Errors)-1]; last.Attempt != n {
			t.Errorf("snapshot after failure %d now ends with attempt %d", n, last.Attempt)
		}
	}

	// A history kept under a larger limit shrinks to the new one at the
	// next failure.
	j.Claim(now)
	j.Fail("boom", now, now, 1)
	if len(j.Errors) != 1 || j.Errors[0].Attempt != j.Attempts {
		t.Fatalf("with keep 1: errors = %+v, want only attempt %d", j.Errors, j.Attempts)
	}
}
