package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Error is the gateway's answer to a caller that it could not serve: an
// HTTP status and {"error": {"code": "...", "message": "..."}}. Err, the
// cause, is for the log and never shown to the caller.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// BadRequest is a 400 INVALID_REQUEST whose message says what was wrong.
func BadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "INVALID_REQUEST", Message: fmt.Sprintf(format, args...)}
}

// InvalidField is a 400 for one field of a request, as an API version's
// validation reports it.
func InvalidField(field, reason string) *Error {
	return BadRequest("%s %s", field, reason)
}

// internalError is a 500 whose cause is logged, not shown.
func internalError(message string, err error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "INTERNAL", Message: message, Err: err}
}

// CallErrorKind says what went wrong in a call to WeChat Pay, whatever the
// API version.
type CallErrorKind int

const (
	// Refused: WeChat answered with a business error (Code and Message
	// are WeChat's) that is neither of the kinds below.
	Refused CallErrorKind = iota
	// Conflict: the request conflicts with the order's or refund's state
	// (paid, closed, number used for other content, more than is left to
	// refund).
	Conflict
	// NotFound: WeChat does not know the order, refund or bill.
	NotFound
	// RateLimited: WeChat asks to slow down (FREQUENCY_LIMITED).
	RateLimited
	// Timeout: WeChat did not answer in time; the call's effect is unknown.
	Timeout
	// Unreachable: WeChat could not be reached.
	Unreachable
	// BadSignature: WeChat's answer failed verification (for a call that
	// moves money, its effect is unknown).
	BadSignature
	// BadReply: WeChat's answer could not be used.
	BadReply
)

// CallError is a failed call to WeChat Pay as an API version classifies
// it. Protocol implementations return it (wrapped or not) for every
// failure of WeChat's; the gateway maps its kind to the caller's answer.
type CallError struct {
	Kind    CallErrorKind
	Code    string // WeChat's error code (err_code, or APIv3's code)
	Message string // WeChat's words
	// RequestID is WeChat's id of the exchange (APIv3's Request-ID
	// header; API v2 has none), to quote to WeChat's support.
	RequestID string
	Err       error
}

func (e *CallError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *CallError) Unwrap() error { return e.Err }

// ErrorFor maps an error of a call to WeChat onto the caller's answer: 409
// for a conflict with the order's state, 404 for what WeChat does not know,
// 429 when WeChat limits the rate, 504 when WeChat did not answer in time,
// 502 for any other failure of WeChat's, each with WeChat's code and words
// when it gave them. An *Error (a refused request) is answered as it is;
// anything else is a 500.
func ErrorFor(err error) *Error {
	var (
		ge *Error
		ce *CallError
	)
	switch {
	case errors.As(err, &ge):
		return ge
	case errors.Is(err, context.Canceled):
		return &Error{Status: StatusClientClosed, Code: "CLIENT_CLOSED", Message: "the caller went away before the call ended", Err: err}
	case !errors.As(err, &ce):
		return internalError("the request could not be served", err)
	}
	switch ce.Kind {
	case Conflict:
		return &Error{Status: http.StatusConflict, Code: ce.Code, Message: ce.Message, Err: err}
	case NotFound:
		return &Error{Status: http.StatusNotFound, Code: ce.Code, Message: ce.Message, Err: err}
	case RateLimited:
		return &Error{Status: http.StatusTooManyRequests, Code: ce.Code, Message: ce.Message, Err: err}
	case Timeout:
		return &Error{Status: http.StatusGatewayTimeout, Code: "WECHAT_TIMEOUT", Message: "WeChat Pay did not answer in time", Err: err}
	case Unreachable:
		return &Error{Status: http.StatusBadGateway, Code: "WECHAT_UNREACHABLE", Message: "WeChat Pay could not be reached", Err: err}
	case BadSignature:
		msg := "WeChat Pay's answer failed signature verification"
		if ce.Message != "" {
			msg += ": " + ce.Message
		}
		return &Error{Status: http.StatusBadGateway, Code: "WECHAT_BAD_SIGNATURE", Message: msg, Err: err}
	case BadReply:
		return &Error{Status: http.StatusBadGateway, Code: "WECHAT_BAD_REPLY", Message: "WeChat Pay's answer could not be used", Err: err}
	}
	return &Error{Status: http.StatusBadGateway, Code: ce.Code, Message: ce.Message, Err: err}
}

// StatusClientClosed is the status of a request whose caller went away
// before it ended (nginx's 499): nobody reads it; it labels logs.
const StatusClientClosed = 499

// maxLogged bounds what of a text that may come from a request (an error
// quoting it, a message) goes into one log field.
const maxLogged = 512

// LogText is s as a log field may carry it: at most maxLogged bytes, cut at
// a character boundary, with how much was cut. A notification or request
// may carry up to 64 KiB of an attacker's text, which errors can quote.
func LogText(s string) string {
	if len(s) <= maxLogged {
		return s
	}
	n := maxLogged
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)-n) + " more bytes)"
}

// LogError is zap.Error for an error that may quote a request: its text
// through LogText.
func LogError(err error) zap.Field {
	if err == nil {
		return zap.Skip()
	}
	text := err.Error()
	// WeChat's Request-ID, which its support asks for, whatever the
	// error's own text says.
	var ce *CallError
	if errors.As(err, &ce) && ce.RequestID != "" && !strings.Contains(text, ce.RequestID) {
		text += " (Request-ID " + ce.RequestID + ")"
	}
	return zap.String("error", LogText(text))
}

// LogLevel is the level a failed call's log entry takes: info for the
// caller's (4xx) and a caller that went away; warn for WeChat refusing
// what this request asked (answered 502: PARAM_ERROR, INVALID_REQUEST…);
// error for the rest: the gateway's and WeChat's failures, and WeChat's
// refusals that say the merchant's configuration is wrong (SIGN_ERROR,
// NOAUTH, APPID_MCHID_NOT_MATCH…: every call fails until it is fixed).
func LogLevel(e *Error) zapcore.Level {
	switch {
	case e.Status == StatusClientClosed || e.Status < 500:
		return zapcore.InfoLevel
	case e.Err != nil && wechatRefused(e.Err) && requestRefusals[e.Code]:
		return zapcore.WarnLevel
	}
	return zapcore.ErrorLevel
}

// requestRefusals are WeChat's codes (v2 and v3 names) for refusing what
// one request asked, not the merchant's set-up.
var requestRefusals = map[string]bool{
	"PARAM_ERROR": true, "INVALID_REQUEST": true, "TRADE_ERROR": true, "RULE_LIMIT": true, "RULELIMIT": true,
	"USER_ACCOUNT_ABNORMAL": true, "ORDERREVERSED": true, "REFUNDNOTEXIST": true, "XML_FORMAT_ERROR": true,
	"LACK_PARAMS": true, "POST_DATA_EMPTY": true, "OUT_TRADE_NO_USED": true, "BIZERR_NEED_RETRY": true,
}

// effectUnknown reports whether a failed call to WeChat may still have had
// its effect: no answer in time, a connection lost after the request may
// have gone out, or an answer that failed verification or could not be
// read (WeChat's own SYSTEMERROR too: the same call may be made again).
func effectUnknown(err error) bool {
	var ce *CallError
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Kind {
	case Timeout, Unreachable, BadSignature, BadReply:
		return true
	case Refused:
		return ce.Code == CodeSystemError
	}
	return false
}

// wechatRefused reports whether err says WeChat did not do what it was
// asked (a business error, a conflict with what it knows under that
// number, a rate limit), or the request was refused before WeChat was
// asked: the complement of effectUnknown among the failures of a call.
func wechatRefused(err error) bool {
	var (
		ce *CallError
		ge *Error
	)
	if errors.As(err, &ce) {
		return !effectUnknown(err)
	}
	return errors.As(err, &ge)
}
