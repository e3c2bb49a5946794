package wxpayv3

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// The status of a refund (status in answers, refund_status in
// notifications).
const (
	RefundStatusSuccess    = "SUCCESS"    // the money went back
	RefundStatusClosed     = "CLOSED"     // closed
	RefundStatusProcessing = "PROCESSING" // under way
	RefundStatusAbnormal   = "ABNORMAL"   // failed (e.g. the card was closed); not final: handle it on the merchant platform
)

// RefundAmount is the amount of a refund, in fen.
type RefundAmount struct {
	Refund      int64  `json:"refund"`   // the refund
	Total       int64  `json:"total"`    // the original order's total
	Currency    string `json:"currency"` // "CNY"
	PayerTotal  int64  `json:"payer_total,omitempty"`
	PayerRefund int64  `json:"payer_refund,omitempty"`
	// The amounts less non-cash coupons; nil when the answer has none.
	SettlementRefund *int64 `json:"settlement_refund,omitempty"`
	SettlementTotal  *int64 `json:"settlement_total,omitempty"`
	DiscountRefund   int64  `json:"discount_refund,omitempty"`
}

// RefundRequest is the body of a refund call. One of TransactionID and
// OutTradeNo names the order.
type RefundRequest struct {
	TransactionID string       `json:"transaction_id,omitempty"`
	OutTradeNo    string       `json:"out_trade_no,omitempty"`
	OutRefundNo   string       `json:"out_refund_no"`
	Reason        string       `json:"reason,omitempty"`
	NotifyURL     string       `json:"notify_url,omitempty"`
	FundsAccount  string       `json:"funds_account,omitempty"` // e.g. AVAILABLE
	Amount        RefundAmount `json:"amount"`                  // Refund, Total, Currency ("CNY" when empty)
}

// Refund is a refund as WeChat reports it.
type Refund struct {
	RefundID            string       `json:"refund_id"`
	OutRefundNo         string       `json:"out_refund_no"`
	TransactionID       string       `json:"transaction_id"`
	OutTradeNo          string       `json:"out_trade_no"`
	Channel             string       `json:"channel"` // ORIGINAL, BALANCE…
	UserReceivedAccount string       `json:"user_received_account"`
	SuccessTime         string       `json:"success_time"`
	CreateTime          string       `json:"create_time"`
	Status              string       `json:"status"` // see RefundStatusSuccess…
	FundsAccount        string       `json:"funds_account"`
	Amount              RefundAmount `json:"amount"`
	// Raw is the exact JSON the refund was decoded from.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes a refund and keeps a copy of b in Raw.
func (r *Refund) UnmarshalJSON(b []byte) error {
	type plain Refund
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	p.Raw = append(json.RawMessage(nil), b...)
	*r = Refund(p)
	return nil
}

// RefundNotice is the resource of a REFUND.* notification.
type RefundNotice struct {
	MchID               string       `json:"mchid"`
	OutTradeNo          string       `json:"out_trade_no"`
	TransactionID       string       `json:"transaction_id"`
	OutRefundNo         string       `json:"out_refund_no"`
	RefundID            string       `json:"refund_id"`
	RefundStatus        string       `json:"refund_status"` // SUCCESS, CLOSED, ABNORMAL
	SuccessTime         string       `json:"success_time"`
	UserReceivedAccount string       `json:"user_received_account"`
	Amount              RefundAmount `json:"amount"`
	// Raw is the exact JSON the notice was decoded from.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes a refund notice and keeps a copy of b in Raw.
func (n *RefundNotice) UnmarshalJSON(b []byte) error {
	type plain RefundNotice
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	p.Raw = append(json.RawMessage(nil), b...)
	*n = RefundNotice(p)
	return nil
}

// Refund asks for a refund: POST /v3/refund/domestic/refunds. Sending the
// same out_refund_no again is safe: WeChat refunds once. The answer's
// Status is usually PROCESSING; the outcome comes by notification or
// QueryRefund. Errors name the out_refund_no.
func (c *Client) Refund(ctx context.Context, r *RefundRequest) (*Refund, error) {
	if r == nil {
		return nil, fmt.Errorf("refund: no request")
	}
	req := *r
	if req.Amount.Currency == "" {
		req.Amount.Currency = "CNY"
	}
	if err := checkRefund(&req); err != nil {
		return nil, fmt.Errorf("refund %s: %w", r.OutRefundNo, err)
	}
	const path = "/v3/refund/domestic/refunds"
	var out Refund
	status, err := c.do(ctx, http.MethodPost, path, nil, &req, &out, true)
	if err == nil && out.OutRefundNo != req.OutRefundNo {
		err = &ResponseError{Op: http.MethodPost + " " + path, Status: status, Err: fmt.Errorf("answer is about out_refund_no %s", quoteShort(out.OutRefundNo))}
	}
	if err != nil {
		return nil, fmt.Errorf("refund %s: %w", r.OutRefundNo, err)
	}
	return &out, nil
}

func checkRefund(r *RefundRequest) error {
	if r.OutRefundNo == "" {
		return fieldErrorf("out_refund_no", "is missing")
	}
	if r.TransactionID == "" && r.OutTradeNo == "" {
		return fieldErrorf("out_trade_no", "is missing, and so is transaction_id: one names the order")
	}
	if r.Amount.Refund <= 0 {
		return fieldErrorf("amount.refund", "is %d fen, must be positive", r.Amount.Refund)
	}
	if r.Amount.Total < r.Amount.Refund {
		return fieldErrorf("amount.total", "is %d fen, less than the refund of %d", r.Amount.Total, r.Amount.Refund)
	}
	return nil
}

// QueryRefund queries a refund by the merchant's refund number:
// GET /v3/refund/domestic/refunds/{out_refund_no}.
func (c *Client) QueryRefund(ctx context.Context, outRefundNo string) (*Refund, error) {
	if outRefundNo == "" {
		return nil, fmt.Errorf("query refund: %w", fieldErrorf("out_refund_no", "is missing"))
	}
	path := "/v3/refund/domestic/refunds/" + url.PathEscape(outRefundNo)
	var out Refund
	status, err := c.do(ctx, http.MethodGet, path, nil, nil, &out, true)
	if err == nil && out.OutRefundNo != outRefundNo {
		err = &ResponseError{Op: http.MethodGet + " " + path, Status: status, Err: fmt.Errorf("answer is about out_refund_no %s", quoteShort(out.OutRefundNo))}
	}
	if err != nil {
		return nil, fmt.Errorf("query refund %s: %w", outRefundNo, err)
	}
	return &out, nil
}
