package wxpaysim

import (
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// RefundRecvAccountV3 is an APIv3 refund's user_received_account: the
// payer's WeChat balance, as WeChat's v3 refund pages write it.
const RefundRecvAccountV3 = "支付用户零钱"

// Funds accounts of APIv3 refunds (funds_account): the request may name
// AVAILABLE (可用余额, the v2 REFUND_SOURCE_RECHARGE_FUNDS) or UNSETTLED
// (未结算资金, REFUND_SOURCE_UNSETTLED_FUNDS); the answer names the one
// used.
const (
	FundsAccountAvailable = "AVAILABLE"
	FundsAccountUnsettled = "UNSETTLED"
)

// BillDownloadLifetime is how long a v3 download_url works, on the
// simulator's clock: "该地址5min内有效" (申请交易账单,
// pay.weixin.qq.com/doc/v3/merchant/4012556654; older pages said 30 s).
const BillDownloadLifetime = 5 * time.Minute

// maxBillTokens bounds the v3 bill downloads kept (the oldest go first).
const maxBillTokens = 32

// v3TradeType maps the last segment of a prepay path to the trade type.
func v3TradeType(seg string) string {
	switch seg {
	case "jsapi":
		return wxpay.TradeTypeJSAPI
	case "native":
		return wxpay.TradeTypeNative
	case "app":
		return wxpay.TradeTypeAPP
	case "h5":
		return wxpay.TradeTypeMWEB
	}
	return ""
}

// v3PrepayRequest is the body of POST /v3/pay/transactions/{type}. Fields
// WeChat has and the simulator does not use (detail, settle_info,
// support_fapiao…) are accepted and ignored.
type v3PrepayRequest struct {
	AppID       string       `json:"appid"`
	MchID       string       `json:"mchid"`
	Description string       `json:"description"`
	OutTradeNo  string       `json:"out_trade_no"`
	TimeExpire  string       `json:"time_expire"`
	Attach      string       `json:"attach"`
	NotifyURL   string       `json:"notify_url"`
	GoodsTag    string       `json:"goods_tag"`
	Amount      *v3ReqAmount `json:"amount"`
	Payer       *v3ReqPayer  `json:"payer"`
	SceneInfo   *v3SceneInfo `json:"scene_info"`
}

type v3ReqAmount struct {
	Total    *int64 `json:"total"`
	Currency string `json:"currency"`
}

type v3ReqPayer struct {
	OpenID string `json:"openid"`
}

type v3SceneInfo struct {
	PayerClientIP string    `json:"payer_client_ip"`
	DeviceID      string    `json:"device_id"`
	H5Info        *v3H5Info `json:"h5_info"`
}

type v3H5Info struct {
	Type string `json:"type"`
}

// v3OrderContent is what makes two placements the same order: every field
// but the payer's IP (as v2 ignores spbill_create_ip).
type v3OrderContent struct {
	TradeType, AppID, Description, TimeExpire, Attach, NotifyURL, GoodsTag string
	Total                                                                  int64
	Currency, OpenID, H5Type, DeviceID                                     string
}

// validOutTradeNoV3 checks an out_trade_no at placement: "要求6-32个字符内，
// 只能是数字、大小写字母_-|*" (Native下单/JSAPI下单,
// pay.weixin.qq.com/doc/v3/merchant/4012791877 and 4012791897).
func validOutTradeNoV3(v string) bool {
	return len(v) >= 6 && wxpay.ValidateOutTradeNo("out_trade_no", v) == nil
}

// v3Prepay answers POST /v3/pay/transactions/{jsapi,native,app,h5}.
// Errors (JSAPI下单 4012791897, Native下单 4012791877 under
// pay.weixin.qq.com/doc/v3/merchant/): 400 PARAM_ERROR, 400
// APPID_MCHID_NOT_MATCH, 400 ORDER_CLOSED, 403 OUT_TRADE_NO_USED, 500
// SYSTEM_ERROR. A paid order answers 400 ORDERPAID "该订单已支付": those
// pages list no code for it, so the simulator keeps API v2's.
func (s *Simulator) v3Prepay(c *v3Call) v3Reply {
	tradeType := v3TradeType(c.route.params[0])
	var req v3PrepayRequest
	if reply, ok := c.decodeBody(&req); !ok {
		return reply
	}
	if reply, ok := c.checkPrepay(&req, tradeType); !ok {
		return reply
	}
	now := s.now()
	content := v3OrderContent{
		TradeType: tradeType, AppID: req.AppID, Description: req.Description, TimeExpire: req.TimeExpire,
		Attach: req.Attach, NotifyURL: req.NotifyURL, GoodsTag: req.GoodsTag, Total: *req.Amount.Total, Currency: "CNY",
	}
	if req.Payer != nil {
		content.OpenID = req.Payer.OpenID
	}
	if req.SceneInfo != nil {
		content.DeviceID = req.SceneInfo.DeviceID
		if req.SceneInfo.H5Info != nil {
			content.H5Type = req.SceneInfo.H5Info.Type
		}
	}
	canonical, err := marshalV3(content)
	if err != nil {
		s.logf("wxpaysim: %s: %v", c.route.api, err)
		return c.fail(http.StatusInternalServerError, "SYSTEM_ERROR", "系统错误", nil)
	}

	s.mu.Lock()
	o, code := s.placeOrderV3Locked(c.mchID, &req, tradeType, string(canonical), now)
	var prepayID, codeURL, h5URL string
	if o != nil {
		prepayID, codeURL, h5URL = o.PrepayID, o.CodeURL, o.MWebURL
	}
	s.mu.Unlock()
	switch code {
	case "":
	case "ORDERPAID":
		return c.fail(http.StatusBadRequest, code, "该订单已支付", nil)
	case "ORDER_CLOSED":
		return c.fail(http.StatusBadRequest, code, "订单已关闭", nil)
	case "OUT_TRADE_NO_USED":
		return c.fail(http.StatusForbidden, code, "商户订单号重复", nil)
	default:
		return c.fail(http.StatusInternalServerError, "SYSTEM_ERROR", "系统错误", nil)
	}
	s.logf("wxpaysim: %s mchid=%s out_trade_no=%q: prepay_id=%s", c.route.api, c.mchID, req.OutTradeNo, prepayID)
	switch tradeType {
	case wxpay.TradeTypeNative:
		return c.ok(map[string]string{"code_url": codeURL})
	case wxpay.TradeTypeMWEB:
		return c.ok(map[string]string{"h5_url": h5URL})
	}
	return c.ok(map[string]string{"prepay_id": prepayID})
}

// checkPrepay checks a prepay request's fields in WeChat's order,
// answering the first problem.
func (c *v3Call) checkPrepay(req *v3PrepayRequest, tradeType string) (v3Reply, bool) {
	required := []struct {
		field, label string
		present      bool
	}{
		{"appid", "公众账号ID", req.AppID != ""},
		{"mchid", "直连商户号", req.MchID != ""},
		{"description", "商品描述", req.Description != ""},
		{"out_trade_no", "商户订单号", req.OutTradeNo != ""},
		{"notify_url", "通知地址", req.NotifyURL != ""},
		{"amount", "订单金额", req.Amount != nil},
		{"amount.total", "总金额", req.Amount != nil && req.Amount.Total != nil},
	}
	if tradeType == wxpay.TradeTypeJSAPI {
		required = append(required,
			struct {
				field, label string
				present      bool
			}{"payer", "支付者", req.Payer != nil},
			struct {
				field, label string
				present      bool
			}{"payer.openid", "用户标识", req.Payer != nil && req.Payer.OpenID != ""})
	}
	if tradeType == wxpay.TradeTypeMWEB {
		required = append(required,
			struct {
				field, label string
				present      bool
			}{"scene_info", "场景信息", req.SceneInfo != nil},
			struct {
				field, label string
				present      bool
			}{"scene_info.h5_info", "H5场景信息", req.SceneInfo != nil && req.SceneInfo.H5Info != nil},
			struct {
				field, label string
				present      bool
			}{"scene_info.h5_info.type", "场景类型", req.SceneInfo != nil && req.SceneInfo.H5Info != nil && req.SceneInfo.H5Info.Type != ""})
	}
	if req.SceneInfo != nil {
		required = append(required, struct {
			field, label string
			present      bool
		}{"scene_info.payer_client_ip", "用户终端IP", req.SceneInfo.PayerClientIP != ""})
	}
	for _, f := range required {
		if !f.present {
			return c.missing("body", f.field, f.label), false
		}
	}
	tooLong := func(field, label string, v string, limit int, chars bool) (v3Reply, bool) {
		n := len(v)
		if chars {
			n = utf8.RuneCountInString(v)
		}
		if n > limit {
			return c.invalid("body", field, label, "长度规则校验失败，最大长度为"+strconv.Itoa(limit), v), true
		}
		return v3Reply{}, false
	}
	// Limits of the JSAPI/Native下单 pages: appid string(32), description
	// 127 characters, attach 128 characters, notify_url string(255),
	// goods_tag string(32), openid string(128), payer_client_ip string(45).
	for _, f := range []struct {
		field, label, v string
		limit           int
		chars           bool
	}{
		{"appid", "公众账号ID", req.AppID, 32, false},
		{"description", "商品描述", req.Description, 127, true},
		{"attach", "附加数据", req.Attach, 128, true},
		{"notify_url", "通知地址", req.NotifyURL, 255, false},
		{"goods_tag", "订单优惠标记", req.GoodsTag, 32, false},
	} {
		if reply, bad := tooLong(f.field, f.label, f.v, f.limit, f.chars); bad {
			return reply, false
		}
	}
	if req.Payer != nil {
		if reply, bad := tooLong("payer.openid", "用户标识", req.Payer.OpenID, 128, false); bad {
			return reply, false
		}
	}
	if req.MchID != c.mchID {
		return c.mchIDMismatch(req.MchID), false
	}
	if !validOutTradeNoV3(req.OutTradeNo) {
		return c.invalid("body", "out_trade_no", "商户订单号", "格式规则校验失败，须为6-32个数字、大小写字母或_-|*", req.OutTradeNo), false
	}
	if des := checkNotifyURL(req.NotifyURL); des != "" {
		return c.invalid("body", "notify_url", "通知地址", "格式规则校验失败："+des, req.NotifyURL), false
	}
	if *req.Amount.Total <= 0 {
		return c.invalid("body", "amount.total", "总金额", "数值规则校验失败，须大于0", *req.Amount.Total), false
	}
	if cur := req.Amount.Currency; cur != "" && cur != "CNY" {
		return c.invalid("body", "amount.currency", "货币类型", "枚举规则校验失败，只支持CNY", cur), false
	}
	if req.TimeExpire != "" {
		if _, err := time.Parse(time.RFC3339, req.TimeExpire); err != nil {
			return c.invalid("body", "time_expire", "交易结束时间", "格式规则校验失败，须为rfc3339格式", req.TimeExpire), false
		}
	}
	if si := req.SceneInfo; si != nil {
		if ip, err := netip.ParseAddr(si.PayerClientIP); err != nil || ip.Zone() != "" || len(si.PayerClientIP) > 45 {
			return c.invalid("body", "scene_info.payer_client_ip", "用户终端IP", "格式规则校验失败，须为IPv4或IPv6地址", si.PayerClientIP), false
		}
		if h5 := si.H5Info; h5 != nil && tradeType == wxpay.TradeTypeMWEB && !slices.Contains([]string{"iOS", "Android", "Wap"}, h5.Type) {
			return c.invalid("body", "scene_info.h5_info.type", "场景类型", "枚举规则校验失败，须为iOS、Android或Wap", h5.Type), false
		}
	}
	s := c.s
	s.mu.Lock()
	m := s.merchants[c.mchID]
	s.mu.Unlock()
	if !slices.Contains(m.AppIDs, req.AppID) {
		s.logf("wxpaysim: %s mchid=%s: appid %s not bound", c.route.api, c.mchID, req.AppID)
		return c.fail(http.StatusBadRequest, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配", nil), false
	}
	return v3Reply{}, true
}

// placeOrderV3Locked creates an APIv3 order, or finds the same order
// placed before; else it returns ORDERPAID, ORDER_CLOSED,
// OUT_TRADE_NO_USED (another content, an expired prepay_id, or an order
// placed with API v2) or SYSTEM_ERROR (Limits.Orders).
func (s *Simulator) placeOrderV3Locked(mchID string, req *v3PrepayRequest, tradeType, content string, now time.Time) (*order, string) {
	key := orderKey{mchID, req.OutTradeNo}
	if o, ok := s.orders[key]; ok {
		switch {
		case o.State == StateSuccess:
			return nil, "ORDERPAID"
		case o.State == StateClosed:
			return nil, "ORDER_CLOSED"
		case o.APIVersion == APIVersion3 && o.v3Content == content && now.Sub(o.CreatedAt) < PrepayIDLifetime:
			if o.TradeType == wxpay.TradeTypeMWEB {
				// A new h5_url each time, as for v2's mweb_url.
				o.MWebURL, o.mwebIssued = s.mwebURLLocked(o.PrepayID), now
			}
			return o, ""
		default:
			return nil, "OUT_TRADE_NO_USED"
		}
	}
	if len(s.orderList) >= s.limits.Orders {
		s.logf("wxpaysim: v3 prepay: %d orders, the limit: refused", len(s.orderList))
		return nil, "SYSTEM_ERROR"
	}
	total := *req.Amount.Total
	p := wxpay.Params{}
	p.Set("appid", req.AppID)
	p.Set("mch_id", mchID)
	p.SetNonEmpty("device_info", deviceID(req))
	p.Set("body", req.Description)
	p.SetNonEmpty("attach", req.Attach)
	p.Set("out_trade_no", req.OutTradeNo)
	p.Set("fee_type", "CNY")
	p.Set("total_fee", strconv.FormatInt(total, 10))
	if req.SceneInfo != nil {
		p.Set("spbill_create_ip", req.SceneInfo.PayerClientIP)
	}
	p.SetNonEmpty("goods_tag", req.GoodsTag)
	p.Set("notify_url", req.NotifyURL)
	p.Set("trade_type", tradeType)
	if req.Payer != nil {
		p.SetNonEmpty("openid", req.Payer.OpenID)
	}
	o := &order{Order: Order{
		MchID: mchID, AppID: req.AppID, OutTradeNo: req.OutTradeNo, TradeType: tradeType, NotifyURL: req.NotifyURL,
		State: StateNotPay, TotalFee: total, CreatedAt: now, APIVersion: APIVersion3,
	}, v3Content: content}
	if req.TimeExpire != "" {
		t, _ := time.Parse(time.RFC3339, req.TimeExpire) // validated
		// "支付结束时间不能早于下单时间后1分钟…系统将自动调整为下单时间后1分钟";
		// "如超过15天，微信支付会自动将该时间调整为下单时间后的第15天"
		// (Native下单, pay.weixin.qq.com/doc/v3/merchant/4012791877).
		if earliest := now.Add(time.Minute); t.Before(earliest) {
			t = earliest
		}
		if latest := now.AddDate(0, 0, 15); t.After(latest) {
			t = latest
		}
		o.expireAt = t
		p.Set("time_expire", t.In(wxpay.Beijing).Format(wxpay.TimeLayout))
	}
	o.Params = p
	stamp := now.In(wxpay.Beijing).Format(wxpay.TimeLayout)
	for {
		o.PrepayID = "wx" + stamp + randomString(hexLower, 20)
		if _, dup := s.byPrepay[o.PrepayID]; !dup {
			break
		}
	}
	switch tradeType {
	case wxpay.TradeTypeNative:
		o.CodeURL = "weixin://wxpay/bizpayurl?pr=" + randomString(alnum, 7)
	case wxpay.TradeTypeMWEB:
		o.MWebURL, o.mwebIssued = s.mwebURLLocked(o.PrepayID), o.CreatedAt
	}
	s.orders[key] = o
	s.orderList = append(s.orderList, o)
	s.byPrepay[o.PrepayID] = o
	return o, ""
}

func deviceID(req *v3PrepayRequest) string {
	if req.SceneInfo == nil {
		return ""
	}
	return req.SceneInfo.DeviceID
}

// v3Transaction is the Transaction JSON of queries and pay notifications.
type v3Transaction struct {
	AppID          string     `json:"appid"`
	MchID          string     `json:"mchid"`
	OutTradeNo     string     `json:"out_trade_no"`
	TransactionID  string     `json:"transaction_id,omitempty"`
	TradeType      string     `json:"trade_type,omitempty"`
	TradeState     string     `json:"trade_state"`
	TradeStateDesc string     `json:"trade_state_desc"`
	BankType       string     `json:"bank_type,omitempty"`
	Attach         string     `json:"attach,omitempty"`
	SuccessTime    string     `json:"success_time,omitempty"`
	Payer          v3TxPayer  `json:"payer"`
	Amount         v3TxAmount `json:"amount"`
}

type v3TxPayer struct {
	OpenID string `json:"openid,omitempty"`
}

type v3TxAmount struct {
	Total         int64  `json:"total"`
	PayerTotal    *int64 `json:"payer_total,omitempty"`
	Currency      string `json:"currency,omitempty"`
	PayerCurrency string `json:"payer_currency"`
}

// v3Time formats a time as APIv3 does: RFC 3339 in Beijing time
// (2018-06-08T10:34:56+08:00).
func v3Time(t time.Time) string { return t.In(wxpay.Beijing).Format(time.RFC3339) }

// transaction is the Transaction JSON of o in state: a paid one (SUCCESS,
// REFUND) with txID, paidAt and fee (the amount paid), an unpaid one with
// the amount and currency alone, as WeChat answers a NOTPAY order.
func transaction(o *order, state, txID string, paidAt time.Time, fee int64) v3Transaction {
	t := v3Transaction{
		AppID: o.AppID, MchID: o.MchID, OutTradeNo: o.OutTradeNo,
		TradeState: state, TradeStateDesc: tradeStateDesc(state),
		Amount: v3TxAmount{Total: o.TotalFee, PayerCurrency: o.feeType()},
	}
	if state == StateSuccess || state == StateRefund {
		t.TransactionID, t.TradeType, t.BankType = txID, o.TradeType, bankType
		t.Attach = o.Params.Get("attach")
		t.SuccessTime = v3Time(paidAt)
		t.Payer.OpenID = o.openID()
		t.Amount = v3TxAmount{Total: fee, PayerTotal: &fee, Currency: o.feeType(), PayerCurrency: o.feeType()}
	}
	return t
}

// v3Query answers GET /v3/pay/transactions/out-trade-no/{no} and
// /v3/pay/transactions/id/{transaction_id} (?mchid=…). An unknown order is
// 404 ORDER_NOT_EXIST (查询订单, pay.weixin.qq.com/doc/v3/merchant/4012791899
// and 4012791900).
func (s *Simulator) v3Query(c *v3Call) v3Reply {
	if reply, ok := c.queryMchID(); !ok {
		return reply
	}
	byID, ref := c.route.params[0] == "id", c.route.params[1]
	var txID, outTradeNo string
	if byID {
		if len(ref) > 32 {
			return c.invalid("uri_template", "transaction_id", "微信支付订单号", "长度规则校验失败，最大长度为32", ref)
		}
		txID = ref
	} else {
		if wxpay.ValidateOutTradeNo("out_trade_no", ref) != nil {
			return c.invalid("uri_template", "out_trade_no", "商户订单号", "格式规则校验失败", ref)
		}
		outTradeNo = ref
	}
	s.mu.Lock()
	o := s.lookupOrderLocked(c.mchID, txID, outTradeNo)
	var t v3Transaction
	if o != nil {
		t = transaction(o, o.tradeStateLocked(), o.TransactionID, o.paidAt, o.TotalFee)
	}
	s.mu.Unlock()
	if o == nil {
		s.logf("wxpaysim: %s mchid=%s %s: ORDER_NOT_EXIST", c.route.api, c.mchID, ref)
		return c.fail(http.StatusNotFound, "ORDER_NOT_EXIST", "订单不存在", nil)
	}
	s.logf("wxpaysim: %s mchid=%s out_trade_no=%q: %s", c.route.api, c.mchID, t.OutTradeNo, t.TradeState)
	return c.ok(t)
}

// v3Close answers POST /v3/pay/transactions/out-trade-no/{no}/close: 204
// when the order is closed (关闭订单, pay.weixin.qq.com/doc/v3/merchant/
// 4012791901). Closing a closed order answers 204 again, and so does an
// unknown out_trade_no, as a merchant reports of WeChat ("outTradNo传递错
// 了....这种情况下应答状态码居然也是204", developers.weixin.qq.com
// community). A paid order answers 400 ORDERPAID "订单已支付": the page
// lists no code for it (its 403 TRADE_ERROR is the generic "交易错误"), so
// the simulator keeps API v2's.
func (s *Simulator) v3Close(c *v3Call) v3Reply {
	var req struct {
		MchID string `json:"mchid"`
	}
	if reply, ok := c.decodeBody(&req); !ok {
		return reply
	}
	switch {
	case req.MchID == "":
		return c.missing("body", "mchid", "直连商户号")
	case req.MchID != c.mchID:
		return c.mchIDMismatch(req.MchID)
	}
	outTradeNo := c.route.params[0]
	if wxpay.ValidateOutTradeNo("out_trade_no", outTradeNo) != nil {
		return c.invalid("uri_template", "out_trade_no", "商户订单号", "格式规则校验失败", outTradeNo)
	}
	s.mu.Lock()
	o, ok := s.orders[orderKey{c.mchID, outTradeNo}]
	paid := ok && o.State == StateSuccess
	if ok && !paid {
		o.State = StateClosed
	}
	s.mu.Unlock()
	switch {
	case paid:
		s.logf("wxpaysim: %s mchid=%s out_trade_no=%q: ORDERPAID", c.route.api, c.mchID, outTradeNo)
		return c.fail(http.StatusBadRequest, "ORDERPAID", "订单已支付", nil)
	case !ok:
		s.logf("wxpaysim: %s mchid=%s out_trade_no=%q: no such order, 204 as WeChat answers", c.route.api, c.mchID, outTradeNo)
	default:
		s.logf("wxpaysim: %s mchid=%s out_trade_no=%q: closed", c.route.api, c.mchID, outTradeNo)
	}
	return c.noContent()
}

// v3RefundRequest is the body of POST /v3/refund/domestic/refunds.
type v3RefundRequest struct {
	TransactionID string `json:"transaction_id"`
	OutTradeNo    string `json:"out_trade_no"`
	OutRefundNo   string `json:"out_refund_no"`
	Reason        string `json:"reason"`
	NotifyURL     string `json:"notify_url"`
	FundsAccount  string `json:"funds_account"`
	Amount        *struct {
		Refund   *int64 `json:"refund"`
		Total    *int64 `json:"total"`
		Currency string `json:"currency"`
	} `json:"amount"`
}

// v3RefundJSON is the refund of APIv3 answers.
type v3RefundJSON struct {
	RefundID            string         `json:"refund_id"`
	OutRefundNo         string         `json:"out_refund_no"`
	TransactionID       string         `json:"transaction_id"`
	OutTradeNo          string         `json:"out_trade_no"`
	Channel             string         `json:"channel"`
	UserReceivedAccount string         `json:"user_received_account"`
	SuccessTime         string         `json:"success_time,omitempty"`
	CreateTime          string         `json:"create_time"`
	Status              string         `json:"status"`
	FundsAccount        string         `json:"funds_account"`
	Amount              v3RefundAmount `json:"amount"`
	PromotionDetail     []struct{}     `json:"promotion_detail"`
}

type v3RefundAmount struct {
	Total            int64      `json:"total"`
	Refund           int64      `json:"refund"`
	From             []struct{} `json:"from"`
	PayerTotal       int64      `json:"payer_total"`
	PayerRefund      int64      `json:"payer_refund"`
	SettlementRefund int64      `json:"settlement_refund"`
	SettlementTotal  int64      `json:"settlement_total"`
	DiscountRefund   int64      `json:"discount_refund"`
	Currency         string     `json:"currency"`
}

// refundJSON is rf as APIv3 answers it.
func (rf *refund) refundJSON() v3RefundJSON {
	j := v3RefundJSON{
		RefundID: rf.RefundID, OutRefundNo: rf.OutRefundNo, TransactionID: rf.TransactionID, OutTradeNo: rf.OutTradeNo,
		Channel: "ORIGINAL", UserReceivedAccount: RefundRecvAccountV3, CreateTime: v3Time(rf.CreatedAt),
		Status: rf.v3Status(), FundsAccount: fundsAccount(rf.refundAccount),
		Amount: v3RefundAmount{
			Total: rf.TotalFee, Refund: rf.RefundFee, From: []struct{}{}, PayerTotal: rf.TotalFee, PayerRefund: rf.RefundFee,
			SettlementRefund: rf.RefundFee, SettlementTotal: rf.TotalFee, Currency: "CNY",
		},
		PromotionDetail: []struct{}{},
	}
	if rf.Status == RefundStatusSuccess {
		j.SuccessTime = v3Time(rf.SuccessAt)
	}
	return j
}

// fundsAccount maps a v2 refund_account to an APIv3 funds_account.
func fundsAccount(refundAccount string) string {
	if refundAccount == RefundAccountDefault {
		return FundsAccountAvailable
	}
	return FundsAccountUnsettled
}

// v3Refund answers POST /v3/refund/domestic/refunds with the v2 refund
// machinery. Codes (申请退款, pay.weixin.qq.com/doc/v3/merchant/4012791903):
// 404 RESOURCE_NOT_EXISTS "订单号不存在" for an order that does not exist
// or is not paid ("请检查订单号是否正确且是否已支付"); 400 INVALID_REQUEST
// ("请求参数符合参数格式，但不符合业务规则") for a total other than the
// order's, more than is left, an order refunded in full, or an
// out_refund_no used with other parameters; 500 SYSTEM_ERROR past
// Limits.Refunds. 403 NOT_ENOUGH is the merchant's balance: only FailNext
// produces it.
func (s *Simulator) v3Refund(c *v3Call) v3Reply {
	var req v3RefundRequest
	if reply, ok := c.decodeBody(&req); !ok {
		return reply
	}
	switch {
	case req.OutRefundNo == "":
		return c.missing("body", "out_refund_no", "商户退款单号")
	case req.Amount == nil:
		return c.missing("body", "amount", "金额信息")
	case req.Amount.Refund == nil:
		return c.missing("body", "amount.refund", "退款金额")
	case req.Amount.Total == nil:
		return c.missing("body", "amount.total", "原订单金额")
	case req.Amount.Currency == "":
		return c.missing("body", "amount.currency", "退款币种")
	case req.TransactionID == "" && req.OutTradeNo == "":
		return c.paramError("body", "out_trade_no", "商户订单号", "必填性规则校验失败，transaction_id和out_trade_no必须二选一", "")
	case len(req.TransactionID) > 32:
		return c.invalid("body", "transaction_id", "微信支付订单号", "长度规则校验失败，最大长度为32", req.TransactionID)
	case req.TransactionID == "" && wxpay.ValidateOutTradeNo("out_trade_no", req.OutTradeNo) != nil:
		return c.invalid("body", "out_trade_no", "商户订单号", "格式规则校验失败", req.OutTradeNo)
	case !validOutRefundNo(req.OutRefundNo):
		return c.invalid("body", "out_refund_no", "商户退款单号", "格式规则校验失败，须为至多64个数字、大小写字母或_-|*@", req.OutRefundNo)
	case utf8.RuneCountInString(req.Reason) > 80:
		return c.invalid("body", "reason", "退款原因", "长度规则校验失败，最大长度为80", req.Reason)
	case len(req.NotifyURL) > 256:
		return c.invalid("body", "notify_url", "退款结果回调url", "长度规则校验失败，最大长度为256", req.NotifyURL)
	case req.FundsAccount != "" && req.FundsAccount != FundsAccountAvailable && req.FundsAccount != FundsAccountUnsettled:
		return c.invalid("body", "funds_account", "退款资金来源", "枚举规则校验失败，须为AVAILABLE或UNSETTLED", req.FundsAccount)
	case *req.Amount.Refund <= 0:
		return c.invalid("body", "amount.refund", "退款金额", "数值规则校验失败，须大于0", *req.Amount.Refund)
	case *req.Amount.Total <= 0:
		return c.invalid("body", "amount.total", "原订单金额", "数值规则校验失败，须大于0", *req.Amount.Total)
	case req.Amount.Currency != "CNY":
		return c.invalid("body", "amount.currency", "退款币种", "枚举规则校验失败，只支持CNY", req.Amount.Currency)
	case *req.Amount.Refund > *req.Amount.Total:
		return c.invalid("body", "amount.refund", "退款金额", "数值规则校验失败，不能大于原订单金额", *req.Amount.Refund)
	}
	if req.NotifyURL != "" {
		if des := checkNotifyURL(req.NotifyURL); des != "" {
			return c.invalid("body", "notify_url", "退款结果回调url", "格式规则校验失败："+des, req.NotifyURL)
		}
	}
	rr := refundRequest{
		txID: req.TransactionID, outTradeNo: req.OutTradeNo, outRefundNo: req.OutRefundNo,
		totalFee: *req.Amount.Total, refundFee: *req.Amount.Refund, notifyURL: req.NotifyURL,
		refundAccount: RefundAccountUnsettled,
	}
	if req.FundsAccount == FundsAccountAvailable {
		rr.refundAccount = RefundAccountDefault
	}
	if rr.txID != "" {
		rr.outTradeNo = "" // transaction_id wins, as in v2
	}
	s.mu.Lock()
	rf, outcome := s.acceptRefundLocked(c.mchID, "", rr, APIVersion3, req.Reason)
	var j v3RefundJSON
	if rf != nil {
		j = rf.refundJSON()
	}
	s.mu.Unlock()
	fail := func(status int, code, msg string) v3Reply {
		s.logf("wxpaysim: %s mchid=%s out_refund_no=%q: %s %s", c.route.api, c.mchID, req.OutRefundNo, code, msg)
		return c.fail(status, code, msg, nil)
	}
	switch outcome {
	case refundNoOrder, refundNotPaid:
		return fail(http.StatusNotFound, "RESOURCE_NOT_EXISTS", "订单号不存在")
	case refundOtherOrder:
		return fail(http.StatusBadRequest, "INVALID_REQUEST", "商户退款单号"+req.OutRefundNo+"已用于其他订单")
	case refundChanged:
		return fail(http.StatusBadRequest, "INVALID_REQUEST", "相同商户退款单号的退款金额与之前的请求不一致")
	case refundTotalMismatch:
		return fail(http.StatusBadRequest, "INVALID_REQUEST", "订单金额与原订单金额不一致")
	case refundFull:
		return fail(http.StatusBadRequest, "INVALID_REQUEST", DesFullyRefunded)
	case refundTooHigh:
		return fail(http.StatusBadRequest, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
	case refundLimit:
		return fail(http.StatusInternalServerError, "SYSTEM_ERROR", "wxpaysim: limit reached")
	case refundRepeated:
		s.logf("wxpaysim: %s mchid=%s out_refund_no=%q: repeated, same refund_id=%s", c.route.api, c.mchID, req.OutRefundNo, j.RefundID)
	default:
		s.logf("wxpaysim: %s mchid=%s out_trade_no=%q out_refund_no=%q: accepted refund_id=%s refund=%d", c.route.api, c.mchID, j.OutTradeNo, req.OutRefundNo, j.RefundID, rr.refundFee)
	}
	return c.ok(j)
}

// v3RefundQuery answers GET /v3/refund/domestic/refunds/{out_refund_no}:
// any refund of the merchant, asked with either API; 404
// RESOURCE_NOT_EXISTS "退款单不存在" (查询单笔退款,
// pay.weixin.qq.com/doc/v3/merchant/4012791904).
func (s *Simulator) v3RefundQuery(c *v3Call) v3Reply {
	no := c.route.params[0]
	if !validOutRefundNo(no) {
		return c.invalid("uri_template", "out_refund_no", "商户退款单号", "格式规则校验失败", no)
	}
	s.mu.Lock()
	rf, ok := s.refunds[refundKey{c.mchID, no}]
	var j v3RefundJSON
	if ok {
		j = rf.refundJSON()
	}
	s.mu.Unlock()
	if !ok {
		return c.fail(http.StatusNotFound, "RESOURCE_NOT_EXISTS", "退款单不存在", nil)
	}
	return c.ok(j)
}

// billToken is a v3 bill ready for download.
type billToken struct {
	token, mchID string
	data         []byte
	contentType  string
	expires      time.Time
}

// v3TradeBill answers GET /v3/bill/tradebill?bill_date=yyyy-MM-dd
// [&bill_type=ALL|SUCCESS|REFUND][&tar_type=GZIP] with the v2 bill's
// content (申请交易账单, pay.weixin.qq.com/doc/v3/merchant/4012556654):
// hash_value is the SHA1 of the bill itself ("原始账单（gzip需要解压缩）的摘要
// 值"), download_url a route of the simulator's. Failures (账单 error
// tables): 400 INVALID_REQUEST for a bad or future bill_date ("参数错误，请检
// 查bill_date"), 400 STATEMENT_CREATING "账单生成中" before BillReadyHour of
// the next day, 400 NO_STATEMENT_EXIST "账单文件不存在" for a day without
// trades.
func (s *Simulator) v3TradeBill(c *v3Call) v3Reply {
	q := c.r.URL.Query()
	date := q.Get("bill_date")
	if date == "" {
		return c.missing("query", "bill_date", "账单日期")
	}
	day, err := time.ParseInLocation("2006-01-02", date, wxpay.Beijing)
	if err != nil || len(date) != 10 {
		return c.fail(http.StatusBadRequest, "INVALID_REQUEST", "参数错误，请检查bill_date", map[string]string{"field": "bill_date", "value": date})
	}
	billType := q.Get("bill_type")
	switch billType {
	case "":
		billType = "ALL"
	case "ALL", "SUCCESS", "REFUND":
	default:
		return c.invalid("query", "bill_type", "账单类型", "枚举规则校验失败，须为ALL、SUCCESS或REFUND", billType)
	}
	tar := q.Get("tar_type")
	if tar != "" && tar != "GZIP" {
		return c.invalid("query", "tar_type", "压缩类型", "枚举规则校验失败，须为GZIP", tar)
	}
	now := s.now().In(wxpay.Beijing)
	next := day.AddDate(0, 0, 1)
	switch {
	case day.After(now):
		return c.fail(http.StatusBadRequest, "INVALID_REQUEST", "参数错误，请检查bill_date", map[string]string{"field": "bill_date", "value": date})
	case now.Before(next.Add(BillReadyHour * time.Hour)):
		return c.fail(http.StatusBadRequest, "STATEMENT_CREATING", "账单生成中", nil)
	}
	rows := s.billRows(c.mchID, billType, day, next)
	if len(rows) == 0 {
		return c.fail(http.StatusBadRequest, "NO_STATEMENT_EXIST", "账单文件不存在", nil)
	}
	bill := formatBill(rows)
	sum := sha1.Sum(bill)
	data, contentType := bill, "text/plain; charset=utf-8"
	if tar == "GZIP" {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, err := zw.Write(bill)
		if err == nil {
			err = zw.Close()
		}
		if err != nil {
			s.logf("wxpaysim: %s: compressing the bill: %v", c.route.api, err)
			return c.fail(http.StatusInternalServerError, "SYSTEM_ERROR", "系统错误", nil)
		}
		data, contentType = buf.Bytes(), "application/x-gzip"
	}
	token := randomString(alnum, 48)
	s.mu.Lock()
	kept := s.billTokens[:0]
	for _, t := range s.billTokens {
		if now.Before(t.expires) {
			kept = append(kept, t)
		}
	}
	clear(s.billTokens[len(kept):])
	s.billTokens = keepLast(append(kept, &billToken{token: token, mchID: c.mchID, data: data, contentType: contentType, expires: now.Add(BillDownloadLifetime)}), maxBillTokens)
	s.mu.Unlock()
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	s.logf("wxpaysim: %s mchid=%s bill_date=%s bill_type=%s: %d lines", c.route.api, c.mchID, date, billType, len(rows))
	return c.ok(map[string]string{
		"hash_type":    "SHA1",
		"hash_value":   hex.EncodeToString(sum[:]),
		"download_url": scheme + "://" + c.r.Host + "/v3/billdownload/file?token=" + token,
	})
}

// v3BillDownload answers GET /v3/billdownload/file?token=…: the bill,
// not signed (its hash was in the signed tradebill answer). Failures
// (下载账单 error table): 400 INVALID_REQUEST for an unknown or expired
// token, 403 NO_AUTH for another merchant's.
func (s *Simulator) v3BillDownload(c *v3Call) v3Reply {
	token := c.r.URL.Query().Get("token")
	if token == "" {
		return c.missing("query", "token", "下载令牌")
	}
	now := s.now()
	s.mu.Lock()
	var found *billToken
	for _, t := range s.billTokens {
		if t.token == token && now.Before(t.expires) {
			found = t
		}
	}
	alter := found != nil && found.mchID == c.mchID && s.alterBills > 0
	if alter {
		s.alterBills--
	}
	s.mu.Unlock()
	switch {
	case found == nil:
		return c.fail(http.StatusBadRequest, "INVALID_REQUEST", "参数错误，请按申请账单的API指引重新获取账单地址后再请求", nil)
	case found.mchID != c.mchID:
		return c.fail(http.StatusForbidden, "NO_AUTH", "权限异常，请求商户与申请账单的商户不一致", nil)
	}
	body := found.data
	if alter && len(body) >= 2 {
		body = slices.Clone(body)
		body[len(body)-2] ^= 0x01
		s.logf("wxpaysim: %s mchid=%s: bill altered (AlterNextBills)", c.route.api, c.mchID)
	}
	return v3Reply{status: http.StatusOK, body: body, contentType: found.contentType, unsigned: true, mchID: c.mchID}
}

// v3Certificate is one entry of the /v3/certificates answer.
type v3Certificate struct {
	SerialNo           string             `json:"serial_no"`
	EffectiveTime      string             `json:"effective_time"`
	ExpireTime         string             `json:"expire_time"`
	EncryptCertificate v3EncryptedContent `json:"encrypt_certificate"`
}

// v3EncryptedContent is an AEAD_AES_256_GCM ciphertext as WeChat sends it.
type v3EncryptedContent struct {
	Algorithm      string `json:"algorithm"`
	Nonce          string `json:"nonce"`
	AssociatedData string `json:"associated_data"`
	Ciphertext     string `json:"ciphertext"`
}

// v3Certificates answers GET /v3/certificates: the platform certificates,
// each PEM encrypted with the APIv3 key, signed by one of them; in public
// key mode 404 RESOURCE_NOT_EXISTS MsgNoPlatformCertificates. Every call
// counts (CertificateDownloads).
func (s *Simulator) v3Certificates(c *v3Call) v3Reply {
	s.mu.Lock()
	m := s.v3[c.mchID]
	var certs []platformCert
	var key []byte
	enabled := m != nil && m.certsEnabled()
	if m != nil {
		m.downloads++
		certs, key = slices.Clone(m.certs), m.apiKey
	}
	s.mu.Unlock()
	if !enabled {
		s.logf("wxpaysim: %s mchid=%s: public key mode, no platform certificate", c.route.api, c.mchID)
		return c.fail(http.StatusNotFound, "RESOURCE_NOT_EXISTS", MsgNoPlatformCertificates, nil)
	}
	list := make([]v3Certificate, 0, len(certs))
	for _, pc := range certs {
		nonce := randomString(alnum, 12)
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pc.cert.Raw})
		ct, err := sealV3(key, nonce, "certificate", pemBytes)
		if err != nil {
			s.logf("wxpaysim: %s: encrypting certificate %s: %v", c.route.api, pc.serial, err)
			return c.fail(http.StatusInternalServerError, "SYSTEM_ERROR", "系统错误", nil)
		}
		list = append(list, v3Certificate{
			SerialNo: pc.serial, EffectiveTime: v3Time(pc.cert.NotBefore), ExpireTime: v3Time(pc.cert.NotAfter),
			EncryptCertificate: v3EncryptedContent{Algorithm: "AEAD_AES_256_GCM", Nonce: nonce, AssociatedData: "certificate", Ciphertext: ct},
		})
	}
	reply := c.ok(map[string]any{"data": list})
	reply.certSigned = true
	return reply
}
