package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go
)

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

	// beforeBatch is the committer's test hook (see sqlStore).
	beforeBatch func(n int)
	// noFastGroup: PutOrder, ReplaceOrder, SetOrderState and RecordAttempt
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
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
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

	s := &sqlStore{
		d:           d,
		durable:     durable,
		fast:        fast,
		now:         time.Now,
		group:       !opts.DisableGroupCommit,
		maxBatch:    opts.MaxBatch,
		reqs:        make(chan *recordReq),
		closing:     make(chan struct{}),
		done:        make(chan struct{}),
		beforeBatch: opts.beforeBatch,
		groupFast:   !opts.noFastGroup,
		wreqs:       make(chan *writeReq),
		sync:        syncFull,
		linger:      DefaultLinger,
	}
	if s.groupFast && d.name == "sqlite" {
		// The filter relies on SQLite's rowid (see orderkeys.go) and on
		// the committer to keep it complete.
		s.keys = newOrderKeys()
	}
	if err := s.prepare(ctx); err != nil {
		_ = durable.Close()
		_ = fast.Close()
		return nil, err
	}
	if s.group || s.groupFast {
		go s.committer()
	}
	return s, nil
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

// Open opens the ledger of a storage driver at source: "sqlite" and the
// database file's path.
func Open(ctx context.Context, driver, source string) (Store, error) {
	switch driver {
	case "sqlite":
		return OpenSQLite(ctx, SQLiteOptions{Path: source})
	}
	return nil, fmt.Errorf("ledger: unknown storage driver %q (sqlite)", driver)
}
