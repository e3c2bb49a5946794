package wxpay

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Trade types of unifiedorder.
const (
	TradeTypeJSAPI  = "JSAPI"  // mini programs and official accounts
	TradeTypeNative = "NATIVE" // QR code (code_url)
	TradeTypeAPP    = "APP"    // native apps
	TradeTypeMWEB   = "MWEB"   // H5 pages in a mobile browser (mweb_url)
)

// Beijing is the time zone of WeChat's time_start and time_expire. China has
// no daylight saving time, so a fixed zone is exact and needs no tzdata.
var Beijing = time.FixedZone("CST", 8*60*60)

// TimeLayout is the layout of WeChat's API v2 times (yyyyMMddHHmmss).
const TimeLayout = "20060102150405"

// UnifiedOrderRequest is an order for /pay/unifiedorder (统一下单), in
// WeChat's own field names. mch_id, nonce_str, sign_type and sign are added
// by the Client.
type UnifiedOrderRequest struct {
	AppID          string `json:"app_id,omitempty"`
	Body           string `json:"body"`
	OutTradeNo     string `json:"out_trade_no"`
	TotalFee       int64  `json:"total_fee"`
	SpbillCreateIP string `json:"spbill_create_ip,omitempty"`
	NotifyURL      string `json:"notify_url,omitempty"`
	TradeType      string `json:"trade_type"`
	OpenID         string `json:"openid,omitempty"`
	ProductID      string `json:"product_id,omitempty"`
	SceneInfo      string `json:"scene_info,omitempty"`
	Attach         string `json:"attach,omitempty"`
	TimeStart      string `json:"time_start,omitempty"`
	TimeExpire     string `json:"time_expire,omitempty"`
	Detail         string `json:"detail,omitempty"`
	GoodsTag       string `json:"goods_tag,omitempty"`
	FeeType        string `json:"fee_type,omitempty"`
	DeviceInfo     string `json:"device_info,omitempty"`
	LimitPay       string `json:"limit_pay,omitempty"`
}

// Validate checks the request against WeChat's documented limits, so that
// a bad order fails here with the name of the field instead of as a
// PARAM_ERROR from WeChat. The error is a *FieldError.
func (r *UnifiedOrderRequest) Validate() error {
	if r.AppID == "" {
		return fieldErrorf("app_id", "is required")
	}
	if err := ValidateOutTradeNo("out_trade_no", r.OutTradeNo); err != nil {
		return err
	}
	if r.TotalFee <= 0 {
		return fieldErrorf("total_fee", "must be a positive integer number of fen, got %d", r.TotalFee)
	}
	if r.Body == "" {
		return fieldErrorf("body", "is required")
	}
	if len(r.Body) > 128 {
		return fieldErrorf("body", "is %d bytes, WeChat allows 128", len(r.Body))
	}
	if ip, err := netip.ParseAddr(r.SpbillCreateIP); err != nil || ip.Zone() != "" {
		return fieldErrorf("spbill_create_ip", "is not an IP address")
	}
	if err := validateNotifyURL(r.NotifyURL); err != nil {
		return err
	}
	switch r.TradeType {
	case TradeTypeJSAPI:
		if r.OpenID == "" {
			return fieldErrorf("openid", "is required for trade_type JSAPI")
		}
	case TradeTypeNative:
		if r.ProductID == "" {
			return fieldErrorf("product_id", "is required for trade_type NATIVE")
		}
	case TradeTypeAPP:
	case TradeTypeMWEB:
		if r.SceneInfo == "" {
			return fieldErrorf("scene_info", "is required for trade_type MWEB")
		}
	case "":
		return fieldErrorf("trade_type", "is required (JSAPI, NATIVE, APP or MWEB)")
	default:
		return fieldErrorf("trade_type", "must be JSAPI, NATIVE, APP or MWEB, got %q", r.TradeType)
	}
	if r.SceneInfo != "" && !json.Valid([]byte(r.SceneInfo)) {
		return fieldErrorf("scene_info", "is not valid JSON text")
	}
	limits := []struct {
		name  string
		value string
		max   int
	}{
		{"openid", r.OpenID, 128}, {"product_id", r.ProductID, 32}, {"scene_info", r.SceneInfo, 256},
		{"attach", r.Attach, 127}, {"detail", r.Detail, 6000}, {"goods_tag", r.GoodsTag, 32},
		{"fee_type", r.FeeType, 16}, {"device_info", r.DeviceInfo, 32}, {"limit_pay", r.LimitPay, 32},
	}
	for _, l := range limits {
		if len(l.value) > l.max {
			return fieldErrorf(l.name, "is %d bytes, WeChat allows %d", len(l.value), l.max)
		}
	}
	for _, tf := range []struct{ name, value string }{{"time_start", r.TimeStart}, {"time_expire", r.TimeExpire}} {
		if tf.value == "" {
			continue
		}
		if _, err := time.ParseInLocation(TimeLayout, tf.value, Beijing); err != nil || len(tf.value) != 14 {
			return fieldErrorf(tf.name, "must be yyyyMMddHHmmss in Beijing time, got %q", tf.value)
		}
	}
	if r.LimitPay != "" && r.LimitPay != "no_credit" {
		return fieldErrorf("limit_pay", "must be no_credit, got %q", r.LimitPay)
	}
	// Every value goes into the request's XML, which cannot carry control
	// characters (but tab and line breaks), U+FFFE, U+FFFF or invalid
	// UTF-8: refused here, by name, before the order is recorded.
	for _, f := range []struct{ name, value string }{
		{"body", r.Body}, {"detail", r.Detail}, {"attach", r.Attach}, {"openid", r.OpenID}, {"product_id", r.ProductID},
		{"scene_info", r.SceneInfo}, {"goods_tag", r.GoodsTag}, {"fee_type", r.FeeType}, {"device_info", r.DeviceInfo},
		{"spbill_create_ip", r.SpbillCreateIP}, {"notify_url", r.NotifyURL}, {"app_id", r.AppID},
	} {
		if err := checkChars(f.value); err != nil {
			return fieldErrorf(f.name, "%v", err)
		}
	}
	return nil
}

// ValidateOutTradeNo checks a merchant order number: 1 to 32 of the
// characters WeChat allows ([0-9A-Za-z_-|*]).
func ValidateOutTradeNo(field, v string) error {
	return validateMerchantNo(field, v, 32, "_-|*")
}

// validateMerchantNo checks a merchant's number: 1 to maxLen letters,
// digits and the punctuation in extra.
func validateMerchantNo(field, v string, maxLen int, extra string) error {
	if v == "" {
		return fieldErrorf(field, "is required")
	}
	if len(v) > maxLen {
		return fieldErrorf(field, "is %d characters, WeChat allows %d", len(v), maxLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte(extra, c) >= 0) {
			return fieldErrorf(field, "may hold only letters, digits and %s", extra)
		}
	}
	return nil
}

func validateNotifyURL(s string) error {
	if s == "" {
		return fieldErrorf("notify_url", "is required")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fieldErrorf("notify_url", "is not an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return fieldErrorf("notify_url", "must not carry a query string (WeChat drops it)")
	}
	if len(s) > 256 {
		return fieldErrorf("notify_url", "is %d bytes, WeChat allows 256", len(s))
	}
	return nil
}

// Params returns the request as a v2 document (without the fields the
// Client adds).
func (r *UnifiedOrderRequest) Params() Params {
	p := make(Params, 0, 20)
	p.SetNonEmpty("appid", r.AppID)
	p.SetNonEmpty("device_info", r.DeviceInfo)
	p.SetNonEmpty("body", r.Body)
	p.SetNonEmpty("detail", r.Detail)
	p.SetNonEmpty("attach", r.Attach)
	p.SetNonEmpty("out_trade_no", r.OutTradeNo)
	p.SetNonEmpty("fee_type", r.FeeType)
	p.Set("total_fee", strconv.FormatInt(r.TotalFee, 10))
	p.SetNonEmpty("spbill_create_ip", r.SpbillCreateIP)
	p.SetNonEmpty("time_start", r.TimeStart)
	p.SetNonEmpty("time_expire", r.TimeExpire)
	p.SetNonEmpty("goods_tag", r.GoodsTag)
	p.SetNonEmpty("notify_url", r.NotifyURL)
	p.SetNonEmpty("trade_type", r.TradeType)
	p.SetNonEmpty("product_id", r.ProductID)
	p.SetNonEmpty("limit_pay", r.LimitPay)
	p.SetNonEmpty("openid", r.OpenID)
	p.SetNonEmpty("scene_info", r.SceneInfo)
	return p
}

// UnifiedOrderResponse is WeChat's answer to a successful unifiedorder.
type UnifiedOrderResponse struct {
	AppID     string
	TradeType string
	PrepayID  string // valid for 2 hours
	CodeURL   string // NATIVE only
	MWebURL   string // MWEB only
	Raw       Params // the whole verified answer
}

// UnifiedOrder places an order with WeChat (统一下单).
func (c *Client) UnifiedOrder(ctx context.Context, r *UnifiedOrderRequest) (*UnifiedOrderResponse, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("unifiedorder %s: %w", r.OutTradeNo, err)
	}
	p, err := c.Call(ctx, "unifiedorder", "/pay/unifiedorder", r.Params())
	if err != nil {
		return nil, err
	}
	resp := &UnifiedOrderResponse{
		AppID: p.Get("appid"), TradeType: p.Get("trade_type"), PrepayID: p.Get("prepay_id"),
		CodeURL: p.Get("code_url"), MWebURL: p.Get("mweb_url"), Raw: p,
	}
	switch {
	case resp.PrepayID == "":
		return nil, &ResponseError{Op: "unifiedorder", Err: fmt.Errorf("answer has no prepay_id")}
	case resp.AppID != "" && resp.AppID != r.AppID:
		return nil, &ResponseError{Op: "unifiedorder", Err: fmt.Errorf("answer is for appid %q, not %q", resp.AppID, r.AppID)}
	case r.TradeType == TradeTypeNative && resp.CodeURL == "":
		return nil, &ResponseError{Op: "unifiedorder", Err: fmt.Errorf("NATIVE answer has no code_url")}
	case r.TradeType == TradeTypeMWEB && resp.MWebURL == "":
		return nil, &ResponseError{Op: "unifiedorder", Err: fmt.Errorf("MWEB answer has no mweb_url")}
	}
	if resp.TradeType == "" {
		resp.TradeType = r.TradeType
	}
	return resp, nil
}
