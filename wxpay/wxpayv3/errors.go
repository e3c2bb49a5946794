package wxpayv3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
	"unicode/utf8"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrSignTest means an answer or notification carried a
	// Wechatpay-Signature starting "WECHATPAY/SIGNTEST/": WeChat probing that
	// the merchant verifies signatures. It must be refused, and is.
	ErrSignTest = errors.New("wxpayv3: Wechatpay-Signature is a WECHATPAY/SIGNTEST/ probe, refused as WeChat expects")
	// ErrBadSignature means a signature is not base64 or does not verify
	// with the key its serial names: the message was forged or altered.
	ErrBadSignature = errors.New("wxpayv3: signature does not verify")
	// ErrDecrypt means an AEAD_AES_256_GCM resource does not decrypt with
	// the APIv3 key: a forged or corrupted resource (or the wrong key).
	ErrDecrypt = errors.New("wxpayv3: resource does not decrypt with the APIv3 key (a forged or corrupted resource, or the wrong key)")
	// ErrBillHash means a downloaded bill does not match the hash WeChat
	// announced for it, or the hash cannot be checked.
	ErrBillHash = errors.New("wxpayv3: bill download does not match its hash")
)

// MissingHeaderError means an answer or notification lacks one of the
// Wechatpay-* headers its signature needs.
type MissingHeaderError struct {
	Name string // the header, e.g. "Wechatpay-Signature"
}

// Error names the missing header.
func (e *MissingHeaderError) Error() string {
	return fmt.Sprintf("wxpayv3: header %s is missing or empty: the message is not signed", e.Name)
}

// TimestampError means a Wechatpay-Timestamp is not decimal Unix seconds, or
// is further from now than the verifier allows: a replayed or delayed
// message, or a clock that is off.
type TimestampError struct {
	Timestamp string        // the header's value
	Skew      time.Duration // now minus the timestamp: positive for a message from the past
	Window    time.Duration // the skew allowed either way
	Malformed bool          // the value is not decimal Unix seconds (Skew is then 0)
}

// Error says how far the timestamp is from now, or that it is malformed.
func (e *TimestampError) Error() string {
	if e.Malformed {
		return fmt.Sprintf("wxpayv3: Wechatpay-Timestamp %s is not decimal Unix seconds", quoteShort(e.Timestamp))
	}
	when := "old"
	skew := e.Skew
	if skew < 0 {
		when, skew = "in the future", -skew
	}
	if when == "old" {
		return fmt.Sprintf("wxpayv3: Wechatpay-Timestamp %s is %s old, more than the %s allowed (a replay, or a clock off?)", e.Timestamp, skew, e.Window)
	}
	return fmt.Sprintf("wxpayv3: Wechatpay-Timestamp %s is %s in the future, more than the %s allowed (a clock off?)", e.Timestamp, skew, e.Window)
}

// UnknownSerialError means a Wechatpay-Serial names no key the verifier
// knows: neither the configured WeChat Pay public key id nor a platform
// certificate serial.
type UnknownSerialError struct {
	Serial string
}

// Error names the unknown serial.
func (e *UnknownSerialError) Error() string {
	return fmt.Sprintf("wxpayv3: Wechatpay-Serial %s names no known WeChat Pay public key or platform certificate", quoteShort(e.Serial))
}

// VerifyError is an answer from WeChat (or from whatever answered in its
// place) that did not verify, or that could not be read as what was asked
// before it verified. Its content is not to be trusted. The request may
// nevertheless have had its effect: after a money-moving call (prepay,
// refund, close) treat the outcome as unknown and settle it with a query.
type VerifyError struct {
	Op     string // the call, e.g. "POST /v3/refund/domestic/refunds"
	Status int    // the HTTP status of the answer
	Err    error  // why it did not verify: *MissingHeaderError, ErrBadSignature…
	// Code and Message are what the unverified answer's JSON said, when it
	// was an error object: for diagnosis only (WeChat does not sign its
	// answer to a request whose own signature it refused, e.g. 401
	// SIGN_ERROR). Never decide anything on them.
	Code, Message string
	RequestID     string // the Request-ID header, unverified
}

// Error says which call's answer did not verify, and why.
func (e *VerifyError) Error() string {
	s := fmt.Sprintf("wxpayv3 %s: answer (HTTP %d) not verified: %v", e.Op, e.Status, e.Err)
	if e.Code != "" || e.Message != "" {
		s += fmt.Sprintf(" (unverified answer says %s: %s)", quoteShort(e.Code), quoteShort(e.Message))
	}
	return s
}

// Unwrap returns why the answer did not verify, for errors.Is and errors.As.
func (e *VerifyError) Unwrap() error { return e.Err }

// APIError is a verified answer of WeChat with an HTTP status other than
// 2xx, decoded from its {"code","message","detail"} body.
type APIError struct {
	Op        string // the call, e.g. "GET /v3/pay/transactions/out-trade-no/123"
	Status    int    // the HTTP status: 400, 401, 403, 404, 429, 500…
	Code      string // e.g. PARAM_ERROR, SIGN_ERROR, ORDER_NOT_EXIST, FREQUENCY_LIMITED, SYSTEM_ERROR
	Message   string
	Detail    json.RawMessage // the "detail" object, when WeChat gave one
	RequestID string          // the Request-ID header: quote it to WeChat's support
}

// Error gives the call, the status, WeChat's code and message, and the Request-ID.
func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = "(no code)"
	}
	s := fmt.Sprintf("wxpayv3 %s: HTTP %d %s: %s", e.Op, e.Status, code, e.Message)
	if e.RequestID != "" {
		s += " (Request-ID " + e.RequestID + ")"
	}
	return s
}

// Retryable reports whether WeChat documents the failure as transient: the
// same request may be sent again later.
func (e *APIError) Retryable() bool {
	switch e.Code {
	case "SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED":
		return true
	}
	return e.Status >= 500
}

// TransportError is a call that got no answer: the connection failed, the
// time ran out, or the answer could not be read. The request may have
// reached WeChat.
type TransportError struct {
	Op  string
	Err error
}

// Error gives the call and what went wrong on the way.
func (e *TransportError) Error() string { return fmt.Sprintf("wxpayv3 %s: %v", e.Op, e.Err) }

// Unwrap returns the network or context error.
func (e *TransportError) Unwrap() error { return e.Err }

// Timeout reports whether the call ran out of time (Client.Timeout, the
// context's deadline, or a network timeout).
func (e *TransportError) Timeout() bool {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// ResponseError is a verified 2xx answer that does not have the content the
// call expects: JSON that does not decode, a missing field, an order other
// than the one asked for, or an answer larger than MaxResponseSize (which
// is not verified). As with VerifyError, the request may have had its
// effect.
type ResponseError struct {
	Op     string
	Status int
	Err    error
}

// Error gives the call, the status and what the answer lacks.
func (e *ResponseError) Error() string {
	return fmt.Sprintf("wxpayv3 %s: answer (HTTP %d): %v", e.Op, e.Status, e.Err)
}

// Unwrap returns what is wrong with the answer.
func (e *ResponseError) Unwrap() error { return e.Err }

// FieldError names a field of a request or a message that is missing or
// invalid.
type FieldError struct {
	Field  string
	Reason string
}

// Error is "field: reason".
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErrorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// IsTimeout reports whether err is a call that ran out of time.
func IsTimeout(err error) bool {
	var te *TransportError
	return errors.As(err, &te) && te.Timeout()
}

// FailoverError is a call sent again on the failover endpoint after its
// first attempt got no answer or a 5xx, whose second attempt failed too:
// First may have taken effect at WeChat, and Twin's failure (a refusal of
// a request already under way, say) says nothing of it. It unwraps to
// First, so that OutcomeUnknown (and errors.As) see the first attempt's
// failure.
type FailoverError struct {
	Op    string
	First error // the endpoint's: a *TransportError, or a 5xx *APIError or its *VerifyError
	Twin  error // the failover endpoint's
}

func (e *FailoverError) Error() string {
	return fmt.Sprintf("wxpayv3 %s: outcome unknown: %v; sent again on the failover endpoint: %v", e.Op, e.First, e.Twin)
}

func (e *FailoverError) Unwrap() error { return e.First }

// orderStateAnswer reports whether err is WeChat's answer about the order's
// state (closed, paid), which is true whatever an earlier attempt of the
// same call did.
func orderStateAnswer(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Code == "ORDER_CLOSED" || ae.Code == "ORDERPAID")
}

// OutcomeUnknown reports whether err leaves open whether the call took
// effect at WeChat: no answer (*TransportError), an answer that did not
// verify (*VerifyError) or could not be used (*ResponseError), or a 5xx.
// After a money-moving call such an error means "query before deciding".
func OutcomeUnknown(err error) bool {
	var (
		te *TransportError
		ve *VerifyError
		re *ResponseError
		ae *APIError
	)
	switch {
	case errors.As(err, &te), errors.As(err, &ve), errors.As(err, &re):
		return true
	case errors.As(err, &ae):
		return ae.Status >= 500
	}
	return false
}

// quoteShort quotes a value from outside for an error message, cut to a
// length that keeps logs readable.
func quoteShort(s string) string {
	const max = 64
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q…(%d bytes)", s[:cut], len(s))
}
