package wxpay

import (
	"context"
	"fmt"
)

// Trade states of an order, as /pay/orderquery reports them (trade_state).
const (
	TradeStateSuccess    = "SUCCESS"    // paid
	TradeStateRefund     = "REFUND"     // paid, then (partly) refunded
	TradeStateNotPay     = "NOTPAY"     // not paid yet
	TradeStateClosed     = "CLOSED"     // closed by the merchant or expired
	TradeStateRevoked    = "REVOKED"    // revoked (micropay)
	TradeStateUserPaying = "USERPAYING" // the payer is entering the password (micropay)
	TradeStatePayError   = "PAYERROR"   // the payment failed
)

// OrderQueryResponse is WeChat's answer to /pay/orderquery (查询订单).
type OrderQueryResponse struct {
	TradeState     string // one of the TradeState constants; WeChat may add others
	TradeStateDesc string
	TransactionID  string // WeChat's payment number, once paid
	OutTradeNo     string
	TradeType      string
	OpenID         string
	BankType       string
	Attach         string
	TimeEnd        string // yyyyMMddHHmmss, Beijing time, once paid
	TotalFee       int64  // fen; 0 when the answer carries none
	CashFee        int64  // fen; 0 when the answer carries none
	Raw            Params // the whole verified answer
}

// Paid reports whether the order has been paid: its state is SUCCESS, or
// REFUND (paid, then refunded in part or in full).
func (r *OrderQueryResponse) Paid() bool {
	return r.TradeState == TradeStateSuccess || r.TradeState == TradeStateRefund
}

// QueryOrder asks WeChat for the state of the order outTradeNo
// (/pay/orderquery). An order WeChat does not know is an *APIError with
// err_code ORDERNOTEXIST. The query is safe to repeat, so it fails over to
// FailoverEndpoint on a network error or an HTTP 5xx.
func (c *Client) QueryOrder(ctx context.Context, appID, outTradeNo string) (*OrderQueryResponse, error) {
	const op = "orderquery"
	if err := validateAppIDAndOrder(appID, outTradeNo); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, outTradeNo, err)
	}
	sr, err := c.signRequest(op, "/pay/orderquery", Params{{"appid", appID}, {"out_trade_no", outTradeNo}})
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
	if err := checkEcho(p, "out_trade_no", outTradeNo); err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	resp := &OrderQueryResponse{
		TradeState: p.Get("trade_state"), TradeStateDesc: p.Get("trade_state_desc"),
		TransactionID: p.Get("transaction_id"), OutTradeNo: outTradeNo,
		TradeType: p.Get("trade_type"), OpenID: p.Get("openid"), BankType: p.Get("bank_type"),
		Attach: p.Get("attach"), TimeEnd: p.Get("time_end"), Raw: p,
	}
	if resp.TradeState == "" {
		return nil, &ResponseError{Op: op, Err: fmt.Errorf("answer has no trade_state")}
	}
	if resp.Paid() {
		// A paid order is what money moves on: it must say how much.
		for _, f := range []string{"transaction_id", "total_fee"} {
			if p.Get(f) == "" {
				return nil, &ResponseError{Op: op, Err: fmt.Errorf("answer with trade_state %s has no %s", resp.TradeState, f)}
			}
		}
	}
	if resp.TotalFee, err = optionalAmount(p, "total_fee"); err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	if resp.CashFee, err = optionalAmount(p, "cash_fee"); err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	return resp, nil
}

// CloseOrder closes the unpaid order outTradeNo (/pay/closeorder), so that
// it can no longer be paid. WeChat refuses with an *APIError: ORDERPAID (pay
// or refund instead), ORDERCLOSED (already closed — what the caller wanted,
// and also what a repeated close answers), SYSTEMERROR (try again). Closing
// is safe to repeat, so it fails over to FailoverEndpoint on a network
// error or an HTTP 5xx.
func (c *Client) CloseOrder(ctx context.Context, appID, outTradeNo string) error {
	const op = "closeorder"
	if err := validateAppIDAndOrder(appID, outTradeNo); err != nil {
		return fmt.Errorf("%s %s: %w", op, outTradeNo, err)
	}
	sr, err := c.signRequest(op, "/pay/closeorder", Params{{"appid", appID}, {"out_trade_no", outTradeNo}})
	if err != nil {
		return err
	}
	p, err := c.exchange(ctx, c.httpClient(), sr, callClose)
	if err != nil {
		return err
	}
	if err := checkEcho(p, "appid", appID); err != nil {
		return &ResponseError{Op: op, Err: err}
	}
	return nil
}

func validateAppIDAndOrder(appID, outTradeNo string) error {
	if appID == "" {
		return fieldErrorf("app_id", "is required")
	}
	return ValidateOutTradeNo("out_trade_no", outTradeNo)
}

// checkEcho checks that an answer which repeats a field of the request
// repeats it unchanged: an answer about another order or app must not be
// taken for this one's.
func checkEcho(p Params, name, want string) error {
	if got := p.Get(name); got != "" && got != want {
		return fmt.Errorf("answer is for %s %q, not %q", name, got, want)
	}
	return nil
}

// optionalAmount parses the amount field name of an answer, 0 when absent.
func optionalAmount(p Params, name string) (int64, error) {
	v := p.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := parseAmount(v)
	if err != nil {
		return 0, fieldErrorf(name, "%v", err)
	}
	return n, nil
}

// presentAmount parses the amount field name of an answer: nil when absent
// or empty.
func presentAmount(p Params, name string) (*int64, error) {
	if p.Get(name) == "" {
		return nil, nil
	}
	n, err := parseAmount(p.Get(name))
	if err != nil {
		return nil, fieldErrorf(name, "%v", err)
	}
	return &n, nil
}

// requiredAmount parses the amount field name of an answer, which must be
// present.
func requiredAmount(p Params, name string) (int64, error) {
	n, err := parseAmount(p.Get(name))
	if err != nil {
		return 0, fieldErrorf(name, "%v", err)
	}
	return n, nil
}
