// Package ratelimit limits how often each caller may act: a token bucket
// per key (an identity, or a client address when there is none), in
// memory bounded whatever the number of keys.
//
// The buckets are golang.org/x/time/rate limiters. They are kept in two
// generations of at most MaxKeys/2 entries each: a key is looked up in
// the current generation, then in the previous one (and moved to the
// current); when the current one is full, the previous one is dropped and
// the current one becomes the previous. A key idle for a whole generation
// thus starts again with a full bucket, which only hands an attacker what
// it already had: to evict its own bucket it must first act under
// MaxKeys/2 other keys.
package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the buckets kept when Options.MaxKeys is zero:
// about 100 bytes each, so about 10 MB at most.
const DefaultMaxKeys = 100_000

// maxWait caps the wait Allow reports, so that a tiny rate cannot overflow
// it.
const maxWait = 24 * time.Hour

// Options configure a Limiter.
type Options struct {
	// Rate is the actions per second each key may sustain; zero or less
	// turns limiting off.
	Rate float64
	// Burst is the actions a key may take at once; default the rate
	// rounded up (at least 1).
	Burst int
	// MaxKeys bounds the buckets kept; default DefaultMaxKeys.
	MaxKeys int
}

// Limiter gives each key its own token bucket. A nil *Limiter allows
// everything. Safe for concurrent use.
type Limiter struct {
	limit rate.Limit
	burst int
	half  int // entries per generation

	mu       sync.Mutex
	current  map[string]*rate.Limiter
	previous map[string]*rate.Limiter
}

// New returns a Limiter, or nil (no limit) when opts.Rate is not positive.
func New(opts Options) *Limiter {
	if opts.Rate <= 0 {
		return nil
	}
	if opts.Burst <= 0 {
		opts.Burst = max(1, int(math.Ceil(opts.Rate)))
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	half := max(1, opts.MaxKeys/2)
	return &Limiter{
		limit:    rate.Limit(opts.Rate),
		burst:    opts.Burst,
		half:     half,
		current:  make(map[string]*rate.Limiter),
		previous: make(map[string]*rate.Limiter),
	}
}

// Burst is the most actions one request may take at once: asking Allow
// for more is always refused.
func (l *Limiter) Burst() int {
	if l == nil {
		return math.MaxInt
	}
	return l.burst
}

// Allow takes n actions for key at now. When the bucket holds fewer, it
// takes none and returns how long until it would hold n (at least a
// second, rounded up to whole seconds, as Retry-After counts them; for n
// over the burst, the time to refill the whole burst).
func (l *Limiter) Allow(key string, n int, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	b := l.bucket(key)
	if n <= b.Burst() && b.AllowN(now, n) {
		return true, 0
	}
	missing := float64(min(n, b.Burst())) - b.TokensAt(now)
	secs := min(maxWait.Seconds(), max(1, math.Ceil(missing/float64(l.limit))))
	return false, time.Duration(secs) * time.Second
}

// bucket returns key's bucket, creating it with a full burst.
func (l *Limiter) bucket(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.current[key]; ok {
		return b
	}
	b, ok := l.previous[key]
	if ok {
		delete(l.previous, key)
	} else {
		b = rate.NewLimiter(l.limit, l.burst)
	}
	if len(l.current) >= l.half {
		l.previous, l.current = l.current, make(map[string]*rate.Limiter, l.half)
	}
	l.current[key] = b
	return b
}

// keys is the number of buckets kept (for tests).
func (l *Limiter) keys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.current) + len(l.previous)
}

type keyKey struct{}

// WithKey returns a copy of ctx naming the caller whose bucket its
// actions take from.
func WithKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyKey{}, key)
}

// KeyFrom returns the key WithKey put in ctx, or "" when there is none.
func KeyFrom(ctx context.Context) string {
	k, _ := ctx.Value(keyKey{}).(string)
	return k
}
