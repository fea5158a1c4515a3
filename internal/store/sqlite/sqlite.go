// Package sqlite is an embedded, durable implementation of store.Store in
// one SQLite file (modernc.org/sqlite: pure Go, no cgo), for a single
// process.
//
// Durability: the database runs in WAL mode with synchronous=NORMAL. A
// write that returned survives a crash of the process. A power loss or a
// crash of the operating system may lose the writes made since the last
// checkpoint (the write-ahead log is synced only then), never the
// consistency of the file.
//
// Concurrency: one goroutine owned by the Store makes every write, on one
// connection, in transactions begun with BEGIN IMMEDIATE. The writes that
// queue while a transaction commits share the next one (group commit),
// which is what makes many small writes (a worker pool's Complete calls)
// cheap. Reads (Get, List, Stats, NextRunAt) use a separate pool of
// read-only connections and run beside the writer. The file is meant for
// one process: events reach only the process that made the change, and
// another writer would make this one wait (up to the busy timeout).
package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

var _ store.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// readConns is the size of the read pool.
const readConns = 4

// DefaultBusyTimeout is how long a statement waits for a lock before it
// fails with SQLITE_BUSY.
const DefaultBusyTimeout = 5 * time.Second

// Options configure a Store. The zero value is usable.
type Options struct {
	// Publisher receives every change after it is committed, in version
	// order per job, from the writer goroutine: it must return at once and
	// must not write to the store (reads are fine). Nil publishes nowhere.
	Publisher store.Publisher
	// Logger reports migrations and failed transactions. Nil discards.
	Logger *slog.Logger
	// Now is the clock of every time the store sets (CreatedAt, UpdatedAt,
	// StartedAt, FinishedAt, error times). Default time.Now().UTC().
	// Times are kept at microsecond precision.
	Now func() time.Time
	// BusyTimeout bounds the wait for a lock; past it a call fails with an
	// error wrapping domain.ErrUnavailable. Default DefaultBusyTimeout.
	BusyTimeout time.Duration
	// ErrorHistory is how many failures a job keeps (see
	// store.ErrorHistory); zero means domain.DefaultErrorHistory.
	ErrorHistory int
}

// Store is a job store in a SQLite file. It is safe for concurrent use.
// Returned jobs are fresh snapshots that nothing changes afterwards.
type Store struct {
	pub     store.Publisher
	typePub store.TypePublisher
	log     *slog.Logger
	clock   func() time.Time
	history int // failures kept per job (store.ErrorHistory)

	wdb   *sql.DB // one connection, used only by the writer goroutine
	rdb   *sql.DB // read-only pool
	reads *readStmts

	writes     chan *writeRequest // unbuffered: a queued write is a blocked sender
	closing    chan struct{}      // closed by Close: the writer stops
	writerDone chan struct{}      // closed when the writer returned

	closeOnce sync.Once
	closeErr  error
}

// Open opens the store in the file at path, creating the file and its
// parent directories when missing, and brings its schema up to date. The
// caller must Close the store; it owns one goroutine until then.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("open sqlite store: empty path: %w", domain.ErrInvalid)
	}
	history, err := store.ErrorHistory(opts.ErrorHistory)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite store %s: create directory: %w", path, err)
	}
	s := &Store{
		pub:        opts.Publisher,
		log:        opts.Logger,
		clock:      opts.Now,
		history:    history,
		writes:     make(chan *writeRequest),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	if s.pub == nil {
		s.pub = store.PublisherFunc(func(*domain.Job) {})
	}
	s.typePub = store.TypePublisherOf(s.pub)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = func() time.Time { return time.Now().UTC() }
	}
	busy := cmp.Or(opts.BusyTimeout, DefaultBusyTimeout).Milliseconds()

	// The writer: one connection, owned by the writer goroutine. Its
	// transactions begin IMMEDIATE (see commit), and so do those of the
	// migrations (_txlock).
	s.wdb, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_pragma": {fmt.Sprintf("busy_timeout(%d)", busy), "journal_mode(WAL)", "synchronous(NORMAL)", "temp_store(MEMORY)"},
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	if err := s.migrate(ctx); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, dbError(err))
	}
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, dbError(err))
	}

	s.rdb, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_pragma": {fmt.Sprintf("busy_timeout(%d)", busy), "query_only(1)"},
	}))
	if err == nil {
		s.rdb.SetMaxOpenConns(readConns)
		s.rdb.SetMaxIdleConns(readConns)
		s.rdb.SetConnMaxLifetime(0)
		s.rdb.SetConnMaxIdleTime(0)
		if err = s.rdb.PingContext(ctx); err != nil {
			s.rdb.Close()
		}
	}
	if err != nil {
		conn.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, dbError(err))
	}
	s.reads = &readStmts{db: s.rdb, stmts: make(map[string]*sql.Stmt)}

	go s.runWriter(conn)
	return s, nil
}

// dsn is the driver's data source name for the file at path (absolute):
// a file: URI, so that any character may appear in the path.
func dsn(path string, params url.Values) string {
	return (&url.URL{Scheme: "file", Path: path, RawQuery: params.Encode()}).String()
}

// migrate applies the embedded migrations the database lacks.
func (s *Store) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.wdb, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		s.log.Info("sqlite store: migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

// Close stops the writer once the transaction at hand is committed and
// closes the database. Calls made afterwards fail with an error wrapping
// domain.ErrUnavailable. Close is idempotent and safe to call concurrently
// with other methods, but not from the Publisher: the writer goroutine
// calls it, and Close waits for that goroutine.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.writerDone
		s.closeErr = errors.Join(s.reads.close(), s.rdb.Close(), s.wdb.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close sqlite store: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// now is the store's clock, at the precision the database keeps.
func (s *Store) now() time.Time { return truncate(s.clock()) }

// closed returns the error of a call made after Close, nil before.
func (s *Store) closed() error {
	select {
	case <-s.closing:
		return dbError(errClosed)
	default:
		return nil
	}
}

// Create stores a new pending job, or returns the job that already has
// nj's idempotency key.
func (s *Store) Create(ctx context.Context, nj domain.NewJob) (*domain.Job, error) {
	jobs, err := s.create(ctx, []domain.NewJob{nj})
	if err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	return jobs[0], nil
}

// CreateMany stores the new jobs in one write, which its savepoint makes
// all or nothing.
func (s *Store) CreateMany(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error) {
	jobs, err := s.create(ctx, njs)
	if err != nil {
		return nil, fmt.Errorf("create jobs: %w", err)
	}
	return jobs, nil
}

func (s *Store) create(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error) {
	ids := make([]string, len(njs))
	for i := range njs {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("new id: %w", err)
		}
		ids[i] = id.String()
	}
	var out []*domain.Job
	err := s.write(ctx, func(w *writeTx) error {
		out = make([]*domain.Job, len(njs))
		for i, nj := range njs {
			j, err := w.create(ids[i], nj)
			if err != nil {
				return &store.ItemError{Index: i, Err: err}
			}
			out[i] = j
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := range out {
		if j.ID == ids[i] {
			store.NoteCreated(ctx, j)
		}
	}
	return out, nil
}

// create inserts one new job, or returns the job that has its key.
func (w *writeTx) create(id string, nj domain.NewJob) (*domain.Job, error) {
	j := &domain.Job{
		ID:             id,
		Type:           nj.Type,
		Payload:        rawJSON(nj.Payload),
		Status:         domain.StatusPending,
		CreatedAt:      w.now,
		UpdatedAt:      w.now,
		Version:        1,
		IdempotencyKey: nj.IdempotencyKey,
		Owner:          nj.Owner,
		Timeout:        nj.Timeout,
		MaxAttempts:    max(nj.MaxAttempts, 1),
		RunAt:          truncate(nj.RunAt),
		Priority:       nj.Priority,
		Tags:           nj.Tags,
		TraceParent:    nj.TraceParent,
	}
	if nj.RunAt.IsZero() {
		j.RunAt = w.now
	}
	tags, err := encodeTags(j.Tags)
	if err != nil {
		return nil, err
	}
	// DO NOTHING on a key the owner took already (also earlier in the
	// same write): no row comes back, and the job that holds the key is
	// the answer. The writer runs one write at a time, so no other
	// creation can slip in between.
	err = w.queryRow(`INSERT INTO jobs (id, type, payload, status, attempts, max_attempts, error, errors,
			created_at, updated_at, idempotency_key, timeout_ns, run_at, priority, cancel_requested, version, owner, tags, trace_parent)
		VALUES (?, ?, ?, 'pending', 0, ?, '', '[]', ?, ?, ?, ?, ?, ?, 0, 1, ?, ?, ?)
		ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
		RETURNING seq`,
		j.ID, j.Type, blob(j.Payload), j.MaxAttempts, micros(j.CreatedAt), micros(j.UpdatedAt),
		nullString(j.IdempotencyKey), int64(j.Timeout), micros(j.RunAt), j.Priority, j.Owner, tags, j.TraceParent,
	).Scan(&j.Seq)
	if errors.Is(err, sql.ErrNoRows) {
		held, _, err := scanJob(w.queryRow(`SELECT `+jobColumns+` FROM jobs WHERE owner = ? AND idempotency_key = ?`, nj.Owner, nj.IdempotencyKey))
		return held, err
	}
	if err != nil {
		return nil, err
	}
	for _, tag := range j.Tags {
		if _, err := w.exec(`INSERT INTO job_tags (tag, job_seq) VALUES (?, ?)`, tag, j.Seq); err != nil {
			return nil, err
		}
	}
	w.changed("", j)
	return j, nil
}

// Get returns the job with the id.
func (s *Store) Get(ctx context.Context, id string) (*domain.Job, error) {
	if err := s.closed(); err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	st, err := s.reads.get(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`)
	var j *domain.Job
	if err == nil {
		j, _, err = scanJob(st.QueryRowContext(ctx, id))
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get job %s: %w", id, domain.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, dbError(err))
	}
	return j, nil
}

// List returns matching jobs newest first, with the total of the matching
// jobs read from the counts in the same read transaction. A page walks
// jobs_status, jobs_type or jobs_owner from the cursor down: it costs the
// page plus the jobs it skips (of the type, not in the status, or the
// other way). A listing by tag walks job_tags (tag, job_seq) instead, and
// counts its total there: no counts are kept per tag, so that total costs
// the tag's jobs (those passing the other filters are read).
func (s *Store) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	if q.Limit <= 0 {
		return store.ListPage{}, fmt.Errorf("list jobs: limit %d: %w", q.Limit, domain.ErrInvalid)
	}
	if err := s.closed(); err != nil {
		return store.ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	page, err := s.list(ctx, q)
	if err != nil {
		return store.ListPage{}, fmt.Errorf("list jobs: %w", dbError(err))
	}
	return page, nil
}

func (s *Store) list(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	st := listStatements(q)
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.ListPage{}, err
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep

	var page store.ListPage
	totalQuery, err := s.reads.get(ctx, st.total)
	if err != nil {
		return store.ListPage{}, err
	}
	if err := tx.StmtContext(ctx, totalQuery).QueryRowContext(ctx, st.totalArgs...).Scan(&page.Total); err != nil {
		return store.ListPage{}, err
	}
	jobsQuery, err := s.reads.get(ctx, st.page)
	if err != nil {
		return store.ListPage{}, err
	}
	rows, err := tx.StmtContext(ctx, jobsQuery).QueryContext(ctx, st.pageArgs...)
	if err != nil {
		return store.ListPage{}, err
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return store.ListPage{}, err
	}
	if len(jobs) > q.Limit {
		jobs, page.HasMore = jobs[:q.Limit], true
	}
	page.Jobs = jobs
	return page, nil
}

// listing is the statements of a List: its total, and one page of jobs
// (one more than the limit, to tell whether more exist).
type listing struct {
	total, page         string
	totalArgs, pageArgs []any
}

// listStatements returns the statements of List for q.
func listStatements(q store.ListQuery) listing {
	counts, where, args := countsOf(store.StatsQuery{Owner: q.Owner, Type: q.Type})
	if q.Status != "" {
		where = append(where, "status = ?")
		args = append(args, string(q.Status))
	}
	// from is what the page and the total read; seq the column the
	// cursor and the order are on.
	from, seq, total := " FROM jobs", "seq", "SELECT COALESCE(SUM(n), 0) FROM "+counts+whereClause(where)
	if q.Tag != "" {
		// CROSS JOIN keeps job_tags the outer loop: the planner walks
		// the tag's rows newest first and looks each job up by seq.
		from, seq = " FROM job_tags CROSS JOIN jobs ON jobs.seq = job_tags.job_seq", "job_seq"
		where = append([]string{"tag = ?"}, where...)
		args = append([]any{q.Tag}, args...)
		total = "SELECT count(*)" + from + whereClause(where)
	}
	if !q.CreatedBefore.IsZero() || !q.CreatedAfter.IsZero() {
		// No counts per creation time: the total counts the jobs.
		if !q.CreatedBefore.IsZero() {
			where = append(where, "created_at < ?")
			args = append(args, ceilMicros(q.CreatedBefore))
		}
		if !q.CreatedAfter.IsZero() {
			// x > t exactly when x > t's whole microseconds.
			where = append(where, "created_at > ?")
			args = append(args, micros(q.CreatedAfter))
		}
		total = "SELECT count(*)" + from + whereClause(where)
	}
	l := listing{total: total, totalArgs: slices.Clone(args)}
	if q.Owner != "" {
		// The term that lets the planner use the partial index jobs_owner.
		where = append(where, "owner <> ''")
	}
	if q.BeforeSeq > 0 {
		where = append(where, seq+" < ?")
		args = append(args, q.BeforeSeq)
	}
	l.page = `SELECT ` + jobColumns + from + whereClause(where) + ` ORDER BY ` + seq + ` DESC LIMIT CAST(? AS INTEGER)`
	l.pageArgs = append(args, q.Limit+1)
	return l
}

// countsOf returns the counts table that counts the jobs q selects
// (job_owner_counts for an owner's, job_counts otherwise), with the
// conditions on the jobs' columns that select them and their arguments.
// The jobs table has the same columns.
func countsOf(q store.StatsQuery) (table string, where []string, args []any) {
	table = "job_counts"
	if q.Owner != "" {
		table = "job_owner_counts"
		where = append(where, "owner = ?")
		args = append(args, q.Owner)
	}
	if q.Type != "" {
		where = append(where, "type = ?")
		args = append(args, q.Type)
	}
	return table, where, args
}

func whereClause(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// scanJobs reads and closes rows of jobColumns.
func scanJobs(rows *sql.Rows) ([]*domain.Job, error) {
	defer rows.Close()
	var jobs []*domain.Job
	for rows.Next() {
		j, _, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// Claim moves up to req.Limit runnable jobs to processing, leased to
// req.Owner, in one UPDATE: claimQuery picks the jobs.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	if req.Owner == "" || req.Limit <= 0 {
		return nil, fmt.Errorf("claim jobs: owner %q, limit %d: %w", req.Owner, req.Limit, domain.ErrInvalid)
	}
	var jobs []*domain.Job
	err := s.write(ctx, func(w *writeTx) error {
		controls, err := w.typeControls()
		if err != nil {
			return err
		}
		if len(controls) == 0 {
			rows, err := w.query(claimQuery, micros(w.now), req.Owner, micros(req.LeaseUntil), micros(req.Now), req.Limit)
			if err != nil {
				return err
			}
			jobs, err = scanJobs(rows)
			if err != nil {
				return err
			}
		} else if jobs, err = w.claimControlled(req, controls); err != nil {
			return err
		}
		slices.SortFunc(jobs, dispatchOrder) // RETURNING comes in no particular order
		for _, j := range jobs {
			w.changed(domain.StatusPending, j)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	return jobs, nil
}

// pendingPriorities is a CTE of the priorities the pending jobs have,
// highest first, each found with one seek in jobs_runnable: the way to
// walk that index one priority at a time (a skip scan), so that a query
// can take the range it needs in each priority without stepping over the
// rest.
const pendingPriorities = `WITH RECURSIVE prio(p) AS (
		SELECT (SELECT priority FROM jobs INDEXED BY jobs_runnable WHERE status = 'pending'
			ORDER BY priority DESC LIMIT 1)
		UNION ALL
		SELECT (SELECT priority FROM jobs INDEXED BY jobs_runnable WHERE status = 'pending' AND priority < p
			ORDER BY priority DESC LIMIT 1)
		FROM prio WHERE p IS NOT NULL)`

// claimQuery claims the first ?5 runnable jobs (RunAt not after ?4) in
// dispatch order: for each priority, highest first, the runnable jobs of
// that priority come in (run_at, seq) order from one range of
// jobs_runnable, and the walk stops at the limit. Jobs scheduled for later
// are never stepped over, however many there are (a plain ORDER BY
// priority DESC, run_at, seq over the index would walk past every one in
// front of the first runnable job). The LIMIT relies on the walk's order:
// CROSS JOIN keeps prio as the outer loop, a recursive CTE yields its rows
// in the order it makes them, and an index range comes in index order.
// ClaimOrder in the conformance suite and TestClaimSkipsScheduledJobs
// check it.
//
// The CAST hides the limit's value from the query planner: given a bare
// parameter, it plans with the value and SQLite then prepares the
// statement again whenever the value changes (the limits of the write
// statements below are written the same way).
const claimQuery = `UPDATE jobs SET status = 'processing', attempts = attempts + 1, started_at = ?1, updated_at = ?1,
		progress = NULL, result = NULL, version = version + 1, lease_owner = ?2, lease_expires_at = ?3
	WHERE seq IN (` + pendingPriorities + `
		SELECT seq FROM prio CROSS JOIN jobs INDEXED BY jobs_runnable
		WHERE jobs.status = 'pending' AND jobs.priority = prio.p AND jobs.run_at <= ?4
		LIMIT CAST(?5 AS INTEGER))
	RETURNING ` + jobColumns

// dispatchOrder is Claim's order: priority (higher first), then RunAt,
// then Seq.
func dispatchOrder(a, b *domain.Job) int {
	return cmp.Or(
		cmp.Compare(b.Priority, a.Priority),
		a.RunAt.Compare(b.RunAt),
		cmp.Compare(a.Seq, b.Seq),
	)
}

// OldestRunnable returns the earliest RunAt not after now among pending
// jobs of types not paused: the first runnable job of each priority is
// one seek in jobs_runnable (past the paused types' jobs, if older).
func (s *Store) OldestRunnable(ctx context.Context, now time.Time) (time.Time, error) {
	if err := s.closed(); err != nil {
		return time.Time{}, fmt.Errorf("oldest runnable job: %w", err)
	}
	var oldest sql.NullInt64
	st, err := s.reads.get(ctx, pendingPriorities+`
		SELECT MIN((SELECT run_at FROM jobs INDEXED BY jobs_runnable
			WHERE status = 'pending' AND priority = prio.p AND run_at <= ?1
				AND type NOT IN (SELECT name FROM job_type_controls WHERE paused)
			ORDER BY run_at LIMIT 1))
		FROM prio WHERE p IS NOT NULL`)
	if err == nil {
		err = st.QueryRowContext(ctx, micros(now)).Scan(&oldest)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("oldest runnable job: %w", dbError(err))
	}
	if !oldest.Valid {
		return time.Time{}, nil
	}
	return fromMicros(oldest.Int64), nil
}

// NextRunAt returns the earliest RunAt after now among pending jobs: the
// first such job of each priority is one seek in jobs_runnable.
func (s *Store) NextRunAt(ctx context.Context, now time.Time) (time.Time, error) {
	if err := s.closed(); err != nil {
		return time.Time{}, fmt.Errorf("next run time: %w", err)
	}
	var next sql.NullInt64
	st, err := s.reads.get(ctx, pendingPriorities+`
		SELECT MIN((SELECT run_at FROM jobs INDEXED BY jobs_runnable
			WHERE status = 'pending' AND priority = prio.p AND run_at > ?1 ORDER BY run_at LIMIT 1))
		FROM prio WHERE p IS NOT NULL`)
	if err == nil {
		err = st.QueryRowContext(ctx, micros(now)).Scan(&next)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("next run time: %w", dbError(err))
	}
	token, err := s.nextToken(ctx, now)
	if err != nil {
		return time.Time{}, fmt.Errorf("next run time: %w", err)
	}
	if !next.Valid {
		return token, nil
	}
	return store.Earliest(fromMicros(next.Int64), token), nil
}

// Heartbeat extends the leases owner holds, in one UPDATE: no new version,
// no event.
func (s *Store) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return 0, fmt.Errorf("heartbeat of %s: %w", owner, err)
	}
	var n int64
	err = s.write(ctx, func(w *writeTx) error {
		res, err := w.exec(`UPDATE jobs SET lease_expires_at = ? WHERE status = 'processing' AND lease_owner = ?
			AND id IN (SELECT value FROM json_each(?))`, micros(until), owner, string(list))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("heartbeat of %s: %w", owner, err)
	}
	return int(n), nil
}

// RescueExpired gives back up to limit processing jobs whose lease expired
// before now, those that expired first, and returns them ordered by ID.
func (s *Store) RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error) {
	var out []*domain.Job
	err := s.write(ctx, func(w *writeTx) error {
		rows, err := w.query(`SELECT `+jobColumns+` FROM jobs WHERE status = 'processing' AND lease_expires_at < ?
			ORDER BY lease_expires_at, seq LIMIT CAST(? AS INTEGER)`, ceilMicros(now), limit)
		if err != nil {
			return err
		}
		expired, err := scanJobs(rows)
		if err != nil {
			return err
		}
		slices.SortFunc(expired, func(a, b *domain.Job) int { return strings.Compare(a.ID, b.ID) })
		out = make([]*domain.Job, 0, len(expired))
		for _, old := range expired {
			j := *old
			j.Rescue(store.WorkerLost, w.now, s.history)
			if err := w.update(old, &j); err != nil {
				return err
			}
			out = append(out, &j)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rescue jobs: %w", err)
	}
	return out, nil
}

// Finish moves a processing job to a final status; a failure is added to
// the job's error history.
func (s *Store) Finish(ctx context.Context, l store.Lease, status domain.Status, errMsg string) (*domain.Job, error) {
	if !status.Final() {
		return nil, fmt.Errorf("finish job %s as %s: not a final status: %w", l.JobID, status, domain.ErrInvalid)
	}
	return s.leased(ctx, "finish", l, func(j *domain.Job, now time.Time) error {
		j.Finish(status, errMsg, now, s.history)
		return nil
	})
}

// Complete moves a processing job to completed with a result. It is the
// write a worker pool makes most, so it is one UPDATE conditioned on the
// lease: when the writer has the job's snapshot (it claimed the job) and
// the job is still at that version, the completed job is built from the
// snapshot; otherwise the UPDATE returns the row.
func (s *Store) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	var out *domain.Job
	result = rawJSON(bytes.Clone(result)) // the snapshot must not share the caller's bytes
	err := s.write(ctx, func(w *writeTx) error {
		const complete = `UPDATE jobs SET status = 'completed', result = ?1, cancel_requested = 0,
				finished_at = ?2, updated_at = ?2, version = version + 1, lease_owner = NULL, lease_expires_at = NULL
			WHERE id = ?3 AND status = 'processing' AND lease_owner = ?4 AND attempts = ?5`
		if old, ok := w.processing(l.JobID); ok && old.Attempts == l.Attempt {
			res, err := w.exec(complete+` AND version = ?6`, blob(result), micros(w.now), l.JobID, l.Owner, l.Attempt, old.Version)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				j, now := *old, w.now
				j.Status = domain.StatusCompleted
				j.Result = result
				j.CancelRequested = false
				j.FinishedAt = &now
				j.UpdatedAt = now
				j.Version++
				out = &j
				w.changed(domain.StatusProcessing, &j)
				return nil
			}
		}
		j, _, err := scanJob(w.queryRow(complete+` RETURNING `+jobColumns, blob(result), micros(w.now), l.JobID, l.Owner, l.Attempt))
		if errors.Is(err, sql.ErrNoRows) {
			return w.lostLease(l)
		}
		if err != nil {
			return err
		}
		out = j
		w.changed(domain.StatusProcessing, j)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("complete job %s: %w", l.JobID, err)
	}
	return out, nil
}

// Progress records a processing job's progress; the value it already has
// changes nothing.
func (s *Store) Progress(ctx context.Context, l store.Lease, percent int) (*domain.Job, error) {
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("progress of job %s: %d: %w", l.JobID, percent, domain.ErrInvalid)
	}
	return s.leased(ctx, "progress", l, func(j *domain.Job, now time.Time) error {
		return j.SetProgress(percent)
	})
}

// Fail records a failed attempt: back to pending at retryAt when attempts
// are left, failed otherwise. Like every change but Complete it reads the
// row, applies the domain's rule and writes the row back, in the writer's
// transaction; the rule keeps the newest Options.ErrorHistory failures, so
// what a failure reads and writes stops growing there.
func (s *Store) Fail(ctx context.Context, l store.Lease, errMsg string, retryAt time.Time) (*domain.Job, error) {
	return s.leased(ctx, "fail", l, func(j *domain.Job, now time.Time) error {
		j.Fail(errMsg, retryAt, now, s.history)
		return nil
	})
}

// Release moves a processing job back to pending, or to cancelled when a
// cancellation was requested meanwhile.
func (s *Store) Release(ctx context.Context, l store.Lease) (*domain.Job, error) {
	return s.leased(ctx, "release", l, func(j *domain.Job, now time.Time) error {
		j.Release(now)
		return nil
	})
}

// Cancel cancels a pending job at once; for a processing job it records
// the request. The status is read and changed in one write transaction,
// so a claim racing the cancel cannot turn it into a conflict.
func (s *Store) Cancel(ctx context.Context, id string) (*domain.Job, error) {
	return s.change(ctx, "cancel", id, func(j *domain.Job, _ string, now time.Time) error { return j.Cancel(now) })
}

// Retry puts a failed or cancelled job back to pending, keeping its
// attempts and error history.
func (s *Store) Retry(ctx context.Context, id string) (*domain.Job, error) {
	return s.change(ctx, "retry", id, func(j *domain.Job, _ string, now time.Time) error { return j.Retry(now) })
}

// CancelJobs cancels the jobs with the ids that Cancel would change, one
// write transaction per batch.
func (s *Store) CancelJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	return s.changeMany(ctx, "cancel", ids, owner, func(j *domain.Job, _ string, now time.Time) error { return j.Cancel(now) })
}

// RetryJobs puts back to pending the failed or cancelled jobs with the
// ids, one write transaction per batch.
func (s *Store) RetryJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	return s.changeMany(ctx, "retry", ids, owner, func(j *domain.Job, _ string, now time.Time) error { return j.Retry(now) })
}

// changeMany is change for each job with the ids (only owner's when owner
// is not empty), store.BulkBatch jobs in one write, skipping the unknown
// ids and the jobs apply refuses or leaves unchanged. It returns the
// changed jobs.
func (s *Store) changeMany(ctx context.Context, op string, ids []string, owner string, apply func(j *domain.Job, leaseOwner string, now time.Time) error) ([]*domain.Job, error) {
	var changed []*domain.Job
	err := store.Batches(ids, func(batch []string) error {
		var done []*domain.Job
		err := s.write(ctx, func(w *writeTx) error {
			done = done[:0]
			for _, id := range batch {
				old, leaseOwner, err := w.get(id)
				if errors.Is(err, domain.ErrNotFound) || err == nil && owner != "" && old.Owner != owner {
					continue
				} else if err != nil {
					return err
				}
				j, err := w.changeJob(old, leaseOwner, apply)
				if errors.Is(err, domain.ErrConflict) {
					continue
				} else if err != nil {
					return err
				}
				if j != old {
					done = append(done, j)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s jobs: %w", op, err)
		}
		changed = append(changed, done...)
		return nil
	})
	return changed, err
}

// DeleteFinished deletes up to limit final jobs that finished before the
// given time, those that finished first, with their idempotency keys.
func (s *Store) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	n := 0
	err := s.write(ctx, func(w *writeTx) error {
		rows, err := w.query(`DELETE FROM jobs WHERE seq IN (
				SELECT seq FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? ORDER BY finished_at LIMIT CAST(? AS INTEGER))
			RETURNING owner, type, status`,
			ceilMicros(before), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var owner, typ, status string
			if err := rows.Scan(&owner, &typ, &status); err != nil {
				return err
			}
			w.deleted(owner, typ, domain.Status(status))
			n++
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("delete finished jobs: %w", err)
	}
	return n, nil
}

// Delete deletes a job in a final status.
func (s *Store) Delete(ctx context.Context, id string) (*domain.Job, error) {
	var out *domain.Job
	err := s.write(ctx, func(w *writeTx) error {
		j, _, err := w.get(id)
		if err != nil {
			return err
		}
		if !j.Status.Final() {
			return fmt.Errorf("%s: %w", j.Status, domain.ErrConflict)
		}
		if _, err := w.exec(`DELETE FROM jobs WHERE id = ?`, id); err != nil {
			return err
		}
		w.deleted(j.Owner, j.Type, j.Status)
		out = j
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete job %s: %w", id, err)
	}
	return out, nil
}

// Stats counts jobs per status, of one type and one owner when q names
// them, from the counts every change keeps up to date.
func (s *Store) Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error) {
	if err := s.closed(); err != nil {
		return domain.Stats{}, fmt.Errorf("job stats: %w", err)
	}
	st, err := s.stats(ctx, q)
	if err != nil {
		return domain.Stats{}, fmt.Errorf("job stats: %w", dbError(err))
	}
	return st, nil
}

func (s *Store) stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error) {
	counts, where, args := countsOf(q)
	query := `SELECT status, SUM(n) FROM ` + counts + whereClause(where) + ` GROUP BY status`
	prepared, err := s.reads.get(ctx, query)
	if err != nil {
		return domain.Stats{}, err
	}
	rows, err := prepared.QueryContext(ctx, args...)
	if err != nil {
		return domain.Stats{}, err
	}
	defer rows.Close()
	var st domain.Stats
	for rows.Next() {
		var (
			status string
			n      int
		)
		if err := rows.Scan(&status, &n); err != nil {
			return domain.Stats{}, err
		}
		switch domain.Status(status) {
		case domain.StatusPending:
			st.Pending = n
		case domain.StatusProcessing:
			st.Processing = n
		case domain.StatusCompleted:
			st.Completed = n
		case domain.StatusFailed:
			st.Failed = n
		case domain.StatusCancelled:
			st.Cancelled = n
		}
	}
	return st, rows.Err()
}

// leased applies a change a worker makes about the attempt l names: only
// while the job is processing under that very claim.
func (s *Store) leased(ctx context.Context, op string, l store.Lease, apply func(j *domain.Job, now time.Time) error) (*domain.Job, error) {
	return s.change(ctx, op, l.JobID, func(j *domain.Job, owner string, now time.Time) error {
		if err := l.Check(j, owner); err != nil {
			return err
		}
		return apply(j, now)
	})
}

// lostLease explains why a write conditioned on lease l matched no row:
// the job is gone (domain.ErrNotFound) or the lease no longer stands.
func (w *writeTx) lostLease(l store.Lease) error {
	j, owner, err := w.get(l.JobID)
	if err != nil {
		return err
	}
	if err := l.Check(j, owner); err != nil {
		return err
	}
	return fmt.Errorf("job %s: lease %+v stands, yet the write matched no row", l.JobID, l)
}

// get reads the job with the id and the owner of its lease.
func (w *writeTx) get(id string) (*domain.Job, string, error) {
	j, owner, err := scanJob(w.queryRow(`SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", domain.ErrNotFound
	}
	return j, owner, err
}

// change reads a job, applies a change to a copy and writes it back as the
// next version, all in one write transaction; apply also gets the owner of
// the job's lease ("" when none).
func (s *Store) change(ctx context.Context, op, id string, apply func(j *domain.Job, leaseOwner string, now time.Time) error) (*domain.Job, error) {
	var out *domain.Job
	err := s.write(ctx, func(w *writeTx) error {
		old, leaseOwner, err := w.get(id)
		if err != nil {
			return err
		}
		out, err = w.changeJob(old, leaseOwner, apply)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s job %s: %w", op, id, err)
	}
	return out, nil
}

// changeJob applies apply to a copy of old, whose lease leaseOwner holds
// ("" when none), and writes it as the next version; it returns old itself
// when apply leaves the job unchanged (domain.ErrUnchanged), or apply's
// error.
func (w *writeTx) changeJob(old *domain.Job, leaseOwner string, apply func(j *domain.Job, leaseOwner string, now time.Time) error) (*domain.Job, error) {
	j := *old
	if err := apply(&j, leaseOwner, w.now); errors.Is(err, domain.ErrUnchanged) {
		return old, nil
	} else if err != nil {
		return nil, err
	}
	if err := w.update(old, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// update writes j as the next version of old and publishes it. A job that
// leaves processing loses its lease. The version condition makes a lost
// update impossible even if something else wrote the row.
func (w *writeTx) update(old, j *domain.Job) error {
	j.UpdatedAt = w.now
	j.Version = old.Version + 1
	normalize(j)
	errs, err := encodeErrors(j.Errors)
	if err != nil {
		return err
	}
	res, err := w.exec(`UPDATE jobs SET status = ?1, attempts = ?2, error = ?3, errors = ?4, updated_at = ?5,
			started_at = ?6, finished_at = ?7, run_at = ?8, progress = ?9, result = ?10, cancel_requested = ?11, version = ?12,
			lease_owner = CASE WHEN ?1 = 'processing' THEN lease_owner END,
			lease_expires_at = CASE WHEN ?1 = 'processing' THEN lease_expires_at END
		WHERE seq = ?13 AND version = ?14`,
		string(j.Status), j.Attempts, j.Error, errs, micros(j.UpdatedAt),
		nullMicros(j.StartedAt), nullMicros(j.FinishedAt), micros(j.RunAt), nullInt(j.Progress), blob(j.Result), boolInt(j.CancelRequested), j.Version,
		old.Seq, old.Version)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("job %s changed underneath at version %d", old.ID, old.Version)
	}
	w.changed(old.Status, j)
	return nil
}

// readStmts keeps the read queries prepared: preparing costs more than
// running most of them. database/sql prepares a statement again on each
// connection of the pool the first time it runs there. Safe for
// concurrent use.
type readStmts struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func (c *readStmts) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	c.stmts[query] = st
	return st, nil
}

func (c *readStmts) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.stmts {
		errs = append(errs, st.Close())
	}
	clear(c.stmts)
	return errors.Join(errs...)
}

var _ store.Tuner = (*Store)(nil)

// Tuning is the zero store.Tuning: the database file belongs to this one
// process, which publishes every runnable job (no wake-up can be missed,
// no poll is needed), and writes are serialised by the database, not
// coalesced, so the worker's default of outcomes in flight applies. Safe
// for concurrent use.
func (s *Store) Tuning() store.Tuning { return store.Tuning{} }
