package worker

import (
	"context"
	"sync"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Inbox is how a pool hears of job changes: a store.Publisher (and
// store.TypePublisher) to give the store when it is opened, then to New.
// A job that becomes pending (unless its type is paused), a change of a
// type's controls, and a job of a type with a concurrency limit that
// finishes wake the pool's dispatcher; a cancellation request for a job the pool runs cancels its
// handler's context. Publish never blocks and is safe for
// concurrent use. An Inbox serves one pool.
//
// It is apart from the Pool to break a cycle: the pool needs the store,
// and the store reports its changes to its publishers from the moment it
// is opened, so what hears them must exist first. Changes published before
// the pool runs are not lost: the dispatcher claims at once when it starts.
type Inbox struct {
	wake chan struct{} // a job became pending; capacity 1, sends never block

	mu sync.Mutex
	// capped are the types with a concurrency limit: one of their jobs
	// leaving processing may let a waiting job of the type run.
	capped map[string]bool
	// paused are the paused types: a job of theirs that becomes pending
	// cannot be claimed, so it does not wake the dispatcher.
	paused      map[string]bool
	held        map[string]*heldJob // claimed, outcome not yet written
	claiming    int                 // claims in flight
	lateCancels []string            // cancellations that arrived during a claim
}

var (
	_ store.Publisher     = (*Inbox)(nil)
	_ store.TypePublisher = (*Inbox)(nil)
)

// NewInbox returns an empty inbox.
func NewInbox() *Inbox {
	return &Inbox{wake: make(chan struct{}, 1), held: make(map[string]*heldJob), capped: make(map[string]bool), paused: make(map[string]bool)}
}

// Publish tells the pool about a job change.
func (in *Inbox) Publish(job *domain.Job) {
	switch {
	case job.Status == domain.StatusProcessing && job.CancelRequested:
		in.cancelJob(job)
	case job.Status == domain.StatusPending:
		if !in.isPaused(job.Type) {
			in.wakeUp()
		}
	case job.Status.Final() && in.isCapped(job.Type):
		// A place of its type freed up, perhaps in another process.
		in.wakeUp()
	}
}

// PublishType tells the pool that a type's controls changed: a resumed
// type, or a limit raised, may have jobs to run now. It also keeps the
// set of types with a concurrency limit, whose finished jobs wake the
// dispatcher (a job of the type may be waiting for the place), and the
// set of paused types, whose new pending jobs do not (producers sending
// to a paused type would otherwise make claim after claim pass over its
// backlog). The server publishes every type's controls to it once at
// start.
func (in *Inbox) PublishType(c domain.TypeControl) {
	in.mu.Lock()
	if c.Concurrency > 0 {
		in.capped[c.Name] = true
	} else {
		delete(in.capped, c.Name)
	}
	if c.Paused {
		in.paused[c.Name] = true
	} else {
		delete(in.paused, c.Name)
	}
	in.mu.Unlock()
	in.wakeUp()
}

func (in *Inbox) isCapped(typ string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.capped[typ]
}

func (in *Inbox) isPaused(typ string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.paused[typ]
}

// wakeUp makes the dispatcher look for jobs again. It never blocks.
func (in *Inbox) wakeUp() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// cancelJob cancels the handler of a held job whose cancellation was
// requested; a job claimed by a claim still in flight is cancelled once
// that claim registers it.
func (in *Inbox) cancelJob(job *domain.Job) {
	in.mu.Lock()
	h := in.held[job.ID]
	if h == nil && in.claiming > 0 {
		in.lateCancels = append(in.lateCancels, job.ID)
	}
	in.mu.Unlock()
	if h != nil && h.lease.Attempt == job.Attempts {
		h.requestCancel()
	}
}

// claimStarted counts a claim in flight: until claimed registers its jobs,
// their cancellation requests are kept.
func (in *Inbox) claimStarted() {
	in.mu.Lock()
	in.claiming++
	in.mu.Unlock()
}

// claimed registers the jobs a claim of owner returned as held and ends
// the claim started by claimStarted; the cancellations that arrived for
// them during the claim are applied.
func (in *Inbox) claimed(jobs []*domain.Job, owner string) []claimed {
	out := make([]claimed, len(jobs))
	in.mu.Lock()
	for i, job := range jobs {
		h := &heldJob{lease: store.LeaseOf(job, owner)}
		in.held[job.ID] = h
		out[i] = claimed{job: job, held: h}
	}
	in.claiming--
	late := in.lateCancels
	if in.claiming == 0 {
		in.lateCancels = nil
	}
	var cancelled []*heldJob
	for _, id := range late {
		if h := in.held[id]; h != nil {
			cancelled = append(cancelled, h)
		}
	}
	in.mu.Unlock()
	for _, h := range cancelled {
		h.requestCancel()
	}
	return out
}

// forget drops a held job whose outcome was written (or given up on),
// unless h is no longer its entry (a later claim of the same job, after a
// retry, has an entry of its own). Its lease is no longer renewed.
func (in *Inbox) forget(h *heldJob) {
	in.mu.Lock()
	if in.held[h.lease.JobID] == h {
		delete(in.held, h.lease.JobID)
	}
	in.mu.Unlock()
}

// heldIDs returns the ids of the jobs held, whose leases the heartbeat
// renews.
func (in *Inbox) heldIDs() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	ids := make([]string, 0, len(in.held))
	for id := range in.held {
		ids = append(ids, id)
	}
	return ids
}

// heldJob is a job the pool claimed and has not written the outcome of
// yet: its lease is renewed, and a cancellation request reaches its
// handler.
type heldJob struct {
	lease store.Lease

	mu              sync.Mutex
	cancel          context.CancelFunc // nil until the handler starts
	cancelRequested bool
}

// requestCancel records a user's cancellation and cancels the handler if
// it runs.
func (h *heldJob) requestCancel() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cancelRequested = true
	if h.cancel != nil {
		h.cancel()
	}
}

// started sets the handler's cancel function; it reports false when the
// job's cancellation was requested already (the handler must not run).
func (h *heldJob) started(cancel context.CancelFunc) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cancel = cancel
	return !h.cancelRequested
}

func (h *heldJob) wasCancelled() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cancelRequested
}
