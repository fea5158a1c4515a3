package postgres

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobqueue/jobqueue/internal/domain"
)

func TestGateDropsStaleVersions(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	g := newGate(rec)
	id := uuid.Must(uuid.NewV7()).String()
	for _, v := range []int64{2, 1, 2, 3, 5, 4} {
		g.publish(&domain.Job{ID: id, Version: v})
	}
	var got []int64
	for _, j := range rec.of(id) {
		got = append(got, j.Version)
	}
	if len(got) != 3 || got[0] != 2 || got[1] != 3 || got[2] != 5 {
		t.Fatalf("published versions %v, want [2 3 5]", got)
	}
	if !g.seen(uuid.MustParse(id), 4) || g.seen(uuid.MustParse(id), 6) {
		t.Fatal("seen disagrees with what was published")
	}
}

// A publication waits for this instance's statement that wrote the prior
// version, and only for it.
func TestSequencerAwaitsPriorStatement(t *testing.T) {
	t.Parallel()
	q := newSequencer(slog.New(slog.DiscardHandler))
	prior := q.start()
	released := make(chan struct{})
	go func() {
		q.await(prior)
		close(released)
	}()
	select {
	case <-released:
		t.Fatal("await returned while the prior statement was still publishing")
	case <-time.After(50 * time.Millisecond):
	}
	q.finish(prior)
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("await did not return once the prior statement finished")
	}
	q.await(prior)      // finished: at once
	q.await(12345)      // not one of ours: at once
	q.await(0)          // no prior writer: at once
	q.finish(q.start()) // nobody waiting: no channel made
	if len(q.running) != 0 {
		t.Fatalf("%d statements still registered", len(q.running))
	}
}
