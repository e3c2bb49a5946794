package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// RecordPayment reads the event's order in the event's transaction, hands
// it to the check, stores the event as the check left it and sets the
// order's state; a check's error is its own call's.
func TestRecordPayment(t *testing.T) {
	for _, grouped := range []bool{true, false} {
		t.Run(fmt.Sprintf("group=%v", grouped), func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, SQLiteOptions{DisableGroupCommit: !grouped})
			if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o1", AppID: "wx1", TotalFee: 888, CreatedAt: at(0)}); err != nil {
				t.Fatal(err)
			}

			// A known order: the check sees it; the order becomes PAID.
			var seen *Order
			e := ev("evt_1", "m", "o1", at(10))
			created, err := s.RecordPayment(ctx, e, func(o *Order, _ *Event) (string, error) {
				seen = o
				return OrderPaid, nil
			})
			if err != nil || !created {
				t.Fatalf("RecordPayment = %v, %v", created, err)
			}
			if seen == nil || seen.TotalFee != 888 || seen.AppID != "wx1" {
				t.Fatalf("the check saw order %+v", seen)
			}
			if o, err := s.GetOrder(ctx, "m", "o1"); err != nil || o.State != OrderPaid || !o.UpdatedAt.Equal(at(10)) {
				t.Fatalf("order after the payment: %+v, %v", o, err)
			}

			// An unknown order: the check sees nil.
			seen = &Order{}
			if _, err := s.RecordPayment(ctx, ev("evt_2", "m", "o-outside", at(11)), func(o *Order, _ *Event) (string, error) {
				seen = o
				return "", nil
			}); err != nil {
				t.Fatal(err)
			}
			if seen != nil {
				t.Fatalf("the check saw %+v for an order the ledger does not hold", seen)
			}

			// The check changes the event: stored as changed, and the
			// caller's event says so.
			if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: "o3", TotalFee: 1, CreatedAt: at(0)}); err != nil {
				t.Fatal(err)
			}
			e3 := ev("evt_3", "m", "o3", at(12))
			if _, err := s.RecordPayment(ctx, e3, func(o *Order, e *Event) (string, error) {
				e.Type, e.Payload = "payment.mismatch", []byte(`{"mismatch":true}`)
				return OrderMismatch, nil
			}); err != nil {
				t.Fatal(err)
			}
			got, _, err := s.GetEvent(ctx, "evt_3")
			if err != nil || got.Type != "payment.mismatch" || string(got.Payload) != `{"mismatch":true}` {
				t.Fatalf("stored %+v, %v", got, err)
			}
			if e3.Type != "payment.mismatch" || string(e3.Payload) != `{"mismatch":true}` {
				t.Fatalf("the caller's event is %s %s", e3.Type, e3.Payload)
			}
			if o, _ := s.GetOrder(ctx, "m", "o3"); o.State != OrderMismatch {
				t.Fatalf("order o3 state %s", o.State)
			}

			// A duplicate: checked, nothing changed.
			calls := 0
			created, err = s.RecordPayment(ctx, ev("evt_1", "m", "o1", at(20)), func(o *Order, _ *Event) (string, error) {
				calls++
				return OrderPayError, nil
			})
			if err != nil || created || calls != 1 {
				t.Fatalf("duplicate: created %v, err %v, %d checks", created, err, calls)
			}
			if o, _ := s.GetOrder(ctx, "m", "o1"); o.State != OrderPaid {
				t.Fatalf("a duplicate changed the order's state to %s", o.State)
			}

			// A check that fails: that call fails, its event is not
			// stored, the others of its batch are.
			var wg sync.WaitGroup
			errs := make([]error, 20)
			for i := range errs {
				wg.Go(func() {
					_, errs[i] = s.RecordPayment(ctx, ev(fmt.Sprintf("evt_c%02d", i), "m", fmt.Sprintf("c%02d", i), at(30)), func(*Order, *Event) (string, error) {
						if i == 7 {
							return "", errors.New("cannot marshal")
						}
						return "", nil
					})
				})
			}
			wg.Wait()
			for i, err := range errs {
				_, _, gerr := s.GetEvent(ctx, fmt.Sprintf("evt_c%02d", i))
				switch {
				case i == 7 && (err == nil || !errors.Is(gerr, ErrNotFound)):
					t.Errorf("failed check: RecordPayment err %v, event lookup %v", err, gerr)
				case i != 7 && (err != nil || gerr != nil):
					t.Errorf("event %d beside a failed check: %v, lookup %v", i, err, gerr)
				}
			}
		})
	}
}

// Without group commit RecordPayment runs on its caller's goroutine, where
// the order-key filter may be behind another process's orders: it must read
// the order from the database, never trust the filter's "absent".
func TestRecordPaymentSeesOtherWritersOrders(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	a := openAt(t, path, SQLiteOptions{DisableGroupCommit: true})
	b := openAt(t, path, SQLiteOptions{})
	for i := range 50 {
		// A fresh, complete filter in a (its committer caught up just now)…
		if err := a.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: fmt.Sprintf("a%02d", i), CreatedAt: at(0)}); err != nil {
			t.Fatal(err)
		}
		// …then b's order, which a's filter has not read.
		no := fmt.Sprintf("b%02d", i)
		if err := b.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: no, TotalFee: 5, CreatedAt: at(0)}); err != nil {
			t.Fatal(err)
		}
		var seen *Order
		if _, err := a.RecordPayment(ctx, ev("evt_"+no, "m", no, at(1)), func(o *Order, _ *Event) (string, error) {
			seen = o
			return OrderPaid, nil
		}); err != nil {
			t.Fatal(err)
		}
		if seen == nil || seen.TotalFee != 5 {
			t.Fatalf("payment %d: the check saw %+v, not b's order", i, seen)
		}
	}
}
