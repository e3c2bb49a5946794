package apiv3

import (
	"errors"
	"net/http"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// v2Codes are APIv3 error codes under the API v2 names the gateway's
// callers already handle (the gateway's language), with the kind each
// is. Codes not listed keep their v3 name and are Refused (502), or
// NotFound/RateLimited by their HTTP status.
var v2Codes = map[string]struct {
	code string
	kind gateway.CallErrorKind
}{
	"ORDERPAID": {"ORDERPAID", gateway.Conflict},
	// A close while the payer enters the password: not closed.
	wxpayv3.CodeUserPaying: {gateway.CodeUserPaying, gateway.Conflict},
	"ORDER_CLOSED":         {gateway.CodeOrderClosed, gateway.Conflict},
	"OUT_TRADE_NO_USED":    {"OUT_TRADE_NO_USED", gateway.Conflict},
	"NOT_ENOUGH":           {"NOTENOUGH", gateway.Conflict},
	"ORDER_NOT_EXIST":      {"ORDERNOTEXIST", gateway.NotFound},
	"RESOURCE_NOT_EXISTS":  {"RESOURCE_NOT_EXISTS", gateway.NotFound},
	// A day without a bill (HTTP 400 from WeChat): 404, as API v2's
	// "No Bill Exist".
	"NO_STATEMENT_EXIST": {"NO_STATEMENT_EXIST", gateway.NotFound},
	"FREQUENCY_LIMITED":  {"FREQUENCY_LIMITED", gateway.RateLimited},
	"RATELIMIT_EXCEEDED": {"FREQUENCY_LIMITED", gateway.RateLimited},
	"SYSTEM_ERROR":       {gateway.CodeSystemError, gateway.Refused},
	"SYSTEMERROR":        {gateway.CodeSystemError, gateway.Refused},
}

// callError classifies a failed APIv3 call for the gateway.
func callError(err error) error {
	if err == nil {
		return nil
	}
	var (
		ae *wxpayv3.APIError
		ve *wxpayv3.VerifyError
		te *wxpayv3.TransportError
	)
	switch {
	case errors.As(err, &ae):
		ce := &gateway.CallError{Kind: gateway.Refused, Code: ae.Code, Message: ae.Message, RequestID: ae.RequestID, Err: err}
		if m, ok := v2Codes[ae.Code]; ok {
			ce.Code, ce.Kind = m.code, m.kind
		} else {
			switch {
			case ae.Status == http.StatusNotFound:
				ce.Kind = gateway.NotFound
			case ae.Status == http.StatusTooManyRequests:
				ce.Kind = gateway.RateLimited
			case ae.Status >= 500:
				// WeChat's own failure: the effect is unknown.
				ce.Code = gateway.CodeSystemError
			}
		}
		if ae.Code == "SIGN_ERROR" {
			ce.Message = "WeChat refused the request's signature: the merchant's private_key or mch_serial is wrong (" + ae.Message + ")"
		}
		return ce
	case errors.As(err, &ve):
		ce := &gateway.CallError{Kind: gateway.BadSignature, RequestID: ve.RequestID, Err: err}
		if ve.Status == http.StatusUnauthorized && ve.Code == "SIGN_ERROR" {
			// WeChat does not sign its refusal of a request whose own
			// signature it refused: unverified, but the likely cause is
			// worth saying.
			ce.Message = "WeChat's answer (HTTP 401, unsigned) says it refused the request's signature: check the merchant's private_key and mch_serial"
		}
		return ce
	case errors.As(err, &te) && te.Timeout():
		return &gateway.CallError{Kind: gateway.Timeout, Err: err}
	case errors.As(err, &te):
		return &gateway.CallError{Kind: gateway.Unreachable, Err: err}
	}
	var ge *gateway.Error
	if errors.As(err, &ge) {
		return err
	}
	return &gateway.CallError{Kind: gateway.BadReply, Err: err}
}

// notFoundAs gives a NotFound failure API v2's code for what was not found
// (ORDERNOTEXIST, REFUNDNOTEXIST), as the gateway's callers know it.
func notFoundAs(err error, code string) error {
	var ce *gateway.CallError
	if errors.As(err, &ce) && ce.Kind == gateway.NotFound {
		ce.Code = code
	}
	return err
}
