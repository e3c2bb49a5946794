// Package apiv3 is WeChat Pay's APIv3 (JSON, RSA signatures, AES-GCM) as
// the gateway drives it: it implements gateway.Protocol on top of the
// protocol library in package wxpayv3. It maps the gateway's names (API
// v2's) to APIv3's and back, so that a backend cannot tell which version a
// merchant uses, and WeChat's v3 errors to gateway.CallError kinds; it
// knows nothing of Caddy or of the ledger.
package apiv3

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// Protocol speaks APIv3 for one merchant.
type Protocol struct {
	client   *wxpayv3.Client
	key      *rsa.PrivateKey // the merchant's: pay parameters
	apiV3Key wxpayv3.APIv3Key
	notify   *wxpayv3.Verifier // notifications' signatures
	nonce    func() string
}

// Config sets up a Protocol.
type Config struct {
	// Client calls WeChat for the merchant (its Signer signs requests, its
	// Verifier checks answers).
	Client *wxpayv3.Client
	// PrivateKey is the merchant's API private key (apiclient_key.pem),
	// which signs the client pay parameters too.
	PrivateKey *rsa.PrivateKey
	// APIv3Key decrypts notification resources.
	APIv3Key wxpayv3.APIv3Key
	// Notifications verifies notifications' signatures; default: the
	// Client's Verifier.
	Notifications *wxpayv3.Verifier
}

// New returns the APIv3 protocol of the merchant cfg.Client calls for.
func New(cfg Config) *Protocol {
	p := &Protocol{client: cfg.Client, key: cfg.PrivateKey, apiV3Key: cfg.APIv3Key, notify: cfg.Notifications, nonce: wxpayv3.NonceStr}
	if p.notify == nil {
		p.notify = cfg.Client.Verifier
	}
	return p
}

// TakesNotification reports whether a notification is APIv3's: it carries
// the Wechatpay-Signature header, or a JSON body (whose headers were lost
// on the way: it is refused for their lack). API v2's are XML with a sign
// field.
func (p *Protocol) TakesNotification(h http.Header, body []byte) bool {
	return wxpayv3.IsV3Request(h) || gateway.LooksLikeJSON(body)
}

// ValidateOrder checks what APIv3 needs of the order that the gateway's
// neutral checks do not: the mapping of its fields (see prepayRequest).
func (p *Protocol) ValidateOrder(o *gateway.Order) error {
	if o.OutTradeNo == "" || len(o.OutTradeNo) < 6 || len(o.OutTradeNo) > 32 {
		return gateway.InvalidField("out_trade_no", "must be 6 to 32 characters on APIv3")
	}
	for _, c := range o.OutTradeNo {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-' || c == '|' || c == '*') {
			return gateway.InvalidField("out_trade_no", "may hold only letters, digits, _ - | *")
		}
	}
	if o.TotalFee <= 0 {
		return gateway.InvalidField("total_fee", "must be a positive number of fen")
	}
	if o.Body == "" {
		return gateway.InvalidField("body", "is required")
	}
	if len([]rune(o.Body)) > 127 {
		return gateway.InvalidField("body", "is longer than APIv3's 127 characters (description)")
	}
	if len([]rune(o.Attach)) > 128 {
		return gateway.InvalidField("attach", "is longer than APIv3's 128 characters")
	}
	if o.NotifyURL == "" {
		return gateway.InvalidField("notify_url", "is required")
	}
	_, _, err := prepayRequest(o, p.client.MchID)
	return err
}

// Prepay calls POST /v3/pay/transactions/{jsapi,native,app,h5}.
func (p *Protocol) Prepay(ctx context.Context, o *gateway.Order) (*gateway.Prepay, error) {
	tt, req, err := prepayRequest(o, p.client.MchID)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Prepay(ctx, tt, req)
	if err != nil {
		return nil, callError(err)
	}
	return &gateway.Prepay{PrepayID: resp.PrepayID, CodeURL: resp.CodeURL, MWebURL: resp.H5URL}, nil
}

// PayParams signs JSAPI's values (wx.requestPayment, signType RSA) or
// APP's (the Open SDK's PayReq) with the merchant's private key; NATIVE
// and MWEB have none.
func (p *Protocol) PayParams(o *gateway.Order, pp *gateway.Prepay, now time.Time) (any, error) {
	switch o.TradeType {
	case gateway.TradeTypeJSAPI:
		return wxpayv3.NewJSAPIPayParams(o.AppID, pp.PrepayID, p.key, now, p.nonce())
	case gateway.TradeTypeAPP:
		return wxpayv3.NewAPPPayParams(o.AppID, p.client.MchID, pp.PrepayID, p.key, now, p.nonce())
	}
	return nil, nil
}

// QueryOrder calls GET /v3/pay/transactions/out-trade-no/{no}. A paid
// order's answer carries the payment as its notification's resource
// would have.
func (p *Protocol) QueryOrder(ctx context.Context, _ string, outTradeNo string) (*gateway.OrderQueryResponse, error) {
	t, err := p.client.QueryByOutTradeNo(ctx, outTradeNo)
	if err != nil {
		return nil, notFoundAs(callError(err), "ORDERNOTEXIST")
	}
	if t.MchID != "" && t.MchID != p.client.MchID {
		return nil, &gateway.CallError{Kind: gateway.BadReply, Message: "the answer is for another mchid",
			Err: fmt.Errorf("apiv3: query of %s answered for mchid %q, not %s", outTradeNo, t.MchID, p.client.MchID)}
	}
	out := &gateway.OrderQueryResponse{
		OutTradeNo: outTradeNo, TradeState: t.TradeState, TradeStateDesc: t.TradeStateDesc,
		TransactionID: t.TransactionID, TradeType: v2TradeType(t.TradeType), BankType: t.BankType, Attach: t.Attach,
	}
	if t.Payer != nil {
		out.OpenID = t.Payer.OpenID
	}
	if t.Amount != nil {
		out.TotalFee, out.CashFee = t.Amount.Total, t.Amount.PayerTotal
	}
	if out.TimeEnd, err = v2Time(t.SuccessTime); err != nil {
		return nil, &gateway.CallError{Kind: gateway.BadReply, Err: fmt.Errorf("apiv3: query of %s: %w", outTradeNo, err)}
	}
	if out.Paid() {
		if t.MchID == "" {
			t.MchID = p.client.MchID
		}
		if out.Payment, err = payment(t, t.Raw); err != nil {
			return nil, &gateway.CallError{Kind: gateway.BadReply, Err: fmt.Errorf("apiv3: query of %s: %w", outTradeNo, err)}
		}
	}
	return out, nil
}

// CloseOrder calls POST /v3/pay/transactions/out-trade-no/{no}/close.
func (p *Protocol) CloseOrder(ctx context.Context, _ string, outTradeNo string) error {
	return notFoundAs(callError(p.client.Close(ctx, outTradeNo)), "ORDERNOTEXIST")
}

// ValidateRefund checks a refund for APIv3 (which needs no client
// certificate: every call is signed with the merchant's private key).
func (p *Protocol) ValidateRefund(r *gateway.RefundRequest) error {
	switch {
	case r.OutTradeNo == "" && r.TransactionID == "":
		return gateway.InvalidField("out_trade_no", "or transaction_id is required")
	case r.OutRefundNo == "" || len(r.OutRefundNo) > 64:
		return gateway.InvalidField("out_refund_no", "must be 1 to 64 characters")
	case r.RefundFee <= 0:
		return gateway.InvalidField("refund_fee", "must be a positive number of fen")
	case r.TotalFee <= 0:
		return gateway.InvalidField("total_fee", "must be a positive number of fen")
	case r.RefundFee > r.TotalFee:
		return gateway.InvalidField("refund_fee", "is above total_fee")
	case len([]rune(r.RefundDesc)) > 80:
		return gateway.InvalidField("refund_desc", "is longer than APIv3's 80 characters (reason)")
	}
	return nil
}

// Refund calls POST /v3/refund/domestic/refunds.
func (p *Protocol) Refund(ctx context.Context, r *gateway.RefundRequest) (*gateway.RefundResponse, error) {
	resp, err := p.client.Refund(ctx, &wxpayv3.RefundRequest{
		TransactionID: r.TransactionID, OutTradeNo: r.OutTradeNo, OutRefundNo: r.OutRefundNo, Reason: r.RefundDesc,
		NotifyURL: r.NotifyURL, Amount: wxpayv3.RefundAmount{Refund: r.RefundFee, Total: r.TotalFee, Currency: "CNY"},
	})
	if err != nil {
		err = callError(err)
		var ce *gateway.CallError
		if errors.As(err, &ce) && ce.Kind == gateway.Refused && ce.Code == "INVALID_REQUEST" {
			// As on v2: more than is left of the order.
			ce.Kind = gateway.Conflict
		}
		// An order WeChat does not know: v2's ORDERNOTEXIST.
		return nil, notFoundAs(err, "ORDERNOTEXIST")
	}
	return refundResponse(resp), nil
}

// refundResponse is WeChat's answer to a refund under API v2's names:
// cash_fee is the order's cash payment (amount.payer_total), as v2's
// refund answer has it, not the refund's cash part (payer_refund, v2's
// cash_refund_fee).
func refundResponse(r *wxpayv3.Refund) *gateway.RefundResponse {
	return &gateway.RefundResponse{
		OutRefundNo: r.OutRefundNo, RefundID: r.RefundID, OutTradeNo: r.OutTradeNo, TransactionID: r.TransactionID,
		TotalFee: r.Amount.Total, RefundFee: r.Amount.Refund, CashFee: r.Amount.PayerTotal,
	}
}

// QueryRefund calls GET /v3/refund/domestic/refunds/{no}: one refund,
// answered as API v2's list of one.
func (p *Protocol) QueryRefund(ctx context.Context, _ string, outRefundNo string) (*gateway.RefundQueryResponse, error) {
	r, err := p.client.QueryRefund(ctx, outRefundNo)
	if err != nil {
		return nil, notFoundAs(callError(err), "REFUNDNOTEXIST")
	}
	return refundQueryResponse(r)
}

// refundQueryResponse is WeChat's answer to a refund query under API v2's
// names.
func refundQueryResponse(r *wxpayv3.Refund) (*gateway.RefundQueryResponse, error) {
	st, err := v2RefundTime(r.SuccessTime)
	if err != nil {
		return nil, &gateway.CallError{Kind: gateway.BadReply, Err: fmt.Errorf("apiv3: refund query of %s: %w", r.OutRefundNo, err)}
	}
	// API v2's settlement amounts (the amounts less non-cash coupons) are
	// APIv3's settlement_total and settlement_refund.
	// (nil when WeChat's answer has none: nothing then to compare or add).
	return &gateway.RefundQueryResponse{
		OutTradeNo: r.OutTradeNo, TransactionID: r.TransactionID, TotalFee: r.Amount.Total, SettlementTotalFee: r.Amount.SettlementTotal,
		Refunds: []gateway.RefundEntry{{OutRefundNo: r.OutRefundNo, RefundID: r.RefundID, RefundFee: r.Amount.Refund,
			RefundStatus: v2RefundStatus(r.Status), SuccessTime: st, RecvAccount: r.UserReceivedAccount, SettlementRefundFee: r.Amount.SettlementRefund}},
	}, nil
}

// billTypes maps the gateway's bill types to APIv3's (which has no
// RECHARGE_REFUND).
var billTypes = map[string]string{
	gateway.BillTypeAll: "ALL", gateway.BillTypeSuccess: "SUCCESS", gateway.BillTypeRefund: "REFUND",
}

// DownloadBill calls GET /v3/bill/tradebill and streams the download,
// whose SHA-1 is checked at its end.
func (p *Protocol) DownloadBill(ctx context.Context, r gateway.BillRequest) (io.ReadCloser, error) {
	bt := "ALL"
	if r.Type != "" {
		var ok bool
		if bt, ok = billTypes[r.Type]; !ok {
			return nil, gateway.InvalidField("type", "must be ALL, SUCCESS or REFUND on APIv3")
		}
	}
	d, err := time.Parse("20060102", r.Date)
	if err != nil {
		return nil, gateway.InvalidField("date", "is not yyyyMMdd")
	}
	tar := ""
	if r.Gzip {
		tar = "GZIP"
	}
	info, err := p.client.TradeBill(ctx, d.Format("2006-01-02"), bt, tar)
	if err != nil {
		return nil, callError(err)
	}
	rc, err := p.client.DownloadBill(ctx, info)
	if err != nil {
		return nil, callError(err)
	}
	return rc, nil
}

// ParsePaymentNotification verifies an APIv3 notification (its signature
// over the exact bytes received, its timestamp, the key its serial names),
// decrypts its resource and reads the transaction. Only
// TRANSACTION.SUCCESS is a payment.
func (p *Protocol) ParsePaymentNotification(h http.Header, body []byte) (*gateway.Payment, error) {
	n, err := p.parse(h, body)
	if err != nil {
		return nil, err
	}
	if n.EventType != wxpayv3.EventTransactionSuccess {
		return nil, fmt.Errorf("apiv3: notification %s is a %s, not a payment", n.ID, n.EventType)
	}
	var t wxpayv3.Transaction
	if err := json.Unmarshal(n.Plaintext, &t); err != nil {
		return nil, fmt.Errorf("apiv3: notification %s: the transaction: %w", n.ID, err)
	}
	switch {
	case t.OutTradeNo == "":
		return nil, fmt.Errorf("apiv3: notification %s: out_trade_no is missing", n.ID)
	case t.TransactionID == "":
		return nil, fmt.Errorf("apiv3: notification %s: transaction_id is missing", n.ID)
	case t.Amount == nil:
		return nil, fmt.Errorf("apiv3: notification %s: amount is missing", n.ID)
	case t.TradeState != gateway.TradeStateSuccess:
		return nil, fmt.Errorf("apiv3: notification %s: trade_state %q in a TRANSACTION.SUCCESS", n.ID, t.TradeState)
	}
	return payment(&t, n.Plaintext)
}

// ParseRefundNotification verifies an APIv3 refund notification like a
// payment's and reads the refund (REFUND.SUCCESS, REFUND.ABNORMAL,
// REFUND.CLOSED). Its appid is "": APIv3's refund notices carry none.
func (p *Protocol) ParseRefundNotification(h http.Header, body []byte) (*gateway.RefundNotice, error) {
	n, err := p.parse(h, body)
	if err != nil {
		return nil, err
	}
	switch n.EventType {
	case wxpayv3.EventRefundSuccess, wxpayv3.EventRefundAbnormal, wxpayv3.EventRefundClosed:
	default:
		return nil, fmt.Errorf("apiv3: notification %s is a %s, not a refund's", n.ID, n.EventType)
	}
	var r wxpayv3.RefundNotice
	if err := json.Unmarshal(n.Plaintext, &r); err != nil {
		return nil, fmt.Errorf("apiv3: notification %s: the refund: %w", n.ID, err)
	}
	if r.OutRefundNo == "" || r.RefundID == "" || r.MchID == "" {
		return nil, fmt.Errorf("apiv3: notification %s: out_refund_no, refund_id and mchid are required", n.ID)
	}
	data, err := refundData(&r, n.Plaintext)
	if err != nil {
		return nil, fmt.Errorf("apiv3: notification %s: %w", n.ID, err)
	}
	return &gateway.RefundNotice{
		MchID: r.MchID, OutRefundNo: r.OutRefundNo, RefundID: r.RefundID, OutTradeNo: r.OutTradeNo,
		TransactionID: r.TransactionID, Status: v2RefundStatus(r.RefundStatus), RefundFee: r.Amount.Refund, Data: data,
	}, nil
}

// parse verifies and decrypts a notification; WeChat's signature probe is
// reported as gateway.ErrSignatureProbe.
func (p *Protocol) parse(h http.Header, body []byte) (*wxpayv3.DecryptedNotification, error) {
	n, err := wxpayv3.ParseNotification(p.notify, p.apiV3Key, h, body)
	if errors.Is(err, wxpayv3.ErrSignTest) {
		return nil, fmt.Errorf("%w: %w", gateway.ErrSignatureProbe, err)
	}
	return n, err
}

// replyReceived is WeChat's success reply on APIv3: 204, no body.
var replyReceived = gateway.Reply{Status: http.StatusNoContent}

// NotifyReply is 204 without a body when received; otherwise status with
// {"code":"FAIL","message":reason}.
func (p *Protocol) NotifyReply(status int, reason string) gateway.Reply {
	if status == http.StatusOK {
		return replyReceived
	}
	return gateway.Reply{Status: status, ContentType: "application/json", Body: wxpayv3.NotifyReplyFailure(reason)}
}

// Interface guard
var _ gateway.Protocol = (*Protocol)(nil)
