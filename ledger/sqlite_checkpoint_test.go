package ledger

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// The writer connection never checkpoints (its wal_autocheckpoint is 0):
// the checkpointer copies the WAL into the database file in the
// background, after writes.
func TestSQLiteBackgroundCheckpoint(t *testing.T) {
	path := testPath(t)
	s := openAt(t, path, SQLiteOptions{})
	e := s.sqlite()
	var auto int
	if err := e.durable.QueryRowContext(context.Background(), "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Fatalf("the writer connection's wal_autocheckpoint is %d, want 0", auto)
	}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := size(path)
	var nos []string
	for i := range 2000 {
		nos = append(nos, fmt.Sprintf("ckpt%04d", i))
	}
	putOrders(t, s, nos) // about 2000 rows: far more pages than the empty file has
	deadline := time.Now().Add(10 * time.Second)
	for size(path) < before+64<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes after the writes (%d before, WAL %d): nothing was checkpointed", size(path), before, size(path+"-wal"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := e.ckptErrs.Load(); n != 0 {
		t.Fatalf("%d checkpoints failed", n)
	}
}
