package domain

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// rated returns a type with a rate, its bucket full at t0.
func rated(rate float64, burst int) TypeControl {
	c := TypeControl{Name: "x"}
	TypeChange{Limits: &TypeLimits{RatePerSecond: rate, RateBurst: burst}}.Apply(&c, t0)
	return c
}

// A rate below one a day is refused, naming ratePerSecond; the least rate
// waits at most a day for a token, so NextToken stays in the future.
func TestTypeLimitsRateBounds(t *testing.T) {
	t.Parallel()
	for _, r := range []float64{1e-12, 1e-300, MinRatePerSecond / 2, -1, MaxRatePerSecond * 2} {
		var v *ValidationError
		if err := (TypeLimits{RatePerSecond: r}).Check(); !errors.As(err, &v) || v.Field != "ratePerSecond" {
			t.Errorf("Check of rate %v = %v, want a ValidationError of ratePerSecond", r, err)
		}
	}
	for _, r := range []float64{MinRatePerSecond, 1, MaxRatePerSecond} {
		if err := (TypeLimits{RatePerSecond: r}).Check(); err != nil {
			t.Errorf("Check of rate %v = %v, want nil", r, err)
		}
	}
	c := rated(MinRatePerSecond, 1)
	c.Spend(1, t0)
	if next, want := c.NextToken(t0.Add(time.Second)), t0.Add(MaxTokenWait); next.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("NextToken at one a day = %v, want %v", next, want)
	}
}

// A bucket stored before the least rate existed still waits in the
// future, at most MaxTokenWait: a time.Duration of its wait overflows.
func TestNextTokenTinyRate(t *testing.T) {
	t.Parallel()
	c := TypeControl{Name: "x", RatePerSecond: 1e-300, RateBurst: 1, TokensAt: t0}
	now := t0.Add(time.Second)
	if next := c.NextToken(now); !next.After(now) || next.After(now.Add(MaxTokenWait)) {
		t.Fatalf("NextToken = %v, want after %v and within %v", next, now, MaxTokenWait)
	}
}

// Claims that carry an older now (one that waited for the bucket's lock
// behind a later one) spend as of the bucket's time: they mint no tokens.
func TestSpendOlderNowMintsNoTokens(t *testing.T) {
	t.Parallel()
	c := rated(100, 100)
	started := 0
	take := func(now time.Time) {
		q := min(c.Quota(0, now), 1) // each claimer has one free worker
		c.Spend(q, now)
		started += q
	}
	for i := 1; i <= 1000; i++ { // 1 s: every 1 ms two claims race
		late := t0.Add(time.Duration(i) * time.Millisecond)
		take(late)
		take(late.Add(-9 * time.Millisecond))
	}
	// 1 s at 100/s from a full bucket of 100.
	if started > 200 {
		t.Fatalf("%d attempts started in 1 s at 100/s, burst 100 (at most 200)", started)
	}
	// Nor does a change of limits made with an older now.
	c = rated(100, 100)
	c.Spend(100, t0.Add(time.Second))
	TypeChange{Limits: &TypeLimits{RatePerSecond: 100, RateBurst: 100}}.Apply(&c, t0)
	if a := c.Available(t0.Add(time.Second)); a != 0 {
		t.Fatalf("tokens after a change with an older now = %v, want 0", a)
	}
}

// Two claimers whose clocks differ by 2 s alternate claims: the bucket
// follows the later clock, so no more start than the rate allows.
func TestSpendClockSkew(t *testing.T) {
	t.Parallel()
	c := rated(5, 5)
	skew := 2 * time.Second
	started := 0
	for i := range 100 { // 10 s of real time, a claim every 100 ms
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		if i%2 == 0 {
			now = now.Add(skew) // this claimer's clock runs ahead
		}
		q := min(c.Quota(0, now), 1)
		c.Spend(q, now)
		started += q
	}
	// 10 s at 5/s plus one burst of 5.
	if started > 55 {
		t.Fatalf("%d attempts started in 10 s at 5/s, burst 5 (at most 55)", started)
	}
}
