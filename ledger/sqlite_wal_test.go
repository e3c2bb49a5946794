package ledger

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fileSize is the size of the file at p, 0 when there is none.
func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// walPage is a WAL frame's size: a 24-byte header and a 4096-byte page.
const walPage = 24 + 4096

// Under a sustained load of writes the WAL stays bounded: the writer's own
// automatic checkpoint (after the commit that crosses 1000 WAL pages)
// completes, and the next write starts the WAL over. (A version that left
// checkpoints to a background PASSIVE checkpoint grew it by about 90 MB a
// second: such a checkpoint never reaches the end of a WAL the writer
// keeps appending to.)
func TestSQLiteWALStaysBounded(t *testing.T) {
	path := testPath(t)
	s := openAt(t, path, SQLiteOptions{})
	var seq atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := seq.Add(1)
				if err := s.PutOrder(context.Background(), order(fmt.Sprintf("wal%09d", n))); err != nil {
					t.Error(err)
					return
				}
				e := &Event{ID: fmt.Sprintf("evt_wal%09d", n), MchID: "10000100", Type: "payment.succeeded",
					OutTradeNo: fmt.Sprintf("wal%09d", n), Payload: make([]byte, 600), CreatedAt: at(0), NextAttemptAt: at(0)}
				if _, err := s.RecordEvent(context.Background(), e, Change{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var most int64
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		most = max(most, fileSize(path+"-wal"))
	}
	close(stop)
	wg.Wait()
	// 1000 pages, and room for the batches committed meanwhile.
	if limit := int64(4000 * walPage); most > limit {
		t.Fatalf("the WAL reached %d MiB over %d writes (limit %d MiB)", most>>20, seq.Load(), limit>>20)
	}
	t.Logf("%d writes, the WAL at most %d KiB", seq.Load(), most>>10)
}
