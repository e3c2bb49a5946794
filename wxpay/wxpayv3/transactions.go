package wxpayv3

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// The trade types of Prepay (the last segment of its path).
const (
	TradeTypeJSAPI  = "jsapi"  // mini programs and official accounts; needs Payer
	TradeTypeNative = "native" // a QR code; the answer has CodeURL
	TradeTypeApp    = "app"    // native apps
	TradeTypeH5     = "h5"     // mobile browsers outside WeChat; needs SceneInfo.H5Info; the answer has H5URL
)

// The trade_state of a Transaction.
const (
	TradeStateSuccess    = "SUCCESS"    // paid
	TradeStateRefund     = "REFUND"     // paid, then (partly) refunded
	TradeStateNotPay     = "NOTPAY"     // not paid (yet)
	TradeStateClosed     = "CLOSED"     // closed; can no longer be paid
	TradeStateRevoked    = "REVOKED"    // revoked (micropay)
	TradeStateUserPaying = "USERPAYING" // the user is entering a password
	TradeStatePayError   = "PAYERROR"   // payment failed
)

// Amount is the amount of an order, in fen (分).
type Amount struct {
	Total         int64  `json:"total"`
	Currency      string `json:"currency,omitempty"` // "CNY" (WeChat's default when empty)
	PayerTotal    int64  `json:"payer_total,omitempty"`
	PayerCurrency string `json:"payer_currency,omitempty"`
}

// Payer is the user who pays.
type Payer struct {
	OpenID string `json:"openid"` // the user's openid under the order's appid
}

// SceneInfo describes where the payment happens.
type SceneInfo struct {
	PayerClientIP string  `json:"payer_client_ip"` // the user's IP address; required for H5
	DeviceID      string  `json:"device_id,omitempty"`
	H5Info        *H5Info `json:"h5_info,omitempty"`
}

// H5Info describes the page of an H5 payment.
type H5Info struct {
	Type        string `json:"type"` // "Wap", "iOS" or "Android"
	AppName     string `json:"app_name,omitempty"`
	AppURL      string `json:"app_url,omitempty"`
	BundleID    string `json:"bundle_id,omitempty"`
	PackageName string `json:"package_name,omitempty"`
}

// PrepayRequest is the body of a prepay (下单) call.
type PrepayRequest struct {
	AppID       string          `json:"appid"`
	MchID       string          `json:"mchid"` // the client's MchID when empty
	Description string          `json:"description"`
	OutTradeNo  string          `json:"out_trade_no"`
	TimeExpire  string          `json:"time_expire,omitempty"` // RFC 3339
	Attach      string          `json:"attach,omitempty"`
	NotifyURL   string          `json:"notify_url"`
	GoodsTag    string          `json:"goods_tag,omitempty"`
	Amount      Amount          `json:"amount"`
	Payer       *Payer          `json:"payer,omitempty"`  // JSAPI
	Detail      json.RawMessage `json:"detail,omitempty"` // passed as given
	SceneInfo   *SceneInfo      `json:"scene_info,omitempty"`
}

// PrepayResponse is the answer of a prepay call: one of its fields is set,
// by trade type.
type PrepayResponse struct {
	PrepayID string `json:"prepay_id"` // jsapi, app: valid 2 hours
	CodeURL  string `json:"code_url"`  // native
	H5URL    string `json:"h5_url"`    // h5
}

// Prepay places an order: POST /v3/pay/transactions/{tradeType}, tradeType
// one of "jsapi", "native", "app", "h5". It checks the fields WeChat
// requires before sending, and that the answer carries what the trade type
// needs (PrepayID, CodeURL or H5URL). Errors name the out_trade_no.
func (c *Client) Prepay(ctx context.Context, tradeType string, r *PrepayRequest) (*PrepayResponse, error) {
	if r == nil {
		return nil, fmt.Errorf("prepay: no request")
	}
	req := *r
	if req.MchID == "" {
		req.MchID = c.mchID()
	}
	if err := checkPrepay(tradeType, &req); err != nil {
		return nil, fmt.Errorf("prepay %s: %w", r.OutTradeNo, err)
	}
	var resp PrepayResponse
	path := "/v3/pay/transactions/" + tradeType
	status, err := c.do(ctx, http.MethodPost, path, nil, &req, &resp, false)
	if err != nil {
		return nil, fmt.Errorf("prepay %s: %w", r.OutTradeNo, err)
	}
	var missing string
	switch tradeType {
	case TradeTypeJSAPI, TradeTypeApp:
		if resp.PrepayID == "" {
			missing = "prepay_id"
		}
	case TradeTypeNative:
		if resp.CodeURL == "" {
			missing = "code_url"
		}
	case TradeTypeH5:
		if resp.H5URL == "" {
			missing = "h5_url"
		}
	}
	if missing != "" {
		return nil, fmt.Errorf("prepay %s: %w", r.OutTradeNo,
			&ResponseError{Op: http.MethodPost + " " + path, Status: status, Err: fieldErrorf(missing, "is missing")})
	}
	return &resp, nil
}

func checkPrepay(tradeType string, r *PrepayRequest) error {
	switch tradeType {
	case TradeTypeJSAPI, TradeTypeNative, TradeTypeApp, TradeTypeH5:
	default:
		return fmt.Errorf("unknown trade type %s (want jsapi, native, app or h5)", quoteShort(tradeType))
	}
	for _, f := range []struct{ name, value string }{
		{"appid", r.AppID}, {"mchid", r.MchID}, {"description", r.Description},
		{"out_trade_no", r.OutTradeNo}, {"notify_url", r.NotifyURL},
	} {
		if f.value == "" {
			return fieldErrorf(f.name, "is missing")
		}
	}
	if r.Amount.Total <= 0 {
		return fieldErrorf("amount.total", "is %d fen, must be positive", r.Amount.Total)
	}
	switch tradeType {
	case TradeTypeJSAPI:
		if r.Payer == nil || r.Payer.OpenID == "" {
			return fieldErrorf("payer.openid", "is required for jsapi")
		}
	case TradeTypeH5:
		if r.SceneInfo == nil || r.SceneInfo.PayerClientIP == "" {
			return fieldErrorf("scene_info.payer_client_ip", "is required for h5")
		}
		if r.SceneInfo.H5Info == nil || r.SceneInfo.H5Info.Type == "" {
			return fieldErrorf("scene_info.h5_info.type", "is required for h5")
		}
	}
	return nil
}

// Transaction is an order as WeChat reports it: the answer of a query, or
// the resource of a TRANSACTION.SUCCESS notification.
type Transaction struct {
	AppID           string          `json:"appid"`
	MchID           string          `json:"mchid"`
	OutTradeNo      string          `json:"out_trade_no"`
	TransactionID   string          `json:"transaction_id"` // WeChat's number; empty until paid
	TradeType       string          `json:"trade_type"`     // JSAPI, NATIVE, APP, MWEB…
	TradeState      string          `json:"trade_state"`    // see TradeStateSuccess…
	TradeStateDesc  string          `json:"trade_state_desc"`
	BankType        string          `json:"bank_type"`
	Attach          string          `json:"attach"`
	SuccessTime     string          `json:"success_time"` // RFC 3339, when paid
	Payer           *Payer          `json:"payer,omitempty"`
	Amount          *Amount         `json:"amount,omitempty"`
	SceneInfo       *SceneInfo      `json:"scene_info,omitempty"`
	PromotionDetail json.RawMessage `json:"promotion_detail,omitempty"`
	// Raw is the exact JSON the transaction was decoded from, fields this
	// type does not know included.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes a transaction and keeps a copy of b in Raw.
func (t *Transaction) UnmarshalJSON(b []byte) error {
	type plain Transaction
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	p.Raw = append(json.RawMessage(nil), b...)
	*t = Transaction(p)
	return nil
}

// QueryByOutTradeNo queries an order by the merchant's number:
// GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…. An answer
// about another order or merchant is a *ResponseError.
func (c *Client) QueryByOutTradeNo(ctx context.Context, outTradeNo string) (*Transaction, error) {
	if outTradeNo == "" {
		return nil, fmt.Errorf("query order: %w", fieldErrorf("out_trade_no", "is missing"))
	}
	path := "/v3/pay/transactions/out-trade-no/" + url.PathEscape(outTradeNo)
	t, status, err := c.queryTransaction(ctx, path)
	if err == nil && t.OutTradeNo != outTradeNo {
		err = &ResponseError{Op: "GET " + path, Status: status, Err: fmt.Errorf("answer is about out_trade_no %s", quoteShort(t.OutTradeNo))}
	}
	if err != nil {
		return nil, fmt.Errorf("query order %s: %w", outTradeNo, err)
	}
	return t, nil
}

// QueryByTransactionID queries an order by WeChat's number:
// GET /v3/pay/transactions/id/{transaction_id}?mchid=…. An answer about
// another order or merchant is a *ResponseError.
func (c *Client) QueryByTransactionID(ctx context.Context, transactionID string) (*Transaction, error) {
	if transactionID == "" {
		return nil, fmt.Errorf("query transaction: %w", fieldErrorf("transaction_id", "is missing"))
	}
	path := "/v3/pay/transactions/id/" + url.PathEscape(transactionID)
	t, status, err := c.queryTransaction(ctx, path)
	if err == nil && t.TransactionID != transactionID {
		err = &ResponseError{Op: "GET " + path, Status: status, Err: fmt.Errorf("answer is about transaction_id %s", quoteShort(t.TransactionID))}
	}
	if err != nil {
		return nil, fmt.Errorf("query transaction %s: %w", transactionID, err)
	}
	return t, nil
}

func (c *Client) queryTransaction(ctx context.Context, path string) (*Transaction, int, error) {
	var t Transaction
	status, err := c.do(ctx, http.MethodGet, path, url.Values{"mchid": {c.mchID()}}, nil, &t, true)
	if err != nil {
		return nil, status, err
	}
	if t.Raw == nil {
		return nil, status, &ResponseError{Op: "GET " + path, Status: status, Err: fmt.Errorf("answer has no body")}
	}
	if t.MchID != "" && t.MchID != c.mchID() {
		return nil, status, &ResponseError{Op: "GET " + path, Status: status, Err: fmt.Errorf("answer is for mchid %s, not %s", quoteShort(t.MchID), c.mchID())}
	}
	return &t, status, nil
}

// Close closes an unpaid order so that it can no longer be paid:
// POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close with
// {"mchid":…}. WeChat answers 204 with no body. Its other success status,
// "202 USER_PAYING" (the payer is entering the password: the order is not
// closed and may still be paid; WeChat advises querying it after 5 s), is
// an *APIError with Code USER_PAYING.
func (c *Client) Close(ctx context.Context, outTradeNo string) error {
	if outTradeNo == "" {
		return fmt.Errorf("close order: %w", fieldErrorf("out_trade_no", "is missing"))
	}
	path := "/v3/pay/transactions/out-trade-no/" + url.PathEscape(outTradeNo) + "/close"
	body := struct {
		MchID string `json:"mchid"`
	}{c.mchID()}
	status, err := c.do(ctx, http.MethodPost, path, nil, &body, nil, true)
	if err != nil {
		return fmt.Errorf("close order %s: %w", outTradeNo, err)
	}
	if status == http.StatusAccepted {
		return fmt.Errorf("close order %s: %w", outTradeNo,
			&APIError{Op: http.MethodPost + " " + path, Status: status, Code: CodeUserPaying, Message: "用户支付中，需要输入密码 (the payer is paying: not closed)"})
	}
	return nil
}

// CodeUserPaying is the code of WeChat's "202 USER_PAYING" answer to a
// close: the payer is paying; the order is not closed.
const CodeUserPaying = "USER_PAYING"
