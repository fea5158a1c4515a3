package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/broker"
	"github.com/jobqueue/jobqueue/internal/broker/brokertest"
	"github.com/jobqueue/jobqueue/internal/domain"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T, opts broker.Options) *broker.Broker {
	t.Helper()
	return brokertest.New(t, opts)
}

func change(id, typ string, version int64, st domain.Status) *domain.Job {
	return &domain.Job{ID: id, Type: typ, Version: version, Status: st}
}

// next reads one change or fails after a deadline.
func next(t *testing.T, s *broker.Subscription) (*domain.Job, bool) {
	t.Helper()
	select {
	case j, ok := <-s.C():
		return j, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no change within 10s")
		return nil, false
	}
}

// drain reads until the channel closes.
func drain(t *testing.T, s *broker.Subscription) []*domain.Job {
	t.Helper()
	var got []*domain.Job
	for {
		j, ok := next(t, s)
		if !ok {
			return got
		}
		got = append(got, j)
	}
}

func TestAllJobsInOrderWithTypeFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	all, err := b.Subscribe(ctx, broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	onlyA, err := b.Subscribe(ctx, broker.Filter{Type: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for v := int64(1); v <= 3; v++ {
		b.Publish(change("x", "a", v, domain.StatusPending))
		b.Publish(change("y", "b", v, domain.StatusPending))
	}
	for v := int64(1); v <= 3; v++ {
		for _, id := range []string{"x", "y"} {
			if j, _ := next(t, all); j.ID != id || j.Version != v {
				t.Fatalf("all: got %s v%d, want %s v%d", j.ID, j.Version, id, v)
			}
		}
		if j, _ := next(t, onlyA); j.ID != "x" || j.Version != v {
			t.Fatalf("type a: got %s v%d, want x v%d", j.ID, j.Version, v)
		}
	}
	cancel()
	if got := drain(t, all); len(got) != 0 {
		t.Fatalf("after cancel got %d more changes", len(got))
	}
	brokertest.WaitSubscribers(t, b, 0, "every subscription to leave")
}

// An owner filter delivers only that owner's jobs, alone or with a type.
func TestOwnerFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{})
	ctx := context.Background()
	owned := func(id, typ, owner string) *domain.Job {
		j := change(id, typ, 1, domain.StatusPending)
		j.Owner = owner
		return j
	}
	mine, err := b.Subscribe(ctx, broker.Filter{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	mineOfB, err := b.Subscribe(ctx, broker.Filter{Owner: "alice", Type: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer mineOfB.Close()
	b.Publish(owned("x", "a", "alice"))
	b.Publish(owned("y", "a", "bob"))
	b.Publish(owned("z", "b", ""))
	b.Publish(owned("w", "b", "alice"))
	b.Publish(owned("v", "b", "bob"))
	b.Publish(owned("end", "b", "alice")) // changes arrive in order: nothing between
	for name, tc := range map[string]struct {
		sub  *broker.Subscription
		want []string
	}{
		"alice's firehose": {mine, []string{"x", "w", "end"}},
		"alice's type b":   {mineOfB, []string{"w", "end"}},
	} {
		for _, want := range tc.want {
			if j, _ := next(t, tc.sub); j.ID != want {
				t.Fatalf("%s got %s of %q, want %s", name, j.ID, j.Owner, want)
			}
		}
	}
}

func TestJobSubscriptionPrimesAndCompletes(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{})
	s, err := b.Subscribe(context.Background(), broker.Filter{ID: "j"})
	if err != nil {
		t.Fatal(err)
	}
	// Published between Subscribe and reading the current state: v2 is
	// already in the snapshot and must not be repeated; v3 must follow.
	b.Publish(change("j", "t", 2, domain.StatusProcessing))
	b.Publish(change("other", "t", 9, domain.StatusPending))
	b.Publish(change("j", "t", 3, domain.StatusCompleted))
	s.Prime(change("j", "t", 2, domain.StatusProcessing))

	got := drain(t, s)
	if len(got) != 2 || got[0].Version != 2 || got[1].Version != 3 || got[1].Status != domain.StatusCompleted {
		t.Fatalf("got %v, want v2 snapshot then v3 completed, then the end", versions(got))
	}
	if s.Err() != nil {
		t.Fatalf("Err = %v, want nil after a normal completion", s.Err())
	}
	brokertest.WaitSubscribers(t, b, 0, "every subscription to leave")
}

func TestLateJobSubscriberGetsOneFinalSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{})
	s, err := b.Subscribe(context.Background(), broker.Filter{ID: "done"})
	if err != nil {
		t.Fatal(err)
	}
	s.Prime(change("done", "t", 3, domain.StatusFailed))
	got := drain(t, s)
	if len(got) != 1 || got[0].Status != domain.StatusFailed {
		t.Fatalf("got %v, want exactly the final snapshot", versions(got))
	}
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers left, want 0", n)
	}
}

func TestSlowSubscriberDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{Buffer: 4, CoalesceAfter: 256, MaxBacklog: 512})
	slow, err := b.Subscribe(context.Background(), broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	fast, err := b.Subscribe(context.Background(), broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// The publisher goes in rounds and waits for the fast reader after each
	// one, so the fast reader never lags while the slow one never reads.
	const jobs, versionsPerJob, round = 2000, 3, 100
	progress := make(chan int, 1)
	go func() {
		last := map[string]int64{}
		n := 0
		for j := range fast.C() {
			if j.Version != last[j.ID]+1 {
				t.Errorf("fast subscriber: %s v%d after v%d", j.ID, j.Version, last[j.ID])
			}
			last[j.ID] = j.Version
			n++
			if n%round == 0 {
				progress <- n
			}
		}
	}()
	sent := 0
	for v := int64(1); v <= versionsPerJob; v++ {
		for i := 0; i < jobs; i++ {
			b.Publish(change(fmt.Sprint(i), "t", v, domain.StatusPending))
			sent++
			if sent%round == 0 {
				select {
				case n := <-progress:
					if n != sent {
						t.Fatalf("fast subscriber at %d changes, want %d", n, sent)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("fast subscriber stalled at change %d behind the slow one", sent)
				}
			}
		}
	}
	// The slow one, which never read, was ended (its channel closes after
	// what it holds) with an error it can see.
	got := drain(t, slow)
	if len(got) > 4 {
		t.Fatalf("ended slow subscriber still delivered %d changes, want at most its buffer", len(got))
	}
	if !errors.Is(slow.Err(), broker.ErrSlowSubscriber) {
		t.Fatalf("slow subscriber ended with %v, want ErrSlowSubscriber", slow.Err())
	}
}

func TestLaggingSubscriberGetsLatestStateOfEachJob(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{Buffer: 1, CoalesceAfter: 8, MaxBacklog: 1 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := b.Subscribe(ctx, broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	const jobs, versionsPerJob = 5, 200
	for v := int64(1); v <= versionsPerJob; v++ {
		for i := 0; i < jobs; i++ {
			st := domain.StatusProcessing
			if v == versionsPerJob {
				st = domain.StatusCompleted
			}
			b.Publish(change(fmt.Sprint(i), "t", v, st))
		}
	}
	last := map[string]int64{}
	n := 0
	for len(last) < jobs || !allFinal(last, versionsPerJob) {
		j, ok := next(t, s)
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		if j.Version <= last[j.ID] {
			t.Fatalf("%s: v%d after v%d, want increasing versions", j.ID, j.Version, last[j.ID])
		}
		last[j.ID] = j.Version
		n++
	}
	if n >= jobs*versionsPerJob {
		t.Fatalf("got all %d changes: nothing was coalesced", n)
	}
	if s.Err() != nil {
		t.Fatalf("Err = %v, want a lagging subscriber kept alive by coalescing", s.Err())
	}
}

func allFinal(last map[string]int64, final int64) bool {
	for _, v := range last {
		if v != final {
			return false
		}
	}
	return true
}

func TestSubscribeUnsubscribeCyclesLeaveNothingBehind(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, stop := brokertest.Run(t, broker.Options{Buffer: 1})
	for i := 0; i < 1000; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		f := broker.Filter{}
		if i%2 == 1 {
			f.ID = "j"
		}
		s, err := b.Subscribe(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if f.ID != "" {
			s.Prime(change("j", "t", 1, domain.StatusPending))
		}
		// Enough changes to fill the buffer and start a pump that blocks.
		for v := int64(2); v < 5; v++ {
			b.Publish(change("j", "t", v, domain.StatusProcessing))
		}
		cancel()
		if _, ok := <-waitClosed(t, s); ok {
			t.Fatal("channel not closed after cancel")
		}
	}
	brokertest.WaitSubscribers(t, b, 0, "every subscription to leave")
	stop()
}

// waitClosed drains s until it closes and returns a closed channel.
func waitClosed(t *testing.T, s *broker.Subscription) <-chan *domain.Job {
	t.Helper()
	drain(t, s)
	return s.C()
}

func TestCloseEndsSubscriptionsAndRefusesNewOnes(t *testing.T) {
	t.Parallel()
	b, stop := brokertest.Run(t, broker.Options{})
	s, err := b.Subscribe(context.Background(), broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(change("a", "t", 1, domain.StatusPending))
	stop()
	b.Publish(change("a", "t", 2, domain.StatusPending)) // dropped, no panic
	// What was published before the stop is delivered; nothing after.
	if got := drain(t, s); !slices.Equal(versions(got), []string{"a:v1:pending"}) {
		t.Fatalf("got %v, want [1]", versions(got))
	}
	if _, err := b.Subscribe(context.Background(), broker.Filter{}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("subscribe after stop: %v, want ErrClosed", err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("a second Run returned nil, want an error")
	}
	stop() // idempotent
}

func BenchmarkPublishNoSubscribers(b *testing.B) {
	br := brokertest.New(b, broker.Options{})
	j := change("a", "t", 1, domain.StatusPending)
	b.ReportAllocs()
	for b.Loop() {
		br.Publish(j)
	}
}

func BenchmarkFanOut1000(b *testing.B) {
	br := brokertest.New(b, broker.Options{Buffer: 1024})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	const subs = 1000
	var remaining atomic.Int64
	for i := 0; i < subs; i++ {
		s, err := br.Subscribe(ctx, broker.Filter{})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for j := range s.C() {
				if j.Status == domain.StatusCompleted && remaining.Add(-1) == 0 {
					close(done)
				}
			}
		}()
	}
	remaining.Store(int64(subs * b.N))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		br.Publish(change(fmt.Sprint(i), "t", 1, domain.StatusCompleted))
	}
	<-done
	b.ReportMetric(float64(subs*b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

func versions(jobs []*domain.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = fmt.Sprintf("%s:v%d:%s", j.ID, j.Version, j.Status)
	}
	return out
}

func TestCoalescingNeverSkipsAFinalState(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{Buffer: 1, CoalesceAfter: 2, MaxBacklog: 1 << 10})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := b.Subscribe(ctx, broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// Fill the channel and the backlog, then: j fails and is retried at
	// once. The retry's pending state must not replace FAILED.
	b.Publish(change("x", "t", 1, domain.StatusPending))
	b.Publish(change("y", "t", 1, domain.StatusPending))
	b.Publish(change("j", "t", 1, domain.StatusPending))
	b.Publish(change("j", "t", 2, domain.StatusProcessing))
	b.Publish(change("j", "t", 3, domain.StatusFailed))
	b.Publish(change("j", "t", 4, domain.StatusPending))
	var statuses []domain.Status
	for {
		j, ok := next(t, s)
		if !ok {
			t.Fatal("subscription ended")
		}
		if j.ID != "j" {
			continue
		}
		statuses = append(statuses, j.Status)
		if j.Version == 4 {
			break
		}
	}
	if !slices.Contains(statuses, domain.StatusFailed) {
		t.Fatalf("j's states %v: FAILED was skipped", statuses)
	}
}

func TestFlushWaitsUntilReadersTookEverything(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{Buffer: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := b.Subscribe(ctx, broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for v := int64(1); v <= 5; v++ {
		b.Publish(change("j", "t", v, domain.StatusProcessing))
	}
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if err := b.Flush(short); err == nil {
		t.Fatal("Flush returned while 5 changes waited for a reader that reads nothing")
	}
	flushed := make(chan error, 1)
	go func() { flushed <- b.Flush(context.Background()) }()
	for v := int64(1); v <= 5; v++ {
		if j, _ := next(t, s); j.Version != v {
			t.Fatalf("got v%d, want v%d", j.Version, v)
		}
		if v == 5 {
			select {
			case <-flushed:
				t.Fatal("Flush returned before the last change was acknowledged")
			default:
			}
		}
		s.Ack()
	}
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Flush did not return after the reader took everything")
	}
}

func TestFlushIgnoresReadersThatLeftAfterTheSubscriptionEnded(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{Buffer: 1, CoalesceAfter: 2, MaxBacklog: 2})

	// An id subscription ends by itself with its final state still in the
	// channel; then its reader leaves without taking it.
	ctx1, leave1 := context.WithCancel(context.Background())
	done, err := b.Subscribe(ctx1, broker.Filter{ID: "j"})
	if err != nil {
		t.Fatal(err)
	}
	done.Prime(change("j", "t", 3, domain.StatusCompleted))

	// A firehose subscription is ended as too slow, with a change in its
	// channel; then its reader leaves.
	ctx2, leave2 := context.WithCancel(context.Background())
	slow, err := b.Subscribe(ctx2, broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// OnReady says when the channel closes, without taking what it holds.
	ready := make(chan struct{}, 1)
	slow.OnReady(func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	for i := range 10 {
		b.Publish(change(fmt.Sprint(i), "t", 1, domain.StatusPending))
	}
	for !errors.Is(slow.Err(), broker.ErrSlowSubscriber) {
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatalf("the slow subscription was not ended within 10s (Err = %v)", slow.Err())
		}
	}

	leave1()
	leave2()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush after the readers left: %v", err)
	}
}

func TestSubscriptionEndedByThePumpIsUnregistered(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{Buffer: 1})
	s, err := b.Subscribe(context.Background(), broker.Filter{ID: "j"})
	if err != nil {
		t.Fatal(err)
	}
	s.Prime(change("j", "t", 1, domain.StatusPending)) // fills the channel
	b.Publish(change("j", "t", 2, domain.StatusProcessing))
	b.Publish(change("j", "t", 3, domain.StatusCompleted)) // goes through the backlog and the pump
	if got := drain(t, s); len(got) != 3 {
		t.Fatalf("got %v", versions(got))
	}
	brokertest.WaitSubscribers(t, b, 0, "every subscription to leave")
}

// TestOnReadyDrivesAReaderThatNeverBlocks reads a subscription only when
// its OnReady callback says so, with non-blocking receives, as the
// websocket transport does: every change arrives, in order, through the
// backlog too, and the end is signalled.
func TestOnReadyDrivesAReaderThatNeverBlocks(t *testing.T) {
	t.Parallel()
	b := setup(t, broker.Options{Buffer: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := b.Subscribe(ctx, broker.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(change("early", "t", 1, domain.StatusPending))
	ready := make(chan struct{}, 1)
	wake := func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	// Registered after a change may already wait: called at once then.
	s.OnReady(wake)
	const n = 50
	for i := range n {
		b.Publish(change(fmt.Sprint(i), "t", 1, domain.StatusPending))
	}
	var got []string
	for len(got) < n+1 {
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatalf("no OnReady call after %d changes", len(got))
		}
		for taken := true; taken; {
			select {
			case j := <-s.C():
				got = append(got, j.ID)
				s.Ack()
			default:
				taken = false
			}
		}
	}
	if got[0] != "early" || got[n] != fmt.Sprint(n-1) {
		t.Fatalf("changes %v, want early then 0..%d in order", got, n-1)
	}
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelFlush()
	if err := b.Flush(flushCtx); err != nil {
		t.Fatalf("Flush after every change was acknowledged: %v", err)
	}
	select {
	case <-ready: // a call left over from the last changes
	default:
	}
	cancel() // the reader leaves: the channel closes, and OnReady says so
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnReady call when the subscription ended")
	}
	if _, ok := <-s.C(); ok {
		t.Fatal("a change after the end")
	}
}

// WaitSubscribers returns as soon as the count is reached, up or down,
// and gives up with ctx.
func TestWaitSubscribersWakesOnArrivalAndDeparture(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, broker.Options{})
		waited := make(chan error, 1)
		go func() { waited <- b.WaitSubscribers(context.Background(), 2) }()
		ctx, leave := context.WithCancel(context.Background())
		for i := range 2 {
			synctest.Wait()
			select {
			case err := <-waited:
				t.Fatalf("WaitSubscribers(2) returned %v with %d subscribers", err, i)
			default:
			}
			if _, err := b.Subscribe(ctx, broker.Filter{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-waited; err != nil {
			t.Fatalf("WaitSubscribers(2) with 2 subscribers: %v", err)
		}
		go func() { waited <- b.WaitSubscribers(context.Background(), 0) }()
		leave()
		if err := <-waited; err != nil {
			t.Fatalf("WaitSubscribers(0) after both left: %v", err)
		}
		short, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.WaitSubscribers(short, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitSubscribers(1) with none coming = %v, want the context's error", err)
		}
	})
}

// A type subscription gets each type's latest controls, oldest change
// first, without blocking the publisher, and ends with the broker.
func TestTypeSubscription(t *testing.T) {
	t.Parallel()
	b := broker.New(broker.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	sub, err := b.SubscribeTypes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b.PublishType(domain.TypeControl{Name: "a", Paused: true})
	b.PublishType(domain.TypeControl{Name: "b", Concurrency: 2})
	b.PublishType(domain.TypeControl{Name: "a", Paused: false}) // replaces the change not read
	for _, want := range []domain.TypeControl{{Name: "a"}, {Name: "b", Concurrency: 2}} {
		got, err := sub.Next(context.Background())
		if err != nil || got != want {
			t.Fatalf("next = %+v, %v; want %+v", got, err, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(context.Background()); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("next after the broker stopped = %v, want ErrClosed", err)
	}
}
