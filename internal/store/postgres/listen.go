package postgres

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/store"
)

// Tuning of the listener.
const (
	// noticeQueue is how many notifications the reader hands over before
	// it waits for the relay.
	noticeQueue = 256
	// relayLinger is how long the relay gathers notifications before it
	// fetches their jobs, and relayBatch the most jobs it fetches at once.
	relayLinger = 2 * time.Millisecond
	relayBatch  = 1000
	// resyncMargin is how far before a lost connection last worked the
	// re-sync starts: notifications may have been lost a while before,
	// and other instances' clocks may be behind.
	resyncMargin = 30 * time.Second
	// resyncPage is how many jobs a re-sync reads per statement.
	resyncPage = 500
	// idlePing is how long the listening connection may stay silent before
	// it is pinged, and pingTimeout how long the ping may take.
	idlePing    = 30 * time.Second
	pingTimeout = 10 * time.Second
	// Reconnection backoff: from the first to the last delay, doubling.
	firstBackoff = 100 * time.Millisecond
	lastBackoff  = 5 * time.Second
)

// Listener publishes the job changes this instance did not make itself:
// those of the other instances sharing the schema, which it learns of
// through LISTEN/NOTIFY, and those of this instance's statements whose
// reply was lost (see unsure). After losing its listening connection it
// reconnects and publishes again every job changed since shortly before
// the loss. It publishes through the store's gate, so subscribers see each
// job's versions in increasing order, whoever made them.
//
// Every server on PostgreSQL runs one beside its store; a store without a
// running Listener still publishes its own changes, not the others'.
// Create it with Store.Listen, run it with Run.
type Listener struct {
	s    *Store
	conn *pgx.Conn // owned by Run once it starts
	// pid is the backend process id of the listening connection.
	pid        atomic.Uint32
	resyncs    atomic.Int64 // re-syncs begun after reconnections (counted before any of their events is published)
	reconnects atomic.Int64 // connections lost and listened again
}

// Reconnects returns how many times the listening connection was lost and
// opened again since Listen. Safe for concurrent use.
func (l *Listener) Reconnects() int64 { return l.reconnects.Load() }

// Resyncs returns how many re-syncs (the jobs changed while the listener
// was not listening, published again) have begun since Listen. Safe for
// concurrent use.
func (l *Listener) Resyncs() int64 { return l.resyncs.Load() }

// Listen opens the listening connection (a connection of its own, not
// from the pool, that LISTENs on the store's channel) and returns the
// Listener that reads it. Notifications sent from then on reach Run. The
// ctx bounds the connection attempt only.
func (s *Store) Listen(ctx context.Context) (*Listener, error) {
	l := &Listener{s: s}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	l.conn = conn
	return l, nil
}

// Run reads notifications and publishes the changes they announce until
// ctx is done; then it closes the listening connection and returns nil
// once its two goroutines (the reader and the relay, which fetches the
// changed jobs) have exited. Database failures are retried with backoff,
// never returned. Run may be called once.
func (l *Listener) Run(ctx context.Context) error {
	notices := make(chan string, noticeQueue)
	var wg sync.WaitGroup
	wg.Go(func() { l.listen(ctx, l.conn, notices) })
	wg.Go(func() { l.relay(ctx, notices) })
	wg.Wait()
	return nil
}

// connect opens a listening connection.
func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	s := l.s
	cfg := s.pool.Config().ConnConfig
	cfg.RuntimeParams["application_name"] = "jobqueue listener"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, wrapf(err, "listen for changes")
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{channelName(s.schema)}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, wrapf(err, "listen for changes")
	}
	l.pid.Store(conn.PgConn().PID())
	return conn, nil
}

// listen reads notifications from conn and hands the other instances' to
// the relay. When the connection is lost it reconnects with backoff and
// asks the relay to re-sync. It owns conn and returns (closing it) when
// ctx is done.
func (l *Listener) listen(ctx context.Context, conn *pgx.Conn, notices chan<- string) {
	s := l.s
	own := noticePrefix(s.instance)
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	// alive is when the connection last proved to work (a notification, a
	// ping): changes made since then may have been missed when it is lost.
	alive := s.now()
	for {
		n, err := l.waitForNotification(ctx, conn)
		if err == nil {
			alive = s.now()
			if n == nil || strings.HasPrefix(n.Payload, own) {
				continue
			}
			select {
			case notices <- n.Payload:
				continue
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		since := alive.Add(-resyncMargin)
		s.log.Warn("postgres store: lost the connection that listens for other instances' changes; reconnecting", "err", err)
		closeConn(conn)
		if s.hooks != nil && s.hooks.beforeRelisten != nil {
			s.hooks.beforeRelisten()
		}
		if conn = l.reconnect(ctx); conn == nil {
			return
		}
		alive = s.now() // listening again; the re-sync covers what came before
		l.reconnects.Add(1)
		s.log.Info("postgres store: listening again; publishing the jobs changed meanwhile", "since", since)
		select {
		case notices <- resyncNotice(since):
		case <-ctx.Done():
			return
		}
	}
}

// waitForNotification waits for the next notification on conn, or for
// idlePing to pass: then it pings the server (a connection that died
// silently would otherwise wait forever) and returns no notification.
func (l *Listener) waitForNotification(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	wait := idlePing
	if h := l.s.hooks; h != nil && h.idlePing > 0 {
		wait = h.idlePing
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	n, err := conn.WaitForNotification(waitCtx)
	if err == nil || ctx.Err() != nil || waitCtx.Err() == nil {
		return n, err
	}
	pingCtx, cancelPing := context.WithTimeout(ctx, pingTimeout)
	defer cancelPing()
	err = conn.Ping(pingCtx)
	if h := l.s.hooks; err == nil && h != nil && h.afterPing != nil {
		h.afterPing()
	}
	return nil, err
}

// closeConn closes a listening connection, not waiting long for a server
// that may be gone.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}

// reconnect connects the listener again, with backoff, until it succeeds
// or ctx is done (then it returns nil).
func (l *Listener) reconnect(ctx context.Context) *pgx.Conn {
	delay := firstBackoff
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		conn, err := l.connect(ctx)
		if err == nil {
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		l.s.log.Warn("postgres store: cannot listen for changes yet", "err", err, "retry_in", delay)
		delay = min(2*delay, lastBackoff)
	}
}

// A re-sync request travels to the relay as a notice that no instance
// sends: resyncTag followed by the time to re-sync from.
const resyncTag = "resync:"

func resyncNotice(since time.Time) string { return resyncTag + since.Format(time.RFC3339Nano) }

// relay fetches and publishes the jobs other instances changed, gathering
// notifications for relayLinger first, and runs re-syncs. Database
// failures are retried with backoff until they succeed or ctx is done:
// nothing is dropped. It returns when ctx is done.
func (l *Listener) relay(ctx context.Context, notices <-chan string) {
	s := l.s
	linger := time.NewTimer(0)
	<-linger.C
	retry := time.NewTimer(0) // the next fetch of unsure jobs
	<-retry.C
	defer retry.Stop()
	var retryAt time.Time
	for {
		var first string
		var retryC <-chan time.Time
		if !retryAt.IsZero() {
			retry.Reset(time.Until(retryAt))
			retryC = retry.C
		}
		select {
		case <-ctx.Done():
			return
		case first = <-notices:
		case <-s.unsure.signal:
		case <-retryC:
		}
		retry.Stop()
		var (
			refs   = map[uuid.UUID]int64{}
			types  = map[string]bool{}
			resync *time.Time
		)
		add := func(payload string) {
			if payload == "" {
				return
			}
			if since, ok := strings.CutPrefix(payload, resyncTag); ok {
				if t, err := time.Parse(time.RFC3339Nano, since); err == nil && (resync == nil || t.Before(*resync)) {
					resync = &t
				}
				return
			}
			var n notice
			if err := json.Unmarshal([]byte(payload), &n); err != nil {
				s.log.Warn("postgres store: ignoring a malformed change notification", "err", err)
				return
			}
			for _, t := range n.Types {
				types[t] = true
			}
			for _, r := range n.Jobs {
				if id, err := uuid.Parse(r.id); err == nil && r.version > refs[id] && !s.gate.seen(id, r.version) {
					refs[id] = r.version
				}
			}
		}
		add(first)
		linger.Reset(relayLinger)
	gather:
		for len(refs) < relayBatch {
			select {
			case p := <-notices:
				add(p)
			case <-linger.C:
				break gather
			case <-ctx.Done():
				linger.Stop()
				return
			}
		}
		linger.Stop()
		var unsureIDs []string
		unsureIDs, retryAt = s.unsure.due(time.Now())
		for _, id := range unsureIDs {
			if id, err := uuid.Parse(id); err == nil {
				refs[id] = max(refs[id], 0)
			}
		}
		if len(refs) > 0 {
			ids := make([]string, 0, len(refs))
			for id := range refs {
				ids = append(ids, id.String())
			}
			l.retry(ctx, "fetch changed jobs", func(ctx context.Context) error { return s.fetchAndPublish(ctx, ids) })
		}
		if len(types) > 0 {
			names := make([]string, 0, len(types))
			for t := range types {
				names = append(names, t)
			}
			l.retry(ctx, "fetch changed type controls", func(ctx context.Context) error { return s.publishTypes(ctx, names) })
		}
		if resync != nil {
			l.retry(ctx, "re-sync changed jobs", func(ctx context.Context) error { return l.resync(ctx, *resync) })
		}
	}
}

// unsure is the set of jobs that statements of this instance may have
// changed without the instance learning the outcome (the connection
// failed, or the caller gave up, after the statement was sent). The
// listener ignores this instance's own notifications, so the relay fetches
// these jobs and publishes what changed, through the gate: a final state
// committed while its reply was lost still reaches subscribers. Such a
// statement may also commit later than the failure (the server finishes it
// before it notices the lost connection), so each job is fetched again
// every unsureRetry until unsureFor has passed. It is safe for concurrent
// use.
type unsure struct {
	mu  sync.Mutex
	ids map[string]*unsureJob
	// signal has a value when a job was added (never blocks add).
	signal chan struct{}
}

type unsureJob struct{ next, until time.Time }

const (
	unsureRetry = time.Second
	unsureFor   = time.Minute
)

func newUnsure() *unsure {
	return &unsure{ids: make(map[string]*unsureJob), signal: make(chan struct{}, 1)}
}

// add remembers ids, to be fetched at once, and wakes the relay.
func (u *unsure) add(now time.Time, ids ...string) {
	if len(ids) == 0 {
		return
	}
	u.mu.Lock()
	for _, id := range ids {
		u.ids[id] = &unsureJob{next: now, until: now.Add(unsureFor)}
	}
	u.mu.Unlock()
	select {
	case u.signal <- struct{}{}:
	default:
	}
}

// due returns the ids to fetch now, and when the next ones are due (zero
// when none are left).
func (u *unsure) due(now time.Time) (ids []string, next time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, j := range u.ids {
		if !j.next.After(now) {
			ids = append(ids, id)
			if j.next = now.Add(unsureRetry); j.next.After(j.until) {
				delete(u.ids, id)
				continue
			}
		}
		if next.IsZero() || j.next.Before(next) {
			next = j.next
		}
	}
	return ids, next
}

// retry runs f until it succeeds or ctx is done, with backoff.
func (l *Listener) retry(ctx context.Context, what string, f func(ctx context.Context) error) {
	delay := firstBackoff
	for {
		err := f(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		l.s.log.Warn("postgres store: "+what+" failed; trying again", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, lastBackoff)
	}
}

// fetchAndPublish publishes the current state of the jobs with the ids.
// Jobs deleted meanwhile are skipped.
func (s *Store) fetchAndPublish(ctx context.Context, ids []string) error {
	jobs, err := s.queryJobs(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ANY($1)`, ids)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		s.gate.publish(j)
	}
	return nil
}

// publishTypes publishes the current controls of the named types.
func (s *Store) publishTypes(ctx context.Context, names []string) error {
	controls, err := s.typeControlsOf(ctx, names)
	if err != nil {
		return err
	}
	for _, c := range controls {
		s.typePub.PublishType(c)
	}
	return nil
}

// resync publishes every job changed since the given time (by the
// store's clock), paging through the table in creation order: one pass
// over the table, with no index on updated_at (one would cost every change
// of every job to spare this rare pass; see migration 00003).
func (l *Listener) resync(ctx context.Context, since time.Time) error {
	s := l.s
	l.resyncs.Add(1)
	// Controls may have changed meanwhile too: publish every type's, and
	// the cleared controls of the types last published with some whose
	// row is gone (resumed, or their limits removed, meanwhile).
	known := s.typePub.snapshot()
	controls, err := s.TypeControls(ctx)
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(controls))
	for _, c := range controls {
		present[c.Name] = true
		s.typePub.PublishType(c)
	}
	s.typePub.clearGone(known, present)
	var after int64
	for {
		jobs, err := s.queryJobs(ctx, `SELECT `+jobColumns+` FROM jobs WHERE seq > $1 AND updated_at >= $2 ORDER BY seq LIMIT $3`,
			after, since, resyncPage)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			s.gate.publish(j)
			after = j.Seq
		}
		if len(jobs) < resyncPage {
			return nil
		}
	}
}

// queryJobs runs a query of jobColumns and returns its jobs.
func (s *Store) queryJobs(ctx context.Context, sql string, args ...any) ([]*domain.Job, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var jobs []*domain.Job
	r := newJobRow()
	for rows.Next() {
		j, err := r.scan(rows)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// publishedTypes is the store's TypePublisher: it passes each change on
// and remembers the types it last published with controls, so that a
// resync can publish the cleared controls of those whose row is gone (a
// type's row is deleted when it is left without controls, and the
// notification of that may have been missed).
type publishedTypes struct {
	next store.TypePublisher

	mu  sync.Mutex
	gen uint64
	// controlled maps each type last published with controls to the
	// number of that publication.
	controlled map[string]uint64
}

func newPublishedTypes(next store.TypePublisher) *publishedTypes {
	return &publishedTypes{next: next, controlled: make(map[string]uint64)}
}

// PublishType notes c and passes it on (under the lock, so that what it
// notes is the order the next publisher heard).
func (p *publishedTypes) PublishType(c domain.TypeControl) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	if c.Empty() {
		delete(p.controlled, c.Name)
	} else {
		p.controlled[c.Name] = p.gen
	}
	p.next.PublishType(c)
}

// snapshot returns the types last published with controls, each with the
// number of its publication.
func (p *publishedTypes) snapshot() map[string]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.controlled)
}

// clearGone publishes as cleared each type of known (a snapshot taken
// before the controls were read) that is not present among the controls
// read, unless it was published again since the snapshot (that newer
// publication is the truth).
func (p *publishedTypes) clearGone(known map[string]uint64, present map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, gen := range known {
		if present[name] || p.controlled[name] != gen {
			continue
		}
		p.gen++
		delete(p.controlled, name)
		p.next.PublishType(domain.TypeControl{Name: name})
	}
}
