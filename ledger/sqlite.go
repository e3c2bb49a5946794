package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go
)

// The SQLite engine: the embedded ledger (modernc.org/sqlite, no cgo, no
// server).
//
// Durability: events and replays commit with synchronous=FULL, so an event
// recorded is on disk (fsynced) when RecordEvent returns nil: the gateway
// may then answer WeChat SUCCESS. Orders and delivery attempts are written
// with synchronous=NORMAL (no fsync at commit; a crash of the machine may
// lose the last of them): WeChat's notification, not the order row, proves
// a payment, and a lost attempt record only means one more delivery of the
// same event (see RecordAttempt).
//
// Group commit: one committer goroutine owns the writes, on one connection
// (sqlite_committer.go). Concurrent events share one transaction and one
// fsync; so do the concurrent writes of orders and attempts (with the
// events, when some are waiting, or in a transaction without fsync), and
// GetOrder and DueEvents read through the same connection, whose page
// cache stays warm. Each caller still gets its own answer. GetOrder answers
// most lookups of an order the ledger does not hold (every new
// out_trade_no) from an in-memory filter of the order keys, without SQLite
// (sqlite_orderkeys.go).

// SQLiteOptions configures OpenSQLite.
type SQLiteOptions struct {
	// Path of the database file; created with its directory (0700) if missing.
	Path string
	// DisableGroupCommit makes every RecordEvent run its own transaction
	// (one fsync each) instead of batching concurrent calls into one
	// transaction and one fsync (the default).
	DisableGroupCommit bool
	// MaxBatch bounds a group (default 256).
	MaxBatch int

	// beforeBatch is the committer's test hook (see sqliteEngine).
	beforeBatch func(n int)
	// noFastGroup: PutOrder, RecordPrepay, SetOrderState and RecordAttempt
	// run a transaction each, and GetOrder and DueEvents read on the fast
	// pool, instead of going through the committer (tests, benchmarks).
	noFastGroup bool
}

// DefaultMaxBatch is the default bound of a group commit.
const DefaultMaxBatch = 256

// DefaultLinger is how long the committer waits for more writes to join a
// batch of writes without events (orders, attempts), which needs no fsync:
// under load, one transaction then carries tens of orders instead of one or
// two (see lingerFor). An event ends the wait; reads do not wait.
const DefaultLinger = time.Millisecond

// fastConns bounds the connections of the fast handle (readers run in
// parallel under WAL; writers queue on the database's write lock).
const fastConns = 8

// sqliteDialect is SQLite through modernc.org/sqlite.
func sqliteDialect() dialect {
	return dialect{name: "sqlite", blobType: "BLOB", materialized: "MATERIALIZED",
		hasMigrations: `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')`}
}

// Open opens the ledger of a storage driver at source, with the engine's
// default options: "sqlite" and the database file's path, or "postgres"
// and a connection string.
func Open(ctx context.Context, driver, source string) (Store, error) {
	switch driver {
	case "sqlite":
		return OpenSQLite(ctx, SQLiteOptions{Path: source})
	case "postgres":
		return OpenPostgres(ctx, PostgresOptions{DSN: source})
	}
	return nil, fmt.Errorf("ledger: unknown storage driver %q (sqlite, postgres)", driver)
}

// OpenSQLite opens (creating and migrating if needed) the SQLite ledger.
//
// It opens two pools on the file: a durable one, a single connection (the
// writer: synchronous=FULL, set to NORMAL for the transactions that hold
// no event), through which the committer goroutine writes events, orders
// and attempts and reads orders and due events; and a fast one
// (synchronous=NORMAL) for the other reads and the infrequent writes. Both
// are in WAL mode with a busy timeout, foreign keys on, and write
// transactions that begin IMMEDIATE. The frequent statements are prepared
// once, here.
func OpenSQLite(ctx context.Context, opts SQLiteOptions) (Store, error) {
	s, err := openSQLite(ctx, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openSQLite(ctx context.Context, opts SQLiteOptions) (*sqlStore, error) {
	if opts.Path == "" {
		return nil, errors.New("ledger: open sqlite: no path")
	}
	if strings.HasPrefix(opts.Path, "file:") || opts.Path == ":memory:" {
		return nil, fmt.Errorf("ledger: open sqlite: %q: want a file path", opts.Path)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if _, err := sqliteDSN(opts.Path, syncFull); err != nil { // before anything is created
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("ledger: open sqlite: %w", err)
	}
	// A new ledger is the gateway's alone (it holds every notification's
	// payload): created 0600 before SQLite opens it, which gives its -wal
	// and -shm files the same mode. An existing file keeps its own.
	f, err := os.OpenFile(opts.Path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger: open sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("ledger: open sqlite: %w", err)
	}

	d := sqliteDialect()
	durable, err := openSQLitePool(ctx, opts.Path, syncFull, 1)
	if err != nil {
		return nil, err
	}
	if _, err := migrate(ctx, durable, d, migrations(), time.Now); err != nil {
		_ = durable.Close()
		return nil, err
	}
	// The file may have just been created: make its directory entry
	// durable too (SQLite syncs the directory for its WAL, not for the
	// database file). Best effort: not every platform can sync a directory.
	syncDir(filepath.Dir(opts.Path))
	fast, err := openSQLitePool(ctx, opts.Path, syncNormal, fastConns)
	if err != nil {
		_ = durable.Close()
		return nil, err
	}

	e := &sqliteEngine{
		durable:     durable,
		fast:        fast,
		group:       !opts.DisableGroupCommit,
		groupFast:   !opts.noFastGroup,
		maxBatch:    opts.MaxBatch,
		reqs:        make(chan *opReq),
		wreqs:       make(chan *opReq),
		closing:     make(chan struct{}),
		done:        make(chan struct{}),
		sync:        syncFull,
		linger:      DefaultLinger,
		beforeBatch: opts.beforeBatch,
	}
	if e.groupFast {
		// The filter relies on SQLite's rowid (see sqlite_orderkeys.go)
		// and on the committer to keep it complete.
		e.keys = newOrderKeys()
		if e.orderKeysSince, err = durable.PrepareContext(ctx, qOrderKeysSince); err != nil {
			_ = e.close()
			return nil, fmt.Errorf("ledger: prepare the order keys' catch-up: %w", err)
		}
		e.all = append(e.all, e.orderKeysSince)
	}
	s, err := newStore(ctx, d, e)
	if err != nil {
		return nil, err
	}
	if e.group || e.groupFast {
		e.started = true
		go e.committer()
	}
	return s, nil
}

// sqliteEngine runs the ledger on one SQLite file: a writer connection
// owned by the committer goroutine (group commit, the sync level per
// transaction, the order-key filter) and a pool for the other reads and
// the infrequent writes.
type sqliteEngine struct {
	// durable is the writer connection: events and replays, committed
	// with synchronous=FULL, on disk when they return; and, in the same
	// transactions or in their own with synchronous=NORMAL, the frequent
	// writes of orders and attempts.
	durable *sql.DB
	// fast takes the other reads and the infrequent writes (leases,
	// checks, refunds), with synchronous=NORMAL.
	fast *sql.DB
	all  []*sql.Stmt // every statement prepared, closed by close

	group     bool // durable writes (events) through the committer: group commit
	groupFast bool // the other frequent writes and GetOrder/DueEvents reads too
	maxBatch  int
	reqs      chan *opReq   // durable writes; unbuffered: a send succeeds only when the committer takes it
	wreqs     chan *opReq   // the other writes and the reads; unbuffered, as reqs
	closing   chan struct{} // closed by close
	done      chan struct{} // closed when the committer has returned
	started   bool          // the committer runs
	reqPool   sync.Pool     // of *opReq, with their answer channels
	txnPool   sync.Pool     // of *txn, for the writes that run on their own

	// wmu serialises the engine's write transactions (both pools write the
	// one file, which has one write lock).
	wmu sync.Mutex
	// sync is the synchronous level the writer connection (durable) is
	// set to; "" if unknown. Guarded by wmu.
	sync string
	// keys, if set, answers GetOrder for keys surely not in the ledger
	// (sqlite_orderkeys.go); the committer keeps it complete with
	// orderKeysSince.
	keys           *orderKeys
	orderKeysSince *sql.Stmt
	// linger is how long the committer waits for more writes to join a
	// batch of writes without events (0: not at all).
	linger time.Duration

	// eventTxs counts the transactions that held durable writes
	// (events), writeTxs those that held other writes (tests, benchmarks).
	eventTxs atomic.Int64
	writeTxs atomic.Int64
	// beforeBatch, if set, is called by the committer with the number of
	// durable writes of each batch before its transaction (tests).
	beforeBatch func(n int)
}

func (e *sqliteEngine) prepare(ctx context.Context, query string) (*stmt, error) {
	return prepareOn(ctx, e.durable, e.fast, query, &e.all)
}

func (e *sqliteEngine) write(ctx context.Context, op txOp, durable bool) error {
	switch {
	case durable && e.group:
		return e.submit(ctx, e.reqs, op, false)
	case !durable && e.groupFast:
		return e.submit(ctx, e.wreqs, op, false)
	}
	// A transaction of its own.
	level := syncNormal
	if durable {
		level = syncFull
	}
	var answer error
	t, _ := e.txnPool.Get().(*txn)
	if t == nil {
		t = newTxn(ctx, e.durable)
	}
	defer e.txnPool.Put(t)
	err := e.writeTx(ctx, level, t, func(tx *sql.Tx) error {
		t.ctx = ctx
		t.enter(tx)
		t.own = ownOrders{}
		if e.keys != nil {
			// As the committer does: caught up inside this transaction,
			// the filter may answer its op.
			t.own.complete, _ = e.keys.catchUp(ctx, t.stmt(&stmt{writer: e.orderKeysSince}))
			t.absent = e.keys.absent
		}
		answer = op(t)
		t.absent = nil
		t.leave()
		t.ctx = nil
		if ownAnswer(answer) {
			return nil
		}
		return answer
	})
	if err != nil {
		return err
	}
	if durable {
		e.eventTxs.Add(1)
	} else {
		e.writeTxs.Add(1)
	}
	return answer
}

func (e *sqliteEngine) read(ctx context.Context, op txOp) error {
	if e.groupFast {
		// Through the committer, on the writer connection: its page cache
		// stays warm, where a reader connection's is dropped after every
		// commit of another connection (under load: every time), and the
		// read shares the batch's transaction. It sees every write
		// submitted before it.
		return e.submit(ctx, e.wreqs, op, true)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t := newTxn(ctx, e.fast)
	t.onReader = true
	return op(t)
}

func (e *sqliteEngine) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	return e.fast.ExecContext(ctx, query, args...)
}

func (e *sqliteEngine) reader() *sql.DB { return e.fast }

func (e *sqliteEngine) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return ctx, func() {}
}

func (e *sqliteEngine) orderAbsent(mchID, outTradeNo string) bool {
	return e.keys != nil && e.keys.absent(mchID, outTradeNo)
}

func (e *sqliteEngine) orderWritten(mchID, outTradeNo string) {
	if e.keys != nil {
		e.keys.add(mchID, outTradeNo, false)
	}
}

func (e *sqliteEngine) shared() bool { return false }

func (e *sqliteEngine) filtersOrders() bool { return e.keys != nil }

func (e *sqliteEngine) close() error {
	close(e.closing)
	if e.started {
		<-e.done
	}
	var errs []error
	for _, st := range e.all {
		errs = append(errs, st.Close())
	}
	errs = append(errs, e.durable.Close())
	if e.fast != e.durable {
		errs = append(errs, e.fast.Close())
	}
	return errors.Join(errs...)
}

// writeTx runs fn in a transaction of the writer connection (e.durable)
// under the write mutex, committing with synchronous set to level; once it
// committed, the order-key filter takes in the orders t (the txn fn runs
// its ops in) inserted.
func (e *sqliteEngine) writeTx(ctx context.Context, level string, t *txn, fn func(tx *sql.Tx) error) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if err := e.setSync(ctx, level); err != nil {
		return err
	}
	if err := withTx(ctx, e.durable, fn); err != nil {
		return err
	}
	if e.keys != nil {
		e.keys.passOwn(t.own)
	}
	return nil
}

// setSync sets the writer connection's synchronous level, if it is not
// already (PRAGMA synchronous cannot change inside a transaction). Called
// with wmu held. The pool has one connection; a connection it opens anew
// starts at FULL (the DSN's), so the level is never lower than e.sync
// says. (Not a prepared statement: SQLite applies this pragma when it
// compiles it.)
func (e *sqliteEngine) setSync(ctx context.Context, level string) error {
	if e.sync == level {
		return nil
	}
	if _, err := e.durable.ExecContext(ctx, "PRAGMA synchronous = "+level); err != nil {
		e.sync = "" // unknown: set it again next time
		return fmt.Errorf("set synchronous %s: %w", level, err)
	}
	e.sync = level
	return nil
}

// openSQLitePool opens a pool on path with the given synchronous setting
// and checks, on a connection of it, that the DSN's pragmas took effect.
func openSQLitePool(ctx context.Context, path, sync string, conns int) (*sql.DB, error) {
	dsn, err := sqliteDSN(path, sync)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("ledger: open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	if err := checkSQLitePragmas(ctx, db, sync); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("ledger: open sqlite %s: %w", path, err)
	}
	return db, nil
}

// checkSQLitePragmas reads the connection settings back.
func checkSQLitePragmas(ctx context.Context, db *sql.DB, sync string) error {
	p, err := readSQLitePragmas(ctx, db)
	if err != nil {
		return err
	}
	if p.journalMode != "wal" {
		return fmt.Errorf("journal_mode is %q, want wal (does the file system support WAL?)", p.journalMode)
	}
	if want := sqliteWantSync(sync); p.synchronous != want {
		return fmt.Errorf("synchronous is %d, want %d", p.synchronous, want)
	}
	if p.foreignKeys != 1 || p.busyTimeout != sqliteBusyTimeoutMS {
		return fmt.Errorf("foreign_keys %d, busy_timeout %d: DSN settings not applied", p.foreignKeys, p.busyTimeout)
	}
	return nil
}

type sqlitePragmas struct {
	journalMode string
	synchronous int
	foreignKeys int
	busyTimeout int
}

// readSQLitePragmas reads the settings of one connection of db (q is a
// *sql.DB or a *sql.Conn).
func readSQLitePragmas(ctx context.Context, q queryRower) (sqlitePragmas, error) {
	var p sqlitePragmas
	for _, x := range []struct {
		pragma string
		dst    any
	}{
		{"journal_mode", &p.journalMode},
		{"synchronous", &p.synchronous},
		{"foreign_keys", &p.foreignKeys},
		{"busy_timeout", &p.busyTimeout},
	} {
		if err := q.QueryRowContext(ctx, "PRAGMA "+x.pragma).Scan(x.dst); err != nil {
			return p, fmt.Errorf("read PRAGMA %s: %w", x.pragma, err)
		}
	}
	p.journalMode = strings.ToLower(p.journalMode)
	return p, nil
}

func syncDir(dir string) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = f.Sync()
	_ = f.Close()
}

// SQLite connection settings. They are given in the DSN so that
// modernc.org/sqlite applies them to every connection it opens for a pool
// (PRAGMA synchronous, busy_timeout and foreign_keys are per connection).
const (
	sqliteBusyTimeoutMS = 5000
	syncFull            = "FULL"   // durable handle: the WAL is fsynced at every commit
	syncNormal          = "NORMAL" // fast handle: fsynced at checkpoints only
)

// sqliteDSN is the modernc.org/sqlite DSN of the file at path, with
// synchronous set to sync. Write transactions begin IMMEDIATE (they take the
// write lock at BEGIN, waiting under busy_timeout, instead of failing with
// SQLITE_BUSY when a read transaction tries to become a write one).
func sqliteDSN(path, sync string) (string, error) {
	if strings.ContainsAny(path, "?#") {
		return "", fmt.Errorf("ledger: database path %q: '?' and '#' are not allowed", path)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(sqliteBusyTimeoutMS)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	return path + "?" + q.Encode(), nil
}

// sqliteWantSync is the value PRAGMA synchronous reads back for sync.
func sqliteWantSync(sync string) int {
	switch sync {
	case syncFull:
		return 2
	case syncNormal:
		return 1
	}
	return -1
}

// Interface guard
var _ engine = (*sqliteEngine)(nil)
