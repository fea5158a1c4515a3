package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestNilLimiterAllowsEverything(t *testing.T) {
	l := New(Options{Rate: 0})
	if l != nil {
		t.Fatal("New with no rate returned a limiter")
	}
	if ok, _ := l.Allow("a", 1_000_000, time.Now()); !ok {
		t.Fatal("a nil limiter refused")
	}
}

func TestBurstThenRate(t *testing.T) {
	l := New(Options{Rate: 2, Burst: 3})
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.Allow("a", 1, now); !ok {
			t.Fatalf("action %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("a", 1, now)
	if ok {
		t.Fatal("an action past the burst was allowed")
	}
	if wait != time.Second {
		t.Fatalf("retry after %s, want 1s (half a second rounded up)", wait)
	}
	// Another key has its own bucket.
	if ok, _ := l.Allow("b", 3, now); !ok {
		t.Fatal("another key was refused")
	}
	// Half a second later one token is back.
	if ok, _ := l.Allow("a", 1, now.Add(500*time.Millisecond)); !ok {
		t.Fatal("refused after the rate refilled a token")
	}
	if ok, _ := l.Allow("a", 1, now.Add(500*time.Millisecond)); ok {
		t.Fatal("allowed a second token that was not refilled")
	}
}

func TestManyAtOnce(t *testing.T) {
	l := New(Options{Rate: 1, Burst: 5})
	now := time.Unix(1000, 0)
	if ok, _ := l.Allow("a", 5, now); !ok {
		t.Fatal("the whole burst at once was refused")
	}
	ok, wait := l.Allow("a", 3, now)
	if ok || wait != 3*time.Second {
		t.Fatalf("got %v, retry after %s; want refused, 3s", ok, wait)
	}
	// More than the burst can never pass; the wait is for a full bucket.
	ok, wait = l.Allow("b", 6, now)
	if ok || wait != time.Second {
		t.Fatalf("6 of a burst of 5: got %v, retry after %s; want refused, 1s (the bucket is full already)", ok, wait)
	}
	if ok, _ := l.Allow("b", 5, now); !ok {
		t.Fatal("a refused request took tokens")
	}
}

func TestDefaultBurstIsTheRateRoundedUp(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want int
	}{{0.1, 1}, {1, 1}, {2.5, 3}, {10, 10}} {
		if got := New(Options{Rate: c.rate}).Burst(); got != c.want {
			t.Errorf("rate %v: burst %d, want %d", c.rate, got, c.want)
		}
	}
}

// Buckets are bounded whatever the number of keys, and a busy key keeps
// its bucket (it is refused) while others come and go.
func TestKeysAreBounded(t *testing.T) {
	l := New(Options{Rate: 1, Burst: 1, MaxKeys: 100})
	now := time.Unix(1000, 0)
	if ok, _ := l.Allow("busy", 1, now); !ok {
		t.Fatal("first action refused")
	}
	for i := range 10_000 {
		l.Allow(fmt.Sprint("k", i), 1, now)
		if i%10 == 0 {
			if ok, _ := l.Allow("busy", 1, now); ok {
				t.Fatalf("after %d other keys the busy key got a fresh bucket", i)
			}
		}
		if n := l.keys(); n > 100 {
			t.Fatalf("%d buckets kept, bound 100", n)
		}
	}
}

func TestKeyInContext(t *testing.T) {
	ctx := context.Background()
	if k := KeyFrom(ctx); k != "" {
		t.Fatalf("key %q in an empty context", k)
	}
	if k := KeyFrom(WithKey(ctx, "user:ann")); k != "user:ann" {
		t.Fatalf("key %q, want user:ann", k)
	}
}

// A tiny rate reports a long wait, never an overflowed one.
func TestTinyRateWaitIsCapped(t *testing.T) {
	l := New(Options{Rate: 1e-10, Burst: 1})
	now := time.Unix(1000, 0)
	l.Allow("a", 1, now)
	ok, wait := l.Allow("a", 1, now)
	if ok || wait != maxWait {
		t.Fatalf("got %v, %s; want refused, %s", ok, wait, maxWait)
	}
}
