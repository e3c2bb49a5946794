package ledger

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestOrderChecks(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		put := func(no string, next time.Time, state string) {
			t.Helper()
			if err := s.PutOrder(ctx, &Order{MchID: "m", OutTradeNo: no, TotalFee: 1, State: state, NextCheckAt: next, CreatedAt: at(0)}); err != nil {
				t.Fatal(err)
			}
		}
		put("late", at(30), OrderNotPay)
		put("early", at(10), OrderNotPay)
		put("never", time.Time{}, OrderNotPay)
		put("paid", at(5), OrderPaid)
		due, err := s.OrdersToCheck(ctx, at(20), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) != 1 || due[0].OutTradeNo != "early" || !due[0].NextCheckAt.Equal(at(10)) {
			t.Fatalf("due at 20: %+v", due)
		}
		if err := s.ScheduleCheck(ctx, "m", "early", at(40), 1); err != nil {
			t.Fatal(err)
		}
		due, _ = s.OrdersToCheck(ctx, at(50), 10)
		if len(due) != 2 || due[0].OutTradeNo != "late" || due[1].OutTradeNo != "early" || due[1].Checks != 1 {
			t.Fatalf("due at 50: %+v", due)
		}
		if err := s.ScheduleCheck(ctx, "m", "late", time.Time{}, 3); err != nil {
			t.Fatal(err)
		}
		due, _ = s.OrdersToCheck(ctx, at(50), 1)
		if len(due) != 1 || due[0].OutTradeNo != "early" {
			t.Fatalf("after unscheduling, limit 1: %+v", due)
		}
		if err := s.ScheduleCheck(ctx, "m", "nope", at(1), 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown order: %v", err)
		}
		o, err := s.GetOrder(ctx, "m", "late")
		if err != nil || o.Checks != 3 || !o.NextCheckAt.IsZero() {
			t.Fatalf("GetOrder after ScheduleCheck: %+v %v", o, err)
		}
	})
}

func TestRefunds(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		r := &Refund{MchID: "m", OutRefundNo: "r1", OutTradeNo: "o1", TotalFee: 100, RefundFee: 40, CreatedAt: at(0)}
		if err := s.PutRefund(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRefund(ctx, &Refund{MchID: "m", OutRefundNo: "r1", TotalFee: 1, RefundFee: 1}); !errors.Is(err, ErrExists) {
			t.Fatalf("second put: %v", err)
		}
		got, err := s.GetRefund(ctx, "m", "r1")
		if err != nil || got.State != RefundProcessing || got.RefundFee != 40 || got.OutTradeNo != "o1" {
			t.Fatalf("get: %+v %v", got, err)
		}
		if err := s.SetRefundState(ctx, "m", "r1", RefundSuccess, "5000001", at(5)); err != nil {
			t.Fatal(err)
		}
		// SUCCESS is final: the same again, or a state behind it, changes
		// nothing and is no error.
		for _, st := range []string{RefundSuccess, RefundProcessing, RefundChange, RefundUnknown} {
			if err := s.SetRefundState(ctx, "m", "r1", st, "", at(6)); err != nil {
				t.Fatal(err)
			}
		}
		got, _ = s.GetRefund(ctx, "m", "r1")
		if got.State != RefundSuccess || got.RefundID != "5000001" || !got.UpdatedAt.Equal(at(5)) {
			t.Fatalf("after state changes: %+v", got)
		}
		if err := s.SetRefundState(ctx, "m", "r-absent", RefundSuccess, "", at(6)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an absent refund: %v", err)
		}
		if _, err := s.GetRefund(ctx, "m", "r2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown refund: %v", err)
		}
		if err := s.SetRefundState(ctx, "m", "r2", RefundSuccess, "", at(1)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown refund state: %v", err)
		}
	})
}

// RefundsToSettle: the refunds whose outcome is unknown, asked for by a
// time, and those under way, last updated by another, least recently
// updated first; final ones never.
func TestRefundsToSettle(t *testing.T) {
	forEachEngine(t, func(t *testing.T) {
		ctx := context.Background()
		s := openTest(t)
		put := func(no, state string, created, updated time.Time) {
			t.Helper()
			if err := s.PutRefund(ctx, &Refund{MchID: "m", OutRefundNo: no, TotalFee: 100, RefundFee: 10, State: RefundUnknown, CreatedAt: created}); err != nil {
				t.Fatal(err)
			}
			if state != RefundUnknown {
				if err := s.SetRefundState(ctx, "m", no, state, "50"+no, updated); err != nil {
					t.Fatal(err)
				}
			}
		}
		put("unknown-old", RefundUnknown, at(1), at(1))
		put("unknown-new", RefundUnknown, at(50), at(50))
		put("processing-old", RefundProcessing, at(0), at(3))
		put("processing-new", RefundProcessing, at(0), at(40))
		put("success", RefundSuccess, at(0), at(2))
		put("change", RefundChange, at(0), at(2))
		got, err := s.RefundsToSettle(ctx, at(10), at(20), 10)
		if err != nil {
			t.Fatal(err)
		}
		var nos []string
		for _, r := range got {
			nos = append(nos, r.OutRefundNo)
		}
		if want := []string{"unknown-old", "processing-old"}; !slices.Equal(nos, want) {
			t.Fatalf("refunds to settle %v, want %v", nos, want)
		}
		if got, err := s.RefundsToSettle(ctx, at(100), at(100), 1); err != nil || len(got) != 1 || got[0].OutRefundNo != "unknown-old" {
			t.Fatalf("limit 1: %v, %v", got, err)
		}
	})
}

// A ledger written by the first schema opens with the second, its data kept.
func TestMigrationFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	d := sqliteDialect()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := openSQLitePool(ctx, path, syncNormal, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate(ctx, db, d, migrations()[:1], time.Now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO orders (mch_id, out_trade_no, state, created_at, expires_at, updated_at) VALUES ('m', 'old', 'NOTPAY', 1, 2, 3)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openAt(t, path, SQLiteOptions{})
	o, err := s.GetOrder(ctx, "m", "old")
	if err != nil || !o.NextCheckAt.IsZero() || o.Checks != 0 {
		t.Fatalf("the version 1 order after migrating: %+v %v", o, err)
	}
}
