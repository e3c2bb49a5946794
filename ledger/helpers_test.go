package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the tests' clock origin.
var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func testPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "sub", "ledger.db")
}

// openAt opens the ledger at path and closes it when the test ends. Under
// the postgres engine (see forEachEngine) path names a schema of the test
// database instead (the same path, the same schema), and opts are unused.
func openAt(t testing.TB, path string, opts SQLiteOptions) *sqlStore {
	t.Helper()
	if onPostgres(t) {
		return openPostgresAt(t, path)
	}
	opts.Path = path
	s, err := openSQLite(context.Background(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openTest(t testing.TB, opts ...SQLiteOptions) *sqlStore {
	t.Helper()
	var o SQLiteOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	return openAt(t, testPath(t), o)
}

func ev(id, mch, order string, created time.Time) *Event {
	return &Event{
		ID:            id,
		MchID:         mch,
		Type:          "payment.succeeded",
		OutTradeNo:    order,
		TransactionID: "4200" + id,
		Payload:       []byte(fmt.Sprintf(`{"id":%q}`, id)),
		CreatedAt:     created,
	}
}

func mustRecord(t testing.TB, s Store, e *Event, orderState string) {
	t.Helper()
	created, err := s.RecordEvent(context.Background(), e, Change{OrderState: orderState})
	if err != nil || !created {
		t.Fatalf("RecordEvent(%s) = %v, %v; want true, nil", e.ID, created, err)
	}
}

func ids(evs []*Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// heldBatch is a store whose committer holds its first batch (one event,
// evt_first) until release is called, and whose insert of evt_bad fails
// inside the transaction (a trigger): requests made meanwhile queue into
// the next batch.
type heldBatch struct {
	s     *sqlStore
	mu    sync.Mutex
	sizes []int // batch sizes the committer saw, in order
	rel   chan struct{}
	first chan error // the held event's answer
}

func openHeldBatch(t *testing.T) *heldBatch {
	t.Helper()
	ctx := context.Background()
	h := &heldBatch{rel: make(chan struct{}), first: make(chan error, 1)}
	h.s = openTest(t, SQLiteOptions{beforeBatch: func(k int) {
		h.mu.Lock()
		h.sizes = append(h.sizes, k)
		wait := len(h.sizes) == 1
		h.mu.Unlock()
		if wait {
			<-h.rel
		}
	}})
	if _, err := h.s.sqlite().fast.ExecContext(ctx, `CREATE TRIGGER fail_bad BEFORE INSERT ON events
		WHEN NEW.id = 'evt_bad' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := h.s.RecordEvent(ctx, ev("evt_first", "m", "o0", at(0)), Change{})
		h.first <- err
	}()
	for len(h.batchSizes()) < 1 { // wait until the committer holds the first batch
		time.Sleep(time.Millisecond)
	}
	return h
}

func (h *heldBatch) batchSizes() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sizes)
}

// release lets the first batch commit and checks that it did.
func (h *heldBatch) release(t *testing.T) {
	t.Helper()
	close(h.rel)
	if err := <-h.first; err != nil {
		t.Fatal(err)
	}
}

// sqlite is the store's SQLite engine, for the tests that look inside it.
func (s *sqlStore) sqlite() *sqliteEngine { return s.e.(*sqliteEngine) }
