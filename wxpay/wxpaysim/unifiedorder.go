package wxpaysim

import (
	"context"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// WeChat's return_msg for requests it refuses before any business
// processing. These answers carry return_code FAIL and are not signed.
const (
	// MsgNotPost answers a request that is not a POST.
	MsgNotPost = "请使用post方法"
	// MsgEmptyBody answers a request without a body.
	MsgEmptyBody = "post数据为空"
	// MsgBadXML answers a body that is not a flat XML document, or too large.
	MsgBadXML = "XML格式错误"
	// MsgNotUTF8 answers a body that is not UTF-8.
	MsgNotUTF8 = "编码格式错误"
	// MsgMissingMchID answers a request without mch_id.
	MsgMissingMchID = "缺少参数mch_id"
	// MsgUnknownMchID answers a request for a merchant the simulator does
	// not know.
	MsgUnknownMchID = "商户号mch_id与appid不匹配"
	// MsgBadSignType answers a sign_type other than MD5 and HMAC-SHA256.
	MsgBadSignType = "签名类型错误"
	// MsgInvalidSign answers a request whose sign does not verify.
	MsgInvalidSign = "签名错误"
)

// wait waits d, and reports false when ctx ended first. When the simulator
// closes it stops waiting and reports true, so that the answer is sent.
func (s *Simulator) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return true
	case <-ctx.Done():
		return false
	}
}

// unifiedOrder answers POST /pay/unifiedorder once the common checks
// passed.
func (s *Simulator) unifiedOrder(c *apiCall) (apiReply, error) {
	req, m := c.req, c.m
	outTradeNo := req.Get("out_trade_no")
	fail := func(code, des string) (apiReply, error) {
		s.logf("wxpaysim: unifiedorder mch_id=%s out_trade_no=%q: %s %s", m.MchID, outTradeNo, code, des)
		return s.answer(m, c.st, req, code, des, nil)
	}
	if appID := req.Get("appid"); appID != "" && !slices.Contains(m.AppIDs, appID) {
		return fail("APPID_MCHID_NOT_MATCH", errCodeDes("APPID_MCHID_NOT_MATCH"))
	}
	now := s.now()
	if code, des := validateOrder(req, now); code != "" {
		return fail(code, des)
	}
	fields, code := s.placeOrder(m, c.st, req, now)
	if code != "" {
		return fail(code, errCodeDes(code))
	}
	s.logf("wxpaysim: unifiedorder mch_id=%s out_trade_no=%q: SUCCESS prepay_id=%s", m.MchID, outTradeNo, fields.Get("prepay_id"))
	return s.succeed(c, fields)
}

// validateOrder checks a unifiedorder request as WeChat does, returning
// LACK_PARAMS or PARAM_ERROR and a description naming the field, or "".
func validateOrder(req wxpay.Params, now time.Time) (code, des string) {
	required := []string{"appid", "mch_id", "nonce_str", "body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type"}
	for _, f := range required {
		if req.Get(f) == "" {
			return "LACK_PARAMS", "缺少参数" + f
		}
	}
	paramError := func(des string) (string, string) { return "PARAM_ERROR", des }
	if len(req.Get("nonce_str")) > 32 {
		return paramError("nonce_str参数长度有误")
	}
	if len(req.Get("body")) > 128 {
		return paramError("body参数长度有误")
	}
	if wxpay.ValidateOutTradeNo("out_trade_no", req.Get("out_trade_no")) != nil {
		return paramError("out_trade_no参数格式错误")
	}
	if _, ok := parseFee(req.Get("total_fee")); !ok {
		return paramError("total_fee参数格式错误")
	}
	if ip, err := netip.ParseAddr(req.Get("spbill_create_ip")); err != nil || ip.Zone() != "" {
		return paramError("spbill_create_ip参数格式错误")
	}
	if des := checkNotifyURL(req.Get("notify_url")); des != "" {
		return paramError(des)
	}
	switch tt := req.Get("trade_type"); tt {
	case wxpay.TradeTypeJSAPI:
		if req.Get("openid") == "" {
			return paramError("trade_type=JSAPI时（即JSAPI支付），必须传openid")
		}
	case wxpay.TradeTypeNative:
		if req.Get("product_id") == "" {
			return paramError("trade_type=NATIVE时（即扫码支付），必须传product_id")
		}
	case wxpay.TradeTypeMWEB:
		if req.Get("scene_info") == "" {
			return paramError("trade_type=MWEB时（即H5支付），必须传scene_info")
		}
	case wxpay.TradeTypeAPP:
	default:
		return paramError("trade_type参数格式错误")
	}
	if len(req.Get("attach")) > 127 {
		return paramError("attach参数长度有误")
	}
	if v := req.Get("time_start"); v != "" {
		if _, ok := parseTime(v); !ok {
			return paramError("time_start参数格式错误")
		}
	}
	if v := req.Get("time_expire"); v != "" {
		t, ok := parseTime(v)
		if !ok {
			return paramError("time_expire参数格式错误")
		}
		if !t.After(now) {
			return paramError("time_expire时间已过期")
		}
	}
	return "", ""
}

// parseFee parses a positive amount in fen without sign or leading zeros.
func parseFee(s string) (int64, bool) {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// parseTime parses yyyyMMddHHmmss in Beijing time.
func parseTime(s string) (time.Time, bool) {
	if len(s) != len(wxpay.TimeLayout) {
		return time.Time{}, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, false
		}
	}
	t, err := time.ParseInLocation(wxpay.TimeLayout, s, wxpay.Beijing)
	return t, err == nil
}

// checkNotifyURL returns WeChat's description of what is wrong with a
// notify_url, or "".
func checkNotifyURL(s string) string {
	if len(s) > 256 {
		return "notify_url参数长度有误"
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Hostname() == "" {
		return "notify_url参数格式错误"
	}
	if u.RawQuery != "" || u.ForceQuery {
		return "notify_url不能携带参数"
	}
	return ""
}

// sameContent reports whether two unifiedorder requests place the same
// order: every field but nonce_str, sign, sign_type and spbill_create_ip is
// equal, an empty field counting as absent.
func sameContent(a, b wxpay.Params) bool {
	content := func(p wxpay.Params) map[string]string {
		m := make(map[string]string, len(p))
		for _, f := range p {
			switch f.Name {
			case "nonce_str", "sign", "sign_type", "spbill_create_ip":
				continue
			}
			if f.Value != "" {
				m[f.Name] = f.Value
			}
		}
		return m
	}
	ca, cb := content(a), content(b)
	if len(ca) != len(cb) {
		return false
	}
	for k, v := range ca {
		if w, ok := cb[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// placeOrder creates the order, or finds the same order placed before.
// It returns the answer's fields, or an err_code.
func (s *Simulator) placeOrder(m Merchant, st wxpay.SignType, req wxpay.Params, now time.Time) (wxpay.Params, string) {
	key := orderKey{m.MchID, req.Get("out_trade_no")}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.orders[key]; ok {
		switch {
		case o.State == StateSuccess:
			return nil, "ORDERPAID"
		case o.State == StateClosed:
			return nil, "ORDERCLOSED"
		case o.APIVersion == APIVersion2 && sameContent(o.Params, req) && now.Sub(o.CreatedAt) < PrepayIDLifetime:
			if o.TradeType == wxpay.TradeTypeMWEB {
				// A new mweb_url each time, the one before no longer
				// valid: WeChat's H5 notes say to place the order again
				// for a new MWEB_URL once one has expired (5 minutes).
				o.MWebURL, o.mwebIssued = s.mwebURLLocked(o.PrepayID), now
			}
			return o.answerFields(), ""
		default:
			return nil, "OUT_TRADE_NO_USED"
		}
	}
	if len(s.orderList) >= s.limits.Orders {
		s.logf("wxpaysim: unifiedorder: %d orders, the limit: refused", len(s.orderList))
		return nil, "SYSTEMERROR"
	}
	fee, _ := parseFee(req.Get("total_fee")) // validated
	o := &order{Order: Order{
		MchID:      m.MchID,
		AppID:      req.Get("appid"),
		OutTradeNo: key.outTradeNo,
		TradeType:  req.Get("trade_type"),
		NotifyURL:  req.Get("notify_url"),
		State:      StateNotPay,
		TotalFee:   fee,
		SignType:   st,
		Params:     req.Clone(),
		CreatedAt:  now,
		APIVersion: APIVersion2,
	}}
	if v := req.Get("time_expire"); v != "" {
		o.expireAt, _ = parseTime(v) // validated
	}
	stamp := now.In(wxpay.Beijing).Format(wxpay.TimeLayout)
	for {
		// "wx" + yyyyMMddHHmmss + 20 hex digits: 36 characters, like
		// WeChat's wx201410272009395522657a690389285100.
		o.PrepayID = "wx" + stamp + randomString(hexLower, 20)
		if _, dup := s.byPrepay[o.PrepayID]; !dup {
			break
		}
	}
	switch o.TradeType {
	case wxpay.TradeTypeNative:
		o.CodeURL = "weixin://wxpay/bizpayurl?pr=" + randomString(alnum, 7)
	case wxpay.TradeTypeMWEB:
		o.MWebURL, o.mwebIssued = s.mwebURLLocked(o.PrepayID), now
	}
	s.orders[key] = o
	s.orderList = append(s.orderList, o)
	s.byPrepay[o.PrepayID] = o
	return o.answerFields(), ""
}

// answerFields are the fields of a successful unifiedorder answer.
func (o *order) answerFields() wxpay.Params {
	p := wxpay.Params{{Name: "prepay_id", Value: o.PrepayID}, {Name: "trade_type", Value: o.TradeType}}
	p.SetNonEmpty("code_url", o.CodeURL)
	p.SetNonEmpty("mweb_url", o.MWebURL)
	return p
}
