package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// maxOrderBody bounds an order document, from a caller or a backend.
const maxOrderBody = 64 << 10

// OrderRequest is the body of POST /wxpay/orders and of a backend's
// application/vnd.wxpay.order+json answer, in WeChat's field names.
type OrderRequest struct {
	OutTradeNo     string          `json:"out_trade_no"`
	TotalFee       json.RawMessage `json:"total_fee"`
	Body           string          `json:"body"`
	TradeType      string          `json:"trade_type"`
	OpenID         string          `json:"openid,omitempty"`
	ProductID      string          `json:"product_id,omitempty"`
	SceneInfo      string          `json:"scene_info,omitempty"`
	AppID          string          `json:"app_id,omitempty"`
	Attach         string          `json:"attach,omitempty"`
	SpbillCreateIP string          `json:"spbill_create_ip,omitempty"`
	TimeExpire     string          `json:"time_expire,omitempty"`
	Detail         string          `json:"detail,omitempty"`
	GoodsTag       string          `json:"goods_tag,omitempty"`
}

// OrderResponse is the gateway's answer to a placed order.
type OrderResponse struct {
	OutTradeNo string `json:"out_trade_no"`
	TradeType  string `json:"trade_type"`
	PrepayID   string `json:"prepay_id"`
	AppID      string `json:"app_id"`
	PayParams  any    `json:"pay_params,omitempty"` // JSAPI and APP
	CodeURL    string `json:"code_url,omitempty"`   // NATIVE
	MWebURL    string `json:"mweb_url,omitempty"`   // MWEB
}

// apiError is an error answered to a caller of the gateway's API as
// {"error": {"code": "...", "message": "..."}}.
type apiError struct {
	status  int
	code    string
	message string
	err     error // for the log; never shown to the caller
}

func (e *apiError) Error() string {
	if e.err != nil {
		return e.code + ": " + e.message + ": " + e.err.Error()
	}
	return e.code + ": " + e.message
}

func (e *apiError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "INVALID_REQUEST", message: fmt.Sprintf(format, args...)}
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error": map[string]string{"code": e.code, "message": e.message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":{"code":"INTERNAL","message":"cannot encode the answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// decodeOrder parses an order document strictly: unknown fields, trailing
// data and a total_fee that is not a JSON integer are refused.
func decodeOrder(data []byte) (*OrderRequest, *apiError) {
	var o OrderRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return nil, badRequest("%s must be a JSON %s", ute.Field, jsonKind(ute.Type.Kind().String()))
		}
		return nil, badRequest("order is not a valid JSON object: %v", err)
	}
	if dec.More() {
		return nil, badRequest("order has data after the JSON object")
	}
	return &o, nil
}

func jsonKind(goKind string) string {
	if goKind == "string" {
		return "string"
	}
	return goKind
}

// totalFee parses total_fee: a JSON integer number of fen, above zero.
func (o *OrderRequest) totalFee() (int64, *apiError) {
	return jsonAmount("total_fee", o.TotalFee)
}

// jsonAmount parses an amount in fen: a JSON integer above zero.
func jsonAmount(field string, rawValue json.RawMessage) (int64, *apiError) {
	raw := bytes.TrimSpace(rawValue)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, badRequest("%s is required: the amount in fen, a positive integer", field)
	}
	if raw[0] == '"' {
		return 0, badRequest("%s must be a JSON number (fen), not a string", field)
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, badRequest("%s must be an integer number of fen, got %s", field, raw)
	}
	if v <= 0 {
		return 0, badRequest("%s must be above zero, got %d", field, v)
	}
	return v, nil
}

// unifiedOrderRequest turns an order into WeChat's request for merchant m;
// clientIP is the default spbill_create_ip.
func (o *OrderRequest) unifiedOrderRequest(m *merchant, clientIP string) (*wxpay.UnifiedOrderRequest, *apiError) {
	fee, aerr := o.totalFee()
	if aerr != nil {
		return nil, aerr
	}
	appID := o.AppID
	if appID == "" {
		appID = m.appIDs[0]
	} else if !m.hasAppID(appID) {
		return nil, badRequest("app_id %q is not one of merchant %s's app ids", appID, m.name)
	}
	ip := o.SpbillCreateIP
	if ip == "" {
		ip = clientIP
	}
	r := &wxpay.UnifiedOrderRequest{
		AppID: appID, Body: o.Body, OutTradeNo: o.OutTradeNo, TotalFee: fee,
		SpbillCreateIP: ip, NotifyURL: m.notifyURL, TradeType: o.TradeType,
		OpenID: o.OpenID, ProductID: o.ProductID, SceneInfo: o.SceneInfo,
		Attach: o.Attach, TimeExpire: o.TimeExpire, Detail: o.Detail, GoodsTag: o.GoodsTag,
	}
	if err := r.Validate(); err != nil {
		var fe *wxpay.FieldError
		if errors.As(err, &fe) {
			return nil, badRequest("%s %s", fe.Field, fe.Reason)
		}
		return nil, badRequest("%v", err)
	}
	return r, nil
}

// weChatError maps a failed call to WeChat onto the gateway's answer:
// 409 for an order already paid or a number already used, 504 when WeChat
// did not answer in time, 502 for any other failure of WeChat's.
func weChatError(err error) *apiError {
	var (
		ae *wxpay.APIError
		te *wxpay.TransportError
		re *wxpay.ResponseError
	)
	switch {
	case errors.As(err, &ae):
		status := http.StatusBadGateway
		switch ae.Code() {
		case "ORDERPAID", "OUT_TRADE_NO_USED", "ORDERCLOSED", "NOTENOUGH", "TRADE_STATE_ERROR", "REFUND_FEE_MISMATCH":
			status = http.StatusConflict
		case "ORDERNOTEXIST", "REFUNDNOTEXIST":
			status = http.StatusNotFound
		case "FREQUENCY_LIMITED":
			status = http.StatusTooManyRequests
		}
		if ae.Message() == "No Bill Exist" {
			status = http.StatusNotFound
		}
		return &apiError{status: status, code: ae.Code(), message: ae.Message(), err: err}
	case errors.As(err, &te) && te.Timeout():
		return &apiError{status: http.StatusGatewayTimeout, code: "WECHAT_TIMEOUT", message: "WeChat Pay did not answer in time", err: err}
	case errors.As(err, &te):
		return &apiError{status: http.StatusBadGateway, code: "WECHAT_UNREACHABLE", message: "WeChat Pay could not be reached", err: err}
	case errors.As(err, &re) && errors.Is(err, wxpay.ErrInvalidSignature), errors.As(err, &re) && errors.Is(err, wxpay.ErrMissingSign):
		return &apiError{status: http.StatusBadGateway, code: "WECHAT_BAD_SIGNATURE", message: "WeChat Pay's answer failed signature verification", err: err}
	case errors.As(err, &re):
		return &apiError{status: http.StatusBadGateway, code: "WECHAT_BAD_REPLY", message: "WeChat Pay's answer could not be used", err: err}
	}
	return &apiError{status: http.StatusInternalServerError, code: "INTERNAL", message: "the order could not be placed", err: err}
}

// readLimited reads a request body of at most limit bytes.
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: "TOO_LARGE", message: fmt.Sprintf("body is larger than %d bytes", limit)}
		}
		return nil, badRequest("cannot read the body: %v", err)
	}
	return body, nil
}

// clientIP is the client's address as Caddy determined it (trusted proxies
// and client_ip_headers included).
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
