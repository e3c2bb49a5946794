package wxpay

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxNotificationSize bounds the body of a notification that is read.
const MaxNotificationSize = 64 << 10

// NotifyReplySuccess is the exact answer that tells WeChat a notification
// was received. Anything else makes WeChat send it again.
const NotifyReplySuccess = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`

// NotifyReplyFail returns the answer that asks WeChat to send a notification
// again later, with a reason.
func NotifyReplyFail(reason string) []byte {
	b, err := EncodeXML(Params{{"return_code", "FAIL"}, {"return_msg", reason}})
	if err != nil {
		// The reason held characters XML cannot carry; the code is what counts.
		return []byte(`<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[error]]></return_msg></xml>`)
	}
	return b
}

// Notification is a verified API v2 pay notification (支付结果通知).
type Notification struct {
	// Params holds every field received, in document order, sign included:
	// fields WeChat adds later are kept.
	Params Params
	// SignType is the algorithm the notification was signed with.
	SignType SignType
}

// VerifyNotification decodes a pay notification and verifies its sign over
// every field it carries, with key and the sign_type it names (MD5 when it
// names none). It checks that the fields a payment needs are there and well
// formed; it does not check the merchant or the order, which is the
// caller's job.
func VerifyNotification(body []byte, key APIKey) (*Notification, error) {
	p, st, err := VerifyNotificationFields(body, key)
	if err != nil {
		return nil, err
	}
	return &Notification{Params: p, SignType: st}, nil
}

// VerifyNotificationFields is VerifyNotification for a caller that needs
// the fields and the sign type only (it allocates no Notification).
func VerifyNotificationFields(body []byte, key APIKey) (Params, SignType, error) {
	p, err := DecodeXML(body)
	if err != nil {
		return nil, "", err
	}
	st, err := NotificationSignType(p)
	if err != nil {
		return nil, "", fmt.Errorf("wxpay: notification: %w", err)
	}
	if err := Verify(p, key, st); err != nil {
		return nil, "", fmt.Errorf("wxpay: notification: %w", err)
	}
	if rc := p.Get("return_code"); rc != "SUCCESS" {
		return nil, "", fmt.Errorf("wxpay: notification: return_code is %q", rc)
	}
	required := []string{"mch_id", "appid", "out_trade_no", "result_code"}
	if p.Get("result_code") == "SUCCESS" {
		required = append(required, "transaction_id", "total_fee")
	}
	for _, f := range required {
		if p.Get(f) == "" {
			return nil, "", fmt.Errorf("wxpay: notification: %w", fieldErrorf(f, "is missing"))
		}
	}
	for _, f := range p {
		if IsAmountField(f.Name) {
			if _, err := parseAmount(f.Value); err != nil {
				return nil, "", fmt.Errorf("wxpay: notification: %w", fieldErrorf(f.Name, "%v", err))
			}
		}
	}
	return p, st, nil
}

// Get returns the value of a field of the notification.
func (n *Notification) Get(name string) string { return n.Params.Get(name) }

// MchID is the merchant the notification is for.
func (n *Notification) MchID() string { return n.Get("mch_id") }

// AppID is the app id the order was placed with.
func (n *Notification) AppID() string { return n.Get("appid") }

// OutTradeNo is the merchant's order number.
func (n *Notification) OutTradeNo() string { return n.Get("out_trade_no") }

// TransactionID is WeChat's payment number.
func (n *Notification) TransactionID() string { return n.Get("transaction_id") }

// Succeeded reports whether the payment succeeded (result_code SUCCESS).
func (n *Notification) Succeeded() bool { return n.Get("result_code") == "SUCCESS" }

// TotalFee is the order's amount in fen.
func (n *Notification) TotalFee() (int64, error) { return parseAmount(n.Get("total_fee")) }

// IsAmountField reports whether a notification field is an amount in fen:
// total_fee, cash_fee, settlement_total_fee, coupon_fee and the per-coupon
// coupon_fee_<n>.
func IsAmountField(name string) bool {
	switch name {
	case "total_fee", "cash_fee", "settlement_total_fee", "coupon_fee", "refund_fee", "settlement_refund_fee":
		return true
	}
	if rest, ok := strings.CutPrefix(name, "coupon_fee_"); ok && rest != "" {
		for i := 0; i < len(rest); i++ {
			if rest[i] < '0' || rest[i] > '9' {
				return false
			}
		}
		return true
	}
	return false
}

// parseAmount parses an amount in fen: a non-negative integer without sign,
// spaces or leading zeros.
func parseAmount(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("is empty")
	}
	if len(s) > 1 && s[0] == '0' || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("%q is not an amount in fen", s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an amount in fen", s)
	}
	return v, nil
}
