// Package event defines the events caddy-wxpay delivers to the merchant's
// backend: their JSON shape, their stable ids, and the HMAC-SHA256
// signature that lets the backend trust them without knowing anything of
// WeChat Pay's own signatures.
//
// Events are built from the gateway's protocol-neutral data (WeChat's
// fields under their API v2 names, amounts as integers): the backend's
// contract is the same whatever API version the merchant uses. A backend
// written in Go can use Verify; the README shows the same check in PHP,
// Node and Python.
package event

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of an event delivery.
const (
	// HeaderID carries a copy of the body's id, for the backend's logs and
	// routing. It is outside the signature: deduplicate on the body's id,
	// which the signature covers (a captured delivery sent again with
	// another Wxpay-Event-Id still verifies).
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

// Discrepancy is one field on which a notification and what the gateway
// knows disagree: the order or refund it recorded (Order), or what WeChat
// answered a query about it (Queried).
type Discrepancy struct {
	Order        any `json:"order,omitempty"`
	Queried      any `json:"queried,omitempty"`
	Notification any `json:"notification"`
}

// Event is what the backend receives.
type Event struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Created string `json:"created"` // RFC 3339, when the gateway created the event
	// OrderChecked, on payment events, says whether the payment was
	// checked against an order the gateway placed (amount, app id,
	// merchant): false for an order the gateway did not place or keeps no
	// record of (ack upstream).
	OrderChecked *bool          `json:"order_checked,omitempty"`
	Data         map[string]any `json:"data"`
}

var checkedTrue, checkedFalse = true, false

// SetOrderChecked sets OrderChecked (to values the events share, read-only).
func (e *Event) SetOrderChecked(checked bool) {
	if checked {
		e.OrderChecked = &checkedTrue
	} else {
		e.OrderChecked = &checkedFalse
	}
}

// MarkMismatch turns the event into one of the mismatch types
// (PaymentMismatch, RefundMismatch) carrying, under data.mismatch, both
// figures of every field that disagrees. The data is copied first: the map
// the event was built from is left as it was.
func (e *Event) MarkMismatch(typ string, fields map[string]Discrepancy) {
	data := make(map[string]any, len(e.Data)+1)
	for k, v := range e.Data {
		data[k] = v
	}
	data["mismatch"] = fields
	e.Type, e.Data = typ, data
}

// PaymentID derives the id of a successful payment's event from the
// merchant and WeChat's transaction_id, so that a notification WeChat sends
// again, or sends twice, or a query that finds the payment, yields the same
// id. (A payment without a transaction_id, which WeChat does not send for a
// success, falls back to FailedPaymentID's derivation from the order.)
func PaymentID(mchID, transactionID, outTradeNo string) string {
	if transactionID != "" {
		return derive("payment", mchID, transactionID)
	}
	return derive("payment-failed", mchID, outTradeNo)
}

// FailedPaymentID derives the id of a failed payment's event: from the
// transaction_id when WeChat gave one, else from the order number, and
// never equal to a success's id, so that a failure can never make the
// success of the same transaction look like a duplicate.
func FailedPaymentID(mchID, transactionID, outTradeNo string) string {
	if transactionID != "" {
		return derive("payment-failed-tx", mchID, transactionID)
	}
	return derive("payment-failed", mchID, outTradeNo)
}

func derive(parts ...string) string {
	var buf [256]byte // on the stack: the parts are WeChat's ids
	in := buf[:0]
	for _, p := range parts {
		in = append(append(in, p...), 0)
	}
	sum := sha256.Sum256(in)
	var id [4 + 32]byte
	copy(id[:], "evt_")
	hex.Encode(id[4:], sum[:16])
	return string(id[:])
}

// NewPayment builds the event of a payment, notified or found by a query.
// data is what WeChat reported, under WeChat's API v2 field names, with
// the amounts (fen) as integers and without the signature; the event keeps
// the map as it is. OrderChecked starts false.
func NewPayment(mchID, transactionID, outTradeNo string, succeeded bool, data map[string]any, created time.Time) *Event {
	typ, id := PaymentSucceeded, PaymentID(mchID, transactionID, outTradeNo)
	if !succeeded {
		typ, id = PaymentFailed, FailedPaymentID(mchID, transactionID, outTradeNo)
	}
	return &Event{
		ID:           id,
		Type:         typ,
		Created:      created.UTC().Format(time.RFC3339),
		OrderChecked: &checkedFalse,
		Data:         data,
	}
}

// RefundID derives the id of a refund event from the merchant, WeChat's
// refund_id and the status, so that each state a refund reaches is one
// event however often WeChat notifies it.
func RefundID(mchID, refundID, status string) string {
	return derive("refund", mchID, refundID, status)
}

// MismatchID is the id of the mismatch event made of a notification whose
// event, had it agreed, would have had id: derived from id and from what
// the notification says (data, as Marshal encodes it). A notification
// that WeChat's own records or the gateway's contradict (a spliced v2
// refund notification, say) thus never takes the id of the event the
// genuine notification makes, which would then be dropped as its
// duplicate; the same contradicted notification sent again is one event.
func MismatchID(id string, data map[string]any) (string, error) {
	b, err := appendValue(make([]byte, 0, 512), data)
	if err != nil {
		return "", fmt.Errorf("mismatch of %s: %w", id, err)
	}
	sum := sha256.Sum256(b)
	return derive("mismatch", id, hex.EncodeToString(sum[:])), nil
}

// Refund statuses of a refund notification, as WeChat's API v2 names them.
const (
	RefundStatusSuccess = "SUCCESS"
	RefundStatusChange  = "CHANGE"
	RefundStatusClosed  = "REFUNDCLOSE"
)

// NewRefund builds the event of a refund reaching status (SUCCESS, CHANGE
// or REFUNDCLOSE). data is as for NewPayment: the refund's fields with the
// merchant's appid and mch_id.
func NewRefund(mchID, refundID, status string, data map[string]any, created time.Time) (*Event, error) {
	var typ string
	switch status {
	case RefundStatusSuccess:
		typ = RefundSucceeded
	case RefundStatusChange:
		typ = RefundChanged
	case RefundStatusClosed:
		typ = RefundClosed
	default:
		return nil, fmt.Errorf("event: unknown refund_status %q", status)
	}
	return &Event{
		ID:      RefundID(mchID, refundID, status),
		Type:    typ,
		Created: created.UTC().Format(time.RFC3339),
		Data:    data,
	}, nil
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

// DefaultTolerance is how far a delivery's timestamp may be from now when
// Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// Verify checks a delivery as a backend receives it: the signature over the
// raw body, compared in constant time, and a timestamp within tolerance of
// now (DefaultTolerance when tolerance is not above zero: the check cannot
// be turned off), so that old deliveries cannot be replayed. Deduplicate a
// verified delivery on its body's id, never on the Wxpay-Event-Id header,
// which the signature does not cover.
func Verify(secret []byte, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("event: bad %s header", HeaderTimestamp)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
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
