package ledger

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// The PostgreSQL engine: one ledger shared by several gateways
// (github.com/jackc/pgx/v5 under database/sql).
//
// Durability: events and replays commit with synchronous_commit on (the
// commit is on the server's disk when RecordEvent returns nil); orders and
// delivery attempts with synchronous_commit off, the same trade as the
// SQLite engine's (see RecordAttempt): PostgreSQL writes its WAL in commit
// order and a durable commit flushes it up to its own end, so what survives
// a crash of the server is a prefix of the commits. The two levels are two
// pools whose connections are set to each, so that a write costs no extra
// round trip.
//
// Group commit: concurrent writes share transactions (see the committer
// below), and concurrent commits share a WAL flush (PostgreSQL's own
// grouping: the flush a committing backend waits for covers every commit
// record written before it); BENCHMARKS.md has what that costs against
// SQLite's committer.
//
// Several processes: the schema is migrated under an advisory lock (two
// gateways starting at once migrate once); duplicates are stopped by the
// primary keys (INSERT … ON CONFLICT DO NOTHING: of two gateways recording
// the same notification at the same moment, one creates the event and the
// other finds it); the outbox is claimed (DueEvents takes the due events
// with FOR UPDATE SKIP LOCKED and marks them claimed until a lease
// expires, so that two delivery workers never take the same event, and an
// event claimed by a gateway that died is taken over when its claim
// expires); transactions that lose a serialization or deadlock race are
// run again.

// PostgresOptions configures OpenPostgres.
type PostgresOptions struct {
	// DSN is the database's connection string, a URL
	// (postgres://user:pass@host:5432/db?sslmode=verify-full) or
	// key=value pairs, as libpq and pgx read them. Its search_path (or
	// the role's) chooses the schema the ledger's tables live in.
	DSN string
	// MaxConns bounds the connections of each of the engine's two pools
	// (durable writes; the other writes and the reads). Default 16.
	MaxConns int
	// ConnectTimeout bounds the opening of a connection, when the DSN
	// sets no connect_timeout. Default 5s.
	ConnectTimeout time.Duration
	// QueryTimeout bounds every operation of the ledger on the database
	// (a transaction, or a read), so that a database that stops answering
	// fails the request (a notification is answered FAIL and WeChat
	// retries) instead of holding it; a write's caller waits at most twice
	// as long (its batch, then the write alone). Default 10s.
	QueryTimeout time.Duration

	// schema, when set, is the search_path of every connection (tests:
	// a schema of their own).
	schema string
}

// Defaults of PostgresOptions.
const (
	DefaultPostgresMaxConns       = 16
	DefaultPostgresConnectTimeout = 5 * time.Second
	DefaultPostgresQueryTimeout   = 10 * time.Second
)

// migrationLock is the key of the advisory lock under which the schema is
// migrated ("wxpayled" in ASCII).
const migrationLock int64 = 0x7778706179_6c6564

// postgresDialect is PostgreSQL (≥ 12) through pgx.
func postgresDialect() dialect {
	return dialect{name: "postgres", numbered: true, blobType: "BYTEA", materialized: "MATERIALIZED",
		skipLocked:    " FOR NO KEY UPDATE OF e SKIP LOCKED",
		migrationTx:   `SET LOCAL lock_timeout = '1s'`,
		hasMigrations: `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations')`,
		ledgerElsewhere: `SELECT COALESCE(MIN(n.nspname), '') FROM pg_catalog.pg_namespace n
			WHERE n.nspname = ANY (current_schemas(false)) AND n.nspname <> current_schema()
			AND EXISTS (SELECT 1 FROM pg_catalog.pg_tables t WHERE t.schemaname = n.nspname AND t.tablename = 'events')
			AND EXISTS (SELECT 1 FROM information_schema.columns c
				WHERE c.table_schema = n.nspname AND c.table_name = 'schema_migrations' AND c.column_name = 'applied_at')`,
		lockTimedOut: func(err error) bool {
			var pe *pgconn.PgError
			return errors.As(err, &pe) && pe.Code == "55P03" // lock_not_available
		}}
}

// OpenPostgres opens (migrating if needed) the ledger in a PostgreSQL
// database.
func OpenPostgres(ctx context.Context, opts PostgresOptions) (Store, error) {
	s, err := openPostgres(ctx, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openPostgres(ctx context.Context, opts PostgresOptions) (*sqlStore, error) {
	if opts.DSN == "" {
		return nil, errors.New("ledger: open postgres: no connection string")
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultPostgresMaxConns
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultPostgresConnectTimeout
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultPostgresQueryTimeout
	}
	cfg, err := pgx.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("ledger: open postgres: %w", errUnreadableDSN)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = opts.ConnectTimeout
	}
	if opts.schema != "" {
		cfg.RuntimeParams["search_path"] = opts.schema
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "caddy-wxpay"
	}
	pool := func(syncCommit string) *sql.DB {
		c := cfg.Copy()
		c.RuntimeParams["synchronous_commit"] = syncCommit
		db := stdlib.OpenDB(*c)
		db.SetMaxOpenConns(opts.MaxConns)
		db.SetMaxIdleConns(opts.MaxConns)
		db.SetConnMaxIdleTime(5 * time.Minute)
		return db
	}
	e := &pgEngine{durable: pool("on"), fast: pool("off"), timeout: opts.QueryTimeout,
		maxBatch: DefaultMaxBatch, reqs: make(chan *opReq), closing: make(chan struct{})}

	where := fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	if err := e.migrate(ctx); err != nil {
		_ = e.close()
		return nil, fmt.Errorf("ledger: open postgres (%s): %w", where, err)
	}
	s, err := newStore(ctx, postgresDialect(), e)
	if err != nil {
		return nil, err
	}
	e.started = true
	e.committers.Add(pgCommitters)
	for range pgCommitters {
		go e.committer()
	}
	return s, nil
}

// PostgresLocation names the database of dsn without its secrets (for logs
// and errors): postgres://user@host:port/database. It fails when dsn
// cannot be read.
func PostgresLocation(dsn string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", errUnreadableDSN
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database), nil
}

// errUnreadableDSN is the error of a connection string pgx cannot read.
// pgx's own error quotes the string, and its redaction misses some ways of
// writing a password (password = x): it is not passed on.
var errUnreadableDSN = errors.New("the connection string cannot be read: give a URL (postgres://user:password@host:5432/database?sslmode=verify-full) or libpq's key=value pairs")

// pgEngine runs the ledger on a PostgreSQL database: two pools, whose
// connections commit with synchronous_commit on (durable) and off (fast).
type pgEngine struct {
	durable, fast *sql.DB
	timeout       time.Duration
	all           []*sql.Stmt

	// The committer (group commit): its requests, its scratch txn.
	maxBatch   int
	reqs       chan *opReq // unbuffered: a send succeeds when the committer takes it
	closing    chan struct{}
	reqPool    sync.Pool // of *opReq (submitOp)
	committers sync.WaitGroup
	started    bool
}

// migrate brings the schema up to date under the migration lock, on one
// connection of the durable pool.
func (e *pgEngine) migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := e.durable.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock is released even when ctx ended (and
		// with the session anyway).
		uctx, ucancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ucancel()
		if _, err := conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1)`, migrationLock); err != nil {
			// The session holds the lock until it ends: end it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	_, err = migrate(ctx, conn, postgresDialect(), migrations(), time.Now)
	return err
}

func (e *pgEngine) prepare(ctx context.Context, query string) (*stmt, error) {
	return prepareOn(ctx, e.durable, e.fast, query, &e.all)
}

// maxTxRuns bounds how often a transaction that lost a serialization or
// deadlock race is run.
const maxTxRuns = 5

func (e *pgEngine) write(ctx context.Context, op txOp, durable bool) error {
	return e.submit(ctx, op, durable)
}

// retryable reports whether err is a transaction's loss of a race that
// running it again resolves: a serialization failure or a deadlock.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}

func (e *pgEngine) read(ctx context.Context, op txOp) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	t := newTxn(ctx, e.fast)
	t.onReader = true
	return op(t)
}

func (e *pgEngine) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	return e.fast.ExecContext(ctx, query, args...)
}

func (e *pgEngine) reader() *sql.DB { return e.fast }

func (e *pgEngine) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.timeout)
}

func (e *pgEngine) orderAbsent(mchID, outTradeNo string) bool { return false }

func (e *pgEngine) orderWritten(mchID, outTradeNo string) {}

func (e *pgEngine) shared() bool { return true }

func (e *pgEngine) filtersOrders() bool { return false }

func (e *pgEngine) close() error {
	close(e.closing)
	if e.started {
		e.committers.Wait()
	}
	var errs []error
	for _, st := range e.all {
		errs = append(errs, st.Close())
	}
	errs = append(errs, e.durable.Close(), e.fast.Close())
	return errors.Join(errs...)
}

// Interface guard
var _ engine = (*pgEngine)(nil)

// Group commit. As on SQLite, the writes of the ledger (events, orders,
// delivery attempts, outbox claims) go to one committer goroutine, which
// takes a request, then every other one already waiting (up to maxBatch),
// and runs them all in one transaction on one connection: one BEGIN, one
// COMMIT and one WAL flush for the batch, instead of a transaction, and two
// round trips more, for each. Under no load a batch is one write. A batch
// without events commits with synchronous_commit off.
//
// If the batch's transaction fails (an op's error that is not its
// caller's answer aborts a PostgreSQL transaction), each of its ops runs
// again in a transaction of its own, so that one failing write fails
// alone. A batch that loses a serialization or deadlock race (with another
// gateway's) runs again.

// submit hands op to the committers and waits for its answer.
func (e *pgEngine) submit(ctx context.Context, op txOp, durable bool) error {
	// The caller waits at most two query timeouts (its batch's
	// transaction, then its own, when the batch failed): a database that
	// holds a lock or stops answering fails the request instead of holding
	// it while every op of a failed batch runs again one after another.
	// (Given up on, the op may still commit; a notification sent again
	// then finds its event.)
	ctx, cancel := context.WithTimeout(ctx, 2*e.timeout)
	defer cancel()
	return submitOp(ctx, e.reqs, e.closing, &e.reqPool, op, false, durable)
}

// pgCommitters is how many committers run at once, each with a batch and
// a connection of its own: while one waits for its commit's WAL flush (or
// for a round trip), another fills and runs the next batch, and
// PostgreSQL flushes their commits together.
const pgCommitters = 4

// committer runs until close.
func (e *pgEngine) committer() {
	defer e.committers.Done()
	t := newTxn(context.Background(), e.durable)
	batch := make([]*opReq, 0, e.maxBatch)
	answers := make([]error, e.maxBatch)
	for {
		select {
		case <-e.closing:
			return
		case r := <-e.reqs:
			batch = append(batch, r)
		}
	drain:
		for len(batch) < e.maxBatch {
			select {
			case r := <-e.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		e.commitBatch(t, batch, answers[:len(batch)])
		clear(batch)
		batch = batch[:0]
	}
}

// commitBatch runs batch in one transaction and answers every request.
func (e *pgEngine) commitBatch(t *txn, batch []*opReq, answers []error) {
	batch = slices.DeleteFunc(batch, func(r *opReq) bool {
		if err := r.ctx.Err(); err != nil { // the caller has gone
			r.resp <- err
			return true
		}
		return false
	})
	if len(batch) == 0 {
		return
	}
	durable := false
	for _, r := range batch {
		durable = durable || r.durable
	}
	// The batch is not any one caller's: it is bounded by the engine's
	// timeout, not by their contexts.
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	err := e.runTx(ctx, t, durable, func(t *txn) error {
		for i, r := range batch {
			a := r.op(t)
			if !ownAnswer(a) {
				return a
			}
			answers[i] = a
		}
		return nil
	})
	if err == nil {
		for i, r := range batch {
			r.resp <- answers[i]
		}
		clear(answers)
		return
	}
	if len(batch) == 1 {
		batch[0].resp <- err
		return
	}
	// Each on its own, with a deadline of its own (the batch's may be what
	// failed it): the failing one fails alone. A caller that has gone is
	// answered at once.
	cancel()
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.resp <- err
			continue
		}
		var answer error
		rctx, rcancel := context.WithTimeout(context.Background(), e.timeout)
		err := e.runTx(rctx, t, r.durable, func(t *txn) error {
			answer = r.op(t)
			if ownAnswer(answer) {
				return nil
			}
			return answer
		})
		rcancel()
		if err != nil {
			answer = err
		}
		r.resp <- answer
	}
}

// runTx runs fn in a transaction, on the durable pool (synchronous_commit
// on) or, when it holds no durable write, on the fast one (off), again
// when it loses a serialization or deadlock race.
func (e *pgEngine) runTx(ctx context.Context, t *txn, durable bool, fn func(t *txn) error) error {
	db := e.durable
	t.onReader = !durable
	if !durable {
		db = e.fast
	}
	for run := 1; ; run++ {
		err := withTx(ctx, db, func(tx *sql.Tx) error {
			t.ctx = ctx
			t.enter(tx)
			defer func() { t.leave(); t.ctx = nil }()
			return fn(t)
		})
		if err == nil || run >= maxTxRuns || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
}
