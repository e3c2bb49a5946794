package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Refund states, as WeChat names them.
const (
	RefundProcessing = "PROCESSING"
	RefundSuccess    = "SUCCESS"
	RefundChange     = "CHANGE"      // the money could not reach the user's account
	RefundClosed     = "REFUNDCLOSE" // the refund was closed
	// RefundUnknown: asked of WeChat, whose answer did not say whether it
	// took the refund (none came in time, or it failed verification). Its
	// notification, confirmed by a query, settles it.
	RefundUnknown = "UNKNOWN"
)

// Refund is a refund the gateway asked WeChat for.
type Refund struct {
	MchID         string
	OutRefundNo   string
	OutTradeNo    string
	TransactionID string
	RefundID      string // WeChat's, once known
	TotalFee      int64
	RefundFee     int64
	State         string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// ---- order checks (reconciliation) ----

// OrdersToCheck returns up to limit unpaid orders (NOTPAY) whose next check
// is due at now, earliest first.
func (s *sqlStore) OrdersToCheck(ctx context.Context, now time.Time, limit int) ([]*Order, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: orders to check: %w", err)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	ctx, cancel := s.e.bound(ctx)
	defer cancel()
	rows, err := s.e.reader().QueryContext(ctx, s.d.rebind(qOrdersToCheck), toNs(now), limit)
	if err != nil {
		return nil, fmt.Errorf("ledger: orders to check: %w", err)
	}
	defer rows.Close()
	var out []*Order
	for rows.Next() {
		var o Order
		var created, expires, updated, next int64
		if err := rows.Scan(&o.MchID, &o.OutTradeNo, &o.AppID, &o.TradeType, &o.TotalFee, &o.ContentHash, &o.PrepayID,
			&o.CodeURL, &o.MWebURL, &o.State, &created, &expires, &updated, &next, &o.Checks); err != nil {
			return nil, fmt.Errorf("ledger: orders to check: %w", err)
		}
		o.CreatedAt, o.ExpiresAt, o.UpdatedAt, o.NextCheckAt = fromNs(created), fromNs(expires), fromNs(updated), fromNs(next)
		out = append(out, &o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: orders to check: %w", err)
	}
	return out, nil
}

// ScheduleCheck sets when an order is next checked (the zero time: never
// again) and how many checks it has had.
func (s *sqlStore) ScheduleCheck(ctx context.Context, mchID, outTradeNo string, next time.Time, checks int) error {
	err := s.checkOpen()
	if err == nil {
		var res sql.Result
		res, err = s.e.exec(ctx, s.d.rebind(qScheduleCheck), toNs(next), checks, mchID, outTradeNo)
		if err == nil {
			err = oneRow(res, ErrNotFound)
		}
	}
	if err != nil {
		return fmt.Errorf("ledger: schedule check of %s/%s: %w", mchID, outTradeNo, err)
	}
	return nil
}

// ---- refunds ----

// PutRefund records a refund; ErrExists (wrapped) when its out_refund_no is
// recorded already.
func (s *sqlStore) PutRefund(ctx context.Context, r *Refund) error {
	if r == nil || r.MchID == "" || r.OutRefundNo == "" {
		return errors.New("ledger: put refund: mch_id and out_refund_no are required")
	}
	if r.State == "" {
		r.State = RefundProcessing
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now().UTC()
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}
	err := s.checkOpen()
	if err == nil {
		var res sql.Result
		res, err = s.e.exec(ctx, s.d.rebind(qPutRefundHead+s.d.insertIgnore("mch_id, out_refund_no")),
			r.MchID, r.OutRefundNo, r.OutTradeNo, r.TransactionID, r.RefundID, r.TotalFee, r.RefundFee, r.State, toNs(r.CreatedAt), toNs(r.UpdatedAt))
		if err == nil {
			err = oneRow(res, ErrExists)
		}
	}
	if err != nil {
		return fmt.Errorf("ledger: put refund %s/%s: %w", r.MchID, r.OutRefundNo, err)
	}
	return nil
}

// ForgetRefund removes a refund recorded before WeChat was asked for it,
// when WeChat refused it: only while its state is UNKNOWN and it has no
// refund_id. Removing nothing is no error.
func (s *sqlStore) ForgetRefund(ctx context.Context, mchID, outRefundNo string) error {
	err := s.checkOpen()
	if err == nil {
		_, err = s.e.exec(ctx, s.d.rebind(qForgetRefund), mchID, outRefundNo)
	}
	if err != nil {
		return fmt.Errorf("ledger: forget refund %s/%s: %w", mchID, outRefundNo, err)
	}
	return nil
}

// RefundsToSettle returns up to limit refunds whose outcome is unknown
// (state UNKNOWN), asked for at or before before, and refunds under way
// (PROCESSING) last updated at or before processingBefore, least recently
// updated first.
func (s *sqlStore) RefundsToSettle(ctx context.Context, before, processingBefore time.Time, limit int) ([]*Refund, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: refunds to settle: %w", err)
	}
	ctx, cancel := s.e.bound(ctx)
	defer cancel()
	rows, err := s.e.reader().QueryContext(ctx, s.d.rebind(qRefundsToSettle), toNs(before), toNs(processingBefore), limit)
	if err != nil {
		return nil, fmt.Errorf("ledger: refunds to settle: %w", err)
	}
	defer rows.Close()
	var out []*Refund
	for rows.Next() {
		r, err := scanRefund(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger: refunds to settle: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: refunds to settle: %w", err)
	}
	return out, nil
}

// GetRefund returns a recorded refund; ErrNotFound (wrapped) when absent.
func (s *sqlStore) GetRefund(ctx context.Context, mchID, outRefundNo string) (*Refund, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: get refund %s/%s: %w", mchID, outRefundNo, err)
	}
	ctx, cancel := s.e.bound(ctx)
	defer cancel()
	r, err := scanRefund(s.e.reader().QueryRowContext(ctx, s.d.rebind(qGetRefund), mchID, outRefundNo))
	if err != nil {
		return nil, fmt.Errorf("ledger: get refund %s/%s: %w", mchID, outRefundNo, err)
	}
	return r, nil
}

// scanRefund reads a refund (ErrNotFound if r has no row).
func scanRefund(r rowScanner) (*Refund, error) {
	var rf Refund
	var created, updated int64
	err := r.Scan(&rf.MchID, &rf.OutRefundNo, &rf.OutTradeNo, &rf.TransactionID, &rf.RefundID, &rf.TotalFee, &rf.RefundFee, &rf.State, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	rf.CreatedAt, rf.UpdatedAt = fromNs(created), fromNs(updated)
	return &rf, nil
}

// SetRefundState updates a refund's state, and its refund_id when given,
// if that moves it forward (a change backwards is not made, and is no
// error).
func (s *sqlStore) SetRefundState(ctx context.Context, mchID, outRefundNo, state, refundID string, now time.Time) error {
	if now.IsZero() {
		now = s.now().UTC()
	}
	err := s.checkOpen()
	if err == nil {
		var res sql.Result
		res, err = s.e.exec(ctx, s.d.rebind(qSetRefundState),
			state, toNs(now), refundID, refundID, mchID, outRefundNo, state)
		if err == nil {
			if err = oneRow(res, ErrNotFound); err == ErrNotFound {
				// Not moved, or absent.
				_, err = s.GetRefund(ctx, mchID, outRefundNo)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("ledger: set refund %s/%s state %s: %w", mchID, outRefundNo, state, err)
	}
	return nil
}
