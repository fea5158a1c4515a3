package memory

import (
	"container/heap"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// runQueue indexes the pending jobs for Claim: scheduled holds every
// pending snapshot by RunAt; once due, it moves to ready, ordered
// for dispatch. Entries are snapshots: one is current while the store's
// pending map still holds that very snapshot, and stale entries are dropped
// when they surface. Not safe for concurrent use (the store's lock guards
// it).
type runQueue struct {
	scheduled jobHeap
	ready     jobHeap
	stale     int // entries known to be stale; compacted past a bound
}

func newRunQueue() *runQueue {
	return &runQueue{
		scheduled: jobHeap{less: func(a, b *domain.Job) bool {
			if !a.RunAt.Equal(b.RunAt) {
				return a.RunAt.Before(b.RunAt)
			}
			return a.Seq < b.Seq
		}},
		ready: jobHeap{less: runsBefore},
	}
}

// add indexes a snapshot that just became pending.
func (q *runQueue) add(j *domain.Job) { heap.Push(&q.scheduled, j) }

// replaced notes that a pending snapshot stopped being current; once stale
// entries outnumber the pending jobs, the heaps are rebuilt from pending,
// so that jobs cancelled far ahead of their runAt free their memory.
func (q *runQueue) replaced(pending map[string]*domain.Job) {
	q.stale++
	if q.stale <= len(pending)+64 {
		return
	}
	q.scheduled.items = q.scheduled.items[:0]
	q.ready.items = q.ready.items[:0]
	for _, j := range pending {
		q.scheduled.items = append(q.scheduled.items, j)
	}
	heap.Init(&q.scheduled)
	q.stale = 0
}

// due moves the pending jobs whose RunAt is not after now to ready and
// returns the earliest RunAt after now (zero if none).
func (q *runQueue) due(now time.Time, current func(*domain.Job) bool) time.Time {
	for q.scheduled.Len() > 0 {
		top := q.scheduled.items[0]
		if !current(top) {
			heap.Pop(&q.scheduled)
			continue
		}
		if top.RunAt.After(now) {
			return top.RunAt
		}
		heap.Push(&q.ready, heap.Pop(&q.scheduled))
	}
	return time.Time{}
}

// oldestDue returns the earliest RunAt among the current, due snapshots
// that count (zero if none).
func (q *runQueue) oldestDue(now time.Time, current, counts func(*domain.Job) bool) time.Time {
	q.due(now, current)
	var oldest time.Time
	for _, j := range q.ready.items {
		if current(j) && counts(j) && (oldest.IsZero() || j.RunAt.Before(oldest)) {
			oldest = j.RunAt
		}
	}
	return oldest
}

// take removes and returns up to limit current, due snapshots in dispatch
// order that accept takes (nil takes all); the caller claims them at once.
// The ones accept passes over stay ready: they were walked over, which
// costs a walk over a paused type's backlog per claim.
func (q *runQueue) take(now time.Time, limit int, current, accept func(*domain.Job) bool) []*domain.Job {
	q.due(now, current)
	var out, passed []*domain.Job
	for len(out) < limit && q.ready.Len() > 0 {
		j := heap.Pop(&q.ready).(*domain.Job)
		switch {
		case !current(j):
		case accept == nil || accept(j):
			out = append(out, j)
		default:
			passed = append(passed, j)
		}
	}
	for _, j := range passed {
		heap.Push(&q.ready, j)
	}
	return out
}

// jobHeap is a container/heap of snapshots.
type jobHeap struct {
	items []*domain.Job
	less  func(a, b *domain.Job) bool
}

func (h jobHeap) Len() int           { return len(h.items) }
func (h jobHeap) Less(i, k int) bool { return h.less(h.items[i], h.items[k]) }
func (h jobHeap) Swap(i, k int)      { h.items[i], h.items[k] = h.items[k], h.items[i] }
func (h *jobHeap) Push(x any)        { h.items = append(h.items, x.(*domain.Job)) }
func (h *jobHeap) Pop() any {
	n := len(h.items) - 1
	j := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	return j
}
