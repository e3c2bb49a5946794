package apiv3

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// The gateway speaks API v2's names (its callers' and its events'
// language); this file maps them to APIv3's and back. The README's
// "API v2 and APIv3 names" table is this file's summary.

// beijing is the time zone of API v2's times (time_expire, time_end).
var beijing = time.FixedZone("CST", 8*60*60)

const (
	v2TimeLayout       = "20060102150405"      // time_expire, time_end
	v2RefundTimeLayout = "2006-01-02 15:04:05" // a v2 refund's success_time
)

// tradeTypes maps the gateway's trade types to APIv3's path segment.
var tradeTypes = map[string]string{
	gateway.TradeTypeJSAPI:  "jsapi",
	gateway.TradeTypeNative: "native",
	gateway.TradeTypeAPP:    "app",
	gateway.TradeTypeMWEB:   "h5",
}

// v2TradeTypes maps APIv3's trade_type values (which are v2's, except
// that H5 may be reported as MWEB or H5) to the gateway's.
func v2TradeType(t string) string {
	if t == "H5" {
		return gateway.TradeTypeMWEB
	}
	return t
}

// rfc3339Expire turns an API v2 time_expire (yyyyMMddHHmmss, Beijing time)
// into APIv3's RFC 3339 with +08:00.
func rfc3339Expire(v2 string) (string, error) {
	if v2 == "" {
		return "", nil
	}
	t, err := time.ParseInLocation(v2TimeLayout, v2, beijing)
	if err != nil {
		return "", gateway.InvalidField("time_expire", "is not yyyyMMddHHmmss")
	}
	return t.Format(time.RFC3339), nil
}

// v2Time turns an APIv3 RFC 3339 time into API v2's yyyyMMddHHmmss in
// Beijing time ("" stays "").
func v2Time(rfc string) (string, error) {
	if rfc == "" {
		return "", nil
	}
	t, err := time.Parse(time.RFC3339, rfc)
	if err != nil {
		return "", fmt.Errorf("time %q is not RFC 3339", rfc)
	}
	return t.In(beijing).Format(v2TimeLayout), nil
}

// v2RefundTime turns an APIv3 RFC 3339 time into a v2 refund's
// "yyyy-MM-dd HH:mm:ss" in Beijing time.
func v2RefundTime(rfc string) (string, error) {
	if rfc == "" {
		return "", nil
	}
	t, err := time.Parse(time.RFC3339, rfc)
	if err != nil {
		return "", fmt.Errorf("time %q is not RFC 3339", rfc)
	}
	return t.In(beijing).Format(v2RefundTimeLayout), nil
}

// v2SceneInfo is API v2's scene_info of an H5 (MWEB) order, a JSON string.
type v2SceneInfo struct {
	H5Info struct {
		Type        string `json:"type"`
		AppName     string `json:"app_name"`
		BundleID    string `json:"bundle_id"`
		PackageName string `json:"package_name"`
		WapURL      string `json:"wap_url"`
		WapName     string `json:"wap_name"`
	} `json:"h5_info"`
}

// h5Info maps an API v2 scene_info to APIv3's h5_info: type Wap, iOS or
// Android (v2's IOS too); wap_url and wap_name become app_url and
// app_name.
func h5Info(sceneInfo string) (*wxpayv3.H5Info, error) {
	if sceneInfo == "" {
		return nil, gateway.InvalidField("scene_info", "is required for MWEB (H5) orders")
	}
	var s v2SceneInfo
	if err := json.Unmarshal([]byte(sceneInfo), &s); err != nil {
		return nil, gateway.InvalidField("scene_info", "is not JSON")
	}
	h := &wxpayv3.H5Info{Type: s.H5Info.Type, AppName: s.H5Info.AppName, BundleID: s.H5Info.BundleID, PackageName: s.H5Info.PackageName}
	switch strings.ToLower(h.Type) {
	case "wap":
		h.Type, h.AppURL, h.AppName = "Wap", s.H5Info.WapURL, s.H5Info.WapName
	case "ios":
		h.Type = "iOS"
	case "android":
		h.Type = "Android"
	default:
		return nil, gateway.InvalidField("scene_info", "h5_info.type must be Wap, IOS or Android")
	}
	return h, nil
}

// v2Detail is API v2's detail (single-product discount detail), a JSON
// string.
type v2Detail struct {
	CostPrice   *int64 `json:"cost_price,omitempty"`
	ReceiptID   string `json:"receipt_id,omitempty"`
	GoodsDetail []struct {
		GoodsID      string `json:"goods_id"`
		WxpayGoodsID string `json:"wxpay_goods_id,omitempty"`
		GoodsName    string `json:"goods_name,omitempty"`
		Quantity     int64  `json:"quantity"`
		Price        int64  `json:"price"`
	} `json:"goods_detail,omitempty"`
}

// v3Detail is APIv3's detail object.
type v3Detail struct {
	CostPrice   *int64          `json:"cost_price,omitempty"`
	InvoiceID   string          `json:"invoice_id,omitempty"`
	GoodsDetail []v3GoodsDetail `json:"goods_detail,omitempty"`
}

type v3GoodsDetail struct {
	MerchantGoodsID  string `json:"merchant_goods_id"`
	WechatpayGoodsID string `json:"wechatpay_goods_id,omitempty"`
	GoodsName        string `json:"goods_name,omitempty"`
	Quantity         int64  `json:"quantity"`
	UnitPrice        int64  `json:"unit_price"`
}

// detail maps API v2's detail to APIv3's: cost_price stays, receipt_id
// becomes invoice_id, and each good's goods_id, wxpay_goods_id and price
// become merchant_goods_id, wechatpay_goods_id and unit_price.
func detail(s string) (json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	var d v2Detail
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, gateway.InvalidField("detail", "is not API v2's detail JSON (cost_price, receipt_id, goods_detail)")
	}
	out := v3Detail{CostPrice: d.CostPrice, InvoiceID: d.ReceiptID}
	for _, g := range d.GoodsDetail {
		out.GoodsDetail = append(out.GoodsDetail, v3GoodsDetail{MerchantGoodsID: g.GoodsID, WechatpayGoodsID: g.WxpayGoodsID,
			GoodsName: g.GoodsName, Quantity: g.Quantity, UnitPrice: g.Price})
	}
	return json.Marshal(out)
}

// prepayRequest maps an order to APIv3: the path's trade type and the body.
func prepayRequest(o *gateway.Order, mchID string) (string, *wxpayv3.PrepayRequest, error) {
	tt, ok := tradeTypes[o.TradeType]
	if !ok {
		return "", nil, gateway.InvalidField("trade_type", "must be JSAPI, NATIVE, APP or MWEB")
	}
	expire, err := rfc3339Expire(o.TimeExpire)
	if err != nil {
		return "", nil, err
	}
	d, err := detail(o.Detail)
	if err != nil {
		return "", nil, err
	}
	r := &wxpayv3.PrepayRequest{
		AppID: o.AppID, MchID: mchID, Description: o.Body, OutTradeNo: o.OutTradeNo, TimeExpire: expire,
		Attach: o.Attach, NotifyURL: o.NotifyURL, GoodsTag: o.GoodsTag,
		Amount: wxpayv3.Amount{Total: o.TotalFee, Currency: "CNY"}, Detail: d,
	}
	if o.SpbillCreateIP != "" {
		r.SceneInfo = &wxpayv3.SceneInfo{PayerClientIP: o.SpbillCreateIP}
	}
	switch o.TradeType {
	case gateway.TradeTypeJSAPI:
		if o.OpenID == "" {
			return "", nil, gateway.InvalidField("openid", "is required for JSAPI orders")
		}
		r.Payer = &wxpayv3.Payer{OpenID: o.OpenID}
	case gateway.TradeTypeMWEB:
		h, err := h5Info(o.SceneInfo)
		if err != nil {
			return "", nil, err
		}
		if o.SpbillCreateIP == "" {
			return "", nil, gateway.InvalidField("spbill_create_ip", "is required for MWEB (H5) orders")
		}
		r.SceneInfo.H5Info = h
	}
	return tt, r, nil
}

// transactionData is what a payment's event carries: the transaction under
// API v2's names (as a v2 notification carries it, amounts in fen as
// int64), and the transaction itself, as WeChat sent it, under "wechat".
func transactionData(t *wxpayv3.Transaction, raw []byte) (map[string]any, error) {
	data := map[string]any{
		"return_code": "SUCCESS", "result_code": "SUCCESS",
		"appid": t.AppID, "mch_id": t.MchID, "out_trade_no": t.OutTradeNo, "transaction_id": t.TransactionID,
		"trade_type": v2TradeType(t.TradeType),
	}
	set := func(k, v string) {
		if v != "" {
			data[k] = v
		}
	}
	set("bank_type", t.BankType)
	set("attach", t.Attach)
	if t.Payer != nil {
		set("openid", t.Payer.OpenID)
	}
	if t.Amount != nil {
		data["total_fee"] = t.Amount.Total
		data["cash_fee"] = t.Amount.PayerTotal
		set("fee_type", t.Amount.Currency)
		set("cash_fee_type", t.Amount.PayerCurrency)
	}
	end, err := v2Time(t.SuccessTime)
	if err != nil {
		return nil, fmt.Errorf("success_time: %w", err)
	}
	set("time_end", end)
	if len(raw) > 0 {
		data["wechat"] = json.RawMessage(raw)
	}
	return data, nil
}

// payment is a verified transaction (a notification's resource, or a
// query's answer) as the gateway's Payment.
func payment(t *wxpayv3.Transaction, raw []byte) (*gateway.Payment, error) {
	data, err := transactionData(t, raw)
	if err != nil {
		return nil, err
	}
	p := &gateway.Payment{
		MchID: t.MchID, AppID: t.AppID, OutTradeNo: t.OutTradeNo, TransactionID: t.TransactionID,
		Succeeded: t.TradeState == gateway.TradeStateSuccess || t.TradeState == gateway.TradeStateRefund,
		Data:      data,
	}
	if t.Amount != nil {
		p.TotalFee, p.HasTotalFee = t.Amount.Total, true
	}
	return p, nil
}

// refundStatuses maps APIv3's refund status to API v2's, the gateway's
// (and its events') names.
var refundStatuses = map[string]string{
	"SUCCESS":    gateway.RefundStatusSuccess,
	"CLOSED":     gateway.RefundStatusClosed,
	"ABNORMAL":   gateway.RefundStatusChange,
	"PROCESSING": gateway.RefundStatusProcessing,
}

// v2RefundStatus maps a refund status; an unknown one stays as it is.
func v2RefundStatus(s string) string {
	if v2, ok := refundStatuses[s]; ok {
		return v2
	}
	return s
}

// refundData is what a refund's event carries, under API v2's names (as
// a v2 refund notification carries them), and the resource as WeChat sent
// it under "wechat".
func refundData(n *wxpayv3.RefundNotice, raw []byte) (map[string]any, error) {
	data := map[string]any{
		"mch_id": n.MchID, "out_trade_no": n.OutTradeNo, "transaction_id": n.TransactionID,
		"out_refund_no": n.OutRefundNo, "refund_id": n.RefundID, "refund_status": v2RefundStatus(n.RefundStatus),
		"total_fee": n.Amount.Total, "refund_fee": n.Amount.Refund,
		// (No settlement_total_fee, settlement_refund_fee: the amounts less
		// non-cash coupons are amount.settlement_total/settlement_refund,
		// which APIv3's refund notification does not carry; the gateway
		// adds them from WeChat's refund query. payer_total and payer_refund
		// leave out every coupon, recharge ones too.)
	}
	if n.UserReceivedAccount != "" {
		data["refund_recv_accout"] = n.UserReceivedAccount // sic: API v2's name
	}
	st, err := v2RefundTime(n.SuccessTime)
	if err != nil {
		return nil, fmt.Errorf("success_time: %w", err)
	}
	if st != "" {
		data["success_time"] = st
	}
	if len(raw) > 0 {
		data["wechat"] = json.RawMessage(raw)
	}
	return data, nil
}
