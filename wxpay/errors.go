package wxpay

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// APIError is WeChat's answer that a call did not succeed: return_code FAIL
// (the request itself was refused: bad signature, malformed XML…) or
// result_code FAIL with an err_code (the business operation failed).
type APIError struct {
	Op         string // the API called, e.g. "unifiedorder"
	ReturnCode string // "FAIL" when the request was refused
	ReturnMsg  string
	ResultCode string // "FAIL" when the operation failed
	ErrCode    string // e.g. ORDERPAID, OUT_TRADE_NO_USED, SYSTEMERROR
	ErrCodeDes string
}

// ReturnFail is the Code of an APIError whose return_code is FAIL: WeChat
// gives no err_code then, only a message (签名错误, XML格式错误…).
const ReturnFail = "RETURN_FAIL"

// Code is WeChat's err_code, or ReturnFail when the request was refused
// before any business processing.
func (e *APIError) Code() string {
	if e.ErrCode != "" {
		return e.ErrCode
	}
	return ReturnFail
}

// Message is WeChat's description of the failure.
func (e *APIError) Message() string {
	if e.ErrCodeDes != "" {
		return e.ErrCodeDes
	}
	if e.ReturnMsg != "" {
		return e.ReturnMsg
	}
	return "WeChat Pay answered FAIL"
}

func (e *APIError) Error() string {
	return fmt.Sprintf("wxpay %s: %s: %s", e.Op, e.Code(), e.Message())
}

// Retryable reports whether WeChat documents the failure as transient, to be
// retried with the same parameters.
func (e *APIError) Retryable() bool {
	switch e.ErrCode {
	case "SYSTEMERROR", "BIZERR_NEED_RETRY", "FREQUENCY_LIMITED":
		return true
	}
	return false
}

// TransportError is a call that got no usable answer from WeChat: the
// connection failed, the time ran out, or the HTTP status was not 200.
type TransportError struct {
	Op         string
	StatusCode int // the HTTP status when one came, else 0
	Err        error
}

func (e *TransportError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("wxpay %s: HTTP status %d", e.Op, e.StatusCode)
	}
	return fmt.Sprintf("wxpay %s: %v", e.Op, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Timeout reports whether WeChat did not answer in time.
func (e *TransportError) Timeout() bool {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// ResponseError is an answer that came but cannot be trusted: it does not
// parse, its signature does not verify, or it names another merchant.
type ResponseError struct {
	Op  string
	Err error
}

func (e *ResponseError) Error() string { return fmt.Sprintf("wxpay %s: reply: %v", e.Op, e.Err) }
func (e *ResponseError) Unwrap() error { return e.Err }

// FieldError names a field of a request that is missing or invalid.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErrorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
