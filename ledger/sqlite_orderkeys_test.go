package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The filter never loses a key, as it grows past its first layers, and
// answers "may hold" for about 1 % of the keys it does not hold.
func TestOrderKeysFilter(t *testing.T) {
	k := newOrderKeys()
	const n = 300_000 // past the first three layers (64k, 128k, 256k)
	for i := range n {
		k.add("10000100", "order"+strconv.Itoa(i), true)
	}
	if len(k.layers) != 3 {
		t.Errorf("%d layers for %d keys, want 3", len(k.layers), n)
	}
	for i := range n {
		if !k.mayHold("10000100", "order"+strconv.Itoa(i)) {
			t.Fatalf("the filter lost order%d", i)
		}
	}
	fp := 0
	const others = 100_000
	for i := range others {
		if k.mayHold("10000100", "other"+strconv.Itoa(i)) {
			fp++
		}
	}
	// Three layers, the first two full (about 1 % each), the last not.
	if rate := float64(fp) / others; rate > 0.03 {
		t.Errorf("false-positive rate %.4f, want about 0.02", rate)
	}
	// The merchant is part of the key.
	if k.mayHold("10000101", "order1") && k.mayHold("10000101", "order2") && k.mayHold("10000101", "order3") {
		t.Error("the filter ignores the merchant")
	}
}

// The catch-up query reads as many rows as the filter expects a chunk to
// have (a short chunk means the table has been read to its end).
func TestOrderKeysChunk(t *testing.T) {
	if !strings.HasSuffix(qOrderKeysSince, "LIMIT "+strconv.Itoa(keysChunk)) {
		t.Errorf("qOrderKeysSince %q does not read keysChunk (%d) rows", qOrderKeysSince, keysChunk)
	}
}

func order(no string) *Order {
	return &Order{MchID: "10000100", OutTradeNo: no, AppID: "wx1", TotalFee: 1, CreatedAt: at(0)}
}

// putOrders stores the orders concurrently (so that they share batches).
func putOrders(t *testing.T, s *sqlStore, nos []string) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, no := range nos {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.PutOrder(context.Background(), order(no)); err != nil {
				t.Errorf("PutOrder(%s): %v", no, err)
			}
		})
	}
	wg.Wait()
}

func wantOrder(t *testing.T, s *sqlStore, no string) {
	t.Helper()
	o, err := s.GetOrder(context.Background(), "10000100", no)
	if err != nil || o.OutTradeNo != no {
		t.Fatalf("GetOrder(%s) = %v, %v", no, o, err)
	}
}

func wantNoOrder(t *testing.T, s *sqlStore, no string) {
	t.Helper()
	if _, err := s.GetOrder(context.Background(), "10000100", no); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetOrder(%s): %v, want ErrNotFound", no, err)
	}
}

// GetOrder answers a new key from the filter, finds every stored order,
// and reads the database again once the filter is no longer fresh.
func TestGetOrderKeyFilter(t *testing.T) {
	s := openTest(t)
	if s.sqlite().keys == nil {
		t.Fatal("the SQLite store has no order-key filter")
	}
	var nos []string
	for i := range 50 {
		nos = append(nos, fmt.Sprintf("k%03d", i))
	}
	// Fresh for an hour, then stale at once: what the filter answers does
	// not depend on how fast this test runs.
	s.sqlite().keys.fresh.Store(int64(time.Hour))
	putOrders(t, s, nos)
	// A batch caught up before the last write: the filter is complete.
	answered := s.sqlite().keys.answered.Load()
	wantNoOrder(t, s, "new-order")
	if got := s.sqlite().keys.answered.Load() - answered; got != 1 {
		t.Errorf("the filter answered %d lookups of a new key, want 1", got)
	}
	for _, no := range nos {
		wantOrder(t, s, no) // PutOrder added each key before it returned
	}
	// Right after a PutOrder, before any catch-up reads its row.
	putOrders(t, s, []string{"just-now"})
	wantOrder(t, s, "just-now")

	s.sqlite().keys.fresh.Store(0)
	answered = s.sqlite().keys.answered.Load()
	wantNoOrder(t, s, "another-new-order")
	if got := s.sqlite().keys.answered.Load() - answered; got != 0 {
		t.Errorf("a stale filter answered %d lookups", got)
	}
	s.sqlite().keys.fresh.Store(int64(time.Hour))
	// That read's batch caught up: the filter answers again.
	wantNoOrder(t, s, "yet-another")
	if got := s.sqlite().keys.answered.Load() - answered; got != 1 {
		t.Errorf("the refreshed filter answered %d lookups, want 1", got)
	}
}

// A ledger with more orders than one chunk is loaded over the first
// batches after it opens; until then GetOrder reads the database.
func TestOrderKeysLoadOnOpen(t *testing.T) {
	path := testPath(t)
	s := openAt(t, path, SQLiteOptions{})
	var nos []string
	for i := range 3*keysChunk + 10 {
		nos = append(nos, fmt.Sprintf("load%05d", i))
	}
	putOrders(t, s, nos)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path, SQLiteOptions{})
	s.sqlite().keys.fresh.Store(int64(time.Hour))
	for i := 0; i < 3; i++ {
		// Each lookup is a batch of the committer, which reads a chunk.
		wantOrder(t, s, nos[i])
		if s.sqlite().keys.checked.Load() != 0 {
			t.Fatalf("the filter answers after %d chunks of %d orders", i+1, len(nos))
		}
	}
	wantOrder(t, s, nos[len(nos)-1]) // the fourth chunk: the last 10
	if s.sqlite().keys.checked.Load() == 0 {
		t.Fatal("the filter is not complete after reading every order")
	}
	answered := s.sqlite().keys.answered.Load()
	for _, no := range nos {
		wantOrder(t, s, no)
	}
	wantNoOrder(t, s, "new-order")
	if got := s.sqlite().keys.answered.Load() - answered; got < 1 {
		t.Error("the loaded filter answered no lookup")
	}
}

// Orders another process writes to the same file are found: once a batch
// of this store has caught up, or, when none has, by a database read.
func TestOrderKeysOtherWriter(t *testing.T) {
	path := testPath(t)
	a := openAt(t, path, SQLiteOptions{})
	b := openAt(t, path, SQLiteOptions{})
	putOrders(t, a, []string{"a1"})
	putOrders(t, b, []string{"b1"})
	putOrders(t, a, []string{"a2"}) // a batch of a: it reads b1 first
	wantOrder(t, a, "b1")

	putOrders(t, b, []string{"b2"})
	time.Sleep(keysFresh + 20*time.Millisecond)
	wantOrder(t, a, "b2") // stale filter: read through the committer
	wantOrder(t, b, "a2")
}

// A burst of more orders than one chunk from another process makes the
// filter stop answering until a batch has read them all.
func TestOrderKeysBurstFromOtherWriter(t *testing.T) {
	path := testPath(t)
	a := openAt(t, path, SQLiteOptions{})
	b := openAt(t, path, SQLiteOptions{})
	putOrders(t, a, []string{"a1"})
	if a.sqlite().keys.checked.Load() == 0 {
		t.Fatal("the filter of a is not caught up")
	}
	var nos []string
	for i := range keysChunk + 5 {
		nos = append(nos, fmt.Sprintf("burst%05d", i))
	}
	putOrders(t, b, nos)
	putOrders(t, a, []string{"a2"}) // a batch of a: reads one chunk of the burst
	if a.sqlite().keys.checked.Load() != 0 {
		t.Fatal("the filter answers with part of the burst unread")
	}
	wantOrder(t, a, nos[len(nos)-1]) // read through the committer, which reads the rest
	if a.sqlite().keys.checked.Load() == 0 {
		t.Fatal("the filter is not caught up after reading the whole burst")
	}
	for _, no := range nos {
		if !a.sqlite().keys.mayHold("10000100", no) {
			t.Fatalf("the filter lost %s", no)
		}
	}
}

// keysCounted is the number of keys the filter's layers counted in.
func keysCounted(k *orderKeys) int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	n := 0
	for _, l := range k.layers {
		n += l.n
	}
	return n
}

// maxRowID is the orders table's highest rowid.
func maxRowID(t *testing.T, s *sqlStore) int64 {
	t.Helper()
	var id int64
	if err := s.sqlite().fast.QueryRowContext(context.Background(), `SELECT coalesce(max(rowid), 0) FROM orders`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// The orders a store inserts itself are counted once their transaction
// committed, not read back by the next batch's catch-up; another process's
// are read. Either way the watermark ends at the table's last row, and
// every order is counted once.
func TestOrderKeysOwnOrdersNotReadBack(t *testing.T) {
	path := testPath(t)
	a := openAt(t, path, SQLiteOptions{})
	b := openAt(t, path, SQLiteOptions{})
	ka := a.sqlite().keys
	var nos []string
	for i := range 300 {
		nos = append(nos, fmt.Sprintf("own%04d", i))
	}
	putOrders(t, a, nos)
	wantNoOrder(t, a, "new-order") // a batch: catches up
	if got := ka.read.Load(); got != 0 {
		t.Errorf("the store read back %d of its own orders", got)
	}
	// Duplicates insert nothing and count nothing.
	for _, no := range nos[:10] {
		if err := a.PutOrder(context.Background(), order(no)); !errors.Is(err, ErrExists) {
			t.Fatalf("PutOrder(%s) again: %v", no, err)
		}
	}
	putOrders(t, b, []string{"b1", "b2", "b3"})
	putOrders(t, a, []string{"own-after-b"}) // its batch reads b's three first
	if got := ka.read.Load(); got != 3 {
		t.Errorf("the store read %d rows, want b's 3", got)
	}
	wantNoOrder(t, a, "another-new-order")
	if ka.watermark != maxRowID(t, a) || keysCounted(ka) != 304 {
		t.Errorf("watermark %d (table's last rowid %d), %d keys counted, want 304", ka.watermark, maxRowID(t, a), keysCounted(ka))
	}
	for _, no := range append(nos, "b1", "b2", "b3", "own-after-b") {
		wantOrder(t, a, no)
	}
	// A transaction that fails inserts nothing: the watermark stays.
	before := ka.watermark
	err := a.e.write(context.Background(), func(tx *txn) error {
		if err := a.insertOrder(tx, orderArgs(order("rolled-back"))); err != nil {
			return err
		}
		return errors.New("the op fails after its insert")
	}, false)
	if err == nil {
		t.Fatal("the failing op succeeded")
	}
	wantNoOrder(t, a, "rolled-back")
	if ka.watermark != before {
		t.Errorf("the watermark moved from %d to %d over a failed transaction", before, ka.watermark)
	}
	putOrders(t, a, []string{"after-rollback"})
	wantNoOrder(t, a, "yet-another")
	if ka.watermark != maxRowID(t, a) || keysCounted(ka) != 305 {
		t.Errorf("watermark %d (last rowid %d), %d keys counted, want 305", ka.watermark, maxRowID(t, a), keysCounted(ka))
	}
	// The last order forgotten (WeChat refused it): the next insert takes
	// its rowid again, which is not past the watermark. It is not counted
	// as the store's own, and it is found.
	refused := order("refused")
	putOrders(t, a, []string{"refused"})
	if err := a.ForgetOrder(context.Background(), refused.MchID, refused.OutTradeNo, refused.ContentHash); err != nil {
		t.Fatal(err)
	}
	wantNoOrder(t, a, "refused")
	reused := maxRowID(t, a) + 1
	putOrders(t, a, []string{"takes-its-rowid"})
	if got := maxRowID(t, a); got != reused || got != ka.watermark {
		t.Fatalf("the insert after the delete has rowid %d (want %d, the watermark %d)", got, reused, ka.watermark)
	}
	wantOrder(t, a, "takes-its-rowid")
	if keysCounted(ka) != 306 {
		t.Errorf("%d keys counted, want 306 (the reused rowid is not counted as the store's own)", keysCounted(ka))
	}
}
