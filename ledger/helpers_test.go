package ledger

import (
	"context"
	"fmt"
	"path/filepath"
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

// openAt opens the ledger at path and closes it when the test ends.
func openAt(t testing.TB, path string, opts SQLiteOptions) *sqlStore {
	t.Helper()
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
	created, err := s.RecordEvent(context.Background(), e, orderState)
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
