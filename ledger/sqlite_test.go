package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestOrders(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)

		o := &Order{
			MchID: "10000100", OutTradeNo: "o1", AppID: "wxd930ea5d5a258f4f", TradeType: "NATIVE", TotalFee: 101,
			ContentHash: "h1", PrepayID: "wx1", CodeURL: "weixin://wxpay/bizpayurl?pr=1", CreatedAt: at(0),
		}
		if err := s.PutOrder(ctx, o); err != nil {
			t.Fatal(err)
		}
		// Defaults filled in.
		if o.State != OrderNotPay || !o.ExpiresAt.Equal(at(0).Add(2*time.Hour)) || !o.UpdatedAt.Equal(at(0)) {
			t.Fatalf("defaults: %+v", o)
		}
		got, err := s.GetOrder(ctx, "10000100", "o1")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, o) {
			t.Fatalf("GetOrder = %+v, want %+v", got, o)
		}
		if got.CreatedAt.Location() != time.UTC {
			t.Fatalf("times not UTC: %v", got.CreatedAt.Location())
		}

		dup := *o
		dup.ContentHash = "other"
		r := *o
		r.PrepayID, r.ExpiresAt, r.UpdatedAt, r.MWebURL = "wx2", at(9000), at(8000), "https://wx.tenpay.com/x"

		tests := []struct {
			name    string
			op      func() error
			wantErr error
		}{
			{"put duplicate", func() error { return s.PutOrder(ctx, &dup) }, ErrExists},
			{"put other merchant same no", func() error {
				return s.PutOrder(ctx, &Order{MchID: "10000200", OutTradeNo: "o1", CreatedAt: at(1)})
			}, nil},
			{"put without key", func() error { return s.PutOrder(ctx, &Order{MchID: "10000100"}) }, nil},
			{"get absent", func() error { _, err := s.GetOrder(ctx, "10000100", "nope"); return err }, ErrNotFound},
			{"record prepay", func() error { return s.RecordPrepay(ctx, &r) }, nil},
			{"record prepay other content", func() error { return s.RecordPrepay(ctx, &dup) }, ErrExists},
			{"state", func() error { return s.SetOrderState(ctx, "10000100", "o1", OrderPaid, at(9500)) }, nil},
			{"state absent", func() error { return s.SetOrderState(ctx, "10000100", "nope", OrderPaid, at(1)) }, ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.op()
				if tc.name == "put without key" {
					if err == nil {
						t.Fatal("no error for an order without out_trade_no")
					}
					return
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if err != nil && !strings.HasPrefix(err.Error(), "ledger: ") {
					t.Fatalf("error without context: %v", err)
				}
			})
		}

		got, err = s.GetOrder(ctx, "10000100", "o1")
		if err != nil {
			t.Fatal(err)
		}
		want := r
		want.State, want.UpdatedAt = OrderPaid, at(9500)
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("after prepay+state: %+v, want %+v", got, &want)
		}
	})
}

// TestPlacementRecords: an order recorded before its placement (PutOrder,
// no prepay_id) gets WeChat's answer (RecordPrepay) without losing what
// happened to it meanwhile, is forgotten only while nothing but the
// placement touched it, and is recorded whole when it was forgotten.
func TestPlacementRecords(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		placed := func(no string) *Order {
			return &Order{MchID: "10000100", OutTradeNo: no, AppID: "wxd930ea5d5a258f4f", TradeType: "JSAPI",
				TotalFee: 1, ContentHash: "h-" + no, CreatedAt: at(0), NextCheckAt: at(600)}
		}
		answered := func(no string) *Order {
			o := placed(no)
			o.PrepayID, o.ExpiresAt, o.UpdatedAt, o.NextCheckAt = "wx-"+no, at(7000), at(3), at(700)
			return o
		}
		tests := []struct {
			name     string
			meantime func(s *sqlStore) error // after PutOrder(placed), before the step
			step     func(s *sqlStore) error
			wantErr  error
			want     func() *Order // nil: absent
		}{
			{"answer recorded", nil, func(s *sqlStore) error { return s.RecordPrepay(ctx, answered("a")) }, nil,
				func() *Order { o := answered("a"); o.State = OrderNotPay; return o }},
			{"paid meanwhile: state and checks stay", func(s *sqlStore) error {
				if err := s.SetOrderState(ctx, "10000100", "a", OrderPaid, at(2)); err != nil {
					return err
				}
				return s.ScheduleCheck(ctx, "10000100", "a", time.Time{}, 3)
			}, func(s *sqlStore) error { return s.RecordPrepay(ctx, answered("a")) }, nil,
				func() *Order {
					o := answered("a")
					o.State, o.NextCheckAt, o.Checks = OrderPaid, time.Time{}, 3
					return o
				}},
			{"forgotten meanwhile: recorded whole", func(s *sqlStore) error { return s.ForgetOrder(ctx, "10000100", "a", "h-a") },
				func(s *sqlStore) error { return s.RecordPrepay(ctx, answered("a")) }, nil,
				func() *Order { o := answered("a"); o.State = OrderNotPay; return o }},
			{"forget", nil, func(s *sqlStore) error { return s.ForgetOrder(ctx, "10000100", "a", "h-a") }, nil, nil},
			{"forget other content: kept", nil, func(s *sqlStore) error { return s.ForgetOrder(ctx, "10000100", "a", "h-other") }, nil,
				func() *Order {
					o := placed("a")
					o.State, o.ExpiresAt, o.UpdatedAt = OrderNotPay, at(7200), at(0)
					return o
				}},
			{"forget answered: kept", func(s *sqlStore) error { return s.RecordPrepay(ctx, answered("a")) },
				func(s *sqlStore) error { return s.ForgetOrder(ctx, "10000100", "a", "h-a") }, nil,
				func() *Order { o := answered("a"); o.State = OrderNotPay; return o }},
			{"forget closed: kept", func(s *sqlStore) error { return s.SetOrderState(ctx, "10000100", "a", OrderClosed, at(5)) },
				func(s *sqlStore) error { return s.ForgetOrder(ctx, "10000100", "a", "h-a") }, nil,
				func() *Order {
					o := placed("a")
					o.State, o.ExpiresAt, o.UpdatedAt = OrderClosed, at(7200), at(5)
					return o
				}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				s := openTest(t)
				if err := s.PutOrder(ctx, placed("a")); err != nil {
					t.Fatal(err)
				}
				if tc.meantime != nil {
					if err := tc.meantime(s); err != nil {
						t.Fatal(err)
					}
				}
				if err := tc.step(s); !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				got, err := s.GetOrder(ctx, "10000100", "a")
				if tc.want == nil {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("order still recorded: %+v, %v", got, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if want := tc.want(); !reflect.DeepEqual(got, want) {
					t.Fatalf("order = %+v\nwant %+v", got, want)
				}
			})
		}
	})
}

func TestRecordEventDuplicate(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		for _, group := range []bool{true, false} {
			t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
				ctx := context.Background()
				s := openTest(t, SQLiteOptions{DisableGroupCommit: !group})

				e := ev("evt_1", "m", "o1", at(0))
				mustRecord(t, s, e, "")
				dup := ev("evt_1", "m2", "o2", at(5))
				dup.Payload = []byte(`{"other":true}`)
				created, err := s.RecordEvent(ctx, dup, Change{})
				if err != nil || created {
					t.Fatalf("duplicate: created=%v err=%v", created, err)
				}
				got, atts, err := s.GetEvent(ctx, "evt_1")
				if err != nil {
					t.Fatal(err)
				}
				if len(atts) != 0 {
					t.Fatalf("attempts: %v", atts)
				}
				want := &Event{
					ID: "evt_1", MchID: "m", Type: "payment.succeeded", OutTradeNo: "o1", TransactionID: "4200evt_1",
					Payload: []byte(`{"id":"evt_1"}`), CreatedAt: at(0), State: EventPending, NextAttemptAt: at(0),
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("GetEvent = %+v\nwant %+v", got, want)
				}
				if _, _, err := s.GetEvent(ctx, "evt_nope"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("absent: %v", err)
				}
				if _, err := s.RecordEvent(ctx, &Event{}, Change{}); err == nil {
					t.Fatal("event without ID accepted")
				}
			})
		}
	})
}

func TestRecordEventNextAttemptAndEmptyPayload(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		e := &Event{ID: "evt_x", MchID: "m", OutTradeNo: "o", CreatedAt: at(0), NextAttemptAt: at(30)}
		mustRecord(t, s, e, "")
		got, _, err := s.GetEvent(ctx, "evt_x")
		if err != nil {
			t.Fatal(err)
		}
		if !got.NextAttemptAt.Equal(at(30)) || got.Payload == nil || len(got.Payload) != 0 {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestRecordEventOrderState(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		for _, group := range []bool{true, false} {
			t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
				ctx := context.Background()
				s := openTest(t, SQLiteOptions{DisableGroupCommit: !group})
				if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o1", CreatedAt: at(0)}); err != nil {
					t.Fatal(err)
				}
				mustRecord(t, s, ev("evt_1", "m", "o1", at(10)), OrderPaid)
				o, err := s.GetOrder(ctx, "m", "o1")
				if err != nil {
					t.Fatal(err)
				}
				if o.State != OrderPaid || !o.UpdatedAt.Equal(at(10)) {
					t.Fatalf("order after event: %+v", o)
				}
				// A duplicate changes nothing, not even the order.
				if created, err := s.RecordEvent(ctx, ev("evt_1", "m", "o1", at(20)), Change{OrderState: OrderMismatch}); err != nil || created {
					t.Fatalf("dup: %v %v", created, err)
				}
				if o, _ := s.GetOrder(ctx, "m", "o1"); o.State != OrderPaid {
					t.Fatalf("duplicate changed the order: %+v", o)
				}
				// An event of an unknown order is stored all the same.
				mustRecord(t, s, ev("evt_2", "m", "unknown", at(30)), OrderPaid)
			})
		}
	})
}

func TestRecordEventConcurrentSameID(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		for _, group := range []bool{true, false} {
			t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
				ctx := context.Background()
				s := openTest(t, SQLiteOptions{DisableGroupCommit: !group})
				var wg sync.WaitGroup
				var mu sync.Mutex
				createdN, errs := 0, []error(nil)
				for range 20 {
					wg.Go(func() {
						c, err := s.RecordEvent(ctx, ev("evt_same", "m", "o", at(0)), Change{OrderState: OrderPaid})
						mu.Lock()
						defer mu.Unlock()
						if c {
							createdN++
						}
						if err != nil {
							errs = append(errs, err)
						}
					})
				}
				wg.Wait()
				if createdN != 1 || len(errs) != 0 {
					t.Fatalf("created %d times, errors %v", createdN, errs)
				}
				if n, _ := s.CountEvents(ctx); n[EventPending] != 1 {
					t.Fatalf("counts %v", n)
				}
			})
		}
	})
}

func TestRecordEventGroupCommit(t *testing.T) {
	const n = 200
	tests := []struct {
		name    string
		opts    SQLiteOptions
		wantMax int64 // most transactions expected
		wantMin int64
	}{
		{"group-commit", SQLiteOptions{}, n / 4, 1},
		{"fsync-each", SQLiteOptions{DisableGroupCommit: true}, n, n},
		{"small-batches", SQLiteOptions{MaxBatch: 10}, n / 4, n / 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var once sync.Once
			var mu sync.Mutex
			var sizes []int
			// Hold the first batch back a little so that the others queue
			// up behind it as they do under load.
			tc.opts.beforeBatch = func(k int) {
				once.Do(func() { time.Sleep(100 * time.Millisecond) })
				mu.Lock()
				sizes = append(sizes, k)
				mu.Unlock()
			}
			s := openTest(t, tc.opts)
			var wg sync.WaitGroup
			errc := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					c, err := s.RecordEvent(ctx, ev(fmt.Sprintf("evt_%03d", i), "m", fmt.Sprintf("o%d", i), at(i)), Change{})
					if err == nil && !c {
						err = fmt.Errorf("evt_%03d not created", i)
					}
					if err != nil {
						errc <- err
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Error(err)
			}
			counts, err := s.CountEvents(ctx)
			if err != nil || counts[EventPending] != n {
				t.Fatalf("counts %v %v", counts, err)
			}
			txs := s.sqlite().eventTxs.Load()
			t.Logf("%d events in %d transactions (batches %v)", n, txs, sizes)
			if txs > tc.wantMax || txs < tc.wantMin {
				t.Fatalf("%d transactions, want %d..%d", txs, tc.wantMin, tc.wantMax)
			}
			max := tc.opts.MaxBatch
			if max == 0 {
				max = DefaultMaxBatch
			}
			for _, k := range sizes {
				if k > max {
					t.Fatalf("batch of %d > MaxBatch %d", k, max)
				}
			}
		})
	}
}

// A failing transaction fails every caller of its batch and stores nothing.
func TestGroupCommitBatchFailure(t *testing.T) {
	ctx := context.Background()
	h := openHeldBatch(t)
	s := h.s
	idsIn := []string{"evt_a", "evt_b", "evt_bad", "evt_c", "evt_d"}
	var wg sync.WaitGroup
	errs := make([]error, len(idsIn))
	for i, id := range idsIn {
		wg.Go(func() {
			_, errs[i] = s.RecordEvent(ctx, ev(id, "m", "o"+id, at(i+1)), Change{})
		})
	}
	time.Sleep(200 * time.Millisecond) // let them all queue behind the first batch
	h.release(t)
	wg.Wait()
	if sizes := h.batchSizes(); !slices.Equal(sizes, []int{1, len(idsIn)}) {
		t.Skipf("batches %v: the requests did not queue as one batch", sizes)
	}
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), idsIn[i]) {
			t.Errorf("%s: err = %v, want the batch's error", idsIn[i], err)
		}
	}
	counts, _ := s.CountEvents(ctx)
	if counts[EventPending] != 1 {
		t.Fatalf("counts %v: the failed batch left events", counts)
	}
}

func TestDurabilityReopen(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	s, err := OpenSQLite(ctx, SQLiteOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o1", CreatedAt: at(0)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			state := ""
			if i == 0 {
				state = OrderPaid
			}
			if _, err := s.RecordEvent(ctx, ev(fmt.Sprintf("evt_%02d", i), "m", "o1", at(i)), Change{OrderState: state}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := s.RecordAttempt(ctx, Attempt{EventID: "evt_00", At: at(100), Status: 200}, Outcome{Delivered: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.RecordEvent(ctx, ev("evt_late", "m", "o1", at(0)), Change{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("RecordEvent after Close: %v", err)
	}

	s2 := openAt(t, path, SQLiteOptions{})
	counts, err := s2.CountEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[EventPending] != 29 || counts[EventDelivered] != 1 {
		t.Fatalf("after reopen: %v", counts)
	}
	o, err := s2.GetOrder(ctx, "m", "o1")
	if err != nil || o.State != OrderPaid {
		t.Fatalf("order after reopen: %+v %v", o, err)
	}
	e, atts, err := s2.GetEvent(ctx, "evt_00")
	if err != nil || e.State != EventDelivered || len(atts) != 1 {
		t.Fatalf("evt_00 after reopen: %+v %v %v", e, atts, err)
	}
}

func TestPragmas(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	check := func(name string, h *sql.DB, wantSync int) {
		t.Run(name, func(t *testing.T) {
			// Hold several connections at once so that the pool has to
			// open new ones: each must have the DSN's settings.
			n := 3
			if name == "durable" {
				n = 1 // a single connection by design
			}
			var conns []*sql.Conn
			for range n {
				c, err := h.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			for i, c := range conns {
				p, err := readSQLitePragmas(ctx, c)
				if err != nil {
					t.Fatal(err)
				}
				want := sqlitePragmas{journalMode: "wal", synchronous: wantSync, foreignKeys: 1, busyTimeout: sqliteBusyTimeoutMS}
				if p != want {
					t.Errorf("connection %d: %+v, want %+v", i, p, want)
				}
			}
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
	check("durable", s.sqlite().durable, 2)
	check("fast", s.sqlite().fast, 1)
	if got := s.sqlite().durable.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("durable pool: %d connections, want 1", got)
	}
}

func TestDueEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		// o1: three events; o2: one, due later; o3: one.
		mustRecord(t, s, ev("evt_a1", "m", "o1", at(0)), "")
		mustRecord(t, s, ev("evt_b1", "m", "o2", at(1)), "")
		mustRecord(t, s, ev("evt_a2", "m", "o1", at(2)), "")
		mustRecord(t, s, &Event{ID: "evt_c1", MchID: "m", OutTradeNo: "o3", CreatedAt: at(3), NextAttemptAt: at(60)}, "")
		mustRecord(t, s, ev("evt_a3", "m", "o1", at(4)), "")
		// Same order number at another merchant: another order.
		mustRecord(t, s, ev("evt_x1", "m2", "o1", at(5)), "")
		// Two events of one order created at the same instant: ID breaks the tie.
		mustRecord(t, s, ev("evt_t2", "m", "o4", at(6)), "")
		mustRecord(t, s, ev("evt_t1", "m", "o4", at(6)), "")

		tests := []struct {
			name    string
			now     time.Time
			limit   int
			exclude []string
			want    []string
		}{
			{"before anything", at(-1), 10, nil, nil},
			{"time filter", at(1), 10, nil, []string{"evt_a1", "evt_b1"}},
			// Earliest due first: evt_c1 was created before evt_x1 but is due later.
			{"all first of order", at(100), 10, nil, []string{"evt_a1", "evt_b1", "evt_x1", "evt_t1", "evt_c1"}},
			{"not yet due", at(30), 10, nil, []string{"evt_a1", "evt_b1", "evt_x1", "evt_t1"}},
			{"limit", at(100), 2, nil, []string{"evt_a1", "evt_b1"}},
			{"exclude in flight and its order", at(100), 10, []string{"evt_a1", "evt_b1", "evt_b1"}, []string{"evt_x1", "evt_t1", "evt_c1"}},
			{"exclude unknown", at(100), 10, []string{"evt_zz"}, []string{"evt_a1", "evt_b1", "evt_x1", "evt_t1", "evt_c1"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := dueAfresh(t, s, tc.now, tc.limit, tc.exclude)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids(got), tc.want) {
					t.Fatalf("due = %v, want %v", ids(got), tc.want)
				}
			})
		}

		// The second event of o1 is due once the first is delivered; the third
		// once the second is dead; a retry of the first blocks the rest.
		steps := []struct {
			id      string
			outcome Outcome
			want    []string
		}{
			{"evt_a1", Outcome{RetryAt: at(50)}, []string{"evt_b1", "evt_x1", "evt_t1"}},
			{"evt_a1", Outcome{Delivered: true}, []string{"evt_b1", "evt_a2", "evt_x1", "evt_t1"}},
			{"evt_a2", Outcome{Dead: true}, []string{"evt_b1", "evt_a3", "evt_x1", "evt_t1"}},
		}
		for _, st := range steps {
			if err := s.RecordAttempt(ctx, Attempt{EventID: st.id, At: at(10), Status: 500}, st.outcome); err != nil {
				t.Fatal(err)
			}
			got, err := dueAfresh(t, s, at(30), 10, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), st.want) {
				t.Fatalf("after %s %+v: due = %v, want %v", st.id, st.outcome, ids(got), st.want)
			}
		}
		// Replaying the dead event blocks its younger sibling again; replayed
		// at 20, it comes after the events due since 5 and 6.
		if err := s.Replay(ctx, "evt_a2", at(20)); err != nil {
			t.Fatal(err)
		}
		got, _ := dueAfresh(t, s, at(30), 10, nil)
		if want := []string{"evt_b1", "evt_x1", "evt_t1", "evt_a2"}; !slices.Equal(ids(got), want) {
			t.Fatalf("after replay: %v, want %v", ids(got), want)
		}
	})
}

func TestNextDue(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		if _, ok, err := s.NextDue(ctx); ok || err != nil {
			t.Fatalf("empty: ok=%v err=%v", ok, err)
		}
		mustRecord(t, s, &Event{ID: "evt_1", MchID: "m", OutTradeNo: "o1", CreatedAt: at(0), NextAttemptAt: at(40)}, "")
		// A younger event of the same order, nominally due earlier, waits for
		// the first: it does not count.
		mustRecord(t, s, &Event{ID: "evt_2", MchID: "m", OutTradeNo: "o1", CreatedAt: at(1), NextAttemptAt: at(1)}, "")
		mustRecord(t, s, &Event{ID: "evt_3", MchID: "m", OutTradeNo: "o2", CreatedAt: at(2), NextAttemptAt: at(50)}, "")
		next, ok, err := s.NextDue(ctx)
		if err != nil || !ok || !next.Equal(at(40)) || next.Location() != time.UTC {
			t.Fatalf("NextDue = %v %v %v, want %v", next, ok, err, at(40))
		}
		if err := s.RecordAttempt(ctx, Attempt{EventID: "evt_1", At: at(40)}, Outcome{Delivered: true}); err != nil {
			t.Fatal(err)
		}
		if next, _, _ := s.NextDue(ctx); !next.Equal(at(1)) {
			t.Fatalf("NextDue = %v, want %v", next, at(1))
		}
		for _, id := range []string{"evt_2", "evt_3"} {
			if err := s.RecordAttempt(ctx, Attempt{EventID: id, At: at(60)}, Outcome{Dead: true}); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok, _ := s.NextDue(ctx); ok {
			t.Fatal("NextDue with nothing pending")
		}
	})
}

func TestRecordAttempt(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		mustRecord(t, s, ev("evt_1", "m", "o1", at(0)), "")

		long := strings.Repeat("x", 1023) + "é" + strings.Repeat("y", 100) // é straddles the 1 KiB cut
		steps := []struct {
			a         Attempt
			o         Outcome
			wantState string
			wantNext  time.Time
			wantDeliv time.Time
		}{
			{Attempt{At: at(1), Duration: 2 * time.Second, Error: "dial tcp: connection refused"}, Outcome{RetryAt: at(10)}, EventPending, at(10), time.Time{}},
			{Attempt{At: at(10), Duration: time.Second, Status: 503, Response: long}, Outcome{}, EventPending, at(11), time.Time{}},
			{Attempt{At: at(20), Duration: 1500 * time.Millisecond, Status: 200, Response: `{"ok":true}`}, Outcome{Delivered: true}, EventDelivered, at(11), at(20).Add(1500 * time.Millisecond)},
		}
		for i, st := range steps {
			st.a.EventID = "evt_1"
			if err := s.RecordAttempt(ctx, st.a, st.o); err != nil {
				t.Fatal(err)
			}
			e, atts, err := s.GetEvent(ctx, "evt_1")
			if err != nil {
				t.Fatal(err)
			}
			if e.State != st.wantState || e.Attempts != i+1 || !e.NextAttemptAt.Equal(st.wantNext) || !e.DeliveredAt.Equal(st.wantDeliv) {
				t.Fatalf("step %d: %+v", i, e)
			}
			if e.LastStatus != st.a.Status || e.LastError != st.a.Error || e.LastResponse != clip(st.a.Response) {
				t.Fatalf("step %d: last = %d %q %q", i, e.LastStatus, e.LastError, e.LastResponse)
			}
			if len(atts) != i+1 {
				t.Fatalf("step %d: %d attempts", i, len(atts))
			}
			for j, a := range atts {
				w := steps[j].a
				w.EventID, w.Response = "evt_1", clip(w.Response)
				if !reflect.DeepEqual(a, w) {
					t.Fatalf("attempt %d = %+v, want %+v", j, a, w)
				}
			}
		}
		_, atts, _ := s.GetEvent(ctx, "evt_1")
		if r := atts[1].Response; len(r) != 1023 || !strings.HasSuffix(r, "x") {
			t.Fatalf("long response kept as %d bytes", len(r))
		}

		// Dead.
		mustRecord(t, s, ev("evt_2", "m", "o2", at(0)), "")
		if err := s.RecordAttempt(ctx, Attempt{EventID: "evt_2", At: at(5), Status: 500}, Outcome{Dead: true}); err != nil {
			t.Fatal(err)
		}
		if e, _, _ := s.GetEvent(ctx, "evt_2"); e.State != EventDead || !e.DeliveredAt.IsZero() || e.Attempts != 1 {
			t.Fatalf("dead: %+v", e)
		}

		for _, tc := range []struct {
			name string
			a    Attempt
			o    Outcome
			want error
		}{
			{"absent", Attempt{EventID: "evt_nope", At: at(1)}, Outcome{Delivered: true}, ErrNotFound},
			{"no id", Attempt{At: at(1)}, Outcome{}, nil},
			{"delivered and dead", Attempt{EventID: "evt_2", At: at(1)}, Outcome{Delivered: true, Dead: true}, nil},
		} {
			err := s.RecordAttempt(ctx, tc.a, tc.o)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"", ""},
		{"ok", "ok"},
		{strings.Repeat("a", 2000), strings.Repeat("a", MaxResponse)},
		{"a\xffb\x00c", "a\uFFFDb\uFFFDc"},
		{strings.Repeat("\xff", 2000), "\uFFFD"}, // a run of invalid bytes becomes one U+FFFD
		{strings.Repeat("a", 1022) + "中", strings.Repeat("a", 1022)},
	} {
		got := clip(tc.in)
		if got != tc.want || len(got) > MaxResponse {
			t.Errorf("clip(%.20q…) = %.20q… (%d bytes), want %.20q… (%d bytes)", tc.in, got, len(got), tc.want, len(tc.want))
		}
	}
}

func TestReplay(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		mustRecord(t, s, ev("evt_dead", "m", "o1", at(0)), "")
		mustRecord(t, s, ev("evt_done", "m", "o2", at(0)), "")
		if err := s.RecordAttempt(ctx, Attempt{EventID: "evt_dead", At: at(1), Status: 500}, Outcome{Dead: true}); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordAttempt(ctx, Attempt{EventID: "evt_done", At: at(1), Status: 200}, Outcome{Delivered: true}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"evt_dead", "evt_done"} {
			t.Run(id, func(t *testing.T) {
				before, _, _ := s.GetEvent(ctx, id)
				if err := s.Replay(ctx, id, at(100)); err != nil {
					t.Fatal(err)
				}
				e, atts, err := s.GetEvent(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if e.State != EventPending || !e.NextAttemptAt.Equal(at(100)) || !e.DeliveredAt.IsZero() {
					t.Fatalf("replayed: %+v", e)
				}
				// Its retry window and attempt count start again; its
				// history stays.
				if !before.ReplayedAt.IsZero() || before.ReplayAttempts != 0 || e.Attempts != 1 || e.ReplayAttempts != 1 || !e.ReplayedAt.Equal(at(100)) {
					t.Fatalf("replayed: replayed_at %v → %v, replay_attempts %d → %d, attempts %d; want zero → %v, 0 → 1, 1",
						before.ReplayedAt, e.ReplayedAt, before.ReplayAttempts, e.ReplayAttempts, e.Attempts, at(100))
				}
				if e.ID != id || !bytes.Equal(e.Payload, before.Payload) || !e.CreatedAt.Equal(before.CreatedAt) || len(atts) != 1 {
					t.Fatalf("replay changed the event: %+v", e)
				}
				due, _ := dueAfresh(t, s, at(100), 10, nil)
				if !slices.Contains(ids(due), id) {
					t.Fatalf("replayed event not due: %v", ids(due))
				}
			})
		}
		if err := s.Replay(ctx, "evt_nope", at(1)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("absent: %v", err)
		}
	})
}

func TestListAndCountEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		// 10 events of m1 and 5 of m2, interleaved in time; evt_03 and evt_07 dead.
		var all []string // newest first
		for i := range 15 {
			mch := "m1"
			if i%3 == 2 {
				mch = "m2"
			}
			id := fmt.Sprintf("evt_%02d", i)
			mustRecord(t, s, ev(id, mch, "o"+id, at(i)), "")
			all = append([]string{id}, all...)
		}
		// Two events at the same instant: ID breaks the tie.
		mustRecord(t, s, ev("evt_15b", "m1", "o15b", at(15)), "")
		mustRecord(t, s, ev("evt_15a", "m1", "o15a", at(15)), "")
		all = append([]string{"evt_15b", "evt_15a"}, all...)
		for _, id := range []string{"evt_03", "evt_07"} {
			if err := s.RecordAttempt(ctx, Attempt{EventID: id, At: at(20)}, Outcome{Dead: true}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.RecordAttempt(ctx, Attempt{EventID: "evt_05", At: at(20), Status: 200}, Outcome{Delivered: true}); err != nil {
			t.Fatal(err)
		}

		counts, err := s.CountEvents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{EventPending: 14, EventDead: 2, EventDelivered: 1, EventHeld: 0}; !reflect.DeepEqual(counts, want) {
			t.Fatalf("counts %v, want %v", counts, want)
		}

		tests := []struct {
			name string
			f    ListFilter
			want []string
		}{
			{"all", ListFilter{}, all},
			{"limit", ListFilter{Limit: 3}, all[:3]},
			{"page 2", ListFilter{Limit: 3, Before: all[2]}, all[3:6]},
			{"tie page", ListFilter{Limit: 2, Before: "evt_15b"}, []string{"evt_15a", "evt_14"}},
			{"last page", ListFilter{Limit: 5, Before: all[14]}, all[15:]},
			{"dead", ListFilter{State: EventDead}, []string{"evt_07", "evt_03"}},
			{"m2", ListFilter{MchID: "m2"}, []string{"evt_14", "evt_11", "evt_08", "evt_05", "evt_02"}},
			{"m2 delivered", ListFilter{MchID: "m2", State: EventDelivered}, []string{"evt_05"}},
			{"m2 page", ListFilter{MchID: "m2", Limit: 2, Before: "evt_11"}, []string{"evt_08", "evt_05"}},
			{"none", ListFilter{MchID: "m3"}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.ListEvents(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids(got), tc.want) {
					t.Fatalf("got %v, want %v", ids(got), tc.want)
				}
			})
		}
		if _, err := s.ListEvents(ctx, ListFilter{Before: "evt_nope"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown Before: %v", err)
		}

		// Limits: default 100, at most 1000.
		var wg sync.WaitGroup
		for i := range 1100 { // concurrently: group-committed
			wg.Go(func() {
				if _, err := s.RecordEvent(ctx, ev(fmt.Sprintf("evt_bulk%04d", i), "m9", "o", at(100+i)), Change{}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for _, tc := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {5000, 1000}, {1000, 1000}} {
			got, err := s.ListEvents(ctx, ListFilter{Limit: tc.limit})
			if err != nil || len(got) != tc.want {
				t.Fatalf("limit %d: %d events, %v", tc.limit, len(got), err)
			}
		}
	})
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	s := openAt(t, path, SQLiteOptions{})
	v, err := schemaVersion(ctx, s.sqlite().fast)
	if err != nil || v != len(migrations()) {
		t.Fatalf("fresh database: version %d, %v; want %d", v, err, len(migrations()))
	}
	var applied int64
	if err := s.sqlite().fast.QueryRowContext(ctx, `SELECT MAX(applied_at) FROM schema_migrations`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	sum := func() [32]byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	before := sum()
	// Reopening an up-to-date database changes nothing.
	s2 := openAt(t, path, SQLiteOptions{})
	var n int
	var applied2 int64
	if err := s2.sqlite().fast.QueryRowContext(ctx, `SELECT COUNT(*), MAX(applied_at) FROM schema_migrations`).Scan(&n, &applied2); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations()) || applied2 != applied {
		t.Fatalf("reopen re-ran migrations: %d rows, applied_at %d (was %d)", n, applied2, applied)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if sum() != before {
		t.Fatal("reopening an up-to-date database changed the file")
	}

	// A database from a newer schema is refused.
	s3 := openAt(t, path, SQLiteOptions{})
	if _, err := s3.sqlite().durable.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', 0)`, len(migrations())+1); err != nil {
		t.Fatal(err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = OpenSQLite(ctx, SQLiteOptions{Path: path})
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), fmt.Sprintf("version %d", len(migrations())+1)) {
		t.Fatalf("future schema: err = %v", err)
	}
}

// A migration that fails leaves the database at the version before it.
func TestMigrationFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	migs := append(migrations(), migration{version: len(migrations()) + 1, name: "broken", steps: []string{
		`CREATE TABLE extra (x INTEGER)`,
		`THIS IS NOT SQL`,
	}})
	if _, err := migrate(ctx, s.sqlite().durable, s.d, migs, time.Now); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("broken migration: %v", err)
	}
	if v, _ := schemaVersion(ctx, s.sqlite().durable); v != len(migrations()) {
		t.Fatalf("version %d after a failed migration", v)
	}
	if _, err := s.sqlite().durable.ExecContext(ctx, `SELECT x FROM extra`); err == nil {
		t.Fatal("the failed migration's first step stayed")
	}
	bad := []migration{{version: 2, name: "gap"}}
	if _, err := migrate(ctx, s.sqlite().durable, s.d, bad, time.Now); err == nil {
		t.Fatal("migrations not numbered from 1 accepted")
	}
}

func TestTryLease(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		ttl := 30 * time.Second
		steps := []struct {
			name, holder string
			now          time.Time
			want         bool
		}{
			{"free", "a", at(0), true},
			{"held by another", "b", at(10), false},
			{"renewed by holder", "a", at(20), true}, // now until at(50)
			{"still held", "b", at(49), false},
			{"expired", "b", at(50), true},
			{"old holder lost it", "a", at(51), false},
			{"other lease is independent", "a", at(51), true},
		}
		for _, st := range steps {
			name := "delivery"
			if st.name == "other lease is independent" {
				name = "cleanup"
			}
			got, err := s.TryLease(ctx, name, st.holder, st.now, ttl)
			if err != nil || got != st.want {
				t.Fatalf("%s: TryLease(%s, %s, %v) = %v, %v; want %v", st.name, name, st.holder, st.now, got, err, st.want)
			}
		}
		if _, err := s.TryLease(ctx, "x", "a", at(0), 0); err == nil {
			t.Fatal("zero ttl accepted")
		}
	})
}

// Close with RecordEvent calls in flight: each returns (stored, or an
// error), and no goroutine is left behind.
func TestCloseWithCallsInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx := context.Background()
	path := testPath(t)
	// The second batch tells the test to Close, and takes a moment: Close
	// comes while it is in flight and others wait.
	closeNow := make(chan struct{})
	var batches atomic.Int32
	s, err := openSQLite(ctx, SQLiteOptions{Path: path, MaxBatch: 20, beforeBatch: func(int) {
		if batches.Add(1) == 2 {
			close(closeNow)
			time.Sleep(50 * time.Millisecond)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	var wg sync.WaitGroup
	results := make([]error, n)
	created := make([]bool, n)
	started := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			if i == n/3 {
				close(started)
			}
			created[i], results[i] = s.RecordEvent(ctx, ev(fmt.Sprintf("evt_%03d", i), "m", "o", at(i)), Change{})
		})
	}
	<-started
	<-closeNow
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	var ok, closed int
	for i, err := range results {
		switch {
		case err == nil && created[i]:
			ok++
		case errors.Is(err, ErrClosed) || (err != nil && strings.Contains(err.Error(), "closed")):
			closed++
		default:
			t.Errorf("evt_%03d: created=%v err=%v", i, created[i], err)
		}
	}
	t.Logf("%d stored, %d refused as closed", ok, closed)
	if ok == 0 || closed == 0 {
		t.Errorf("want both stored and refused calls")
	}

	s2, err := openSQLite(ctx, SQLiteOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i, err := range results {
		_, _, gerr := s2.GetEvent(ctx, fmt.Sprintf("evt_%03d", i))
		if err == nil && gerr != nil {
			t.Errorf("evt_%03d acknowledged but not stored: %v", i, gerr)
		}
	}
}

// A caller whose context ends while it waits gets the context's error.
func TestRecordEventContext(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	s := openTest(t, SQLiteOptions{beforeBatch: func(int) { once.Do(func() { <-release }) }})
	go func() {
		_, _ = s.RecordEvent(context.Background(), ev("evt_block", "m", "o", at(0)), Change{})
	}()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.RecordEvent(ctx, ev("evt_ctx", "m", "o2", at(1)), Change{})
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := s.RecordEvent(cctx, ev("evt_cancelled", "m", "o3", at(2)), Change{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, p := range []string{"", ":memory:", "file:x.db", dir + "/a?b.db", dir + "/new/a#b.db"} {
		if s, err := OpenSQLite(ctx, SQLiteOptions{Path: p}); err == nil {
			s.Close()
			t.Errorf("OpenSQLite(%q) accepted", p)
		}
	}
	// A refused path leaves nothing behind.
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("refused paths left %v", left)
	}
	// The directory is created 0700.
	path := testPath(t)
	openAt(t, path, SQLiteOptions{})
	fi, err := os.Stat(strings.TrimSuffix(path, "/ledger.db"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v %v", fi.Mode(), err)
	}
}

func TestRebind(t *testing.T) {
	pg := dialect{name: "postgres", numbered: true, blobType: "BYTEA"}
	q := `SELECT a FROM t WHERE x = ? AND y IN (` + placeholders(3) + `) LIMIT ?`
	if got, want := pg.rebind(q), `SELECT a FROM t WHERE x = $1 AND y IN ($2, $3, $4) LIMIT $5`; got != want {
		t.Fatalf("rebind = %q, want %q", got, want)
	}
	if got := sqliteDialect().rebind(q); got != q {
		t.Fatalf("sqlite rebind changed the query: %q", got)
	}
	if got := pg.ddl(`payload {{blob}} NOT NULL`); got != `payload BYTEA NOT NULL` {
		t.Fatalf("ddl = %q", got)
	}
}

// A replay made while an attempt runs is not undone by that attempt's
// record, whose outcome the worker worked out from the event as it was
// before the replay (here: dead, its window over).
func TestReplayDuringAttempt(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		mustRecord(t, s, ev("evt_1", "m", "o1", at(0)), "")
		got, err := s.DueEvents(ctx, at(1), 10, nil, time.Minute)
		if err != nil || len(got) != 1 {
			t.Fatal(got, err)
		}
		if err := s.Replay(ctx, "evt_1", at(5)); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordAttempt(ctx, Attempt{EventID: "evt_1", At: at(2), Duration: 5 * time.Second, Status: 503, ClaimedUntil: got[0].ClaimedUntil}, Outcome{Dead: true}); err != nil {
			t.Fatal(err)
		}
		e, atts, err := s.GetEvent(ctx, "evt_1")
		if err != nil || e.State != EventPending || !e.NextAttemptAt.Equal(at(5)) || len(atts) != 1 || e.Attempts != 1 {
			t.Fatalf("replayed at 5, then an attempt started at 2 recorded dead: %+v, %d attempts recorded, %v; want pending, due at 5, the attempt in the history", e, len(atts), err)
		}
	})
}

// A new ledger, even in a directory others may read, is readable by the
// gateway's user only, and so are its -wal and -shm files: it holds every
// notification's payload.
func TestNewLedgerIsPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ledger.db")
	s, err := OpenSQLite(context.Background(), SQLiteOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putOrders(t, s.(*sqlStore), []string{"private1"}) // the WAL has something
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: mode %v, want no access for group and others", filepath.Base(f), perm)
		}
	}
}
