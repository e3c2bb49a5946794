package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// Trade types, as the gateway's callers name them (WeChat's API v2 names).
const (
	TradeTypeJSAPI  = "JSAPI"  // mini programs and official accounts: pay_params for wx.requestPayment
	TradeTypeNative = "NATIVE" // a QR code: code_url
	TradeTypeAPP    = "APP"    // native apps: pay_params for the Open SDK
	TradeTypeMWEB   = "MWEB"   // H5 pages in a mobile browser: mweb_url
)

// Trade states of an order (trade_state).
const (
	TradeStateSuccess = "SUCCESS" // paid
	TradeStateRefund  = "REFUND"  // paid, then (partly) refunded
	TradeStateNotPay  = "NOTPAY"
	TradeStateClosed  = "CLOSED"
	TradeStateRevoked = "REVOKED"
	// TradeStateUserPaying: the payer is paying (entering the password).
	TradeStateUserPaying = "USERPAYING"
)

// Refund states (refund_status).
const (
	RefundStatusProcessing = "PROCESSING"
	RefundStatusSuccess    = "SUCCESS"
	RefundStatusChange     = "CHANGE"      // the money could not reach the payer's account
	RefundStatusClosed     = "REFUNDCLOSE" // the refund was closed
)

// OrderRequest is an order as the gateway's callers send it: the body of
// POST /wxpay/orders, and of a backend's application/vnd.wxpay.order+json
// answer behind wxpay_checkout.
type OrderRequest struct {
	OutTradeNo string `json:"out_trade_no"`
	TotalFee   int64  `json:"total_fee"` // fen
	Body       string `json:"body"`
	TradeType  string `json:"trade_type"`
	OpenID     string `json:"openid,omitempty"`
	// OpenIDToken stands for OpenID: the signed form the gateway handed a
	// mini program (GET /wxpay/openid/miniprogram).
	OpenIDToken    string `json:"openid_token,omitempty"`
	ProductID      string `json:"product_id,omitempty"`
	SceneInfo      string `json:"scene_info,omitempty"`
	AppID          string `json:"app_id,omitempty"`
	Attach         string `json:"attach,omitempty"`
	SpbillCreateIP string `json:"spbill_create_ip,omitempty"`
	TimeExpire     string `json:"time_expire,omitempty"` // yyyyMMddHHmmss, Beijing time
	Detail         string `json:"detail,omitempty"`
	GoodsTag       string `json:"goods_tag,omitempty"`
}

// Order is an order as the gateway places it: the request with the
// merchant's defaults filled in (app id, the client's IP) and the URL
// WeChat notifies.
type Order struct {
	OrderRequest
	NotifyURL string
}

// OrderResponse is the answer to a placed order.
type OrderResponse struct {
	OutTradeNo string `json:"out_trade_no"`
	TradeType  string `json:"trade_type"`
	PrepayID   string `json:"prepay_id"`
	AppID      string `json:"app_id"`
	PayParams  any    `json:"pay_params,omitempty"` // JSAPI and APP
	CodeURL    string `json:"code_url,omitempty"`   // NATIVE
	MWebURL    string `json:"mweb_url,omitempty"`   // MWEB (h5_url on APIv3)
}

// Prepay is what WeChat answers a placed order.
type Prepay struct {
	PrepayID string // valid for 2 hours
	CodeURL  string // NATIVE
	MWebURL  string // MWEB
}

// OrderQueryResponse is an order's state as WeChat reports it: the answer
// of GET /wxpay/orders/{out_trade_no}.
type OrderQueryResponse struct {
	OutTradeNo     string `json:"out_trade_no"`
	TradeState     string `json:"trade_state"`
	TradeStateDesc string `json:"trade_state_desc,omitempty"`
	TransactionID  string `json:"transaction_id,omitempty"`
	TradeType      string `json:"trade_type,omitempty"`
	TotalFee       int64  `json:"total_fee,omitempty"`
	CashFee        int64  `json:"cash_fee,omitempty"`
	TimeEnd        string `json:"time_end,omitempty"`
	OpenID         string `json:"openid,omitempty"`
	BankType       string `json:"bank_type,omitempty"`
	Attach         string `json:"attach,omitempty"`

	// Payment is, for a paid order, the payment as its notification
	// would have carried it; nil otherwise.
	Payment *Payment `json:"-"`
}

// Paid reports whether the order has been paid (SUCCESS, or REFUND: paid,
// then refunded in part or in full).
func (q *OrderQueryResponse) Paid() bool {
	return q.TradeState == TradeStateSuccess || q.TradeState == TradeStateRefund
}

// Payment is a payment WeChat reported, verified: by a notification, or by
// a query that found an order paid.
type Payment struct {
	MchID         string
	AppID         string
	OutTradeNo    string
	TransactionID string // "" for some failed payments
	Succeeded     bool
	// TotalFee is the amount paid in fen; HasTotalFee is false when a
	// failed payment carries none.
	TotalFee    int64
	HasTotalFee bool
	// Data is what the backend's event carries: every field WeChat sent
	// but the signature, under WeChat's API v2 names, amounts (fen) as
	// int64.
	Data map[string]any
}

// RefundRequest is the body of POST /wxpay/refunds.
type RefundRequest struct {
	OutTradeNo    string `json:"out_trade_no,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	OutRefundNo   string `json:"out_refund_no"`
	TotalFee      int64  `json:"total_fee"`  // the order's amount, fen
	RefundFee     int64  `json:"refund_fee"` // fen
	RefundDesc    string `json:"refund_desc,omitempty"`
	NotifyURL     string `json:"notify_url,omitempty"`
	AppID         string `json:"app_id,omitempty"`
}

// RefundResponse is the answer of POST /wxpay/refunds: WeChat accepted the
// refund. Accepted is not refunded: the outcome arrives as a refund.*
// event.
type RefundResponse struct {
	OutRefundNo   string `json:"out_refund_no"`
	RefundID      string `json:"refund_id"`
	OutTradeNo    string `json:"out_trade_no,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	TotalFee      int64  `json:"total_fee"`
	RefundFee     int64  `json:"refund_fee"`
	CashFee       int64  `json:"cash_fee,omitempty"`
	Status        string `json:"status"`
}

// RefundQueryResponse is the answer of GET /wxpay/refunds/{out_refund_no}.
type RefundQueryResponse struct {
	OutTradeNo    string `json:"out_trade_no,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	TotalFee      int64  `json:"total_fee,omitempty"`
	// The order's amount less non-cash coupons (APIv3:
	// amount.settlement_total); nil when WeChat's answer has none.
	SettlementTotalFee *int64        `json:"settlement_total_fee,omitempty"`
	Refunds            []RefundEntry `json:"refunds"`
}

// Entry is the refund of q numbered outRefundNo, nil when q has none.
func (q *RefundQueryResponse) Entry(outRefundNo string) *RefundEntry {
	for i := range q.Refunds {
		if q.Refunds[i].OutRefundNo == outRefundNo {
			return &q.Refunds[i]
		}
	}
	return nil
}

// RefundEntry is one refund of an order.
type RefundEntry struct {
	OutRefundNo  string `json:"out_refund_no"`
	RefundID     string `json:"refund_id"`
	RefundFee    int64  `json:"refund_fee"`
	RefundStatus string `json:"refund_status"`
	SuccessTime  string `json:"success_time,omitempty"`
	RecvAccount  string `json:"refund_recv_accout,omitempty"` // sic: API v2's name, as in refund events
	// The funds the refund was paid from (API v2 only).
	RefundAccount string `json:"refund_account,omitempty"`
	// The refund less non-cash coupons (APIv3: amount.settlement_refund);
	// nil when WeChat's answer has none.
	SettlementRefundFee *int64 `json:"settlement_refund_fee,omitempty"`
}

// RefundNotice is a refund notification, verified (decrypted).
type RefundNotice struct {
	MchID         string
	AppID         string
	OutRefundNo   string
	RefundID      string
	OutTradeNo    string
	TransactionID string
	Status        string // SUCCESS, CHANGE or REFUNDCLOSE
	RefundFee     int64  // fen
	// Data is what the backend's event carries, as Payment.Data (the
	// merchant's appid and mch_id included).
	Data map[string]any
}

// Bill types (the day's statement of DownloadBill).
const (
	BillTypeAll            = "ALL"
	BillTypeSuccess        = "SUCCESS"
	BillTypeRefund         = "REFUND"
	BillTypeRechargeRefund = "RECHARGE_REFUND"
)

// BillRequest asks for a day's bill.
type BillRequest struct {
	AppID string
	Date  string // yyyyMMdd
	Type  string // a BillType constant
	Gzip  bool   // the bill gzipped, as WeChat sends it when asked
}

// Reply is the HTTP answer WeChat expects to a notification. Body may be
// shared between replies: it must not be modified.
type Reply struct {
	Status      int
	ContentType string
	Body        []byte
}

// MaxBodySize bounds an order or refund document, from a caller or a
// backend.
const MaxBodySize = 64 << 10

// DecodeOrderRequest parses an order document strictly: unknown fields,
// trailing data and a total_fee that is not a JSON integer above zero are
// refused with an *Error that names the field.
func DecodeOrderRequest(data []byte) (*OrderRequest, error) {
	var doc struct {
		OrderRequest
		TotalFee json.RawMessage `json:"total_fee"`
	}
	if err := decodeStrict(data, &doc, "order"); err != nil {
		return nil, err
	}
	fee, err := jsonAmount("total_fee", doc.TotalFee)
	if err != nil {
		return nil, err
	}
	doc.OrderRequest.TotalFee = fee
	return &doc.OrderRequest, nil
}

// DecodeRefundRequest parses a refund document as DecodeOrderRequest does
// an order; total_fee and refund_fee are both required.
func DecodeRefundRequest(data []byte) (*RefundRequest, error) {
	var doc struct {
		RefundRequest
		TotalFee  json.RawMessage `json:"total_fee"`
		RefundFee json.RawMessage `json:"refund_fee"`
	}
	if err := decodeStrict(data, &doc, "refund"); err != nil {
		return nil, err
	}
	total, err := jsonAmount("total_fee", doc.TotalFee)
	if err != nil {
		return nil, err
	}
	fee, err := jsonAmount("refund_fee", doc.RefundFee)
	if err != nil {
		return nil, err
	}
	doc.RefundRequest.TotalFee, doc.RefundRequest.RefundFee = total, fee
	return &doc.RefundRequest, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data; what names the document in the error.
func decodeStrict(data []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return BadRequest("%s must be a JSON %s", ute.Field, ute.Type.Kind())
		}
		return BadRequest("%s is not a valid JSON object: %v", what, err)
	}
	if dec.More() {
		return BadRequest("%s has data after the JSON object", what)
	}
	return nil
}

// jsonAmount parses an amount in fen: a JSON integer above zero.
func jsonAmount(field string, rawValue json.RawMessage) (int64, error) {
	raw := bytes.TrimSpace(rawValue)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, BadRequest("%s is required: the amount in fen, a positive integer", field)
	}
	if raw[0] == '"' {
		return 0, BadRequest("%s must be a JSON number (fen), not a string", field)
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, BadRequest("%s must be an integer number of fen, got %s", field, raw)
	}
	if v <= 0 {
		return 0, BadRequest("%s must be above zero, got %d", field, v)
	}
	return v, nil
}
