package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// RecordEvent applies its Change (an order's state, a refund's state) in
// the event's transaction, only for a new event; a change the ledger cannot
// apply (no such order or refund) changes nothing and is no error; a
// malformed change is refused before anything is written.
func TestRecordEventChange(t *testing.T) {
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
			if _, err := s.RecordEvent(ctx, e, Change{Refund: &RefundUpdate{OutRefundNo: "r1", State: RefundSuccess, RefundID: "5030"}}); err != nil {
				t.Fatal(err)
			}
			r, err := s.GetRefund(ctx, "m", "r1")
			if err != nil || r.State != RefundSuccess || r.RefundID != "5030" || !r.UpdatedAt.Equal(at(12)) {
				t.Fatalf("refund after its event: %+v, %v", r, err)
			}
			// Another state without a refund_id keeps the one recorded.
			if _, err := s.RecordEvent(ctx, ev("evt_r2", "m", "o1", at(13)), Change{Refund: &RefundUpdate{OutRefundNo: "r1", State: RefundChange}}); err != nil {
				t.Fatal(err)
			}
			if r, _ := s.GetRefund(ctx, "m", "r1"); r.State != RefundChange || r.RefundID != "5030" {
				t.Fatalf("refund after a second event: %+v", r)
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
}

// Concurrent events with changes share the committer's transactions; each
// change lands with its own event.
func TestRecordEventChangesInOneBatch(t *testing.T) {
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
}
