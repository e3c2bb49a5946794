// Package event defines the events caddy-wxpay delivers to the merchant's
// backend: their JSON shape, their stable ids, and the HMAC-SHA256
// signature that lets the backend trust them without knowing anything of
// WeChat Pay's own signatures.
//
// A backend written in Go can use Verify; the README shows the same check in
// PHP, Node and Python.
package event

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// Headers of an event delivery.
const (
	// HeaderID carries the event id: the same for every retry and for
	// every duplicate of one payment, so that the backend can deduplicate.
	HeaderID = "Wxpay-Event-Id"
	// HeaderTimestamp carries the Unix seconds when the attempt was sent.
	HeaderTimestamp = "Wxpay-Timestamp"
	// HeaderSignature carries "v1=" and the lowercase hex HMAC-SHA256,
	// keyed with the upstream secret, of "<timestamp>.<raw body>".
	HeaderSignature = "Wxpay-Signature"
)

// Event types.
const (
	PaymentSucceeded = "payment.succeeded"
	PaymentFailed    = "payment.failed"
	// PaymentMismatch is a verified notification that disagrees with the
	// order the gateway placed (amount or app id): never a success.
	PaymentMismatch = "payment.mismatch"

	RefundSucceeded = "refund.succeeded" // refund_status SUCCESS
	RefundChanged   = "refund.changed"   // CHANGE: the money could not reach the payer's account
	RefundClosed    = "refund.closed"    // REFUNDCLOSE
	// RefundMismatch is a refund notification that disagrees with the
	// refund the gateway placed.
	RefundMismatch = "refund.mismatch"
)

// Discrepancy is one field on which a notification and its order disagree.
type Discrepancy struct {
	Order        any `json:"order"`
	Notification any `json:"notification"`
}

// MarkMismatch turns the event into a payment.mismatch carrying, under
// data.mismatch, both figures of every field that disagrees.
func (e *Event) MarkMismatch(fields map[string]Discrepancy) {
	e.Type = PaymentMismatch
	e.Data["mismatch"] = fields
}

// Event is what the backend receives.
type Event struct {
	ID      string         `json:"id"`
	Type    string         `json:"type"`
	Created string         `json:"created"` // RFC 3339, when the gateway created the event
	Data    map[string]any `json:"data"`
}

// PaymentID derives the id of a payment's event from the merchant and
// WeChat's transaction_id, so that a notification WeChat sends again, or
// sends twice, yields the same id. A failed payment may have no
// transaction_id; its id derives from the order number instead.
func PaymentID(mchID, transactionID, outTradeNo string) string {
	if transactionID != "" {
		return derive("payment", mchID, transactionID)
	}
	return derive("payment-failed", mchID, outTradeNo)
}

func derive(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "evt_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// FromNotification builds the event of a verified pay notification: every
// field WeChat sent except sign, under WeChat's names, with the amounts as
// JSON integers.
func FromNotification(n *wxpay.Notification, created time.Time) (*Event, error) {
	data := make(map[string]any, len(n.Params))
	if err := addFields(data, n.Params); err != nil {
		return nil, err
	}
	typ := PaymentSucceeded
	if !n.Succeeded() {
		typ = PaymentFailed
	}
	return &Event{
		ID:      PaymentID(n.MchID(), n.TransactionID(), n.OutTradeNo()),
		Type:    typ,
		Created: created.UTC().Format(time.RFC3339),
		Data:    data,
	}, nil
}

// RefundID derives the id of a refund event from the merchant, WeChat's
// refund_id and the status, so that each state a refund reaches is one
// event however often WeChat notifies it.
func RefundID(mchID, refundID, status string) string {
	return derive("refund", mchID, refundID, status)
}

// FromRefundNotification builds the event of a decrypted refund
// notification: the decrypted fields with the outer appid and mch_id, under
// WeChat's names, amounts as JSON integers.
func FromRefundNotification(n *wxpay.RefundNotification, created time.Time) (*Event, error) {
	data := make(map[string]any, len(n.Info)+2)
	data["appid"] = n.AppID()
	data["mch_id"] = n.MchID()
	if err := addFields(data, n.Info); err != nil {
		return nil, err
	}
	var typ string
	switch n.RefundStatus() {
	case wxpay.RefundStatusSuccess:
		typ = RefundSucceeded
	case wxpay.RefundStatusChange:
		typ = RefundChanged
	case wxpay.RefundStatusRefundClose:
		typ = RefundClosed
	default:
		return nil, fmt.Errorf("event: unknown refund_status %q", n.RefundStatus())
	}
	return &Event{
		ID:      RefundID(n.MchID(), n.RefundID(), n.RefundStatus()),
		Type:    typ,
		Created: created.UTC().Format(time.RFC3339),
		Data:    data,
	}, nil
}

// addFields puts WeChat's fields into an event's data under their own names,
// the amounts (in fen) as JSON integers, never the signature.
func addFields(data map[string]any, p wxpay.Params) error {
	for _, f := range p {
		switch {
		case f.Name == "sign":
		case wxpay.IsAmountField(f.Name):
			v, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil {
				return fmt.Errorf("event: %s %q is not an integer", f.Name, f.Value)
			}
			data[f.Name] = v
		default:
			data[f.Name] = f.Value
		}
	}
	return nil
}

// Marshal encodes the event as its delivery body.
func (e *Event) Marshal() ([]byte, error) {
	return json.Marshal(e)
}

// Sign returns the Wxpay-Signature header value of a delivery.
func Sign(secret []byte, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// SetHeaders sets the id, timestamp and signature headers of a delivery.
func SetHeaders(h http.Header, secret []byte, id string, now time.Time, body []byte) {
	ts := now.Unix()
	h.Set("Content-Type", "application/json")
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, Sign(secret, ts, body))
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("event: no v1 signature")
	ErrBadSignature = errors.New("event: signature does not match")
	ErrStale        = errors.New("event: timestamp outside the tolerance")
)

// Verify checks a delivery as a backend receives it: the signature over the
// raw body, compared in constant time, and a timestamp within tolerance of
// now (replays of old deliveries are refused; 0 disables the check).
func Verify(secret []byte, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("event: bad %s header", HeaderTimestamp)
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
			return ErrStale
		}
	}
	want := Sign(secret, ts, body)
	// The header may carry several comma-separated signatures (secret
	// rotation); one match is enough.
	found := false
	for _, s := range strings.Split(h.Get(HeaderSignature), ",") {
		s = strings.TrimSpace(s)
		if !strings.HasPrefix(s, "v1=") {
			continue
		}
		found = true
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	if !found {
		return ErrNoSignature
	}
	return ErrBadSignature
}
