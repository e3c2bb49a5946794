package ledger

import (
	"strconv"
	"strings"
)

// dialect is everything that differs between the SQL databases the ledger
// runs on. The queries elsewhere are written once, with "?" placeholders and
// the "{{blob}}" column type, in SQL that SQLite (≥ 3.35) and PostgreSQL
// (≥ 9.5) both understand: INSERT … ON CONFLICT … DO NOTHING / DO UPDATE,
// row values are avoided, times are BIGINT Unix nanoseconds.
type dialect struct {
	name string
	// numbered placeholders ($1, $2, … as PostgreSQL wants) instead of "?".
	numbered bool
	// blobType is the column type of opaque bytes (SQLite BLOB, PostgreSQL BYTEA).
	blobType string
	// materialized makes a CTE be computed once, not inlined: SQLite
	// (≥ 3.35) and PostgreSQL (≥ 12) spell it MATERIALIZED; older
	// PostgreSQL materializes every CTE and knows no keyword.
	materialized string
	// skipLocked ends the SELECT of the events an outbox claim takes, so
	// that concurrent claims (of several processes) skip each other's
	// rows instead of waiting for them: PostgreSQL's FOR NO KEY UPDATE … SKIP
	// LOCKED. Empty where one process writes at a time (SQLite).
	skipLocked string
	// migrationTx is run first in each migration's transaction: on
	// PostgreSQL a lock_timeout, so that a schema change waiting for a
	// table's lock (behind a long reader) gives up, instead of making
	// every other gateway's writes queue behind it; the migration is then
	// tried again (lockTimedOut says when).
	migrationTx string
	// lockTimedOut reports whether err is migrationTx's timeout.
	lockTimedOut func(error) bool
	// hasMigrations tells whether the ledger's own schema_migrations
	// table exists: on PostgreSQL in the schema the ledger's tables go to
	// (current_schema()), not further down the search_path, where another
	// tool's table of that name may be.
	hasMigrations string
	// ledgerElsewhere names another schema of the search_path that holds
	// a ledger (its schema_migrations, with applied_at, and its events),
	// "" when none does: a new ledger is not made in front of it.
	ledgerElsewhere string
}

// rebind turns the "?" placeholders of q into the dialect's. The queries of
// this package have no "?" inside literals.
func (d dialect) rebind(q string) string {
	if !d.numbered {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// ddl expands the type tokens of a schema statement.
func (d dialect) ddl(stmt string) string {
	return strings.ReplaceAll(stmt, "{{blob}}", d.blobType)
}

// insertIgnore is the clause that makes an INSERT skip a row whose key
// exists (RowsAffected 0) instead of failing.
func (d dialect) insertIgnore(conflictCols string) string {
	return " ON CONFLICT (" + conflictCols + ") DO NOTHING"
}

// upsert is the clause that makes an INSERT update the existing row whose
// key is conflictCols instead, with set (which may name the proposed row as
// "excluded"), only where where holds; a row neither inserted nor updated
// counts as RowsAffected 0.
func (d dialect) upsert(conflictCols, set, where string) string {
	return " ON CONFLICT (" + conflictCols + ") DO UPDATE SET " + set + " WHERE " + where
}

// placeholders returns n comma-separated placeholders ("?, ?, ?"), to be
// rebound with the rest of the query.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
