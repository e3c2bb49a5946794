package wxpayv3

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// The event types of APIv3 notifications this package knows.
const (
	EventTransactionSuccess = "TRANSACTION.SUCCESS" // a payment succeeded; the resource is a Transaction
	EventRefundSuccess      = "REFUND.SUCCESS"      // a refund succeeded; the resource is a RefundNotice
	EventRefundAbnormal     = "REFUND.ABNORMAL"     // a refund failed (the user's card was closed…): not final, handle it by hand
	EventRefundClosed       = "REFUND.CLOSED"       // a refund was closed
)

// Notification is the envelope WeChat POSTs to a notify_url. Its resource
// is encrypted with the APIv3 key.
type Notification struct {
	ID           string   `json:"id"`            // the notification's id: the same event resent keeps it
	CreateTime   string   `json:"create_time"`   // RFC 3339
	EventType    string   `json:"event_type"`    // e.g. TRANSACTION.SUCCESS
	ResourceType string   `json:"resource_type"` // "encrypt-resource"
	Summary      string   `json:"summary"`       // a human summary, e.g. 支付成功
	Resource     Resource `json:"resource"`
}

// DecryptedNotification is a verified notification with its resource
// decrypted.
type DecryptedNotification struct {
	Notification
	// Plaintext is the decrypted resource: JSON of a Transaction for
	// TRANSACTION.*, of a RefundNotice for REFUND.*.
	Plaintext []byte
}

// ParseNotification checks and opens a notification: it verifies the
// signature over the raw body first (v.Verify), then decodes the envelope
// (unknown fields are allowed; a missing id, event_type or resource field
// is refused, naming the field), then decrypts the resource with key. It
// bounds nothing (the caller limits the body's size) and never panics.
// Errors wrap those of Verifier.Verify and DecryptResource.
func ParseNotification(v *Verifier, key APIv3Key, h http.Header, body []byte) (*DecryptedNotification, error) {
	if err := v.Verify(h, body); err != nil {
		return nil, fmt.Errorf("wxpayv3 notification: %w", err)
	}
	return openNotification(key, body)
}

// openNotification is ParseNotification after the verification: decode
// the envelope, check its fields, decrypt the resource.
func openNotification(key APIv3Key, body []byte) (*DecryptedNotification, error) {
	var n Notification
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("wxpayv3 notification: body is not a JSON notification: %v", err)
	}
	for _, f := range []struct{ name, value string }{
		{"id", n.ID},
		{"event_type", n.EventType},
		{"resource.algorithm", n.Resource.Algorithm},
		{"resource.ciphertext", n.Resource.Ciphertext},
		{"resource.nonce", n.Resource.Nonce},
	} {
		if f.value == "" {
			return nil, fmt.Errorf("wxpayv3 notification %s: %w", quoteShort(n.ID), fieldErrorf(f.name, "is missing"))
		}
	}
	plain, err := DecryptResource(key, &n.Resource)
	if err != nil {
		return nil, fmt.Errorf("wxpayv3 notification %s (%s): %w", quoteShort(n.ID), quoteShort(n.EventType), err)
	}
	return &DecryptedNotification{Notification: n, Plaintext: plain}, nil
}

// Transaction decodes the resource of a TRANSACTION.* notification.
func (d *DecryptedNotification) Transaction() (*Transaction, error) {
	if !strings.HasPrefix(d.EventType, "TRANSACTION.") {
		return nil, fmt.Errorf("wxpayv3 notification %s: event %s does not carry a transaction", quoteShort(d.ID), quoteShort(d.EventType))
	}
	var t Transaction
	if err := json.Unmarshal(d.Plaintext, &t); err != nil {
		return nil, fmt.Errorf("wxpayv3 notification %s: resource is not a transaction: %v", quoteShort(d.ID), err)
	}
	if t.OutTradeNo == "" {
		return nil, fmt.Errorf("wxpayv3 notification %s: %w", quoteShort(d.ID), fieldErrorf("out_trade_no", "is missing"))
	}
	return &t, nil
}

// RefundNotice decodes the resource of a REFUND.* notification.
func (d *DecryptedNotification) RefundNotice() (*RefundNotice, error) {
	if !strings.HasPrefix(d.EventType, "REFUND.") {
		return nil, fmt.Errorf("wxpayv3 notification %s: event %s does not carry a refund", quoteShort(d.ID), quoteShort(d.EventType))
	}
	var r RefundNotice
	if err := json.Unmarshal(d.Plaintext, &r); err != nil {
		return nil, fmt.Errorf("wxpayv3 notification %s: resource is not a refund: %v", quoteShort(d.ID), err)
	}
	if r.OutRefundNo == "" {
		return nil, fmt.Errorf("wxpayv3 notification %s: %w", quoteShort(d.ID), fieldErrorf("out_refund_no", "is missing"))
	}
	return &r, nil
}

// NotifyReplyFailure is the body of a reply that refuses a notification,
// {"code":"FAIL","message":"…"}, to send with a 4xx or 5xx status: WeChat
// then sends the notification again later. A notification accepted is
// answered 200 or 204 with no body.
func NotifyReplyFailure(message string) []byte {
	b, err := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"FAIL", message})
	if err != nil {
		// Strings always encode (invalid UTF-8 becomes U+FFFD).
		panic(errors.New("wxpayv3: NotifyReplyFailure: " + err.Error()))
	}
	return b
}
