package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
)

// No goroutine (of database/sql, pgx or os/exec) outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestWithSearchPath(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://postgres@127.0.0.1:5432/test", "postgres://postgres@127.0.0.1:5432/test?search_path=s1"},
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres://postgres@127.0.0.1:5432/test?search_path=s1&sslmode=disable"},
		{"postgresql://u:p%40ss@h/db?sslmode=disable&search_path=old", "postgresql://u:p%40ss@h/db?search_path=s1&sslmode=disable"},
		{"host=127.0.0.1 user=postgres dbname=test", "host=127.0.0.1 user=postgres dbname=test search_path=s1"},
		{"host=127.0.0.1 dbname=test ", "host=127.0.0.1 dbname=test search_path=s1"},
	} {
		got, err := withSearchPath(tc.dsn, "s1")
		if err != nil || got != tc.want {
			t.Errorf("withSearchPath(%q) = %q, %v; want %q", tc.dsn, got, err, tc.want)
		}
	}
}

func TestSchema(t *testing.T) {
	var names [2]string
	t.Run("two schemas", func(t *testing.T) {
		var dbs [2]*sql.DB
		for i := range dbs {
			dsn := Schema(t)
			dbs[i] = open(t, dsn)
			if err := dbs[i].QueryRowContext(ctx(t), "SELECT current_schema()").Scan(&names[i]); err != nil {
				t.Fatalf("current_schema() through %s: %v", dsn, err)
			}
			if !strings.HasPrefix(names[i], "wxpay_") {
				t.Fatalf("current_schema() = %q, want a wxpay_ schema", names[i])
			}
		}
		if names[0] == names[1] {
			t.Fatalf("two Schema calls gave the same schema %s", names[0])
		}
		if _, err := dbs[0].ExecContext(ctx(t), "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		var x int
		if err := dbs[0].QueryRowContext(ctx(t), "SELECT x FROM t").Scan(&x); err != nil || x != 1 {
			t.Fatalf("through the first schema: SELECT x FROM t = %d, %v; want 1", x, err)
		}
		err := dbs[1].QueryRowContext(ctx(t), "SELECT x FROM t").Scan(&x)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42P01" { // undefined_table
			t.Fatalf("through the second schema: SELECT x FROM t: %v; want undefined_table", err)
		}
	})
	if names[0] == "" || names[1] == "" {
		return // skipped or failed
	}

	var n int
	err := open(t, Require(t)).QueryRowContext(ctx(t),
		"SELECT count(*) FROM information_schema.schemata WHERE schema_name IN ($1, $2)", names[0], names[1]).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d of the schemas %s, %s are left after the subtest", n, names[0], names[1])
	}
}

func TestServerCrashKeepsCommits(t *testing.T) {
	s := StartServer(t)
	if !strings.Contains(s.DSN(), "/test?sslmode=disable") {
		t.Errorf("DSN() = %s", s.DSN())
	}

	db := open(t, s.DSN())
	if _, err := db.ExecContext(ctx(t), "CREATE TABLE t (x text)"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx(t), "SET LOCAL synchronous_commit = on"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx(t), "INSERT INTO t VALUES ('committed')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s.Crash()
	if err := open(t, s.DSN()).PingContext(ctx(t)); err == nil {
		t.Fatal("the server still answers after Crash")
	}
	s.Start()

	var x string
	if err := open(t, s.DSN()).QueryRowContext(ctx(t), "SELECT x FROM t").Scan(&x); err != nil || x != "committed" {
		t.Fatalf("after the crash: SELECT x FROM t = %q, %v; want \"committed\"", x, err)
	}
	// The restart really was a recovery from a crash.
	log, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "automatic recovery in progress") {
		t.Errorf("the server log shows no crash recovery:\n%s", s.logTail())
	}
}
