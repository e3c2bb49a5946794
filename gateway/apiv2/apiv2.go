// Package apiv2 is WeChat Pay's API v2 (XML, MD5 / HMAC-SHA256 signatures)
// as the gateway drives it: it implements gateway.Protocol on top of the
// protocol library in package wxpay. It maps the gateway's neutral types
// to WeChat's v2 documents and back, and WeChat's v2 errors to
// gateway.CallError kinds; it knows nothing of Caddy or of the ledger.
package apiv2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// Protocol speaks API v2 for the merchant of its client.
type Protocol struct {
	client         *wxpay.Client
	nonce          func() string
	notifySignType wxpay.SignType // "": any
}

// Option adjusts a Protocol.
type Option func(*Protocol)

// RequireNotifySignType makes the protocol accept only payment
// notifications signed with st: one signed with another algorithm is
// refused however valid its signature, whether sign_type names it or, left
// out, the sign's length does (wxpay.NotificationSignType: WeChat leaves
// sign_type out of an HMAC-SHA256 order's notifications). WeChat signs an
// order's notifications with the sign type the order was placed with, so
// this suits a merchant whose orders are all placed with st. "" accepts
// both.
func RequireNotifySignType(st wxpay.SignType) Option {
	return func(p *Protocol) { p.notifySignType = st }
}

// New returns the API v2 protocol of the merchant that client calls for
// (its MchID, Key and SignType sign requests, pay parameters and verify
// notifications; its TLSHTTPClient, when set, sends refunds).
func New(client *wxpay.Client, opts ...Option) *Protocol {
	p := &Protocol{client: client, nonce: wxpay.NonceStr}
	for _, o := range opts {
		o(p)
	}
	return p
}

// signType is the merchant's signature algorithm (MD5 when unset).
func (p *Protocol) signType() wxpay.SignType {
	if p.client.SignType == "" {
		return wxpay.SignTypeMD5
	}
	return p.client.SignType
}

// unifiedOrder is the order as a /pay/unifiedorder request.
func unifiedOrder(o *gateway.Order) *wxpay.UnifiedOrderRequest {
	return &wxpay.UnifiedOrderRequest{
		AppID: o.AppID, Body: o.Body, OutTradeNo: o.OutTradeNo, TotalFee: o.TotalFee,
		SpbillCreateIP: o.SpbillCreateIP, NotifyURL: o.NotifyURL, TradeType: o.TradeType,
		OpenID: o.OpenID, ProductID: o.ProductID, SceneInfo: o.SceneInfo,
		Attach: o.Attach, TimeExpire: o.TimeExpire, Detail: o.Detail, GoodsTag: o.GoodsTag,
	}
}

// ValidateOrder checks the order against API v2's documented limits.
func (p *Protocol) ValidateOrder(o *gateway.Order) error {
	return fieldError(unifiedOrder(o).Validate())
}

// Prepay calls /pay/unifiedorder.
func (p *Protocol) Prepay(ctx context.Context, o *gateway.Order) (*gateway.Prepay, error) {
	resp, err := p.client.UnifiedOrder(ctx, unifiedOrder(o))
	if err != nil {
		return nil, callError(err)
	}
	return &gateway.Prepay{PrepayID: resp.PrepayID, CodeURL: resp.CodeURL, MWebURL: resp.MWebURL}, nil
}

// PayParams signs JSAPI's six values (wx.requestPayment) or APP's seven
// (the Open SDK's PayReq) with the merchant's key; NATIVE and MWEB have
// none.
func (p *Protocol) PayParams(o *gateway.Order, pp *gateway.Prepay, now time.Time) (any, error) {
	switch o.TradeType {
	case gateway.TradeTypeJSAPI:
		return wxpay.NewJSAPIPayParams(o.AppID, pp.PrepayID, p.client.Key, p.signType(), now, p.nonce())
	case gateway.TradeTypeAPP:
		return wxpay.NewAPPPayParams(o.AppID, p.client.MchID, pp.PrepayID, p.client.Key, p.signType(), now, p.nonce())
	}
	return nil, nil
}

// QueryOrder calls /pay/orderquery. A paid order's answer carries the
// payment as WeChat's notification would have: the answer's fields
// without the query's own (return_code and result_code SUCCESS, no
// trade_state, no signature).
func (p *Protocol) QueryOrder(ctx context.Context, appID, outTradeNo string) (*gateway.OrderQueryResponse, error) {
	q, err := p.client.QueryOrder(ctx, appID, outTradeNo)
	if err != nil {
		return nil, callError(err)
	}
	out := &gateway.OrderQueryResponse{
		OutTradeNo: outTradeNo, TradeState: q.TradeState, TradeStateDesc: q.TradeStateDesc,
		TransactionID: q.TransactionID, TradeType: q.TradeType, TotalFee: q.TotalFee, CashFee: q.CashFee,
		TimeEnd: q.TimeEnd, OpenID: q.OpenID, BankType: q.BankType, Attach: q.Attach,
	}
	if q.Paid() {
		n := wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"}}
		for _, f := range q.Raw {
			switch f.Name {
			case "return_code", "return_msg", "result_code", "err_code", "err_code_des", "sign", "sign_type",
				"nonce_str", "trade_state", "trade_state_desc":
				continue
			}
			n = append(n, f)
		}
		if out.Payment, err = payment(n); err != nil {
			return nil, callError(&wxpay.ResponseError{Op: "orderquery", Err: err})
		}
		// The client refuses an answer for another mch_id; one that
		// omits it is this merchant's.
		if out.Payment.MchID == "" {
			out.Payment.MchID = p.client.MchID
			out.Payment.Data["mch_id"] = p.client.MchID
		}
	}
	return out, nil
}

// CloseOrder calls /pay/closeorder.
func (p *Protocol) CloseOrder(ctx context.Context, appID, outTradeNo string) error {
	return callError(p.client.CloseOrder(ctx, appID, outTradeNo))
}

// refundRequest is the refund as a /secapi/pay/refund request.
func refundRequest(r *gateway.RefundRequest) *wxpay.RefundRequest {
	return &wxpay.RefundRequest{
		AppID: r.AppID, OutTradeNo: r.OutTradeNo, TransactionID: r.TransactionID, OutRefundNo: r.OutRefundNo,
		TotalFee: r.TotalFee, RefundFee: r.RefundFee, RefundDesc: r.RefundDesc, NotifyURL: r.NotifyURL,
	}
}

// ValidateRefund checks the refund against API v2's limits, and that the
// merchant has the client certificate refunds are sent with (501 without).
func (p *Protocol) ValidateRefund(r *gateway.RefundRequest) error {
	if err := fieldError(refundRequest(r).Validate()); err != nil {
		return err
	}
	if p.client.TLSHTTPClient == nil {
		return &gateway.Error{Status: http.StatusNotImplemented, Code: "NO_CLIENT_CERT",
			Message: "refunds need the merchant's API client certificate: set client_cert for the merchant"}
	}
	return nil
}

// Refund calls /secapi/pay/refund over mutual TLS. WeChat answers a refund
// of more than is left of the order with err_code INVALID_REQUEST
// ("refund_fee大于可退金额") and any refund of an order refunded in full
// with ERROR ("订单已全额退款"): both conflict with the order's state.
func (p *Protocol) Refund(ctx context.Context, r *gateway.RefundRequest) (*gateway.RefundResponse, error) {
	resp, err := p.client.Refund(ctx, refundRequest(r))
	if err != nil {
		err = callError(err)
		var ce *gateway.CallError
		if errors.As(err, &ce) && ce.Kind == gateway.Refused && (ce.Code == "INVALID_REQUEST" || ce.Code == "ERROR") {
			ce.Kind = gateway.Conflict
		}
		return nil, err
	}
	return &gateway.RefundResponse{
		OutRefundNo: resp.OutRefundNo, RefundID: resp.RefundID, OutTradeNo: resp.OutTradeNo,
		TransactionID: resp.TransactionID, TotalFee: resp.TotalFee, RefundFee: resp.RefundFee, CashFee: resp.CashFee,
	}, nil
}

// QueryRefund calls /pay/refundquery.
func (p *Protocol) QueryRefund(ctx context.Context, appID, outRefundNo string) (*gateway.RefundQueryResponse, error) {
	resp, err := p.client.QueryRefund(ctx, appID, outRefundNo)
	if err != nil {
		return nil, callError(err)
	}
	out := &gateway.RefundQueryResponse{OutTradeNo: resp.OutTradeNo, TransactionID: resp.TransactionID, TotalFee: resp.TotalFee,
		SettlementTotalFee: resp.SettlementTotalFee, Refunds: make([]gateway.RefundEntry, 0, len(resp.Refunds))}
	for _, s := range resp.Refunds {
		out.Refunds = append(out.Refunds, gateway.RefundEntry{OutRefundNo: s.OutRefundNo, RefundID: s.RefundID, RefundFee: s.RefundFee,
			RefundStatus: s.RefundStatus, SuccessTime: s.SuccessTime, RecvAccount: s.RecvAccount,
			RefundAccount: s.RefundAccount, SettlementRefundFee: s.SettlementRefundFee})
	}
	return out, nil
}

// DownloadBill calls /pay/downloadbill and streams the bill.
func (p *Protocol) DownloadBill(ctx context.Context, r gateway.BillRequest) (io.ReadCloser, error) {
	rc, err := p.client.DownloadBill(ctx, r.AppID, r.Date, r.Type, r.Gzip)
	if err != nil {
		return nil, callError(err)
	}
	return rc, nil
}

// TakesNotification reports whether a notification is API v2's: one
// without APIv3's Wechatpay-Signature header and JSON body.
func (p *Protocol) TakesNotification(h http.Header, body []byte) bool {
	return h.Get("Wechatpay-Signature") == "" && !gateway.LooksLikeJSON(body)
}

// ParsePaymentNotification verifies a pay notification's sign over every
// field it carries, with the merchant's key, and its sign type against the
// one required (RequireNotifySignType).
func (p *Protocol) ParsePaymentNotification(_ http.Header, body []byte) (*gateway.Payment, error) {
	fields, st, err := wxpay.VerifyNotificationFields(body, p.client.Key)
	if err != nil {
		return nil, err
	}
	if p.notifySignType != "" && st != p.notifySignType {
		return nil, fmt.Errorf("apiv2: notification signed %s, but notifications must be signed %s", st, p.notifySignType)
	}
	return payment(fields)
}

// payment is a verified pay notification's payment.
func payment(n wxpay.Params) (*gateway.Payment, error) {
	data, err := eventData(nil, n)
	if err != nil {
		return nil, err
	}
	p := &gateway.Payment{
		MchID: n.Get("mch_id"), AppID: n.Get("appid"), OutTradeNo: n.Get("out_trade_no"),
		TransactionID: n.Get("transaction_id"), Succeeded: n.Get("result_code") == "SUCCESS", Data: data,
	}
	if fee, ok := data["total_fee"].(int64); ok {
		p.TotalFee, p.HasTotalFee = fee, true
	}
	return p, nil
}

// ParseRefundNotification decrypts a refund notification's req_info with
// the MD5 of the merchant's key (refund notifications carry no sign).
func (p *Protocol) ParseRefundNotification(_ http.Header, body []byte) (*gateway.RefundNotice, error) {
	n, err := wxpay.DecryptRefundNotification(body, p.client.Key)
	if err != nil {
		return nil, err
	}
	data := make(map[string]any, len(n.Info)+2)
	data["appid"] = n.AppID()
	data["mch_id"] = n.MchID()
	if _, err := eventData(data, n.Info); err != nil {
		return nil, err
	}
	fee, _ := data["refund_fee"].(int64) // required and checked by DecryptRefundNotification
	return &gateway.RefundNotice{
		MchID: n.MchID(), AppID: n.AppID(), OutRefundNo: n.OutRefundNo(), RefundID: n.RefundID(),
		OutTradeNo: n.OutTradeNo(), TransactionID: n.TransactionID(), Status: n.RefundStatus(),
		RefundFee: fee, Data: data,
	}, nil
}

// eventData puts WeChat's fields into data (a new map when nil) under
// their own names, the amounts (fen) as int64, never the signature.
func eventData(data map[string]any, p wxpay.Params) (map[string]any, error) {
	if data == nil {
		data = make(map[string]any, len(p))
	}
	for _, f := range p {
		switch {
		case f.Name == "sign":
		case wxpay.IsAmountField(f.Name):
			v, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil {
				return nil, errors.New(f.Name + " " + strconv.Quote(f.Value) + " is not an integer")
			}
			data[f.Name] = v
		default:
			data[f.Name] = f.Value
		}
	}
	return data, nil
}

// successReply is WeChat's SUCCESS document; replies share it, read-only.
var successReply = []byte(wxpay.NotifyReplySuccess)

// NotifyReply is WeChat's exact SUCCESS document with 200, or a FAIL
// document with the reason and status (WeChat sends the notification
// again).
func (p *Protocol) NotifyReply(status int, reason string) gateway.Reply {
	if status == http.StatusOK {
		return gateway.Reply{Status: status, ContentType: "text/xml; charset=utf-8", Body: successReply}
	}
	return gateway.Reply{Status: status, ContentType: "text/xml; charset=utf-8", Body: wxpay.NotifyReplyFail(reason)}
}

// fieldError turns a request that fails API v2's limits into the caller's
// 400 naming the field.
func fieldError(err error) error {
	if err == nil {
		return nil
	}
	var fe *wxpay.FieldError
	if errors.As(err, &fe) {
		return gateway.InvalidField(fe.Field, fe.Reason)
	}
	return gateway.BadRequest("%v", err)
}

// callError classifies a failed API v2 call for the gateway: WeChat's
// err_code decides the kind of a refusal; a request the client refused to
// send (a field out of limits) is the caller's 400.
func callError(err error) error {
	if err == nil {
		return nil
	}
	var (
		ae *wxpay.APIError
		te *wxpay.TransportError
		re *wxpay.ResponseError
		fe *wxpay.FieldError
	)
	switch {
	case errors.As(err, &ae):
		ce := &gateway.CallError{Kind: gateway.Refused, Code: ae.Code(), Message: ae.Message(), Err: err}
		switch ae.Code() {
		case "ORDERPAID", "OUT_TRADE_NO_USED", "ORDERCLOSED", "NOTENOUGH", "TRADE_STATE_ERROR", "REFUND_FEE_MISMATCH":
			ce.Kind = gateway.Conflict
		case "ORDERNOTEXIST", "REFUNDNOTEXIST":
			ce.Kind = gateway.NotFound
		case "FREQUENCY_LIMITED":
			ce.Kind = gateway.RateLimited
		}
		if ae.Message() == "No Bill Exist" {
			ce.Kind = gateway.NotFound
		}
		return ce
	case errors.As(err, &te) && te.Timeout():
		return &gateway.CallError{Kind: gateway.Timeout, Err: err}
	case errors.As(err, &te):
		return &gateway.CallError{Kind: gateway.Unreachable, Err: err}
	case errors.As(err, &re) && (errors.Is(err, wxpay.ErrInvalidSignature) || errors.Is(err, wxpay.ErrMissingSign)):
		return &gateway.CallError{Kind: gateway.BadSignature, Err: err}
	case errors.As(err, &re):
		return &gateway.CallError{Kind: gateway.BadReply, Err: err}
	case errors.As(err, &fe):
		return gateway.InvalidField(fe.Field, fe.Reason)
	}
	return err
}

// Interface guard
var _ gateway.Protocol = (*Protocol)(nil)
