package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// The ledger's test suite runs on every engine: a test that holds for any
// database calls forEachEngine, and its body runs as a subtest "sqlite"
// and a subtest "postgres", whose openTest and openAt open the ledger on
// that engine. The tests that look inside an engine (the SQLite committer,
// its pragmas and order-key filter; PostgreSQL's claims and migration
// lock) are its own.
//
// PostgreSQL: WXPAY_TEST_POSTGRES is the connection string of a database
// the tests may create schemas in (each test gets schemas of its own,
// dropped when it ends); .ci/run sets it. Without it the postgres subtests
// are skipped, saying so.

// postgresDSNVar names the environment variable with the test database.
const postgresDSNVar = "WXPAY_TEST_POSTGRES"

// forEachEngine runs f on SQLite and on PostgreSQL.
func forEachEngine(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	t.Run("sqlite", f)
	t.Run("postgres", func(t *testing.T) {
		requirePostgres(t)
		f(t)
	})
}

// onPostgres reports whether t runs under forEachEngine's postgres subtest.
func onPostgres(t testing.TB) bool {
	return strings.Contains(t.Name()+"/", "/postgres/")
}

// requirePostgres skips t, saying why, when no test database is set.
func requirePostgres(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(postgresDSNVar)
	if dsn == "" {
		t.Skipf("PostgreSQL tests skipped: set %s to the connection string of a database they may create schemas in (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", postgresDSNVar)
	}
	return dsn
}

// testSchemas remembers the schemas created for paths, so that a second
// openAt of a path opens the same schema.
var testSchemas sync.Map // path -> schema name

// openPostgresAt opens the ledger in the schema of path, created (and
// dropped when the test ends) on its first opening.
func openPostgresAt(t testing.TB, path string) *sqlStore {
	t.Helper()
	dsn := requirePostgres(t)
	sum := sha256.Sum256([]byte(path))
	schema := "wxpay_test_" + hex.EncodeToString(sum[:8])
	if _, loaded := testSchemas.LoadOrStore(path, schema); !loaded {
		admin := postgresAdmin(t, dsn)
		ctx := context.Background()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
			t.Fatalf("drop schema %s: %v", schema, err)
		}
		if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
			t.Fatalf("create schema %s: %v", schema, err)
		}
		t.Cleanup(func() {
			testSchemas.Delete(path)
			if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
			}
			_ = admin.Close()
		})
	}
	s, err := openPostgres(context.Background(), PostgresOptions{DSN: dsn, schema: schema})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// postgresAdmin is a plain connection pool on the test database.
func postgresAdmin(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", postgresDSNVar, err)
	}
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("PostgreSQL at %s: %v", postgresDSNVar, err)
	}
	return db
}

var _ = stdlib.GetDefaultDriver // the "pgx" driver of database/sql

// dueAfresh is DueEvents as a worker that holds no claim sees it: on a
// shared database, the claims of earlier calls are ended first (as their
// attempts would have been recorded), so that a test can ask again.
func dueAfresh(t testing.TB, s *sqlStore, now time.Time, limit int, exclude []string) ([]*Event, error) {
	t.Helper()
	if s.e.shared() {
		if _, err := s.e.exec(context.Background(), `UPDATE events SET claimed_until = 0`); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DueEvents(context.Background(), now, limit, exclude, 0)
	if err == nil && s.e.shared() {
		// Give back what it claimed: the tests that read due events
		// this way record attempts without a claim, as SQLite's do.
		if _, err := s.e.exec(context.Background(), `UPDATE events SET claimed_until = 0`); err != nil {
			t.Fatal(err)
		}
		for _, e := range got {
			e.ClaimedUntil = time.Time{}
		}
	}
	return got, err
}
