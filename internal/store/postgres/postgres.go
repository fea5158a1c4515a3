// Package postgres is a PostgreSQL implementation of store.Store that many
// server instances share: they claim jobs from one table (FOR UPDATE SKIP
// LOCKED, so each job goes to exactly one claimer), workers hold them
// through leases, and every change reaches the Publisher of every instance.
//
// The package has three parts, each with one job:
//   - Store (Open, Close): the SQL. Open applies the embedded migrations
//     (goose, under a session lock, so instances starting together do not
//     race) in the configured schema. Concurrent Create and Complete calls
//     are coalesced into one statement per batch by executors that run
//     only while calls wait (batch.go): an idle Store runs no goroutine.
//   - Listener (Store.Listen, Run): publishes the changes other instances
//     make, learnt through LISTEN/NOTIFY, and re-syncs after losing its
//     connection (listen.go).
//   - CountsUpkeep (Store.CountsUpkeep, Run): folds the counts table that
//     totals and stats read (counts.go).
//
// A server runs the Listener and the CountsUpkeep beside the Store, and
// stops them before closing it.
//
// Events: a change made through this Store is published to its Publisher
// after the change commits, before the call returns, in version order per
// job with no version left out (see events.go). Each change's transaction
// also notifies the other instances, whose Listeners publish the change
// shortly after it commits, with the job's state at the time they fetch
// it: versions that follow each other quickly may be coalesced into the
// last one there. After losing its listening connection, a Listener
// reconnects and publishes again every job changed since shortly before
// the loss, so no final state is missed (the latest version of a job may
// then be published a second time).
//
// Errors wrap domain's sentinels; failures to reach PostgreSQL (and server
// errors meaning "not now") also wrap domain.ErrUnavailable.
//
// Times are kept at microsecond precision; the times returned are the ones
// stored, in UTC.
package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

var _ store.Store = (*Store)(nil)
var _ store.Tuner = (*Store)(nil)

// Options configure a Store. The zero value is usable.
type Options struct {
	// Publisher receives every change of every job (nil for none).
	Publisher store.Publisher
	// Schema is the PostgreSQL schema of the store's tables (the jobs and
	// the migration versions), created if missing. Empty means the
	// connection's default (usually public). Stores on different schemas
	// of one database know nothing of each other.
	Schema string
	// Logger receives the store's own troubles (a lost listening
	// connection, ...). Nil discards them.
	Logger *slog.Logger
	// Now is the clock of job timestamps (CreatedAt, UpdatedAt, StartedAt,
	// FinishedAt, error times); nil means time.Now. Its readings are kept
	// in UTC, truncated to microseconds.
	Now func() time.Time
	// InstanceID names this instance in the change notifications, so it
	// can tell its own changes from those of others; it must be unique
	// among the instances sharing the schema. Empty means a random one.
	InstanceID string
	// MaxConns bounds the connection pool (the listener holds one more
	// connection of its own). Zero keeps pool_max_conns of the URL, or
	// pgxpool's default.
	MaxConns int32
	// ErrorHistory is how many failures a job keeps (see
	// store.ErrorHistory); zero means domain.DefaultErrorHistory.
	ErrorHistory int

	// hooks lets this package's tests step into the listener.
	hooks *testHooks
}

// testHooks are called by the listener when set (tests only).
type testHooks struct {
	// beforeRelisten runs after a lost listening connection is noticed,
	// before reconnecting.
	beforeRelisten func()
	// idlePing replaces the listener's idlePing when positive.
	idlePing time.Duration
	// afterPing runs after the listener pinged its idle connection
	// successfully.
	afterPing func()
	// beforePublish runs when a statement's changes committed, before
	// they are published.
	beforePublish func(jobs []*domain.Job)
	// loseReply runs after a writing statement committed; an error it
	// returns replaces the statement's reply, as if the connection had
	// failed before the reply arrived.
	loseReply func(sql string) error
}

// Store is a PostgreSQL job store. It is safe for concurrent use. Create it
// with Open and stop it with Close.
type Store struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	clock    func() time.Time
	instance string
	schema   string
	sql      statements
	gate     *gate
	typePub  *publishedTypes
	seq      *sequencer
	hooks    *testHooks
	// unsure holds the jobs this instance's statements may have changed
	// without it learning of it, for the relay to publish.
	unsure *unsure

	// rescueLock keys the advisory lock that lets one instance at a time
	// rescue expired leases.
	rescueLock int64
	// countsLock keys the advisory lock under which one instance at a
	// time compacts job_counts.
	countsLock int64
	// typesLock keys the advisory lock that every claim holds shared and
	// a change of type controls exclusively (see claim).
	typesLock int64
	// controlled is true while the last claim found type controls.
	controlled atomic.Bool
	// contended is set by a claim that skipped a limited type whose
	// control row another claim held, and cleared by NextRunAt, which
	// then asks for a claim again after contendedRetry.
	contended atomic.Bool

	creates   *batcher[domain.NewJob]
	completes *batcher[completeArg]
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// defaultConnectTimeout bounds a connection attempt unless the URL's
// connect_timeout says otherwise.
const defaultConnectTimeout = 10 * time.Second

// Open connects to the database at databaseURL, creates the schema if it
// is missing, applies the migrations and starts listening for other
// instances' changes. Failing to reach the server gives an error wrapping
// domain.ErrUnavailable. The ctx bounds Open only.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if opts.ErrorHistory, err = store.ErrorHistory(opts.ErrorHistory); err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if opts.Schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "jobqueue"
	}
	// Without a timeout a connection attempt to an unreachable server
	// (packets dropped, not refused) waits for the operating system's,
	// minutes; the URL's connect_timeout overrides this one.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Publisher == nil {
		opts.Publisher = store.PublisherFunc(func(*domain.Job) {})
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.InstanceID == "" {
		opts.InstanceID = rand.Text()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	s, err := open(ctx, pool, opts)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return s, nil
}

func open(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Store, error) {
	if opts.Schema != "" {
		if err := createSchema(ctx, pool, opts.Schema); err != nil {
			return nil, err
		}
	}
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, wrapf(err, "current schema")
	}
	if err := migrate(ctx, pool, schema, opts.Logger); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		pool:       pool,
		log:        opts.Logger,
		clock:      opts.Now,
		instance:   opts.InstanceID,
		schema:     schema,
		sql:        newStatements(channelName(schema), opts.InstanceID, opts.ErrorHistory),
		gate:       newGate(opts.Publisher),
		typePub:    newPublishedTypes(store.TypePublisherOf(opts.Publisher)),
		unsure:     newUnsure(),
		seq:        newSequencer(opts.Logger),
		hooks:      opts.hooks,
		rescueLock: lockKey("jobqueue rescue", schema),
		countsLock: lockKey("jobqueue compact counts", schema),
		typesLock:  lockKey("jobqueue type controls", schema),
		ctx:        sctx,
		cancel:     cancel,
	}
	s.creates = newBatcher(sctx, createBatch, createExecutors, 0, s.createBatchOf)
	s.completes = newBatcher(sctx, completeBatch, completeExecutors, completeLinger, s.completeBatchOf)
	return s, nil
}

// createSchema creates the schema if it does not exist. Concurrent CREATE
// SCHEMA IF NOT EXISTS can fail on the catalog's unique index, so creators
// take turns through an advisory lock.
func createSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("jobqueue create schema", schema)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
		return err
	})
	if err != nil {
		return wrapf(err, "create schema %s", schema)
	}
	return nil
}

// lockKey derives an advisory lock key from a purpose and a schema, so that
// stores on different schemas do not contend.
func lockKey(purpose, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte(purpose + "\x00" + schema))
	return int64(h.Sum64())
}

// InstanceID returns the name of this instance in change notifications.
func (s *Store) InstanceID() string { return s.instance }

// PoolStat returns a snapshot of the connection pool's statistics (for
// metrics). Safe for concurrent use.
func (s *Store) PoolStat() *pgxpool.Stat { return s.pool.Stat() }

// Close stops the store's executors, waits for them and closes the pool.
// Stop the store's Listener and CountsUpkeep first. Calls in flight fail;
// calls after Close fail with an error wrapping domain.ErrUnavailable.
// Close may be called more than once.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.creates.close()
		s.completes.close()
		s.pool.Close()
	})
}

// errClosed is returned by calls that need a goroutine of a closed store.
var errClosed = &unavailableError{err: errors.New("store closed")}

// now reads the clock as the store keeps times.
func (s *Store) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// errorTime formats an error history time as stored in the errors column.
func errorTime(t time.Time) string { return t.Format(time.RFC3339Nano) }

// canonicalID reports whether id is a job id as this store makes them (a
// UUID in its canonical form: lowercase hexadecimal, dashes after the 8th,
// 12th, 16th and 20th digits); any other id names no job.
func canonicalID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := range len(id) {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// storable reports whether a text column can keep s: PostgreSQL text is
// valid UTF-8 without NUL characters.
func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// storableText makes s storable, replacing what is not with U+FFFD.
func storableText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// errorText is a failure message as the store keeps it: storable, then
// cut to domain.MaxErrorMessageBytes (after the replacements, which may
// lengthen it).
func errorText(msg string) string { return domain.TruncateErrorMessage(storableText(msg)) }

// checkOwner refuses a lease owner no lease can be stored for.
func checkOwner(owner string) error {
	if !storable(owner) {
		return &domain.ValidationError{Field: "owner", Message: "must be valid UTF-8 without NUL characters"}
	}
	return nil
}

// checkLease refuses a lease no claim can have made: one of an id this
// store never gives (ErrNotFound) or of an owner it cannot keep.
func checkLease(l store.Lease) error {
	if !canonicalID(l.JobID) {
		return domain.ErrNotFound
	}
	return checkOwner(l.Owner)
}

// checkNewJob refuses what the jobs table cannot keep (domain validation
// is narrower; the store does not rely on it).
func checkNewJob(nj domain.NewJob) error {
	switch {
	case !storable(nj.Type):
		return &domain.ValidationError{Field: "type", Message: "must be valid UTF-8 without NUL characters"}
	case !storable(nj.IdempotencyKey):
		return &domain.ValidationError{Field: "idempotencyKey", Message: "must be valid UTF-8 without NUL characters"}
	case !storable(nj.Owner):
		return &domain.ValidationError{Field: "owner", Message: "must be valid UTF-8 without NUL characters"}
	case !storable(nj.TraceParent):
		return &domain.ValidationError{Field: "traceParent", Message: "must be valid UTF-8 without NUL characters"}
	case nj.Priority < math.MinInt16 || nj.Priority > math.MaxInt16:
		return &domain.ValidationError{Field: "priority", Message: fmt.Sprintf("must be between %d and %d, got %d", math.MinInt16, math.MaxInt16, nj.Priority)}
	case nj.MaxAttempts > math.MaxInt32:
		return &domain.ValidationError{Field: "maxAttempts", Message: fmt.Sprintf("must be at most %d, got %d", math.MaxInt32, nj.MaxAttempts)}
	}
	for i, tag := range nj.Tags {
		// The insert joins a job's tags with commas (see newStatements).
		if tag == "" || !storable(tag) || strings.Contains(tag, ",") {
			return &domain.ValidationError{Field: fmt.Sprintf("tags[%d]", i), Message: "must be non-empty valid UTF-8 without NUL characters or commas"}
		}
	}
	return nil
}

// Create stores a new pending job, or returns the job that already has
// nj's idempotency key. Concurrent calls are coalesced (see batch.go).
func (s *Store) Create(ctx context.Context, nj domain.NewJob) (*domain.Job, error) {
	if err := checkNewJob(nj); err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	j, err := s.creates.do(ctx, nj)
	if err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	return j, nil
}

// CreateMany inserts the new jobs in one statement (see insert), which
// is its transaction. A job whose idempotency key was taken is then read;
// should that job be deleted in between, the key's job is created by a
// statement of its own (as Create does).
func (s *Store) CreateMany(ctx context.Context, njs []domain.NewJob) ([]*domain.Job, error) {
	for i, nj := range njs {
		if err := checkNewJob(nj); err != nil {
			return nil, fmt.Errorf("create jobs: %w", &store.ItemError{Index: i, Err: err})
		}
	}
	out := make([]*domain.Job, len(njs))
	if len(njs) == 0 {
		return out, nil
	}
	ids, inserted, err := s.insert(ctx, njs)
	if err != nil {
		return nil, fmt.Errorf("create jobs: %w", err)
	}
	type ownerKey struct{ owner, key string }
	byKey := make(map[ownerKey]*domain.Job)
	for i, nj := range njs {
		k := ownerKey{nj.Owner, nj.IdempotencyKey}
		if j := inserted[ids[i]]; j != nil {
			store.NoteCreated(ctx, j)
			out[i] = j
			if nj.IdempotencyKey != "" {
				byKey[k] = j
			}
			continue
		}
		if j := byKey[k]; j != nil {
			out[i] = j // the key's job was made for an earlier element
			continue
		}
		j, err := s.jobWithKey(ctx, nj)
		if err != nil {
			return nil, fmt.Errorf("create jobs: %w", &store.ItemError{Index: i, Err: err})
		}
		out[i], byKey[k] = j, j
	}
	return out, nil
}

// Get returns the job with the id.
func (s *Store) Get(ctx context.Context, id string) (*domain.Job, error) {
	if !canonicalID(id) {
		return nil, fmt.Errorf("get job %s: %w", id, domain.ErrNotFound)
	}
	j, err := s.getJob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return j, nil
}

// getJob returns the job with the id (which must be canonical), or
// domain.ErrNotFound, or a classified database error.
func (s *Store) getJob(ctx context.Context, id string) (*domain.Job, error) {
	j, err := s.queryJob(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, domain.ErrNotFound
	}
	return j, classify(err)
}

// List returns matching jobs newest first. Total is counted by a second
// statement sent in the same round trip: under concurrent changes it may
// disagree with the page by the jobs that changed in between. An owner's
// jobs come from jobs_owner_seq and their total from job_owner_counts
// (migrations 00007 and 00008): neither depends on how many jobs others
// have. A tag's jobs come through jobs_tags (migration 00010), and their
// total is counted there: no counts are kept per tag, so that total costs
// the tag's jobs.
func (s *Store) List(ctx context.Context, q store.ListQuery) (store.ListPage, error) {
	if q.Limit <= 0 {
		return store.ListPage{}, fmt.Errorf("list jobs: limit %d: %w", q.Limit, domain.ErrInvalid)
	}
	if !storable(q.Owner) || !storable(q.Tag) {
		return store.ListPage{}, nil // no job can have them
	}
	st, err := listStatements(q)
	if err != nil {
		return store.ListPage{}, fmt.Errorf("list jobs: %w", err)
	}
	var batch pgx.Batch
	var page store.ListPage
	if !q.SkipTotal {
		batch.Queue(st.count, st.countArgs...).QueryRow(func(row pgx.Row) error {
			return row.Scan(&page.Total)
		})
	}
	batch.Queue(st.page, st.pageArgs...).Query(func(rows pgx.Rows) error {
		r := newJobRow()
		for rows.Next() {
			j, err := r.scan(rows)
			if err != nil {
				return err
			}
			page.Jobs = append(page.Jobs, j)
		}
		return rows.Err()
	})
	if err := s.pool.SendBatch(ctx, &batch).Close(); err != nil {
		return store.ListPage{}, wrapf(err, "list jobs")
	}
	if len(page.Jobs) > q.Limit {
		page.Jobs, page.HasMore = page.Jobs[:q.Limit], true
	}
	return page, nil
}

// listing is the statements of a List: one page of jobs, and their total.
type listing struct {
	page, count         string
	pageArgs, countArgs []any
}

// listStatements returns the statements of List for q.
func listStatements(q store.ListQuery) (listing, error) {
	// where is the count's; the page also has the cursor.
	counts, where, args := countsOf(store.StatsQuery{Owner: q.Owner, Type: q.Type})
	if q.Status != "" {
		if !q.Status.Valid() {
			return listing{}, fmt.Errorf("status %q: %w", q.Status, domain.ErrInvalid)
		}
		// A literal, not a parameter: the planner can then use the
		// partial indexes of the statuses few jobs have (migration 00006).
		where = append(where, "status = "+quote(string(q.Status)))
	}
	if q.Tag != "" {
		// The tag is a literal, not a parameter: a generic plan does not
		// know how many jobs carry it and may walk every job from the
		// cursor down instead of finding the tag's through jobs_tags
		// (migration 00010). The term tags <> '{}' lets the planner use
		// that partial index. The count then reads the tag's jobs: no
		// counts are kept per tag.
		where = append(where, "tags @> ARRAY["+quote(q.Tag)+"]::text[]", "tags <> '{}'")
		counts = ""
	}
	// No counts per creation time either: the count reads the jobs.
	if !q.CreatedBefore.IsZero() {
		// Rounded up to whole microseconds, as the column keeps them (the
		// driver would cut the rest off): x < t exactly when x < ceil(t).
		args = append(args, q.CreatedBefore.Add(time.Microsecond-1).Truncate(time.Microsecond))
		where = append(where, fmt.Sprintf("created_at < $%d", len(args)))
		counts = ""
	}
	if !q.CreatedAfter.IsZero() {
		args = append(args, q.CreatedAfter)
		where = append(where, fmt.Sprintf("created_at > $%d", len(args)))
		counts = ""
	}
	pageWhere, pageArgs := slices.Clone(where), slices.Clone(args)
	if q.Owner != "" {
		// Implies jobs_owner_seq's condition whatever the owner's value,
		// so that a generic plan can use the partial index too.
		pageWhere = append(pageWhere, "owner <> ''")
	}
	if q.BeforeSeq > 0 {
		pageArgs = append(pageArgs, q.BeforeSeq)
		pageWhere = append(pageWhere, fmt.Sprintf("seq < $%d", len(pageArgs)))
	}
	pageArgs = append(pageArgs, q.Limit+1)
	pageSQL := fmt.Sprintf(`SELECT %s FROM jobs%s ORDER BY seq DESC LIMIT $%d`, jobColumns, whereClause(pageWhere), len(pageArgs))

	count := `SELECT coalesce(sum(n), 0)::bigint FROM ` + counts + whereClause(where)
	if counts == "" {
		count = `SELECT count(*) FROM jobs` + whereClause(where)
	}
	return listing{page: pageSQL, pageArgs: pageArgs, count: count, countArgs: args}, nil
}

// countsOf returns the counts table that counts the jobs q selects
// (job_owner_counts for an owner's, job_counts otherwise), with the
// conditions on the jobs' columns that select them, numbered from $1, and
// their arguments. The jobs table has the same columns.
func countsOf(q store.StatsQuery) (table string, where []string, args []any) {
	table = "job_counts"
	if q.Owner != "" {
		table = "job_owner_counts"
		args = append(args, q.Owner)
		where = append(where, fmt.Sprintf("owner = $%d", len(args)))
	}
	if q.Type != "" {
		args = append(args, q.Type)
		where = append(where, fmt.Sprintf("type = $%d", len(args)))
	}
	return table, where, args
}

// whereClause joins conditions into a WHERE clause ("" for none).
func whereClause(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// Claim moves up to req.Limit runnable jobs to processing, leased to
// req.Owner: rows other claimers hold are skipped. Without type controls
// it is one statement (see claim).
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]*domain.Job, error) {
	if req.Owner == "" || req.Limit <= 0 {
		return nil, fmt.Errorf("claim jobs: owner %q, limit %d: %w", req.Owner, req.Limit, domain.ErrInvalid)
	}
	if err := checkOwner(req.Owner); err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	jobs, err := s.writeWith(ctx, nil, func(ctx context.Context, tok int64, changes *[]change) error {
		return s.claim(ctx, tok, req, changes)
	})
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	// RETURNING has no order.
	slices.SortFunc(jobs, func(a, b *domain.Job) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.RunAt.Compare(b.RunAt), cmp.Compare(a.Seq, b.Seq))
	})
	return jobs, nil
}

// contendedRetry is how soon a claim follows one that skipped a limited
// type another claim held: that claim commits within milliseconds.
const contendedRetry = 5 * time.Millisecond

// claimPlanning runs before each claim, in its transaction: without a sort
// to choose, the planner walks the claim index in dispatch order. Statistics
// taken before a burst (few jobs pending then) or none at all (autovacuum
// has not come by yet) make sorting every runnable job look cheaper, and
// that costs a scan and a sort of the whole backlog per claim.
const claimPlanning = `SELECT set_config('enable_sort', 'off', true)`

// Tuning states how the worker should use this store:
//   - ClaimCooldown 2 ms: a claim is a statement and a notifying commit whose
//     cost hardly depends on how many jobs it takes, so workers freed within
//     a couple of milliseconds of each other are better served by one claim
//     than by one each;
//   - MissableWakeups: other processes create jobs in the same database and
//     a notification is lost with a dropped LISTEN connection, so the
//     dispatcher must poll as well;
//   - OutcomesPerWorker 4: a completion waits up to completeLinger to share
//     its statement with others, so at thousands of jobs per second hundreds
//     are being written at any time; with 2 per worker that bound, not the
//     workers, limited the claims (bench/burndown: 16 % fewer jobs/s).
//
// Safe for concurrent use.
func (s *Store) Tuning() store.Tuning {
	return store.Tuning{ClaimCooldown: 2 * time.Millisecond, MissableWakeups: true, OutcomesPerWorker: 4}
}

// OldestRunnable returns the earliest RunAt not after now among pending
// jobs of types not paused: the first such entry of jobs_next_run_at.
func (s *Store) OldestRunnable(ctx context.Context, now time.Time) (time.Time, error) {
	var oldest time.Time
	err := s.pool.QueryRow(ctx, oldestRunnableSQL, now).Scan(&oldest)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, wrapf(err, "oldest runnable job")
	}
	return oldest.UTC(), nil
}

// oldestRunnableSQL is OldestRunnable's statement (its plan is tested):
// a walk of jobs_next_run_at from its start to the first job of a type
// not paused (the paused types, read once, are a filter).
const oldestRunnableSQL = `SELECT run_at FROM jobs
	WHERE status = 'pending' AND run_at <= $1
		AND type <> ALL (ARRAY(SELECT name FROM job_type_controls WHERE paused))
	ORDER BY run_at LIMIT 1`

// NextRunAt returns the earliest RunAt after now among pending jobs, or
// when a rate-limited type gets its next token if sooner, or, after a
// claim that skipped a limited type another claim held (its jobs may be
// runnable), contendedRetry after now.
func (s *Store) NextRunAt(ctx context.Context, now time.Time) (time.Time, error) {
	var (
		next     *time.Time
		controls []domain.TypeControl
		b        pgx.Batch
	)
	b.Queue(`SELECT min(run_at) FROM jobs WHERE status = 'pending' AND run_at > $1`, now).QueryRow(func(row pgx.Row) error {
		return row.Scan(&next)
	})
	b.Queue(`SELECT ` + typeControlColumns + ` FROM job_type_controls WHERE rate_per_second IS NOT NULL AND NOT paused`).Query(func(rows pgx.Rows) (err error) {
		controls, err = collectTypeControls(rows)
		return err
	})
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return time.Time{}, wrapf(err, "next run time")
	}
	var at time.Time
	if next != nil {
		at = next.UTC()
	}
	if s.contended.Swap(false) {
		at = store.Earliest(at, now.Add(contendedRetry))
	}
	for _, c := range controls {
		at = store.Earliest(at, c.NextToken(now))
	}
	return at, nil
}

// Heartbeat extends the leases owner holds on the jobs listed.
//
// Rows another statement holds (an outcome or progress being written, a
// cancellation) are skipped, not waited for: the next heartbeat, a third
// of a lease later, renews them. SKIP LOCKED does not cover every wait,
// though: a row whose newer version another statement is writing is still
// waited for, and a batch completion locks its rows in no particular order,
// so the two could deadlock. The heartbeat therefore gives up waiting after
// heartbeatLockTimeout, well before the deadlock detector would abort
// either of them, and tries again at once a few times.
func (s *Store) Heartbeat(ctx context.Context, owner string, ids []string, until time.Time) (int, error) {
	if err := checkOwner(owner); err != nil {
		return 0, fmt.Errorf("heartbeat of %q: %w", owner, err)
	}
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if canonicalID(id) {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		return 0, nil
	}
	var err error
	for range heartbeatTries {
		var n int64
		var b pgx.Batch
		b.Queue(`SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", heartbeatLockTimeout.Milliseconds()))
		b.Queue(`
			UPDATE jobs SET lease_expires_at = $2
			WHERE id IN (SELECT id FROM jobs WHERE id = ANY($3::uuid[]) AND lease_owner = $1 AND status = 'processing' FOR UPDATE SKIP LOCKED)
			  AND lease_owner = $1 AND status = 'processing'`, owner, until, valid).Exec(func(tag pgconn.CommandTag) error {
			n = tag.RowsAffected()
			return nil
		})
		if err = s.pool.SendBatch(ctx, &b).Close(); err == nil {
			return int(n), nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != lockNotAvailable {
			break
		}
	}
	return 0, wrapf(err, "heartbeat of %s", owner)
}

// A heartbeat waits at most heartbeatLockTimeout for a row (see
// Heartbeat), and tries heartbeatTries times in a row.
const (
	heartbeatLockTimeout = 100 * time.Millisecond
	heartbeatTries       = 3
)

// RescueExpired gives back the processing jobs whose lease expired. One
// instance at a time does it (a transaction-level advisory lock): when
// another is at it, RescueExpired returns no jobs.
func (s *Store) RescueExpired(ctx context.Context, now time.Time, limit int) ([]*domain.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	tok := s.seq.start()
	defer s.seq.finish(tok)
	at := s.now()
	var changes []change
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, s.rescueLock).Scan(&locked); err != nil || !locked {
			return err
		}
		rows, err := tx.Query(ctx, s.sql.rescue, tok, now, limit, store.WorkerLost, errorTime(at), at)
		if err != nil {
			return err
		}
		changes, err = collectChanges(rows)
		return err
	})
	if err != nil {
		return nil, wrapf(err, "rescue jobs")
	}
	slices.SortFunc(changes, func(a, b change) int { return strings.Compare(a.job.ID, b.job.ID) })
	return s.publish(changes), nil
}

// Finish moves a leased processing job to a final status. What PostgreSQL
// text cannot keep of errMsg (NUL characters, invalid UTF-8) is replaced
// with U+FFFD, and a long message is cut (domain.TruncateErrorMessage).
func (s *Store) Finish(ctx context.Context, l store.Lease, status domain.Status, errMsg string) (*domain.Job, error) {
	if !status.Final() {
		return nil, fmt.Errorf("finish job %s as %s: not a final status: %w", l.JobID, status, domain.ErrInvalid)
	}
	now := s.now()
	return s.leased(ctx, "finish", l, s.sql.finish, nil, now, string(status), errorText(errMsg), errorTime(now))
}

// Complete moves a leased processing job to completed with a result.
// Concurrent calls are coalesced (see batch.go).
func (s *Store) Complete(ctx context.Context, l store.Lease, result json.RawMessage) (*domain.Job, error) {
	if err := checkLease(l); err != nil {
		return nil, fmt.Errorf("complete job %s: %w", l.JobID, err)
	}
	j, err := s.completes.do(ctx, completeArg{lease: l, result: result})
	if err != nil {
		return nil, fmt.Errorf("complete job %s: %w", l.JobID, err)
	}
	return j, nil
}

// Progress records a leased processing job's progress; the same value
// again is no change.
func (s *Store) Progress(ctx context.Context, l store.Lease, percent int) (*domain.Job, error) {
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("progress of job %s: %d: %w", l.JobID, percent, domain.ErrInvalid)
	}
	recorded := func(j *domain.Job) bool { return j.Progress != nil && *j.Progress == percent }
	return s.leased(ctx, "progress", l, s.sql.progress, recorded, s.now(), percent)
}

// Release moves a leased processing job back to pending, or to cancelled
// when its cancellation was requested.
func (s *Store) Release(ctx context.Context, l store.Lease) (*domain.Job, error) {
	return s.leased(ctx, "release", l, s.sql.release, nil, s.now())
}

// Fail records a failed attempt: back to pending at retryAt when attempts
// are left (and retryAt is not zero), failed otherwise. errMsg is kept as
// Finish keeps it.
func (s *Store) Fail(ctx context.Context, l store.Lease, errMsg string, retryAt time.Time) (*domain.Job, error) {
	var retry *time.Time
	if !retryAt.IsZero() {
		retry = &retryAt
	}
	now := s.now()
	return s.leased(ctx, "fail", l, s.sql.fail, nil, now, errorText(errMsg), retry, errorTime(now))
}

// leased runs a statement that changes the job l names only while l's
// claim stands (its parameters: token, id, owner, attempt, args...). When
// it changes nothing, the job is looked up to tell a missing job from a
// lost lease, or from a change that is no change (done reports that the
// job is already as asked, e.g. a progress already recorded; nil for
// none).
func (s *Store) leased(ctx context.Context, op string, l store.Lease, sql string, done func(j *domain.Job) bool, args ...any) (*domain.Job, error) {
	if err := checkLease(l); err != nil {
		return nil, fmt.Errorf("%s job %s: %w", op, l.JobID, err)
	}
	args = append([]any{l.JobID, l.Owner, l.Attempt}, args...)
	for range maxTries {
		jobs, err := s.write(ctx, sql, args...)
		if err != nil {
			return nil, fmt.Errorf("%s job %s: %w", op, l.JobID, err)
		}
		if len(jobs) == 1 {
			return jobs[0], nil
		}
		j, owner, err := s.getLeased(ctx, l.JobID)
		if err != nil {
			return nil, fmt.Errorf("%s job %s: %w", op, l.JobID, err)
		}
		if err := l.Check(j, owner); err != nil {
			return nil, fmt.Errorf("%s job %s: %w", op, l.JobID, err)
		}
		if done != nil && done(j) {
			return j, nil // no new version
		}
		// The claim stands and the statement did not apply: the job
		// changed in between (another progress). Try again.
	}
	return nil, fmt.Errorf("%s job %s: the job kept changing, %d tries: %w", op, l.JobID, maxTries, domain.ErrConflict)
}

// maxTries bounds how often a change is tried again because the job
// changed between the statement and the look-up that explains why the
// statement did not apply.
const maxTries = 10

// getLeased returns the job with the id and its lease owner.
func (s *Store) getLeased(ctx context.Context, id string) (*domain.Job, string, error) {
	var owner *string
	row := s.pool.QueryRow(ctx, `SELECT `+jobColumns+`, lease_owner FROM jobs WHERE id = $1`, id)
	j, err := scanJob(row, &owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", domain.ErrNotFound
	}
	if err != nil {
		return nil, "", classify(err)
	}
	if owner == nil {
		return j, "", nil
	}
	return j, *owner, nil
}

// Cancel cancels a pending job at once; for a processing job it records
// the request. The status is read and changed by one statement, so a claim
// racing the cancel cannot turn it into a conflict.
func (s *Store) Cancel(ctx context.Context, id string) (*domain.Job, error) {
	return s.change(ctx, "cancel", id, s.sql.cancel, func(j *domain.Job) (bool, error) {
		switch {
		case j.Status == domain.StatusPending || j.Status == domain.StatusProcessing && !j.CancelRequested:
			return true, nil // changed since the statement ran: try again
		case j.Status == domain.StatusProcessing:
			return false, nil // asked already: no new version
		}
		return false, fmt.Errorf("%s: %w", j.Status, domain.ErrConflict)
	})
}

// Retry puts a failed or cancelled job back to pending now, keeping its
// attempts and error history.
func (s *Store) Retry(ctx context.Context, id string) (*domain.Job, error) {
	return s.change(ctx, "retry", id, s.sql.retry, func(j *domain.Job) (bool, error) {
		if j.Status == domain.StatusFailed || j.Status == domain.StatusCancelled {
			return true, nil
		}
		return false, fmt.Errorf("%s → %s: %w", j.Status, domain.StatusPending, domain.ErrConflict)
	})
}

// CancelJobs cancels the jobs with the ids that Cancel would change, one
// statement per batch.
func (s *Store) CancelJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	return s.changeMany(ctx, "cancel", ids, owner, s.sql.cancelJobs)
}

// RetryJobs puts back to pending the failed or cancelled jobs with the
// ids, one statement per batch.
func (s *Store) RetryJobs(ctx context.Context, ids []string, owner string) ([]*domain.Job, error) {
	return s.changeMany(ctx, "retry", ids, owner, s.sql.retryJobs)
}

// changeMany runs a statement that changes the jobs with the ids whose
// status allows it (parameters: token, ids, now, owner), store.BulkBatch
// ids at a time, and returns the changed jobs. Ids that cannot name a job
// are dropped first (the statement casts them to uuid).
//
// A statement waits for the rows other writes hold, and a batch completion
// locks its rows in no particular order, so the two could deadlock over
// processing jobs. Like Heartbeat, the statement gives up a wait after
// bulkLockTimeout, well before the deadlock detector would abort either,
// and runs again (nothing of it was kept); the last try waits as long as
// it takes.
func (s *Store) changeMany(ctx context.Context, op string, ids []string, owner, sql string) ([]*domain.Job, error) {
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if canonicalID(id) {
			valid = append(valid, id)
		}
	}
	setTimeout := fmt.Sprintf("SELECT set_config('lock_timeout', '%dms', true)", bulkLockTimeout.Milliseconds())
	var changed []*domain.Job
	err := store.Batches(valid, func(batch []string) error {
		var err error
		for try := range bulkTries {
			first := setTimeout
			if try == bulkTries-1 {
				first = ""
			}
			var jobs []*domain.Job
			if jobs, err = s.writeAfter(ctx, first, sql, batch, s.now(), owner); err == nil {
				changed = append(changed, jobs...)
				return nil
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != lockNotAvailable {
				break
			}
		}
		return fmt.Errorf("%s jobs: %w", op, err)
	})
	return changed, err
}

// A statement of CancelJobs or RetryJobs waits at most bulkLockTimeout for
// a row, but on its last of bulkTries tries (see changeMany).
const (
	bulkLockTimeout = 100 * time.Millisecond
	bulkTries       = 4
)

// change runs a statement that changes the job with the id when its status
// allows (parameters: token, id, now). When it changes nothing, unchanged
// decides from the job as it is now: try again, return the job as it is,
// or fail.
func (s *Store) change(ctx context.Context, op, id, sql string, unchanged func(j *domain.Job) (retry bool, err error)) (*domain.Job, error) {
	if !canonicalID(id) {
		return nil, fmt.Errorf("%s job %s: %w", op, id, domain.ErrNotFound)
	}
	for range maxTries {
		jobs, err := s.write(ctx, sql, id, s.now())
		if err != nil {
			return nil, fmt.Errorf("%s job %s: %w", op, id, err)
		}
		if len(jobs) == 1 {
			return jobs[0], nil
		}
		j, err := s.getJob(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%s job %s: %w", op, id, err)
		}
		retry, err := unchanged(j)
		if err != nil {
			return nil, fmt.Errorf("%s job %s: %w", op, id, err)
		}
		if !retry {
			return j, nil
		}
	}
	return nil, fmt.Errorf("%s job %s: the job kept changing, %d tries: %w", op, id, maxTries, domain.ErrConflict)
}

// DeleteFinished deletes up to limit final jobs that finished before the
// given time, skipping rows other transactions hold.
func (s *Store) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM jobs WHERE id IN (
			SELECT id FROM jobs
			WHERE finished_at < $1 AND status IN ('completed', 'failed', 'cancelled')
			ORDER BY finished_at LIMIT $2
			FOR UPDATE SKIP LOCKED)`, before, limit)
	if err != nil {
		return 0, wrapf(err, "delete finished jobs")
	}
	return int(tag.RowsAffected()), nil
}

// Delete deletes a job in a final status in one statement; the triggers
// keep the counts, as for DeleteFinished.
func (s *Store) Delete(ctx context.Context, id string) (*domain.Job, error) {
	if !canonicalID(id) {
		return nil, fmt.Errorf("delete job %s: %w", id, domain.ErrNotFound)
	}
	j, err := s.queryJob(ctx, `DELETE FROM jobs WHERE id = $1 AND status IN ('completed', 'failed', 'cancelled') RETURNING `+jobColumns, id)
	if err == nil {
		return j, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, wrapf(err, "delete job %s", id)
	}
	j, err = s.getJob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("delete job %s: %w", id, err)
	}
	return nil, fmt.Errorf("delete job %s: %s: %w", id, j.Status, domain.ErrConflict)
}

// Stats counts jobs per status, of one type and one owner when q names
// them, from the counts the triggers keep (an owner's in
// job_owner_counts).
func (s *Store) Stats(ctx context.Context, q store.StatsQuery) (domain.Stats, error) {
	if !storable(q.Owner) || !storable(q.Type) {
		return domain.Stats{}, nil // no job can have them
	}
	counts, where, args := countsOf(q)
	rows, err := s.pool.Query(ctx, `SELECT status, sum(n)::bigint FROM `+counts+whereClause(where)+` GROUP BY status`, args...)
	if err != nil {
		return domain.Stats{}, wrapf(err, "job stats")
	}
	var st domain.Stats
	byStatus := map[domain.Status]*int{
		domain.StatusPending: &st.Pending, domain.StatusProcessing: &st.Processing, domain.StatusCompleted: &st.Completed,
		domain.StatusFailed: &st.Failed, domain.StatusCancelled: &st.Cancelled,
	}
	var (
		status string
		n      int
	)
	_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		if c, ok := byStatus[domain.Status(status)]; ok {
			*c = n
		}
		return nil
	})
	if err != nil {
		return domain.Stats{}, wrapf(err, "job stats")
	}
	return st, nil
}

// write runs a statement that changes jobs under a new token (its first
// parameter; args follow) and returns the jobs it changed once they are
// published.
func (s *Store) write(ctx context.Context, sql string, args ...any) ([]*domain.Job, error) {
	return s.writeAfter(ctx, "", sql, args...)
}

// writeAfter is write with a statement without parameters run before it,
// in the same transaction and round trip (none when first is empty).
func (s *Store) writeAfter(ctx context.Context, first, sql string, args ...any) ([]*domain.Job, error) {
	return s.writeWith(ctx, args, func(ctx context.Context, tok int64, changes *[]change) error {
		return s.runWrite(ctx, first, sql, append([]any{tok}, args...), changes)
	})
}

// writeWith runs a write of jobs under a new token (run's tok, the first
// parameter of its statements) and returns the jobs it changed once they
// are published; args are the statement's other arguments, whose first
// names the jobs it may change (see targetsOf).
func (s *Store) writeWith(ctx context.Context, args []any, run func(ctx context.Context, tok int64, changes *[]change) error) ([]*domain.Job, error) {
	tok := s.seq.start()
	defer s.seq.finish(tok)
	var changes []change
	err := run(ctx, tok, &changes)
	if err != nil {
		if outcomeUnknown(err) {
			// The statement may have committed: its jobs are fetched and
			// published as if another instance had changed them.
			s.unsure.add(time.Now(), targetsOf(args)...)
		}
		return nil, classify(err)
	}
	if s.hooks != nil && s.hooks.beforePublish != nil {
		jobs := make([]*domain.Job, len(changes))
		for i, c := range changes {
			jobs[i] = c.job
		}
		s.hooks.beforePublish(jobs)
	}
	return s.publish(changes), nil
}

// runWrite runs the statement of writeAfter and collects its changes.
func (s *Store) runWrite(ctx context.Context, first, sql string, args []any, changes *[]change) error {
	var err error
	if first == "" {
		var rows pgx.Rows
		if rows, err = s.pool.Query(ctx, sql, args...); err == nil {
			*changes, err = collectChanges(rows)
		}
	} else {
		var b pgx.Batch
		b.Queue(first)
		b.Queue(sql, args...).Query(func(rows pgx.Rows) (err error) {
			*changes, err = collectChanges(rows)
			return err
		})
		err = s.pool.SendBatch(ctx, &b).Close()
	}
	if err == nil && s.hooks != nil && s.hooks.loseReply != nil {
		err = s.hooks.loseReply(sql)
	}
	return err
}

// outcomeUnknown reports whether a statement that failed with err may have
// committed nonetheless: the server did not refuse it, and it may have
// been sent (the connection failed or the wait was cancelled after).
func outcomeUnknown(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// An ERROR rolled the statement back; a FATAL one (the session
		// terminated) may come after the commit.
		return pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC"
	}
	return !pgconn.SafeToRetry(err)
}

// targetsOf returns the ids of the jobs a writing statement may change,
// from its arguments (after the token): by the convention of the
// statements in sql.go, the first is the job's id, or the jobs' ids, when
// the caller knows them. Claims and rescues pick their jobs in the
// database and name none: what they change that is not published is an
// intermediate state, the next change of those jobs is published.
func targetsOf(args []any) []string {
	if len(args) == 0 {
		return nil
	}
	switch a := args[0].(type) {
	case string:
		return []string{a}
	case []string:
		return a
	}
	return nil
}

// publish hands committed changes to the gate, each after the version
// before it if this instance wrote that one, and returns their jobs.
func (s *Store) publish(changes []change) []*domain.Job {
	jobs := make([]*domain.Job, len(changes))
	for i, c := range changes {
		s.seq.await(c.prior)
		s.gate.publish(c.job)
		jobs[i] = c.job
	}
	return jobs
}

// queryJob runs a query for one job; pgx.ErrNoRows when there is none.
func (s *Store) queryJob(ctx context.Context, sql string, args ...any) (*domain.Job, error) {
	return scanJob(s.pool.QueryRow(ctx, sql, args...))
}
