package wxpay

import (
	"context"
	"fmt"
	"strconv"
)

// Refund statuses, as /pay/refundquery (refund_status_$n) and refund
// notifications (refund_status) report them.
const (
	RefundStatusSuccess     = "SUCCESS"     // refunded
	RefundStatusRefundClose = "REFUNDCLOSE" // closed: the refund failed
	RefundStatusProcessing  = "PROCESSING"  // under way
	RefundStatusChange      = "CHANGE"      // the payer's card could not take it; handle it on the merchant platform
)

// Sources of a refund's money (refund_account).
const (
	RefundAccountUnsettled = "REFUND_SOURCE_UNSETTLED_FUNDS" // unsettled funds, WeChat's default
	RefundAccountRecharge  = "REFUND_SOURCE_RECHARGE_FUNDS"  // the balance the merchant topped up
)

// RefundRequest is a refund for /secapi/pay/refund (申请退款), in WeChat's
// own field names. mch_id, nonce_str, sign_type and sign are added by the
// Client.
type RefundRequest struct {
	AppID         string `json:"app_id"`
	OutTradeNo    string `json:"out_trade_no,omitempty"`   // the order, by the merchant's number…
	TransactionID string `json:"transaction_id,omitempty"` // …or by WeChat's; one of the two
	OutRefundNo   string `json:"out_refund_no"`            // the merchant's refund number: the same one never refunds twice
	TotalFee      int64  `json:"total_fee"`                // the order's amount, fen
	RefundFee     int64  `json:"refund_fee"`               // this refund's amount, fen
	RefundDesc    string `json:"refund_desc,omitempty"`    // shown to the payer
	NotifyURL     string `json:"notify_url,omitempty"`     // refund notification URL; the merchant platform's when empty
	RefundFeeType string `json:"refund_fee_type,omitempty"`
	RefundAccount string `json:"refund_account,omitempty"` // one of the RefundAccount constants
}

// Validate checks the request against WeChat's documented limits, so that a
// bad refund fails here with the name of the field instead of as a
// PARAM_ERROR from WeChat. The error is a *FieldError.
func (r *RefundRequest) Validate() error {
	if r.AppID == "" {
		return fieldErrorf("app_id", "is required")
	}
	if r.OutTradeNo == "" && r.TransactionID == "" {
		return fieldErrorf("out_trade_no", "or transaction_id is required")
	}
	if r.OutTradeNo != "" {
		if err := ValidateOutTradeNo("out_trade_no", r.OutTradeNo); err != nil {
			return err
		}
	}
	if r.TransactionID != "" {
		if err := validateTransactionID(r.TransactionID); err != nil {
			return err
		}
	}
	if err := ValidateOutRefundNo("out_refund_no", r.OutRefundNo); err != nil {
		return err
	}
	if r.TotalFee <= 0 {
		return fieldErrorf("total_fee", "must be a positive integer number of fen, got %d", r.TotalFee)
	}
	if r.RefundFee <= 0 {
		return fieldErrorf("refund_fee", "must be a positive integer number of fen, got %d", r.RefundFee)
	}
	if r.RefundFee > r.TotalFee {
		return fieldErrorf("refund_fee", "is %d fen, more than the order's total_fee %d", r.RefundFee, r.TotalFee)
	}
	if len(r.RefundDesc) > 80 {
		return fieldErrorf("refund_desc", "is %d bytes, WeChat allows 80", len(r.RefundDesc))
	}
	if r.NotifyURL != "" {
		if err := validateNotifyURL(r.NotifyURL); err != nil {
			return err
		}
	}
	if len(r.RefundFeeType) > 8 {
		return fieldErrorf("refund_fee_type", "is %d bytes, WeChat allows 8", len(r.RefundFeeType))
	}
	for i := 0; i < len(r.RefundFeeType); i++ {
		if c := r.RefundFeeType[i]; c < 'A' || c > 'Z' {
			return fieldErrorf("refund_fee_type", "must be a currency code such as CNY, got %q", r.RefundFeeType)
		}
	}
	switch r.RefundAccount {
	case "", RefundAccountUnsettled, RefundAccountRecharge:
	default:
		return fieldErrorf("refund_account", "must be %s or %s, got %q", RefundAccountUnsettled, RefundAccountRecharge, r.RefundAccount)
	}
	return nil
}

// ValidateOutRefundNo checks a merchant refund number: 1 to 64 of the
// characters WeChat allows ([0-9A-Za-z_-|*@]).
func ValidateOutRefundNo(field, v string) error {
	return validateMerchantNo(field, v, 64, "_-|*@")
}

// validateTransactionID checks WeChat's payment number: up to 32 letters and
// digits (28 digits in practice).
func validateTransactionID(v string) error {
	if len(v) > 32 {
		return fieldErrorf("transaction_id", "is %d characters, WeChat allows 32", len(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return fieldErrorf("transaction_id", "may hold only letters and digits")
		}
	}
	return nil
}

// Params returns the request as a v2 document (without the fields the
// Client adds).
func (r *RefundRequest) Params() Params {
	p := make(Params, 0, 12)
	p.SetNonEmpty("appid", r.AppID)
	p.SetNonEmpty("transaction_id", r.TransactionID)
	p.SetNonEmpty("out_trade_no", r.OutTradeNo)
	p.SetNonEmpty("out_refund_no", r.OutRefundNo)
	p.Set("total_fee", strconv.FormatInt(r.TotalFee, 10))
	p.Set("refund_fee", strconv.FormatInt(r.RefundFee, 10))
	p.SetNonEmpty("refund_fee_type", r.RefundFeeType)
	p.SetNonEmpty("refund_desc", r.RefundDesc)
	p.SetNonEmpty("refund_account", r.RefundAccount)
	p.SetNonEmpty("notify_url", r.NotifyURL)
	return p
}

// RefundResponse is WeChat's answer to a refund it accepted. Accepted is not
// done: the refund's outcome comes with the refund notification, or from
// QueryRefund.
type RefundResponse struct {
	RefundID      string // WeChat's refund number
	OutRefundNo   string
	TransactionID string
	OutTradeNo    string
	RefundFee     int64  // fen
	TotalFee      int64  // fen; 0 when the answer carries none
	CashFee       int64  // fen; 0 when the answer carries none
	Raw           Params // the whole verified answer
}

// Refund asks WeChat to refund (/secapi/pay/refund), over mutual TLS with
// the merchant's client certificate: Client.TLSHTTPClient must be set.
//
// A refund with the same out_refund_no is safe to repeat (WeChat refunds it
// once), so Refund fails over to FailoverEndpoint on a network error or an
// HTTP 5xx, and sends the same request once more when WeChat answers
// err_code SYSTEMERROR, as WeChat documents. After any other failure whose
// outcome is unknown (a timeout), call Refund again with the same
// out_refund_no and amounts, or QueryRefund; never with a new
// out_refund_no, which would refund again.
func (c *Client) Refund(ctx context.Context, r *RefundRequest) (*RefundResponse, error) {
	const op = "refund"
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, r.OutRefundNo, err)
	}
	hc, err := c.tlsHTTPClient(op)
	if err != nil {
		return nil, err
	}
	sr, err := c.signRequest(op, "/secapi/pay/refund", r.Params())
	if err != nil {
		return nil, err
	}
	p, err := c.exchange(ctx, hc, sr, callRefund)
	if err != nil {
		return nil, err
	}
	for _, e := range []struct{ name, want string }{
		{"appid", r.AppID}, {"out_refund_no", r.OutRefundNo},
		{"out_trade_no", r.OutTradeNo}, {"transaction_id", r.TransactionID},
	} {
		if e.want == "" {
			continue
		}
		if err := checkEcho(p, e.name, e.want); err != nil {
			return nil, &ResponseError{Op: op, Err: err}
		}
	}
	resp := &RefundResponse{
		RefundID: p.Get("refund_id"), OutRefundNo: r.OutRefundNo,
		TransactionID: p.Get("transaction_id"), OutTradeNo: p.Get("out_trade_no"), Raw: p,
	}
	if resp.RefundID == "" {
		return nil, &ResponseError{Op: op, Err: fmt.Errorf("answer has no refund_id")}
	}
	if resp.RefundFee, err = requiredAmount(p, "refund_fee"); err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	if resp.RefundFee != r.RefundFee {
		return nil, &ResponseError{Op: op, Err: fmt.Errorf("answer refunds %d fen, %d were asked for", resp.RefundFee, r.RefundFee)}
	}
	if resp.TotalFee, err = optionalAmount(p, "total_fee"); err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	if resp.CashFee, err = optionalAmount(p, "cash_fee"); err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	if resp.OutTradeNo == "" {
		resp.OutTradeNo = r.OutTradeNo
	}
	if resp.TransactionID == "" {
		resp.TransactionID = r.TransactionID
	}
	return resp, nil
}

// RefundQueryResponse is WeChat's answer to /pay/refundquery (查询退款).
type RefundQueryResponse struct {
	OutTradeNo    string
	TransactionID string
	TotalFee      int64 // the order's amount, fen
	// SettlementTotalFee is settlement_total_fee (fen): the order's amount
	// less non-cash coupons; nil when the answer has none.
	SettlementTotalFee *int64
	Refunds            []RefundStatus // the refunds of the answer, in WeChat's order
	Raw                Params         // the whole verified answer
}

// RefundStatus is one refund of a refundquery answer: the fields indexed
// _$n in WeChat's document.
type RefundStatus struct {
	OutRefundNo  string
	RefundID     string
	RefundStatus string // one of the RefundStatus constants
	SuccessTime  string // refund_success_time_$n, "yyyy-MM-dd HH:mm:ss" Beijing time, once refunded
	RecvAccount  string // refund_recv_accout_$n (WeChat's spelling): where the money went
	RefundFee    int64  // fen
	// RefundAccount is refund_account_$n: the funds the refund was paid
	// from (REFUND_SOURCE_UNSETTLED_FUNDS, REFUND_SOURCE_RECHARGE_FUNDS).
	RefundAccount string
	// SettlementRefundFee is settlement_refund_fee_$n (fen): the refund
	// less non-cash coupons; nil when the answer has none.
	SettlementRefundFee *int64
}

// QueryRefund asks WeChat for the state of the refund outRefundNo
// (/pay/refundquery). A refund WeChat does not know is an *APIError with
// err_code REFUNDNOTEXIST. The query is safe to repeat, so it fails over to
// FailoverEndpoint on a network error or an HTTP 5xx.
func (c *Client) QueryRefund(ctx context.Context, appID, outRefundNo string) (*RefundQueryResponse, error) {
	const op = "refundquery"
	if appID == "" {
		return nil, fmt.Errorf("%s %s: %w", op, outRefundNo, fieldErrorf("app_id", "is required"))
	}
	if err := ValidateOutRefundNo("out_refund_no", outRefundNo); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, outRefundNo, err)
	}
	sr, err := c.signRequest(op, "/pay/refundquery", Params{{"appid", appID}, {"out_refund_no", outRefundNo}})
	if err != nil {
		return nil, err
	}
	p, err := c.exchange(ctx, c.httpClient(), sr, callRepeatable)
	if err != nil {
		return nil, err
	}
	if err := checkEcho(p, "appid", appID); err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	resp, err := parseRefundQuery(p)
	if err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	for _, rs := range resp.Refunds {
		if rs.OutRefundNo == outRefundNo {
			return resp, nil
		}
	}
	return nil, &ResponseError{Op: op, Err: fmt.Errorf("answer does not list out_refund_no %q", outRefundNo)}
}

// parseRefundQuery reads the refunds of a refundquery answer.
func parseRefundQuery(p Params) (*RefundQueryResponse, error) {
	resp := &RefundQueryResponse{OutTradeNo: p.Get("out_trade_no"), TransactionID: p.Get("transaction_id"), Raw: p}
	var err error
	if resp.TotalFee, err = optionalAmount(p, "total_fee"); err != nil {
		return nil, err
	}
	if resp.SettlementTotalFee, err = presentAmount(p, "settlement_total_fee"); err != nil {
		return nil, err
	}
	count, err := parseAmount(p.Get("refund_count"))
	if err != nil {
		return nil, fieldErrorf("refund_count", "%v", err)
	}
	// Each refund takes at least four fields of a document of MaxFields.
	if count > MaxFields/4 {
		return nil, fieldErrorf("refund_count", "is %d, more than a document can carry", count)
	}
	resp.Refunds = make([]RefundStatus, count)
	for i := range resp.Refunds {
		n := "_" + strconv.Itoa(i)
		rs := RefundStatus{
			OutRefundNo: p.Get("out_refund_no" + n), RefundID: p.Get("refund_id" + n),
			RefundStatus: p.Get("refund_status" + n), SuccessTime: p.Get("refund_success_time" + n),
			RecvAccount: p.Get("refund_recv_accout" + n), RefundAccount: p.Get("refund_account" + n),
		}
		for _, f := range []struct{ name, value string }{
			{"out_refund_no", rs.OutRefundNo}, {"refund_id", rs.RefundID}, {"refund_status", rs.RefundStatus},
		} {
			if f.value == "" {
				return nil, fieldErrorf(f.name+n, "is missing")
			}
		}
		if rs.RefundFee, err = requiredAmount(p, "refund_fee"+n); err != nil {
			return nil, err
		}
		if rs.SettlementRefundFee, err = presentAmount(p, "settlement_refund_fee"+n); err != nil {
			return nil, err
		}
		resp.Refunds[i] = rs
	}
	return resp, nil
}
