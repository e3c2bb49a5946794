package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// RecordEvent applies its Change (an order's state, a refund's state) in
// the event's transaction, only for a new event; a change the ledger cannot
// apply (no such order or refund) changes nothing and is no error; a
// malformed change is refused before anything is written.
func TestRecordEventChange(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		for _, grouped := range []bool{true, false} {
			t.Run(fmt.Sprintf("group=%v", grouped), func(t *testing.T) {
				ctx := context.Background()
				s := openTest(t, SQLiteOptions{DisableGroupCommit: !grouped})
				if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o1", AppID: "wx1", TotalFee: 888, CreatedAt: at(0)}); err != nil {
					t.Fatal(err)
				}
				if err := s.PutRefund(ctx, &Refund{MchID: "m", OutRefundNo: "r1", OutTradeNo: "o1", TotalFee: 888, RefundFee: 88, CreatedAt: at(0)}); err != nil {
					t.Fatal(err)
				}

				// A payment: the order becomes PAID at the event's time.
				if created, err := s.RecordEvent(ctx, ev("evt_1", "m", "o1", at(10)), Change{OrderState: OrderPaid}); err != nil || !created {
					t.Fatalf("RecordEvent = %v, %v", created, err)
				}
				if o, err := s.GetOrder(ctx, "m", "o1"); err != nil || o.State != OrderPaid || !o.UpdatedAt.Equal(at(10)) {
					t.Fatalf("order after the payment: %+v, %v", o, err)
				}

				// A duplicate: nothing changes.
				if created, err := s.RecordEvent(ctx, ev("evt_1", "m", "o1", at(20)), Change{OrderState: OrderMismatch}); err != nil || created {
					t.Fatalf("duplicate: created %v, err %v", created, err)
				}
				if o, _ := s.GetOrder(ctx, "m", "o1"); o.State != OrderPaid {
					t.Fatalf("a duplicate changed the order's state to %s", o.State)
				}

				// An order the ledger does not hold: the event is stored.
				if created, err := s.RecordEvent(ctx, ev("evt_2", "m", "o-outside", at(11)), Change{OrderState: OrderPaid}); err != nil || !created {
					t.Fatalf("unknown order: %v, %v", created, err)
				}

				// A refund: its state and refund_id, at the event's time.
				e := ev("evt_r1", "m", "o1", at(12))
				if _, err := s.RecordEvent(ctx, e, Change{Refund: &RefundUpdate{OutRefundNo: "r1", State: RefundChange, RefundID: "5030"}}); err != nil {
					t.Fatal(err)
				}
				r, err := s.GetRefund(ctx, "m", "r1")
				if err != nil || r.State != RefundChange || r.RefundID != "5030" || !r.UpdatedAt.Equal(at(12)) {
					t.Fatalf("refund after its event: %+v, %v", r, err)
				}
				// Another state without a refund_id keeps the one recorded.
				if _, err := s.RecordEvent(ctx, ev("evt_r2", "m", "o1", at(13)), Change{Refund: &RefundUpdate{OutRefundNo: "r1", State: RefundSuccess}}); err != nil {
					t.Fatal(err)
				}
				if r, _ := s.GetRefund(ctx, "m", "r1"); r.State != RefundSuccess || r.RefundID != "5030" {
					t.Fatalf("refund after a second event: %+v", r)
				}
				// A late abnormal notice does not move a success back.
				if _, err := s.RecordEvent(ctx, ev("evt_r3", "m", "o1", at(14)), Change{Refund: &RefundUpdate{OutRefundNo: "r1", State: RefundChange}}); err != nil {
					t.Fatal(err)
				}
				if r, _ := s.GetRefund(ctx, "m", "r1"); r.State != RefundSuccess || !r.UpdatedAt.Equal(at(13)) {
					t.Fatalf("refund after a late abnormal notice: %+v", r)
				}

				// A malformed change: refused, nothing stored.
				if _, err := s.RecordEvent(ctx, ev("evt_bad", "m", "o1", at(14)), Change{Refund: &RefundUpdate{State: RefundSuccess}}); err == nil {
					t.Fatal("a refund change without out_refund_no was accepted")
				}
				if _, _, err := s.GetEvent(ctx, "evt_bad"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("the refused event was stored: %v", err)
				}
			})
		}
	})
}

// Concurrent events with changes share the committer's transactions; each
// change lands with its own event.
func TestRecordEventChangesInOneBatch(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t, SQLiteOptions{})
		for i := range 20 {
			if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: fmt.Sprintf("c%02d", i), CreatedAt: at(0)}); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() {
				state := OrderPaid
				if i%2 == 1 {
					state = OrderPayError
				}
				_, errs[i] = s.RecordEvent(ctx, ev(fmt.Sprintf("evt_c%02d", i), "m", fmt.Sprintf("c%02d", i), at(30)), Change{OrderState: state})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			want := OrderPaid
			if i%2 == 1 {
				want = OrderPayError
			}
			if o, err := s.GetOrder(ctx, "m", fmt.Sprintf("c%02d", i)); err != nil || o.State != want {
				t.Fatalf("order %d: %+v, %v; want %s", i, o, err, want)
			}
		}
	})
}

// A change's expectations are checked in the event's transaction: an
// order or refund that disagrees makes RecordEvent store nothing and hand
// the record back; one that agrees, or that the ledger does not hold, lets
// the event and its change through.
func TestRecordEventExpectations(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		for _, opts := range []SQLiteOptions{{}, {DisableGroupCommit: true}, {DisableGroupCommit: true, noFastGroup: true}} {
			t.Run(fmt.Sprintf("group=%v,fast=%v", !opts.DisableGroupCommit, !opts.noFastGroup), func(t *testing.T) {
				ctx := context.Background()
				s := openTest(t, opts)
				if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o1", AppID: "wx1", TotalFee: 100, CreatedAt: at(0)}); err != nil {
					t.Fatal(err)
				}
				if err := s.PutRefund(ctx, &Refund{MchID: "m", OutRefundNo: "r1", OutTradeNo: "o1", TotalFee: 100, RefundFee: 30, CreatedAt: at(0)}); err != nil {
					t.Fatal(err)
				}
				tests := []struct {
					name   string
					order  string
					change Change
					order2 *Order // the record handed back, if any
					refund bool
				}{
					{"other amount", "o1", Change{OrderState: OrderPaid, Expect: OrderFigures{Check: true, AppID: "wx1", TotalFee: 1, CheckTotalFee: true}}, &Order{TotalFee: 100}, false},
					{"other app id", "o1", Change{OrderState: OrderPaid, Expect: OrderFigures{Check: true, AppID: "wx2", TotalFee: 100, CheckTotalFee: true}}, &Order{TotalFee: 100}, false},
					{"amount not checked", "o1", Change{OrderState: OrderPayError, Expect: OrderFigures{Check: true, AppID: "wx1"}}, nil, false},
					{"order not held", "o9", Change{OrderState: OrderPaid, Expect: OrderFigures{Check: true, AppID: "wx9", TotalFee: 5, CheckTotalFee: true}}, nil, false},
					{"refund of another amount", "o1", Change{Refund: &RefundUpdate{OutRefundNo: "r1", State: RefundSuccess, RefundFee: 31}}, nil, true},
					{"refund not held", "o1", Change{Refund: &RefundUpdate{OutRefundNo: "r9", State: RefundSuccess, RefundFee: 31}}, nil, false},
				}
				for i, tt := range tests {
					id := fmt.Sprintf("evt_x%d", i)
					created, err := s.RecordEvent(ctx, ev(id, "m", tt.order, at(10+i)), tt.change)
					var me *MismatchError
					mismatch := errors.As(err, &me)
					switch {
					case tt.order2 != nil && (!mismatch || me.Order == nil || me.Order.TotalFee != tt.order2.TotalFee || me.Order.AppID != "wx1"):
						t.Fatalf("%s: %v, want the order handed back", tt.name, err)
					case tt.refund && (!mismatch || me.Refund == nil || me.Refund.RefundFee != 30):
						t.Fatalf("%s: %v, want the refund handed back", tt.name, err)
					case tt.order2 == nil && !tt.refund && (err != nil || !created):
						t.Fatalf("%s: created %v, %v", tt.name, created, err)
					}
					_, _, gerr := s.GetEvent(ctx, id)
					if stored := gerr == nil; stored == mismatch {
						t.Fatalf("%s: stored %v after %v", tt.name, stored, err)
					}
				}
				// Nothing a mismatch refused changed anything.
				if o, _ := s.GetOrder(ctx, "m", "o1"); o.State != OrderPayError {
					t.Fatalf("order state %s: want PAYERROR, from the one change that agreed", o.State)
				}
				if r, _ := s.GetRefund(ctx, "m", "r1"); r.State != RefundProcessing {
					t.Fatalf("refund state %s after a disagreeing change", r.State)
				}
			})
		}
	})
}

// The expectations are checked against the orders another process wrote
// to the same file just before, whether or not the events go through the
// committer (where the order-key filter, caught up at the start of each
// batch, may answer for an order the ledger does not hold) or not (where
// it must not: it may be behind the other process).
func TestRecordEventSeesOtherWritersOrders(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		for _, opts := range []SQLiteOptions{{}, {DisableGroupCommit: true}} {
			t.Run(fmt.Sprintf("group=%v", !opts.DisableGroupCommit), func(t *testing.T) {
				ctx := context.Background()
				path := testPath(t)
				a := openAt(t, path, opts)
				b := openAt(t, path, SQLiteOptions{})
				for i := range 50 {
					// A fresh, complete filter in a (its committer caught up just now)…
					if err := a.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: fmt.Sprintf("a%02d", i), CreatedAt: at(0)}); err != nil {
						t.Fatal(err)
					}
					// …then b's order, which a's filter has not read.
					no := fmt.Sprintf("b%02d", i)
					if err := b.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: no, AppID: "wx1", TotalFee: 5, CreatedAt: at(0)}); err != nil {
						t.Fatal(err)
					}
					_, err := a.RecordEvent(ctx, ev("evt_"+no, "m", no, at(1)), Change{OrderState: OrderPaid,
						Expect: OrderFigures{Check: true, AppID: "wx1", TotalFee: 6, CheckTotalFee: true}})
					var me *MismatchError
					if !errors.As(err, &me) || me.Order.TotalFee != 5 {
						t.Fatalf("payment %d: %v, want b's order handed back", i, err)
					}
				}
			})
		}
	})
}

// An order's state only moves forward, whether set on its own or by an
// event: SUCCESS and MISMATCH are final, PAYERROR and CLOSED replace only
// an open order (NOTPAY, PAYERROR), and a change backwards is no error.
func TestOrderStateOnlyMovesForward(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		states := []string{OrderNotPay, OrderPayError, OrderClosed, OrderPaid, OrderMismatch}
		forward := map[[2]string]bool{}
		for _, to := range states {
			forward[[2]string{OrderNotPay, to}] = true
			forward[[2]string{OrderPayError, to}] = true
		}
		forward[[2]string{OrderClosed, OrderPaid}] = true
		forward[[2]string{OrderClosed, OrderMismatch}] = true
		forward[[2]string{OrderClosed, OrderClosed}] = true
		n := 0
		for _, from := range states {
			for _, to := range states {
				for _, byEvent := range []bool{false, true} {
					n++
					no := fmt.Sprintf("o%d", n)
					if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: no, State: from, CreatedAt: at(0)}); err != nil {
						t.Fatal(err)
					}
					var err error
					if byEvent {
						_, err = s.RecordEvent(ctx, ev("evt_"+no, "m", no, at(5)), Change{OrderState: to})
					} else {
						err = s.SetOrderState(ctx, "m", no, to, at(5))
					}
					if err != nil {
						t.Fatalf("%s -> %s (event %v): %v", from, to, byEvent, err)
					}
					want := from
					if forward[[2]string{from, to}] {
						want = to
					}
					if o, _ := s.GetOrder(ctx, "m", no); o.State != want {
						t.Errorf("%s -> %s (event %v): %s, want %s", from, to, byEvent, o.State, want)
					}
				}
			}
		}
		if err := s.SetOrderState(ctx, "m", "absent", OrderPaid, at(5)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an absent order: %v", err)
		}
	})
}

// A failure notified after its order was settled is recorded held: kept,
// never due for delivery, the order left as it was.
func TestHoldIfSettled(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		for no, state := range map[string]string{"paid": OrderPaid, "open": OrderNotPay, "mismatch": OrderMismatch} {
			if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: no, State: state, CreatedAt: at(0)}); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			order, want string
		}{{"paid", EventHeld}, {"mismatch", EventHeld}, {"open", EventPending}, {"unknown", EventPending}} {
			e := ev("evt_f_"+tc.order, "m", tc.order, at(10))
			created, err := s.RecordEvent(ctx, e, Change{OrderState: OrderPayError, HoldIfSettled: true})
			if err != nil || !created || e.State != tc.want {
				t.Fatalf("%s: created %v, state %s, %v; want %s", tc.order, created, e.State, err, tc.want)
			}
			got, _, err := s.GetEvent(ctx, e.ID)
			if err != nil || got.State != tc.want {
				t.Fatalf("%s: stored %+v, %v", tc.order, got, err)
			}
		}
		if o, _ := s.GetOrder(ctx, "m", "paid"); o.State != OrderPaid {
			t.Fatalf("a held failure changed the paid order to %s", o.State)
		}
		if o, _ := s.GetOrder(ctx, "m", "open"); o.State != OrderPayError {
			t.Fatalf("a failure of an open order: %s", o.State)
		}
		due, err := dueAfresh(t, s, at(100), 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range due {
			if e.State != EventPending || e.OutTradeNo == "paid" || e.OutTradeNo == "mismatch" {
				t.Fatalf("a held event is due: %+v", e)
			}
		}
		if counts, _ := s.CountEvents(ctx); counts[EventHeld] != 2 {
			t.Fatalf("counts %v", counts)
		}
	})
}

// A change may carry the payload for each presence of the order: the
// transaction stores the one that is so, and writes it back.
func TestPayloadIfNotHeld(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "held", TotalFee: 100, CreatedAt: at(0)}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ order, want string }{{"held", `{"checked":true}`}, {"absent", `{"checked":false}`}} {
			e := ev("evt_"+tc.order, "m", tc.order, at(1))
			e.Payload = []byte(`{"checked":true}`)
			created, err := s.RecordEvent(ctx, e, Change{OrderState: OrderPaid, PayloadIfNotHeld: []byte(`{"checked":false}`),
				Expect: OrderFigures{Check: true, TotalFee: 100, CheckTotalFee: true}})
			if err != nil || !created {
				t.Fatalf("%s: %v, %v", tc.order, created, err)
			}
			if string(e.Payload) != tc.want {
				t.Errorf("%s: written back %s, want %s", tc.order, e.Payload, tc.want)
			}
			got, _, err := s.GetEvent(ctx, e.ID)
			if err != nil || string(got.Payload) != tc.want {
				t.Errorf("%s: stored %s (%v), want %s", tc.order, got.Payload, err, tc.want)
			}
		}
		if o, _ := s.GetOrder(ctx, "m", "held"); o.State != OrderPaid {
			t.Errorf("the held order is %s, want paid", o.State)
		}
		// Both a payload per presence and a required presence: refused.
		_, err := s.RecordEvent(ctx, ev("evt_x", "m", "held", at(2)), Change{Presence: PresenceHeld, PayloadIfNotHeld: []byte(`{}`)})
		if err == nil || !strings.Contains(err.Error(), "cannot require one") {
			t.Fatalf("err = %v", err)
		}
	})
}
