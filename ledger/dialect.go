package ledger

import (
	"fmt"
	"net/url"
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
}

// sqliteDialect is SQLite through modernc.org/sqlite.
func sqliteDialect() dialect {
	return dialect{name: "sqlite", blobType: "BLOB", materialized: "MATERIALIZED"}
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
