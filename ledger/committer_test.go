package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Concurrent PutOrder calls share transactions (the committer), and each
// still gets its own answer: one of the calls for a key stores it, the
// others get ErrExists, whichever batch they land in.
func TestPutOrderGrouped(t *testing.T) {
	for _, grouped := range []bool{true, false} {
		t.Run(fmt.Sprintf("grouped=%v", grouped), func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, SQLiteOptions{noFastGroup: !grouped})
			const keys, callsPerKey = 40, 5
			var wg sync.WaitGroup
			var mu sync.Mutex
			stored := map[string]int{}
			exists := map[string]int{}
			for i := range keys * callsPerKey {
				wg.Go(func() {
					no := fmt.Sprintf("o%02d", i%keys)
					err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: no, TotalFee: int64(i), CreatedAt: at(i)})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						stored[no]++
					case errors.Is(err, ErrExists):
						exists[no]++
					default:
						t.Errorf("PutOrder(%s): %v", no, err)
					}
				})
			}
			wg.Wait()
			for i := range keys {
				no := fmt.Sprintf("o%02d", i)
				if stored[no] != 1 || exists[no] != callsPerKey-1 {
					t.Errorf("%s: stored %d times, ErrExists %d times", no, stored[no], exists[no])
				}
				if _, err := s.GetOrder(ctx, "m", no); err != nil {
					t.Errorf("GetOrder(%s): %v", no, err)
				}
			}
			txs := s.sqlite().writeTxs.Load()
			t.Logf("%d PutOrder calls in %d transactions", keys*callsPerKey, txs)
			if grouped && txs >= keys*callsPerKey {
				t.Errorf("%d transactions for %d calls: not grouped", txs, keys*callsPerKey)
			}
		})
	}
}

// The writer connection commits batches with events fsynced (FULL) and
// the others without (NORMAL), and reads back what it was set to.
func TestSyncLevels(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	level := func() int {
		t.Helper()
		s.sqlite().wmu.Lock() // the committer may not use the connection meanwhile
		defer s.sqlite().wmu.Unlock()
		var v int
		if err := s.sqlite().durable.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := level(); got != 2 {
		t.Fatalf("fresh store: synchronous %d, want 2 (FULL)", got)
	}
	if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o1", CreatedAt: at(0)}); err != nil {
		t.Fatal(err)
	}
	if got := level(); got != 1 {
		t.Fatalf("after an order: synchronous %d, want 1 (NORMAL)", got)
	}
	mustRecord(t, s, ev("evt_1", "m", "o1", at(1)), OrderPaid)
	if got := level(); got != 2 {
		t.Fatalf("after an event: synchronous %d, want 2 (FULL)", got)
	}
	if err := s.RecordAttempt(ctx, Attempt{EventID: "evt_1", At: at(2), Status: 200}, Outcome{Delivered: true}); err != nil {
		t.Fatal(err)
	}
	if got := level(); got != 1 {
		t.Fatalf("after an attempt: synchronous %d, want 1 (NORMAL)", got)
	}
	if err := s.Replay(ctx, "evt_1", at(3)); err != nil {
		t.Fatal(err)
	}
	if got := level(); got != 2 {
		t.Fatalf("after a replay: synchronous %d, want 2 (FULL)", got)
	}
}

// Writes that share a batch with failing events are not lost with them:
// the events fail, the other writes are stored in a transaction of their
// own.
func TestBatchFailureSparesOtherWrites(t *testing.T) {
	ctx := context.Background()
	h := openHeldBatch(t)
	s := h.s
	var wg sync.WaitGroup
	var evErr, orderErr error
	wg.Go(func() { _, evErr = s.RecordEvent(ctx, ev("evt_bad", "m", "o1", at(1)), Change{}) })
	wg.Go(func() { orderErr = s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o2", CreatedAt: at(2)}) })
	time.Sleep(100 * time.Millisecond) // both queue behind the first batch
	h.release(t)
	wg.Wait()
	if evErr == nil || !strings.Contains(evErr.Error(), "boom") {
		t.Fatalf("evt_bad: %v, want the trigger's error", evErr)
	}
	if orderErr != nil {
		t.Fatalf("PutOrder in the failed batch: %v", orderErr)
	}
	if _, err := s.GetOrder(ctx, "m", "o2"); err != nil {
		t.Fatalf("the order of the failed batch: %v", err)
	}
}

// GetOrder through the committer sees every write submitted before it,
// whether it arrives between batches, during a linger or inside a batch.
func TestGetOrderReadsItsWrites(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				no := fmt.Sprintf("o%02d", i)
				if _, err := s.GetOrder(ctx, "m", no); !errors.Is(err, ErrNotFound) {
					t.Errorf("%s before PutOrder: %v", no, err)
				}
				o := &Order{MchID: "m", OutTradeNo: no, TotalFee: int64(i), CreatedAt: at(i)}
				if err := s.PutOrder(ctx, o); err != nil {
					t.Error(err)
					return
				}
				got, err := s.GetOrder(ctx, "m", no)
				if err != nil || got.TotalFee != int64(i) {
					t.Errorf("%s after PutOrder: %+v, %v", no, got, err)
				}
				if err := s.SetOrderState(ctx, "m", no, OrderPaid, at(100)); err != nil {
					t.Error(err)
				}
				if got, err := s.GetOrder(ctx, "m", no); err != nil || got.State != OrderPaid {
					t.Errorf("%s after SetOrderState: %+v, %v", no, got, err)
				}
			})
		}
		wg.Wait()
	})
}

// A caller that gives up gets its context's error; the store goes on.
func TestGroupedCallsContext(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o1"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutOrder: %v", err)
	}
	if _, err := s.GetOrder(ctx, "m", "o1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetOrder: %v", err)
	}
	if err := s.PutOrder(context.Background(), &Order{MchID: "m", OutTradeNo: "o1"}); err != nil {
		t.Fatal(err)
	}
}

// DueEvents gives the same answer whatever the length of the exclude list:
// each prepared shape (padded), and beyond the largest.
func TestDueEventsExcludeShapes(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		s := openTest(t)
		const n = 300
		var all []string
		for i := range n {
			id := fmt.Sprintf("evt_%03d", i)
			mustRecord(t, s, ev(id, "m", fmt.Sprintf("o%03d", i), at(i)), "")
			all = append(all, id)
		}
		// A second event of order o000, blocked behind the first.
		mustRecord(t, s, ev("evt_zzz", "m", "o000", at(n)), "")
		for _, k := range []int{0, 1, 7, 8, 9, 31, 64, 65, 128, 129, 200} {
			t.Run(fmt.Sprint(k), func(t *testing.T) {
				exclude := all[:k]
				got, err := dueAfresh(t, s, at(n+1), n, exclude)
				if err != nil {
					t.Fatal(err)
				}
				want := all[k:] // evt_zzz waits for evt_000, excluded or not
				if !slices.Equal(ids(got), want) {
					t.Fatalf("%d excluded: %d due (%v…), want %d", k, len(got), ids(got)[:min(3, len(got))], len(want))
				}
				if got, _ := dueAfresh(t, s, at(n+1), 5, exclude); !slices.Equal(ids(got), want[:min(5, len(want))]) {
					t.Fatalf("%d excluded, limit 5: %v", k, ids(got))
				}
			})
		}
	})
}

// Migration 3 replaces the outbox indexes of a version-2 database and
// keeps its data.
func TestMigration3(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	s := openAt(t, path, SQLiteOptions{})
	// Back to version 2: the indexes it had, without those of versions 3 and 4.
	for _, q := range []string{
		`DROP INDEX events_pending_order`, `DROP INDEX events_due_order`,
		`CREATE INDEX events_due ON events (state, next_attempt_at)`,
		`CREATE INDEX events_order ON events (mch_id, out_trade_no, created_at)`,
		`DROP INDEX orders_open_check`, `CREATE INDEX orders_check ON orders (state, next_check_at)`,
		`ALTER TABLE events DROP COLUMN replayed_at`, `ALTER TABLE events DROP COLUMN replay_attempts`, `ALTER TABLE events DROP COLUMN claimed_until`,
		`DELETE FROM schema_migrations WHERE version >= 3`,
	} {
		if _, err := s.sqlite().durable.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	mustRecord(t, s, ev("evt_a", "m", "o1", at(0)), "")
	mustRecord(t, s, ev("evt_b", "m", "o1", at(1)), "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openAt(t, path, SQLiteOptions{})
	if v, err := schemaVersion(ctx, s2.sqlite().fast); err != nil || v != len(migrations()) {
		t.Fatalf("version %d, %v", v, err)
	}
	var names []string
	rows, err := s2.sqlite().fast.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	rows.Close()
	if want := []string{"events_created", "events_due_order", "events_pending_order"}; !slices.Equal(names, want) {
		t.Fatalf("indexes %v, want %v", names, want)
	}
	got, err := dueAfresh(t, s2, at(10), 10, nil)
	if err != nil || !slices.Equal(ids(got), []string{"evt_a"}) {
		t.Fatalf("due after migration: %v %v", ids(got), err)
	}
}

// The outbox queries use the indexes meant for them (no full scan, no
// sort), so that their cost follows what they return, not the backlog.
func TestOutboxQueryPlans(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	plan := func(q string, args ...any) string {
		rows, err := s.sqlite().fast.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, detail)
		}
		return strings.Join(lines, "\n")
	}
	args := []any{"a", "b", "c", "d", "e", "f", "g", "h", int64(0)}
	for name, p := range map[string]string{
		"due":      plan(dueQuery(s.d, 8), args...),
		"due none": plan(dueQuery(s.d, 0), int64(0)),
		"next due": plan(qNextDue),
	} {
		if !strings.Contains(p, "events_due_order") || !strings.Contains(p, "events_pending_order") ||
			strings.Contains(p, "TEMP B-TREE") || strings.Contains(p, "SCAN e") {
			t.Errorf("%s: plan\n%s", name, p)
		}
	}
}

// Statements survive a schema change made by another connection (SQLite
// prepares them again).
func TestPreparedAfterSchemaChange(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.sqlite().fast.ExecContext(ctx, `CREATE INDEX extra ON orders (app_id)`); err != nil {
		t.Fatal(err)
	}
	if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOrder(ctx, "m", "o2"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.sqlite().fast.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d orders, %v", n, err)
	}
}

// Migrations 4 and 5 replace orders_check with an index of the open
// orders (NOTPAY, and since 5 PAYERROR), which OrdersToCheck uses (no
// scan, no sort).
func TestMigrations4And5(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	s := openAt(t, path, SQLiteOptions{})
	// Back to version 3.
	for _, q := range []string{
		`DROP INDEX orders_open_check`,
		`CREATE INDEX orders_check ON orders (state, next_check_at)`,
		`ALTER TABLE events DROP COLUMN replayed_at`, `ALTER TABLE events DROP COLUMN replay_attempts`, `ALTER TABLE events DROP COLUMN claimed_until`,
		`DELETE FROM schema_migrations WHERE version >= 4`,
	} {
		if _, err := s.sqlite().durable.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i, no := range []string{"due", "later", "paid", "failed"} {
		if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: no, CreatedAt: at(0), NextCheckAt: at(10 + 100*i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetOrderState(ctx, "m", "paid", OrderPaid, at(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOrderState(ctx, "m", "failed", OrderPayError, at(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openAt(t, path, SQLiteOptions{})
	if v, err := schemaVersion(ctx, s2.sqlite().fast); err != nil || v != len(migrations()) {
		t.Fatalf("version %d, %v", v, err)
	}
	var n int
	if err := s2.sqlite().fast.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name IN ('orders_check', 'orders_unpaid_check')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("an earlier index is still there (%d, %v)", n, err)
	}
	for _, tc := range []struct {
		now  time.Time
		want []string
	}{{at(5), nil}, {at(50), []string{"due"}}, {at(1000), []string{"due", "later", "failed"}}} {
		got, err := s2.OrdersToCheck(ctx, tc.now, 10)
		if err != nil {
			t.Fatal(err)
		}
		var nos []string
		for _, o := range got {
			nos = append(nos, o.OutTradeNo)
		}
		if !slices.Equal(nos, tc.want) {
			t.Errorf("OrdersToCheck(%v) = %v, want %v", tc.now, nos, tc.want)
		}
	}
	rows, err := s2.sqlite().fast.QueryContext(ctx, "EXPLAIN QUERY PLAN "+qOrdersToCheck, int64(0), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "\n"); !strings.Contains(p, "orders_open_check") || strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("OrdersToCheck plan:\n%s", p)
	}
}
