package domain

import (
	"fmt"
	"math"
	"time"
)

// TypeControl is what an operator set on one job type: whether it is
// paused and its limits, plus the state of its rate bucket. The zero
// value (with a Name) is a type without controls. Stores keep one per
// type that has any and apply them where jobs are claimed.
type TypeControl struct {
	Name string
	// Paused types' pending jobs are not claimed (running ones finish).
	Paused bool
	// Concurrency, when positive, is the most jobs of the type processing
	// at once, across every process sharing the store.
	Concurrency int
	// RatePerSecond, when positive, is how many attempts of the type may
	// start per second, with bursts of up to RateBurst (a token bucket
	// shared by every process sharing the store).
	RatePerSecond float64
	RateBurst     int
	// Tokens is the bucket's content at TokensAt; a zero TokensAt is a
	// full bucket (one that was never spent from).
	Tokens   float64
	TokensAt time.Time
}

// Limited reports whether claims of the type are bounded (by concurrency
// or rate), so that a claim must count them.
func (c TypeControl) Limited() bool { return c.Concurrency > 0 || c.RatePerSecond > 0 }

// Empty reports whether the type has no controls at all.
func (c TypeControl) Empty() bool { return !c.Paused && !c.Limited() }

// Available returns how many tokens the type's bucket holds at now
// (+Inf without a rate): it refills at RatePerSecond up to RateBurst.
func (c TypeControl) Available(now time.Time) float64 {
	if c.RatePerSecond <= 0 {
		return math.Inf(1)
	}
	if c.TokensAt.IsZero() {
		return float64(c.RateBurst)
	}
	elapsed := max(now.Sub(c.TokensAt).Seconds(), 0)
	return min(float64(c.RateBurst), c.Tokens+elapsed*c.RatePerSecond)
}

// Spend takes n tokens from the bucket at now (n no more than Available).
// A now before TokensAt (a claimer whose clock is behind, or one that
// waited for another's claim to commit) spends as of TokensAt: moving
// TokensAt back would refill the same interval twice.
func (c *TypeControl) Spend(n int, now time.Time) {
	if c.RatePerSecond <= 0 || n == 0 {
		return
	}
	at := c.notBefore(now)
	c.Tokens = c.Available(at) - float64(n)
	c.TokensAt = at
}

// notBefore returns now, or TokensAt when that is later.
func (c TypeControl) notBefore(now time.Time) time.Time {
	if now.Before(c.TokensAt) {
		return c.TokensAt
	}
	return now
}

// MaxTokenWait bounds NextToken's wait (a rate of at least
// MinRatePerSecond never waits longer for its first token).
const MaxTokenWait = 24 * time.Hour

// NextToken returns when the bucket next holds a whole token, if it holds
// none at now, at most MaxTokenWait later; otherwise (or without a rate)
// the zero time.
func (c TypeControl) NextToken(now time.Time) time.Time {
	a := c.Available(now)
	if a >= 1 {
		return time.Time{}
	}
	// In float seconds: a tiny rate's wait overflows a time.Duration.
	wait := min((1-a)/c.RatePerSecond, MaxTokenWait.Seconds())
	return now.Add(time.Duration(math.Ceil(wait * float64(time.Second))))
}

// Quota returns how many more jobs of the type one claim may take at now
// with processing of its jobs running: zero when paused, at its
// concurrency or out of tokens; -1 when unbounded.
func (c TypeControl) Quota(processing int, now time.Time) int {
	if c.Paused {
		return 0
	}
	q := -1
	if c.Concurrency > 0 {
		q = max(c.Concurrency-processing, 0)
	}
	if c.RatePerSecond > 0 {
		t := int(math.Floor(c.Available(now)))
		if q < 0 || t < q {
			q = t
		}
	}
	return q
}

// TypeLimits are the limits setJobTypeLimits sets; a zero field clears
// that limit.
type TypeLimits struct {
	Concurrency   int
	RatePerSecond float64
	RateBurst     int
}

// Check returns a *ValidationError naming the first field out of range:
// every limit given must be positive (a rate from MinRatePerSecond to
// MaxRatePerSecond), a burst needs a rate and is at least 1, at most
// MaxRateBurst; concurrency is at most MaxTypeConcurrency.
func (l TypeLimits) Check() error {
	switch {
	case l.Concurrency < 0 || l.Concurrency > MaxTypeConcurrency:
		return &ValidationError{Field: "concurrency", Message: fmt.Sprintf("must be from 1 to %d (null for no limit), got %d", MaxTypeConcurrency, l.Concurrency)}
	case l.RatePerSecond != 0 && !ValidRate(l.RatePerSecond):
		return RateOutOfRange(l.RatePerSecond)
	case l.RateBurst < 0 || l.RateBurst > MaxRateBurst:
		return &ValidationError{Field: "rateBurst", Message: fmt.Sprintf("must be from 1 to %d, got %d", MaxRateBurst, l.RateBurst)}
	case l.RateBurst > 0 && l.RatePerSecond == 0:
		return &ValidationError{Field: "rateBurst", Message: "needs ratePerSecond"}
	}
	return nil
}

// ValidRate reports whether r is a rate a type may have: from
// MinRatePerSecond to MaxRatePerSecond.
func ValidRate(r float64) bool { return r >= MinRatePerSecond && r <= MaxRatePerSecond }

// RateOutOfRange is the *ValidationError of a ratePerSecond that is not
// ValidRate.
func RateOutOfRange(r float64) *ValidationError {
	return &ValidationError{Field: "ratePerSecond", Message: fmt.Sprintf("must be from 1/86400 (one a day) to %d (null for no limit), got %v", MaxRatePerSecond, r)}
}

// Bounds of the type limits. The least rate, one a day, keeps the wait
// for a token within a day (MaxTokenWait).
const (
	MaxTypeConcurrency = 1_000_000
	MinRatePerSecond   = 1.0 / 86400
	MaxRatePerSecond   = 1_000_000
	MaxRateBurst       = 1_000_000
)

// TypeChange is one change of a type's controls: each field that is not
// nil is set.
type TypeChange struct {
	Paused *bool
	Limits *TypeLimits
}

// Apply makes the change on c. Setting a rate keeps the bucket's tokens
// (up to the new burst); a burst left zero with a rate is the rate rounded
// up. Clearing the rate empties the bucket state.
func (ch TypeChange) Apply(c *TypeControl, now time.Time) {
	if ch.Paused != nil {
		c.Paused = *ch.Paused
	}
	if l := ch.Limits; l != nil {
		c.Concurrency = l.Concurrency
		if l.RatePerSecond <= 0 {
			c.RatePerSecond, c.RateBurst, c.Tokens, c.TokensAt = 0, 0, 0, time.Time{}
			return
		}
		burst := l.RateBurst
		if burst <= 0 {
			burst = int(math.Ceil(l.RatePerSecond))
		}
		if c.RatePerSecond > 0 {
			at := c.notBefore(now)
			c.Tokens, c.TokensAt = min(c.Available(at), float64(burst)), at
		}
		c.RatePerSecond, c.RateBurst = l.RatePerSecond, burst
	}
}
