package gateway

import (
	"context"
	"io"
	"net/http"
	"time"
)

// Protocol is one WeChat Pay API version as the gateway drives it, for one
// merchant: its signatures, encodings, endpoints and error codes. Package
// apiv2 implements it for API v2 (XML, MD5 / HMAC-SHA256); an API version
// is added by implementing it in a package of its own.
//
// Every method that calls WeChat returns, for a failure of WeChat's, a
// *CallError (possibly wrapped) whose Kind says what went wrong; a request
// the version cannot send is an *Error (usually InvalidField). Amounts are
// in fen; names and formats are API v2's (the gateway's language): a
// version that speaks others maps them.
type Protocol interface {
	// ValidateOrder checks an order against the version's documented
	// limits before anything else happens to it.
	ValidateOrder(o *Order) error
	// Prepay places the order with WeChat.
	Prepay(ctx context.Context, o *Order) (*Prepay, error)
	// PayParams signs the client pay parameters of a prepay_id for the
	// order's trade type (JSAPI, APP); nil for trade types that have none
	// (NATIVE, MWEB). They are signed afresh each time, with now.
	PayParams(o *Order, p *Prepay, now time.Time) (any, error)

	// QueryOrder asks for an order's state. A paid order's answer carries
	// the payment as its notification would have (Payment).
	QueryOrder(ctx context.Context, appID, outTradeNo string) (*OrderQueryResponse, error)
	// CloseOrder closes an unpaid order.
	CloseOrder(ctx context.Context, appID, outTradeNo string) error

	// ValidateRefund checks a refund before anything else happens to it,
	// including whether the merchant can send refunds at all (API v2
	// needs its client certificate).
	ValidateRefund(r *RefundRequest) error
	// Refund asks WeChat to refund; the same out_refund_no is one refund.
	Refund(ctx context.Context, r *RefundRequest) (*RefundResponse, error)
	// QueryRefund asks for a refund's state.
	QueryRefund(ctx context.Context, appID, outRefundNo string) (*RefundQueryResponse, error)

	// DownloadBill streams a day's bill (CSV, or gzip when asked).
	DownloadBill(ctx context.Context, r BillRequest) (io.ReadCloser, error)

	// TakesNotification reports whether a notification, by its headers
	// and body, is of this API version (APIv3's carry Wechatpay-Signature
	// and a JSON body; API v2's neither), so that a merchant switching
	// versions takes both. A JSON body without the header is APIv3's, its
	// headers lost on the way (a proxy that strips Wechatpay-*): refused
	// as such, not read as XML.
	TakesNotification(h http.Header, body []byte) bool
	// ParsePaymentNotification verifies a payment notification, as its
	// exact bytes arrived, and parses it. It does not check the merchant
	// or the order: the gateway does.
	ParsePaymentNotification(h http.Header, body []byte) (*Payment, error)
	// ParseRefundNotification verifies and parses a refund notification.
	ParseRefundNotification(h http.Header, body []byte) (*RefundNotice, error)
	// NotifyReply is the answer WeChat expects to a notification: received
	// when status is 200, otherwise refused with status and reason, which
	// makes WeChat send it again.
	NotifyReply(status int, reason string) Reply
}

// LooksLikeJSON reports whether a notification's body is a JSON object
// (APIv3's), not XML (API v2's): its first byte past white space is "{".
func LooksLikeJSON(body []byte) bool {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c == '{'
	}
	return false
}
