// Package bench holds caddy-wxpay's benchmark suite: the micro-benchmarks
// of the protocol primitives (primitives_test.go), and the fixtures shared
// with the load test's helpers (fakewechat, gennotify) that bench/load.sh
// builds. See BENCHMARKS.md at the repository root.
//
// Every document here is signed with WeChat's public documentation test
// merchant, never a real one.
package bench

import (
	"fmt"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// The test merchant: WeChat's documentation example credentials.
const (
	MchID          = "10000100"
	AppID          = "wxd930ea5d5a258f4f"
	Key            = wxpay.APIKey("192006250b4c09247ec02edce69f6a2d")
	OpenID         = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
	PrepayID       = "wx201411101639507cbf6ffd8b0779950874"
	Nonce          = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
	APIToken       = "bench-api-token-0123456789abcdef"
	UpstreamSecret = "bench-upstream-secret-0123456789"
	// NotifyURL is what the gateway's notify_url is in the micro-benchmarks;
	// the load test uses its own port.
	NotifyURL = "http://127.0.0.1:18080/wxpay/notify"
	// OrderBody is the body of the orders in the benchmarks and the load
	// test (WeChat's documentation example).
	OrderBody = "腾讯充值中心-QQ会员充值"
)

// ElevenFields is a typical signed document: the eleven fields of a JSAPI
// unifiedorder request as the client signs it (without sign).
func ElevenFields() wxpay.Params {
	return wxpay.Params{
		{Name: "appid", Value: AppID},
		{Name: "body", Value: OrderBody},
		{Name: "out_trade_no", Value: "1415659990"},
		{Name: "total_fee", Value: "1"},
		{Name: "spbill_create_ip", Value: "14.23.150.211"},
		{Name: "notify_url", Value: NotifyURL},
		{Name: "trade_type", Value: wxpay.TradeTypeJSAPI},
		{Name: "openid", Value: OpenID},
		{Name: "attach", Value: "支付测试"},
		{Name: "mch_id", Value: MchID},
		{Name: "nonce_str", Value: Nonce},
	}
}

// OrderRequest is the JSAPI order the gateway builds from a caller's
// POST /wxpay/orders.
func OrderRequest(outTradeNo string) *wxpay.UnifiedOrderRequest {
	return &wxpay.UnifiedOrderRequest{
		AppID:          AppID,
		Body:           OrderBody,
		OutTradeNo:     outTradeNo,
		TotalFee:       1,
		SpbillCreateIP: "127.0.0.1",
		NotifyURL:      NotifyURL,
		TradeType:      wxpay.TradeTypeJSAPI,
		OpenID:         OpenID,
	}
}

// UnifiedOrderReplyParams is WeChat's successful answer to a JSAPI
// unifiedorder for the test merchant, signed with MD5.
func UnifiedOrderReplyParams() (wxpay.Params, error) {
	p := wxpay.Params{
		{Name: "return_code", Value: "SUCCESS"},
		{Name: "return_msg", Value: "OK"},
		{Name: "appid", Value: AppID},
		{Name: "mch_id", Value: MchID},
		{Name: "nonce_str", Value: "IITRi8Iabbblz1Jc"},
		{Name: "result_code", Value: "SUCCESS"},
		{Name: "prepay_id", Value: PrepayID},
		{Name: "trade_type", Value: wxpay.TradeTypeJSAPI},
	}
	sign, err := wxpay.Sign(p, Key, wxpay.SignTypeMD5)
	if err != nil {
		return nil, err
	}
	return append(p, wxpay.Param{Name: "sign", Value: sign}), nil
}

// UnifiedOrderReply is UnifiedOrderReplyParams as the XML WeChat sends.
func UnifiedOrderReply() ([]byte, error) {
	p, err := UnifiedOrderReplyParams()
	if err != nil {
		return nil, err
	}
	return wxpay.EncodeXML(p)
}

// Notification is the i-th pay notification of a series: a successful JSAPI
// payment of the test merchant, with a transaction_id and an out_trade_no
// that no other i (and no other prefix) shares, signed with MD5. prefix
// is at most 12 characters of [0-9A-Za-z].
func Notification(prefix string, i int) ([]byte, error) {
	if len(prefix) > 12 {
		return nil, fmt.Errorf("notification prefix %q is longer than 12 characters", prefix)
	}
	p := wxpay.Params{
		{Name: "return_code", Value: "SUCCESS"},
		{Name: "appid", Value: AppID},
		{Name: "mch_id", Value: MchID},
		{Name: "nonce_str", Value: fmt.Sprintf("n%sx%d", prefix, i)},
		{Name: "result_code", Value: "SUCCESS"},
		{Name: "openid", Value: OpenID},
		{Name: "trade_type", Value: wxpay.TradeTypeJSAPI},
		{Name: "bank_type", Value: "CMC"},
		{Name: "total_fee", Value: "1"},
		{Name: "cash_fee", Value: "1"},
		{Name: "fee_type", Value: "CNY"},
		// 28 characters, like WeChat's: unique per (prefix, i).
		{Name: "transaction_id", Value: fmt.Sprintf("42%s%0*d", prefix, 26-len(prefix), i)},
		{Name: "out_trade_no", Value: fmt.Sprintf("N%sx%d", prefix, i)},
		{Name: "time_end", Value: "20261127080000"},
	}
	sign, err := wxpay.Sign(p, Key, wxpay.SignTypeMD5)
	if err != nil {
		return nil, err
	}
	return wxpay.EncodeXML(append(p, wxpay.Param{Name: "sign", Value: sign}))
}
