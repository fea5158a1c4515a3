package memory

import (
	"container/heap"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// runQueue indexes the pending jobs for Claim: scheduled holds every
// pending snapshot by RunAt; once due, it moves to its type's ready heap,
// ordered for dispatch, and heads orders the types by their first ready
// job. A claim walks the types' heads: a type that may take no more (paused,
// at its concurrency, out of tokens) costs one visit of its head, however
// many jobs it has waiting. Entries are snapshots: one is current while the
// store's pending map still holds that very snapshot, and stale entries are
// dropped when they surface. Not safe for concurrent use (the store's lock
// guards it).
type runQueue struct {
	scheduled jobHeap
	types     map[string]*typeQueue // types that had ready entries
	heads     typeHeap              // the types with ready entries
	idle      int                   // types without; forgotten past a bound
	stale     int                   // entries known to be stale; compacted past a bound
	// visits counts the ready entries take looked at: what a claim costs.
	visits int
}

// typeQueue is one type's ready entries in dispatch order.
type typeQueue struct {
	name  string
	ready jobHeap
	at    int // position in heads, -1 when it has no ready entries
}

func newRunQueue() *runQueue {
	return &runQueue{
		scheduled: jobHeap{less: func(a, b *domain.Job) bool {
			if !a.RunAt.Equal(b.RunAt) {
				return a.RunAt.Before(b.RunAt)
			}
			return a.Seq < b.Seq
		}},
		types: make(map[string]*typeQueue),
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
	clear(q.types)
	clear(q.heads)
	q.heads = q.heads[:0]
	q.idle = 0
	for _, j := range pending {
		q.scheduled.items = append(q.scheduled.items, j)
	}
	heap.Init(&q.scheduled)
	q.stale = 0
}

// entries returns how many entries the queue holds, current or stale.
func (q *runQueue) entries() int {
	n := q.scheduled.Len()
	for _, tq := range q.types {
		n += tq.ready.Len()
	}
	return n
}

// due moves the pending jobs whose RunAt is not after now to their types'
// ready heaps and returns the earliest RunAt after now (zero if none).
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
		heap.Pop(&q.scheduled)
		q.ready(top)
	}
	return time.Time{}
}

// ready adds a due snapshot to its type's heap.
func (q *runQueue) ready(j *domain.Job) {
	tq, ok := q.types[j.Type]
	if !ok {
		tq = &typeQueue{name: j.Type, ready: jobHeap{less: runsBefore}, at: -1}
		q.types[j.Type] = tq
		q.idle++
	}
	if tq.at < 0 {
		tq.ready.items = append(tq.ready.items, j)
		heap.Push(&q.heads, tq)
		q.idle--
		return
	}
	heap.Push(&tq.ready, j)
	if tq.ready.items[0] == j {
		heap.Fix(&q.heads, tq.at)
	}
}

// oldestDue returns the earliest RunAt among the current, due snapshots
// that count (zero if none).
func (q *runQueue) oldestDue(now time.Time, current, counts func(*domain.Job) bool) time.Time {
	q.due(now, current)
	var oldest time.Time
	for _, tq := range q.types {
		for _, j := range tq.ready.items {
			if current(j) && counts(j) && (oldest.IsZero() || j.RunAt.Before(oldest)) {
				oldest = j.RunAt
			}
		}
	}
	return oldest
}

// take removes and returns up to limit current, due snapshots in dispatch
// order that accept takes (nil takes all); the caller claims them at once.
// accept must refuse every later job of a type once it refused one (a
// type's quota only shrinks during a claim): that type is set aside for
// the rest of the walk, after one look at its head.
func (q *runQueue) take(now time.Time, limit int, current, accept func(*domain.Job) bool) []*domain.Job {
	q.due(now, current)
	var (
		out  []*domain.Job
		shut []*typeQueue
	)
	for len(out) < limit && len(q.heads) > 0 {
		tq := q.heads[0]
		j := tq.ready.items[0]
		q.visits++
		switch {
		case !current(j):
			q.pop(tq)
		case accept == nil || accept(j):
			q.pop(tq)
			out = append(out, j)
		default:
			heap.Pop(&q.heads)
			shut = append(shut, tq)
		}
	}
	for _, tq := range shut {
		heap.Push(&q.heads, tq)
	}
	return out
}

// pop removes the first entry of tq, which heads the queue. A type left
// without entries leaves heads but stays in types, so that a queue that
// keeps running dry (a job created, then claimed) does not make its type
// again each time; once such types outnumber the others by a bound, they
// are forgotten (types come from clients).
func (q *runQueue) pop(tq *typeQueue) {
	heap.Pop(&tq.ready)
	if tq.ready.Len() > 0 {
		heap.Fix(&q.heads, tq.at)
		return
	}
	heap.Remove(&q.heads, tq.at)
	tq.at = -1
	q.idle++
	if q.idle <= len(q.heads)+64 {
		return
	}
	for name, tq := range q.types {
		if tq.at < 0 {
			delete(q.types, name)
		}
	}
	q.idle = 0
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

// typeHeap is a container/heap of types with ready entries, by their first
// entry in dispatch order.
type typeHeap []*typeQueue

func (h typeHeap) Len() int { return len(h) }
func (h typeHeap) Less(i, k int) bool {
	return runsBefore(h[i].ready.items[0], h[k].ready.items[0])
}
func (h typeHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].at, h[k].at = i, k
}
func (h *typeHeap) Push(x any) {
	tq := x.(*typeQueue)
	tq.at = len(*h)
	*h = append(*h, tq)
}
func (h *typeHeap) Pop() any {
	old := *h
	n := len(old) - 1
	tq := old[n]
	old[n] = nil
	*h = old[:n]
	return tq
}
