package gateway

import (
	"context"
	"errors"
	"io"
	"time"
)

// Observer is told what the gateway does, for metrics. Its methods are
// called on the request's path: they must be cheap, must not block, and
// must be safe for concurrent use. Every label value it receives is from a
// bounded set (merchant names from the configuration, trade types, API
// names, WeChat's error codes, the outcomes below), never an order number,
// an openid or an amount.
type Observer interface {
	// OrderPlaced: an order placement ended. outcome is "ok" (the same
	// order again, answered from its recorded prepay_id, too), or what refused it:
	// WeChat's error code, or one of the gateway's codes (ErrorFor).
	OrderPlaced(merchant, tradeType, outcome string)
	// WeChatCalled: one call to WeChat Pay ended after d. api is the
	// call's name (unifiedorder, orderquery, closeorder, refund,
	// refundquery, downloadbill); outcome is "ok", WeChat's error code, or
	// the kind of failure (timeout, unreachable, bad_signature,
	// bad_reply).
	WeChatCalled(merchant, api, outcome string, d time.Duration)
	// NotificationTaken: a notification of WeChat's was answered. kind is
	// "payment" or "refund"; result is "stored" (a new event), "duplicate"
	// (acknowledged again, nothing new), "mismatch" (stored as a
	// mismatch event), "delivered" (no ledger: the backend took it) or
	// "refused"; reason says why it was refused ("" otherwise): one of a
	// few fixed phrases ("invalid notification", "signature probe", …).
	NotificationTaken(merchant, kind, result, reason string)
	// Reconciled: the reconciliation found something. finding is
	// "paid" (a payment no notification had brought), "mismatch" (such a
	// payment that disagrees with its order), "closed" (an expired order
	// closed), "refund_settled", "refund_forgotten".
	Reconciled(merchant, finding string)
}

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) OrderPlaced(string, string, string)                 {}
func (nopObserver) WeChatCalled(string, string, string, time.Duration) {}
func (nopObserver) NotificationTaken(string, string, string, string)   {}
func (nopObserver) Reconciled(string, string)                          {}

// CallOutcome is the outcome label of a call to WeChat that returned err:
// "ok", WeChat's error code, or the kind of failure.
func CallOutcome(err error) string {
	if err == nil {
		return "ok"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled" // the caller went away: not WeChat's doing
	}
	var ce *CallError
	if !errors.As(err, &ce) {
		return "error"
	}
	switch ce.Kind {
	case Timeout:
		return "timeout"
	case Unreachable:
		return "unreachable"
	case BadSignature:
		return "bad_signature"
	case BadReply:
		return "bad_reply"
	}
	if ce.Code != "" && len(ce.Code) <= 64 {
		return ce.Code
	}
	return "error"
}

// ObserveProtocol returns p with every call to WeChat timed and told to
// obs (WeChatCalled), for merchant. The rest is p's.
func ObserveProtocol(p Protocol, merchant string, obs Observer) Protocol {
	if obs == nil {
		return p
	}
	return &observedProtocol{Protocol: p, merchant: merchant, obs: obs}
}

type observedProtocol struct {
	Protocol
	merchant string
	obs      Observer
}

func (o *observedProtocol) done(api string, start time.Time, err error) {
	o.obs.WeChatCalled(o.merchant, api, CallOutcome(err), time.Since(start))
}

func (o *observedProtocol) Prepay(ctx context.Context, ord *Order) (*Prepay, error) {
	start := time.Now()
	p, err := o.Protocol.Prepay(ctx, ord)
	o.done("unifiedorder", start, err)
	return p, err
}

func (o *observedProtocol) QueryOrder(ctx context.Context, appID, outTradeNo string) (*OrderQueryResponse, error) {
	start := time.Now()
	q, err := o.Protocol.QueryOrder(ctx, appID, outTradeNo)
	o.done("orderquery", start, err)
	return q, err
}

func (o *observedProtocol) CloseOrder(ctx context.Context, appID, outTradeNo string) error {
	start := time.Now()
	err := o.Protocol.CloseOrder(ctx, appID, outTradeNo)
	o.done("closeorder", start, err)
	return err
}

func (o *observedProtocol) Refund(ctx context.Context, r *RefundRequest) (*RefundResponse, error) {
	start := time.Now()
	resp, err := o.Protocol.Refund(ctx, r)
	o.done("refund", start, err)
	return resp, err
}

func (o *observedProtocol) QueryRefund(ctx context.Context, appID, outRefundNo string) (*RefundQueryResponse, error) {
	start := time.Now()
	q, err := o.Protocol.QueryRefund(ctx, appID, outRefundNo)
	o.done("refundquery", start, err)
	return q, err
}

func (o *observedProtocol) DownloadBill(ctx context.Context, r BillRequest) (io.ReadCloser, error) {
	start := time.Now()
	b, err := o.Protocol.DownloadBill(ctx, r)
	o.done("downloadbill", start, err)
	return b, err
}

// Interface guard
var _ Protocol = (*observedProtocol)(nil)

// refusalReasons are the reasons RefuseNotification is given by this
// package: the label values of a refusal. Any other (a caller's words) is
// counted as "bad request" or "unavailable".
var refusalReasons = map[string]bool{
	"no API version of the merchant takes this notification": true,
	"invalid notification":                          true,
	"mch_id mismatch":                               true,
	"appid mismatch":                                true,
	"storage failure":                               true,
	"internal error":                                true,
	"backend did not take the event":                true,
	"invalid refund notification":                   true,
	"mch_id or appid mismatch":                      true,
	"the refund is unknown to WeChat":               true,
	"the refund could not be confirmed with WeChat": true,
	"the refund is still under way at WeChat":       true,
}

// notificationReason is the bounded reason label of a refusal.
func notificationReason(status int, reason string, err error) string {
	switch {
	case errors.Is(err, ErrSignatureProbe):
		return "signature probe"
	case refusalReasons[reason]:
		return reason
	case status >= 500:
		return "unavailable"
	}
	return "bad request"
}
