package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// maxBatch bounds how many writes share one transaction.
const maxBatch = 128

// writeFunc is one write. It runs in the writer goroutine inside the
// batch's transaction, reports what it changed with w.changed and
// w.deleted, and returns its outcome: an error undoes its statements and
// nothing else.
type writeFunc func(w *writeTx) error

// writeRequest carries one write to the writer goroutine and its answer
// back. The caller's context rides along (as in an http.Request) only so
// that the writer can skip a write whose caller gave up while it queued.
type writeRequest struct {
	ctx     context.Context
	apply   writeFunc
	changed []*domain.Job
	types   []domain.TypeControl // type controls changed, published like changed
	counts  []countDelta
	err     error
	done    chan struct{} // closed once err and changed are final
}

// writeTx is what a writeFunc sees of the batch's transaction.
// Statements run without the caller's context: one caller's cancellation
// must not interrupt a transaction other callers share. The busy timeout
// bounds them instead.
type writeTx struct {
	wr  *writer
	now time.Time // the store's clock when the write started
	req *writeRequest
}

func (w *writeTx) exec(query string, args ...any) (sql.Result, error) {
	st, err := w.wr.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

func (w *writeTx) query(query string, args ...any) (*sql.Rows, error) {
	st, err := w.wr.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Query(args...)
}

// queryRow is QueryRow of the prepared query; a failed preparation shows
// in the row's Scan.
func (w *writeTx) queryRow(query string, args ...any) *sql.Row {
	st, err := w.wr.stmt(query)
	if err != nil {
		return w.wr.conn.QueryRowContext(context.Background(), query, args...)
	}
	return st.QueryRow(args...)
}

// processing returns the snapshot of a processing job as of the last
// commit, if the writer has it. A write may have changed the job since,
// earlier in the batch: a statement that relies on the snapshot must
// check its version.
func (w *writeTx) processing(id string) (*domain.Job, bool) {
	j, ok := w.wr.processing[id]
	return j, ok
}

// writer is what the writer goroutine owns: the write connection, the
// statements prepared on it (preparing costs more than running most of
// them), and the current snapshot of the processing jobs (what Complete
// needs to build the completed job without reading it back). Only the
// writer goroutine uses it.
type writer struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
	// processing holds every job this store moved to processing, or
	// changed while processing, since Open, by id. Commits keep it up
	// to date; a job leaves it when it leaves processing.
	processing map[string]*domain.Job
}

func (wr *writer) stmt(query string) (*sql.Stmt, error) {
	if st, ok := wr.stmts[query]; ok {
		return st, nil
	}
	st, err := wr.conn.PrepareContext(context.Background(), query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	wr.stmts[query] = st
	return st, nil
}

// committed records the changes of a committed batch in processing.
func (wr *writer) committed(batch []*writeRequest) {
	for _, r := range batch {
		for _, j := range r.changed {
			if j.Status == domain.StatusProcessing {
				wr.processing[j.ID] = j
			} else {
				delete(wr.processing, j.ID)
			}
		}
	}
}

// close closes the statements and the connection.
func (wr *writer) close() error {
	var errs []error
	for _, st := range wr.stmts {
		errs = append(errs, st.Close())
	}
	clear(wr.stmts)
	return errors.Join(append(errs, wr.conn.Close())...)
}

// changed records j as the new version of a job that was in status from
// ("" for a new job): j is published once the transaction committed, in
// the order of the calls, and the counts of statuses follow the change.
func (w *writeTx) changed(from domain.Status, j *domain.Job) {
	w.req.changed = append(w.req.changed, j)
	if from != j.Status {
		w.count(j.Owner, j.Type, from, -1)
		w.count(j.Owner, j.Type, j.Status, 1)
	}
}

// deleted records that a job of owner and type typ in status was deleted.
func (w *writeTx) deleted(owner, typ string, status domain.Status) { w.count(owner, typ, status, -1) }

func (w *writeTx) count(owner, typ string, status domain.Status, n int) {
	if status != "" {
		w.req.counts = append(w.req.counts, countDelta{countKey{owner, typ, status}, n})
	}
}

// countKey names a row of job_owner_counts, and with owner "" a row of
// job_counts.
type countKey struct {
	owner  string
	typ    string
	status domain.Status
}

type countDelta struct {
	key countKey
	n   int
}

// saveCounts adds up the count changes of the batch's successful writes
// and applies them, one statement per type and status in job_counts (all
// owners together), and one per owner, type and status in
// job_owner_counts for the jobs that have an owner.
func (s *Store) saveCounts(wr *writer, batch []*writeRequest) error {
	sum := make(map[countKey]int)
	for _, r := range batch {
		if r.err == nil {
			for _, d := range r.counts {
				sum[countKey{"", d.key.typ, d.key.status}] += d.n
				if d.key.owner != "" {
					sum[d.key] += d.n
				}
			}
		}
	}
	w := &writeTx{wr: wr}
	for k, n := range sum {
		if n == 0 {
			continue
		}
		var err error
		if k.owner == "" {
			_, err = w.exec(`INSERT INTO job_counts (type, status, n) VALUES (?, ?, ?)
				ON CONFLICT (type, status) DO UPDATE SET n = n + excluded.n`, k.typ, string(k.status), n)
		} else {
			_, err = w.exec(`INSERT INTO job_owner_counts (owner, type, status, n) VALUES (?, ?, ?, ?)
				ON CONFLICT (owner, type, status) DO UPDATE SET n = n + excluded.n`, k.owner, k.typ, string(k.status), n)
		}
		if err != nil {
			return fmt.Errorf("update counts: %w", err)
		}
	}
	return nil
}

// write runs apply in the writer goroutine and returns its outcome once
// the change is committed and published. When ctx ends before the writer
// takes the write, write returns ctx's error and nothing changes; once
// taken, it waits for the transaction (bounded by the busy timeout).
func (s *Store) write(ctx context.Context, apply writeFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &writeRequest{ctx: ctx, apply: apply, done: make(chan struct{})}
	select {
	case s.writes <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return dbError(errClosed)
	}
	<-r.done
	return dbError(r.err)
}

// runWriter owns the write connection: it takes the queued writes in
// batches, runs each batch in one transaction, publishes its changes after
// the commit and answers the callers. Batching costs a lone write nothing
// (it goes at once); under load, the writes that queued while a commit was
// running share the next one. Open starts it with the connection, which it
// closes on its way out; it returns when Close closes s.closing, after
// finishing the batch at hand, and then closes s.writerDone.
func (s *Store) runWriter(conn *sql.Conn) {
	defer close(s.writerDone)
	wr := &writer{conn: conn, stmts: make(map[string]*sql.Stmt), processing: make(map[string]*domain.Job)}
	defer func() {
		if err := wr.close(); err != nil {
			s.log.Error("sqlite store: close the write connection", "err", err)
		}
	}()
	batch := make([]*writeRequest, 0, maxBatch)
	for {
		// A write already queued means the writer is busy: worth yielding
		// in gather. An idle writer takes the next write as it comes.
		busy := true
		select {
		case r := <-s.writes:
			batch = append(batch[:0], r)
		default:
			busy = false
			select {
			case <-s.closing:
				return
			case r := <-s.writes:
				batch = append(batch[:0], r)
			}
		}
		batch = s.gather(batch, busy)
		s.commit(wr, batch)
		clear(batch)
	}
}

// gather adds the writes that are queued to batch, without waiting for
// more: waiting for the callers the last batch answered to come back
// (with a timer of 50 µs to 1 ms) made a worker pool slower, not faster,
// on two cores. When the writer is busy, though, it yields once first, so
// that the callers it just answered, which tend to write again at once,
// can queue up: that made batches bigger and a worker pool 5 to 20%
// faster. An idle writer does not yield, so that it never waits behind
// goroutines that keep the processors busy.
func (s *Store) gather(batch []*writeRequest, busy bool) []*writeRequest {
	if busy {
		runtime.Gosched()
	}
	for len(batch) < maxBatch {
		select {
		case r := <-s.writes:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit runs a batch in one transaction. With more than one write, each
// runs inside a savepoint, so that one write's failure undoes only its
// own statements. Every change is published after the commit, in batch
// order, before any caller is answered.
func (s *Store) commit(wr *writer, batch []*writeRequest) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	w := &writeTx{wr: wr}
	// IMMEDIATE takes the write lock now rather than on the first write,
	// where a lock held by another connection could not be waited for.
	if _, err := w.exec("BEGIN IMMEDIATE"); err != nil {
		s.fail(batch, fmt.Errorf("begin transaction: %w", err))
		return
	}
	savepoints := len(batch) > 1
	applied := 0
	for _, r := range batch {
		if err := s.apply(wr, r, savepoints); err != nil {
			s.rollback(w)
			s.fail(batch, err)
			return
		}
		if r.err == nil {
			applied++
		}
	}
	if applied == 0 {
		s.rollback(w)
		return
	}
	if err := s.saveCounts(wr, batch); err != nil {
		s.rollback(w)
		s.fail(batch, err)
		return
	}
	if _, err := w.exec("COMMIT"); err != nil {
		s.rollback(w)
		s.fail(batch, fmt.Errorf("commit: %w", err))
		return
	}
	wr.committed(batch)
	for _, r := range batch {
		for _, j := range r.changed {
			s.pub.Publish(j)
		}
		for _, c := range r.types {
			s.typePub.PublishType(c)
		}
	}
}

// apply runs one write of a batch and sets its outcome. It returns an
// error only when the transaction itself broke.
func (s *Store) apply(wr *writer, r *writeRequest, savepoint bool) error {
	if r.err = r.ctx.Err(); r.err != nil {
		return nil
	}
	w := &writeTx{wr: wr, now: s.now(), req: r}
	if savepoint {
		if _, err := w.exec("SAVEPOINT write"); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
	}
	r.err = r.apply(w)
	if r.err != nil {
		r.changed, r.types, r.counts = nil, nil, nil
	}
	if !savepoint {
		return nil
	}
	if r.err != nil {
		if _, err := w.exec("ROLLBACK TO write"); err != nil {
			return fmt.Errorf("roll back a failed write (%v): %w", r.err, err)
		}
	}
	if _, err := w.exec("RELEASE write"); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

// fail answers every write of a batch that had not failed on its own with
// err: nothing of the batch was kept.
func (s *Store) fail(batch []*writeRequest, err error) {
	s.log.Error("sqlite store: write transaction failed", "writes", len(batch), "err", err)
	for _, r := range batch {
		r.changed, r.types, r.counts = nil, nil, nil
		if r.err == nil {
			r.err = err
		}
	}
}

// rollback ends the transaction, unless SQLite already rolled it back
// itself (it does on some errors).
func (s *Store) rollback(w *writeTx) {
	if _, err := w.exec("ROLLBACK"); err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		s.log.Error("sqlite store: roll back", "err", err)
	}
}
