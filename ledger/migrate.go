package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migration is one version of the schema: its SQL statements, applied in
// order in one transaction together with the row recording the version.
type migration struct {
	version int
	name    string
	steps   []string // DDL with dialect tokens ({{blob}})
}

// migrations returns the schema's history, oldest first. Append new
// versions; never edit a released one.
func migrations() []migration {
	return []migration{
		{
			version: 1,
			name:    "orders, events, attempts, leases",
			steps: []string{
				`CREATE TABLE orders (
					mch_id        TEXT   NOT NULL,
					out_trade_no  TEXT   NOT NULL,
					app_id        TEXT   NOT NULL DEFAULT '',
					trade_type    TEXT   NOT NULL DEFAULT '',
					total_fee     BIGINT NOT NULL DEFAULT 0,
					content_hash  TEXT   NOT NULL DEFAULT '',
					prepay_id     TEXT   NOT NULL DEFAULT '',
					code_url      TEXT   NOT NULL DEFAULT '',
					mweb_url      TEXT   NOT NULL DEFAULT '',
					state         TEXT   NOT NULL,
					created_at    BIGINT NOT NULL,
					expires_at    BIGINT NOT NULL,
					updated_at    BIGINT NOT NULL,
					PRIMARY KEY (mch_id, out_trade_no)
				)`,
				`CREATE TABLE events (
					id              TEXT    NOT NULL PRIMARY KEY,
					mch_id          TEXT    NOT NULL,
					type            TEXT    NOT NULL,
					out_trade_no    TEXT    NOT NULL,
					transaction_id  TEXT    NOT NULL DEFAULT '',
					payload         {{blob}} NOT NULL,
					created_at      BIGINT  NOT NULL,
					state           TEXT    NOT NULL,
					attempts        INTEGER NOT NULL DEFAULT 0,
					next_attempt_at BIGINT  NOT NULL,
					delivered_at    BIGINT  NOT NULL DEFAULT 0,
					last_status     INTEGER NOT NULL DEFAULT 0,
					last_error      TEXT    NOT NULL DEFAULT '',
					last_response   TEXT    NOT NULL DEFAULT ''
				)`,
				// The outbox worker: pending events by time.
				`CREATE INDEX events_due ON events (state, next_attempt_at)`,
				// Per-order ordering of deliveries.
				`CREATE INDEX events_order ON events (mch_id, out_trade_no, created_at)`,
				// Listing newest first, and its pagination.
				`CREATE INDEX events_created ON events (created_at, id)`,
				`CREATE TABLE attempts (
					event_id     TEXT    NOT NULL REFERENCES events (id) ON DELETE CASCADE,
					n            INTEGER NOT NULL,
					attempted_at BIGINT  NOT NULL,
					duration_ns  BIGINT  NOT NULL,
					status       INTEGER NOT NULL DEFAULT 0,
					error        TEXT    NOT NULL DEFAULT '',
					response     TEXT    NOT NULL DEFAULT '',
					PRIMARY KEY (event_id, n)
				)`,
				`CREATE TABLE leases (
					name       TEXT   NOT NULL PRIMARY KEY,
					holder     TEXT   NOT NULL,
					expires_at BIGINT NOT NULL
				)`,
			},
		},
		{
			version: 2,
			name:    "order checks (reconciliation), refunds",
			steps: []string{
				// When the reconciliation job next asks WeChat about an
				// unpaid order (0: never again), and how often it has.
				`ALTER TABLE orders ADD COLUMN next_check_at BIGINT NOT NULL DEFAULT 0`,
				`ALTER TABLE orders ADD COLUMN checks INTEGER NOT NULL DEFAULT 0`,
				`CREATE INDEX orders_check ON orders (state, next_check_at)`,
				`CREATE TABLE refunds (
					mch_id         TEXT   NOT NULL,
					out_refund_no  TEXT   NOT NULL,
					out_trade_no   TEXT   NOT NULL DEFAULT '',
					transaction_id TEXT   NOT NULL DEFAULT '',
					refund_id      TEXT   NOT NULL DEFAULT '',
					total_fee      BIGINT NOT NULL,
					refund_fee     BIGINT NOT NULL,
					state          TEXT   NOT NULL,
					created_at     BIGINT NOT NULL,
					updated_at     BIGINT NOT NULL,
					PRIMARY KEY (mch_id, out_refund_no)
				)`,
			},
		},
		{
			version: 3,
			name:    "outbox indexes for the delivery worker",
			steps: []string{
				// Per-order ordering (is an older event of this order
				// pending?): one probe into an index of the pending
				// events only, which stays as small as the backlog
				// (a delivered event leaves it), so that recording and
				// delivering an event write few of its pages.
				// Supersedes events_order, a full index with a random key.
				`CREATE INDEX events_pending_order ON events (mch_id, out_trade_no, created_at, id) WHERE state = '` + EventPending + `'`,
				`DROP INDEX events_order`,
				// Due events in delivery order (next attempt, then
				// creation, then id) without a sort, so that a LIMIT stops
				// the scan early. Supersedes events_due (its prefix).
				`CREATE INDEX events_due_order ON events (state, next_attempt_at, created_at, id)`,
				`DROP INDEX events_due`,
			},
		},
		{
			version: 4,
			name:    "order checks: an index of the unpaid orders only",
			// Paying an order (in the notification's transaction) then
			// deletes its entry instead of moving it, and the index stays
			// as small as the orders waiting for a check.
			steps: []string{
				`CREATE INDEX orders_unpaid_check ON orders (next_check_at) WHERE state = 'NOTPAY' AND next_check_at > 0`,
				`DROP INDEX orders_check`,
			},
		},
		{
			version: 5,
			name:    "order checks: failed attempts (PAYERROR) are checked too",
			// An order whose payment failed may still be paid: the
			// reconciliation settles it like an unpaid one.
			steps: []string{
				`CREATE INDEX orders_open_check ON orders (next_check_at) WHERE ` + openOrders + ` AND next_check_at > 0`,
				`DROP INDEX orders_unpaid_check`,
			},
		},
		{
			version: 6,
			name:    "outbox claims (several gateways on one database)",
			// A pending event a delivery worker has taken is claimed
			// until this time (Unix ns; 0: not claimed): no other worker
			// takes it before then, and a worker that died leaves a claim
			// that expires. Used where several processes share the
			// database; always 0 on SQLite.
			steps: []string{
				`ALTER TABLE events ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0`,
			},
		},
		{
			version: 7,
			name:    "replayed events retry for a whole window again",
			// When (Unix ns) the event was last replayed (0: never), and
			// its attempt count then. The delivery worker measures an
			// event's retry window from the later of replayed_at and
			// created_at, and its backoff from the attempts since.
			steps: []string{
				`ALTER TABLE events ADD COLUMN replayed_at BIGINT NOT NULL DEFAULT 0`,
				`ALTER TABLE events ADD COLUMN replay_attempts INTEGER NOT NULL DEFAULT 0`,
			},
		},
	}
}

// migrate brings the schema of db up to the latest of migs. Each version is
// applied in a transaction of its own. An up-to-date database is only read.
// A database stamped with a version newer than the latest is refused
// (ErrSchemaTooNew).
func migrate(ctx context.Context, db sqlConn, d dialect, migs []migration, now func() time.Time) (int, error) {
	for i, m := range migs {
		if m.version != i+1 {
			return 0, fmt.Errorf("ledger: migration %d has version %d (versions must be 1, 2, 3, …)", i, m.version)
		}
	}
	latest := len(migs)

	// An existing ledger is only read: a role without the right to create
	// tables (PostgreSQL checks it even for CREATE TABLE IF NOT EXISTS)
	// can open one that is up to date.
	var exists bool
	if err := db.QueryRowContext(ctx, d.hasMigrations).Scan(&exists); err != nil {
		return 0, fmt.Errorf("ledger: migrate: look for schema_migrations: %w", err)
	}
	if !exists && d.ledgerElsewhere != "" {
		// A ledger further down the search_path (the path changed: a
		// schema named after the role appeared in front of public, say)
		// would be hidden by a new, empty one.
		var other string
		if err := db.QueryRowContext(ctx, d.ledgerElsewhere).Scan(&other); err != nil {
			return 0, fmt.Errorf("ledger: migrate: look for a ledger elsewhere: %w", err)
		}
		if other != "" {
			return 0, fmt.Errorf("ledger: the ledger's tables are in schema %q, but new tables would go to the search_path's first schema: set search_path=%s in the DSN (or move the tables)", other, other)
		}
	}
	if !exists {
		if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at BIGINT  NOT NULL
	)`); err != nil {
			return 0, fmt.Errorf("ledger: migrate: create schema_migrations: %w", err)
		}
	}
	cur, err := schemaVersion(ctx, db)
	if err != nil {
		return 0, fmt.Errorf("ledger: migrate: %w", err)
	}
	if cur > latest {
		return cur, fmt.Errorf("ledger: database schema version %d, this build knows up to %d (opened by a newer version of the gateway?): %w", cur, latest, ErrSchemaTooNew)
	}
	for _, m := range migs[cur:] {
		if err := migrateTo(ctx, db, d, m, now); err != nil {
			return 0, fmt.Errorf("ledger: migrate to version %d (%s): %w", m.version, m.name, err)
		}
	}
	return schemaVersion(ctx, db)
}

// migrateTo applies one migration in a transaction of its own; one that
// timed out waiting for a lock (d.lockTimedOut) is tried again, after a
// pause that lets the writes queued behind it through, until ctx ends.
func migrateTo(ctx context.Context, db sqlConn, d dialect, m migration, now func() time.Time) error {
	wait := 500 * time.Millisecond
	for {
		err := withTx(ctx, db, func(tx *sql.Tx) error {
			if d.migrationTx != "" {
				if _, err := tx.ExecContext(ctx, d.migrationTx); err != nil {
					return err
				}
			}
			// Another process may have migrated since we looked.
			v, err := schemaVersion(ctx, tx)
			if err != nil {
				return err
			}
			if v >= m.version {
				return nil
			}
			if v != m.version-1 {
				return fmt.Errorf("schema version %d, expected %d", v, m.version-1)
			}
			for _, step := range m.steps {
				if _, err := tx.ExecContext(ctx, d.ddl(step)); err != nil {
					return err
				}
			}
			_, err = tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
				m.version, m.name, toNs(now()))
			return err
		})
		if err == nil || d.lockTimedOut == nil || !d.lockTimedOut(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("the tables it changes stayed locked by other transactions (a long report, a backup?): %w", err)
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// sqlConn is a pool (*sql.DB) or one of its connections (*sql.Conn).
type sqlConn interface {
	queryRower
	txStarter
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func schemaVersion(ctx context.Context, q queryRower) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
