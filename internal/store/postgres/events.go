package postgres

import (
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// How an instance publishes job changes in version order.
//
// Each statement that changes jobs runs under a random token, written to
// the rows it changes (writer) while the previous token moves to
// prior_writer. Once the statement's rows are back, the instance publishes
// them; a row whose prior_writer is a statement of this instance that has
// not finished publishing yet waits for it first. Row locks make the
// prior statement commit first, so a chain of changes made by this instance
// is published in version order with no gap, whatever the goroutines'
// scheduling (two goroutines, one creating a job and one claiming it at
// once, would otherwise race to the publisher).
//
// Changes made by other instances reach this one through the listener,
// which fetches the latest state of the jobs: intermediate versions may be
// skipped, and a fetched version may overtake a local change's publication.
// The gate in front of the publisher drops every version not newer than
// the last one it let through for the job, so subscribers never see a job
// go back in time.

// sequencer tracks this instance's statements that changed jobs and have
// not finished publishing. It is safe for concurrent use.
type sequencer struct {
	log *slog.Logger

	mu      sync.Mutex
	running map[int64]chan struct{} // token → closed when finished; nil until someone waits
}

func newSequencer(log *slog.Logger) *sequencer {
	return &sequencer{log: log, running: make(map[int64]chan struct{})}
}

// start registers a new statement and returns its token, which the caller
// writes to the rows the statement changes and passes to finish once it
// has published them (or failed).
func (q *sequencer) start() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		tok := rand.Int64()
		if _, taken := q.running[tok]; tok != 0 && !taken {
			q.running[tok] = nil
			return tok
		}
	}
}

// finish unregisters tok and wakes the statements waiting for it.
func (q *sequencer) finish(tok int64) {
	q.mu.Lock()
	done := q.running[tok]
	delete(q.running, tok)
	q.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// maxPriorWait bounds how long a publication waits for the statement that
// wrote the version before it. That statement committed already and only
// has to read its rows and publish, so the bound is never reached unless
// something is badly wrong; then the change is published anyway (the gate
// keeps the order, the earlier version is dropped).
const maxPriorWait = 5 * time.Second

// await returns once the statement with token prior (a job's prior_writer)
// has finished publishing, at once if it is not one of this instance's
// running statements.
func (q *sequencer) await(prior int64) {
	if prior == 0 {
		return
	}
	q.mu.Lock()
	done, running := q.running[prior]
	if running && done == nil {
		done = make(chan struct{})
		q.running[prior] = done
	}
	q.mu.Unlock()
	if !running {
		return
	}
	t := time.NewTimer(maxPriorWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		q.log.Warn("postgres store: publishing a job change without the prior one, whose statement has not finished publishing", "after", maxPriorWait)
	}
}

// change is a version of a job a statement of this instance wrote, with
// the token of the statement that wrote the version before it.
type change struct {
	job   *domain.Job
	prior int64
}

// gateRotation is how long the gate remembers a job's last published
// version: between one and two rotations. It covers the races between
// local publications and the listener's fetches (milliseconds); a re-sync
// after a longer outage may publish a job's latest version a second time.
const gateRotation = 10 * time.Second

// gate lets a job's versions through to the publisher only in increasing
// order, dropping the others. It remembers the last version per job in two
// generations of maps, swapped every gateRotation, so its memory is bounded
// by the jobs changed in the last two rotations. It is safe for concurrent
// use; it calls the publisher under its lock, which is what orders the
// publications of racing goroutines.
type gate struct {
	pub store.Publisher

	mu       sync.Mutex
	cur, old map[uuid.UUID]int64
	rotated  time.Time
}

func newGate(pub store.Publisher) *gate {
	return &gate{pub: pub, cur: make(map[uuid.UUID]int64), old: make(map[uuid.UUID]int64), rotated: time.Now()}
}

// publish passes j to the publisher if it is newer than the last version
// published of the job, and reports whether it did.
func (g *gate) publish(j *domain.Job) bool {
	id, err := uuid.Parse(j.ID)
	if err != nil {
		return false // not a job of this store
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); now.Sub(g.rotated) >= gateRotation {
		g.old, g.cur, g.rotated = g.cur, make(map[uuid.UUID]int64, len(g.cur)), now
	}
	if j.Version <= g.lastLocked(id) {
		return false
	}
	g.cur[id] = j.Version
	g.pub.Publish(j)
	return true
}

// seen reports whether version v of the job with id, or a later one, was
// published already (as far as the gate remembers).
func (g *gate) seen(id uuid.UUID, v int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return v <= g.lastLocked(id)
}

func (g *gate) lastLocked(id uuid.UUID) int64 {
	if v, ok := g.cur[id]; ok {
		return v
	}
	return g.old[id]
}
