package apiv3

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/gateway/apiv2"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// The order mapping, against the bodies WeChat's APIv3 documents for each
// trade type (pay.weixin.qq.com/doc/v3/merchant: JSAPI下单, Native下单,
// APP下单, H5下单): the expected JSON is written out here by hand from
// those pages' field lists, not produced by the code under test.
func TestPrepayRequest(t *testing.T) {
	base := gateway.Order{OrderRequest: gateway.OrderRequest{OutTradeNo: "1217752501201407033233368018", TotalFee: 100,
		Body: "Image形象店-深圳腾大-QQ公仔", AppID: "wxd678efh567hg6787", SpbillCreateIP: "14.23.150.211",
		Attach: "自定义数据", TimeExpire: "20180609133500", GoodsTag: "WXG"}, NotifyURL: "https://www.weixin.qq.com/wxpay/pay.php"}
	common := `"appid":"wxd678efh567hg6787","mchid":"1230000109","description":"Image形象店-深圳腾大-QQ公仔",` +
		`"out_trade_no":"1217752501201407033233368018","time_expire":"2018-06-09T13:35:00+08:00","attach":"自定义数据",` +
		`"notify_url":"https://www.weixin.qq.com/wxpay/pay.php","goods_tag":"WXG","amount":{"total":100,"currency":"CNY"}`
	tests := []struct {
		name, tradeType, openID, sceneInfo, detail string
		path, want                                 string
		err                                        string // the field refused
	}{
		{name: "JSAPI", tradeType: "JSAPI", openID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", path: "jsapi",
			want: `{` + common + `,"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"scene_info":{"payer_client_ip":"14.23.150.211"}}`},
		{name: "JSAPI without openid", tradeType: "JSAPI", err: "openid"},
		{name: "NATIVE", tradeType: "NATIVE", path: "native",
			want: `{` + common + `,"scene_info":{"payer_client_ip":"14.23.150.211"}}`},
		{name: "APP with detail", tradeType: "APP", path: "app",
			detail: `{"cost_price":608800,"receipt_id":"wx123","goods_detail":[{"goods_id":"1246464644","wxpay_goods_id":"1001","goods_name":"iPhoneX 256G","quantity":1,"price":528800}]}`,
			want:   `{` + common + `,"detail":{"cost_price":608800,"invoice_id":"wx123","goods_detail":[{"merchant_goods_id":"1246464644","wechatpay_goods_id":"1001","goods_name":"iPhoneX 256G","quantity":1,"unit_price":528800}]},"scene_info":{"payer_client_ip":"14.23.150.211"}}`},
		{name: "APP with an unknown detail field", tradeType: "APP", detail: `{"goods":[]}`, err: "detail"},
		{name: "MWEB", tradeType: "MWEB", path: "h5",
			sceneInfo: `{"h5_info":{"type":"Wap","wap_url":"https://pay.qq.com","wap_name":"腾讯充值"}}`,
			want:      `{` + common + `,"scene_info":{"payer_client_ip":"14.23.150.211","h5_info":{"type":"Wap","app_name":"腾讯充值","app_url":"https://pay.qq.com"}}}`},
		{name: "MWEB iOS", tradeType: "MWEB", path: "h5",
			sceneInfo: `{"h5_info":{"type":"IOS","app_name":"王者荣耀","bundle_id":"com.tencent.wzryIOS"}}`,
			want:      `{` + common + `,"scene_info":{"payer_client_ip":"14.23.150.211","h5_info":{"type":"iOS","app_name":"王者荣耀","bundle_id":"com.tencent.wzryIOS"}}}`},
		{name: "MWEB without scene_info", tradeType: "MWEB", err: "scene_info"},
		{name: "MWEB with another type", tradeType: "MWEB", sceneInfo: `{"h5_info":{"type":"Web"}}`, err: "scene_info"},
		{name: "unknown trade type", tradeType: "MICROPAY", err: "trade_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.TradeType, o.OpenID, o.SceneInfo, o.Detail = tt.tradeType, tt.openID, tt.sceneInfo, tt.detail
			path, req, err := prepayRequest(&o, "1230000109")
			if tt.err != "" {
				var ge *gateway.Error
				if !errors.As(err, &ge) || ge.Status != http.StatusBadRequest || !strings.Contains(ge.Message, tt.err) {
					t.Fatalf("err = %v, want a 400 naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(req)
			if path != tt.path || !jsonEqual(t, got, []byte(tt.want)) {
				t.Fatalf("%s %s\nwant %s %s", path, got, tt.path, tt.want)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("want: %v", err)
	}
	return reflect.DeepEqual(x, y)
}

// A transaction (a notification's resource, a query's answer), as WeChat's
// 支付成功回调通知 page shows it, in the event's v2 names.
func TestTransactionData(t *testing.T) {
	raw := []byte(`{"transaction_id":"1217752501201407033233368018","amount":{"payer_total":90,"total":100,"currency":"CNY","payer_currency":"CNY"},
		"mchid":"1230000109","trade_state":"SUCCESS","bank_type":"CMC","promotion_detail":[],"success_time":"2018-06-08T10:34:56+08:00",
		"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"out_trade_no":"1217752501201407033233368018","appid":"wxd678efh567hg6787",
		"trade_state_desc":"支付成功","trade_type":"MICROPAY","attach":"自定义数据","scene_info":{"device_id":"013467007045764"}}`)
	var tx wxpayv3.Transaction
	if err := json.Unmarshal(raw, &tx); err != nil {
		t.Fatal(err)
	}
	p, err := payment(&tx, raw)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"return_code": "SUCCESS", "result_code": "SUCCESS", "appid": "wxd678efh567hg6787", "mch_id": "1230000109",
		"out_trade_no": "1217752501201407033233368018", "transaction_id": "1217752501201407033233368018", "trade_type": "MICROPAY",
		"bank_type": "CMC", "attach": "自定义数据", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "total_fee": int64(100), "cash_fee": int64(90),
		"fee_type": "CNY", "cash_fee_type": "CNY", "time_end": "20180608103456", "wechat": json.RawMessage(raw),
	}
	if !reflect.DeepEqual(p.Data, want) {
		t.Fatalf("data %v\nwant %v", p.Data, want)
	}
	if !p.Succeeded || p.TotalFee != 100 || !p.HasTotalFee || p.MchID != "1230000109" || p.AppID != "wxd678efh567hg6787" {
		t.Fatalf("payment %+v", p)
	}
	// A UTC success_time is Beijing time in time_end.
	tx.SuccessTime = "2018-06-08T02:34:56Z"
	if p, _ := payment(&tx, nil); p.Data["time_end"] != "20180608103456" {
		t.Fatalf("time_end from UTC: %v", p.Data["time_end"])
	}
	tx.SuccessTime = "yesterday"
	if _, err := payment(&tx, nil); err == nil {
		t.Fatal("a success_time that is not RFC 3339 was taken")
	}
}

// A refund notice, as WeChat's 退款结果通知 page shows its resource, in the
// event's v2 names, its status mapped to v2's.
func TestRefundData(t *testing.T) {
	tests := []struct{ v3, v2 string }{
		{"SUCCESS", gateway.RefundStatusSuccess}, {"CLOSED", gateway.RefundStatusClosed},
		{"ABNORMAL", gateway.RefundStatusChange}, {"PROCESSING", gateway.RefundStatusProcessing},
	}
	for _, tt := range tests {
		raw := []byte(`{"mchid":"1900000100","transaction_id":"1008450740201411110005820873","out_trade_no":"20150806125346",
			"refund_id":"50200207182018070300011301001","out_refund_no":"7752501201407033233368018","refund_status":"` + tt.v3 + `",
			"success_time":"2018-06-08T10:34:56+08:00","user_received_account":"招商银行信用卡0403",
			"amount":{"total":999,"refund":999,"payer_total":999,"payer_refund":999}}`)
		var n wxpayv3.RefundNotice
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		data, err := refundData(&n, raw)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"mch_id": "1900000100", "transaction_id": "1008450740201411110005820873", "out_trade_no": "20150806125346",
			"refund_id": "50200207182018070300011301001", "out_refund_no": "7752501201407033233368018", "refund_status": tt.v2,
			"success_time": "2018-06-08 10:34:56", "refund_recv_accout": "招商银行信用卡0403", "total_fee": int64(999),
			"refund_fee": int64(999), "wechat": json.RawMessage(raw), // no settlement amounts: the notification has none (the gateway takes them from the query)
		}
		if !reflect.DeepEqual(data, want) {
			t.Fatalf("%s: data %v\nwant %v", tt.v3, data, want)
		}
	}
}

// A refund's answer under API v2's names: a partial refund of an order
// paid 90 of 100 fen in cash (10 by a coupon), 30 refunded of which 27 in
// cash (the figures are WeChat's refund answer's fields, written by hand).
// v2's cash_fee is the order's cash payment, not the refund's cash part.
func TestRefundResponse(t *testing.T) {
	raw := []byte(`{"refund_id":"50000000382019052709732678859","out_refund_no":"1217752501201407033233368018",
		"transaction_id":"1217752501201407033233368018","out_trade_no":"1217752501201407033233368018","channel":"ORIGINAL",
		"user_received_account":"招商银行信用卡0403","create_time":"2020-12-01T16:18:12+08:00","status":"PROCESSING",
		"amount":{"total":100,"refund":30,"payer_total":90,"payer_refund":27,"settlement_refund":30,"settlement_total":100,
		"discount_refund":3,"currency":"CNY"}}`)
	var r wxpayv3.Refund
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	got := refundResponse(&r)
	want := &gateway.RefundResponse{
		OutRefundNo: "1217752501201407033233368018", RefundID: "50000000382019052709732678859",
		OutTradeNo: "1217752501201407033233368018", TransactionID: "1217752501201407033233368018",
		TotalFee: 100, RefundFee: 30, CashFee: 90,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("refund answer %+v\nwant %+v", got, want)
	}
	// Queried: v2's settlement amounts (less non-cash coupons) are
	// settlement_total and settlement_refund, not the payer's amounts
	// (which leave out every coupon).
	q, err := refundQueryResponse(&r)
	if err != nil {
		t.Fatal(err)
	}
	e := q.Entry("1217752501201407033233368018")
	if q.SettlementTotalFee == nil || *q.SettlementTotalFee != 100 || e == nil || e.SettlementRefundFee == nil || *e.SettlementRefundFee != 30 ||
		e.RefundFee != 30 || e.RefundStatus != "PROCESSING" || q.TotalFee != 100 {
		t.Fatalf("refund query %+v, entry %+v", q, e)
	}
	// An answer without them: none, rather than zeros that would be
	// compared and forwarded.
	var bare wxpayv3.Refund
	if err := json.Unmarshal([]byte(`{"refund_id":"1","out_refund_no":"R","status":"SUCCESS","amount":{"total":100,"refund":30,"currency":"CNY"}}`), &bare); err != nil {
		t.Fatal(err)
	}
	if q, err := refundQueryResponse(&bare); err != nil || q.SettlementTotalFee != nil || q.Refunds[0].SettlementRefundFee != nil {
		t.Fatalf("refund query without settlement amounts: %+v, %v", q, err)
	}
}

// WeChat's APIv3 errors reach the caller with the statuses and (API v2)
// codes they have on v2.
func TestCallErrors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"paid", &wxpayv3.APIError{Status: 400, Code: "ORDERPAID"}, 409, "ORDERPAID"},
		{"closed", &wxpayv3.APIError{Status: 400, Code: "ORDER_CLOSED"}, 409, "ORDERCLOSED"},
		{"number used", &wxpayv3.APIError{Status: 403, Code: "OUT_TRADE_NO_USED"}, 409, "OUT_TRADE_NO_USED"},
		{"balance", &wxpayv3.APIError{Status: 403, Code: "NOT_ENOUGH"}, 409, "NOTENOUGH"},
		{"no order", &wxpayv3.APIError{Status: 404, Code: "ORDER_NOT_EXIST"}, 404, "ORDERNOTEXIST"},
		{"no resource", &wxpayv3.APIError{Status: 404, Code: "RESOURCE_NOT_EXISTS"}, 404, "RESOURCE_NOT_EXISTS"},
		{"no bill that day", &wxpayv3.APIError{Status: 400, Code: "NO_STATEMENT_EXIST"}, 404, "NO_STATEMENT_EXIST"},
		{"rate", &wxpayv3.APIError{Status: 429, Code: "FREQUENCY_LIMITED"}, 429, "FREQUENCY_LIMITED"},
		{"system", &wxpayv3.APIError{Status: 500, Code: "SYSTEM_ERROR"}, 502, "SYSTEMERROR"},
		{"another 5xx", &wxpayv3.APIError{Status: 503, Code: "BANKERROR"}, 502, "SYSTEMERROR"},
		{"parameters", &wxpayv3.APIError{Status: 400, Code: "PARAM_ERROR", Message: "appid和mch_id不匹配"}, 502, "PARAM_ERROR"},
		{"signature", &wxpayv3.APIError{Status: 401, Code: "SIGN_ERROR"}, 502, "SIGN_ERROR"},
		{"unsigned 401", &wxpayv3.VerifyError{Status: 401, Code: "SIGN_ERROR", Err: wxpayv3.ErrBadSignature}, 502, "WECHAT_BAD_SIGNATURE"},
		{"timeout", &wxpayv3.TransportError{Op: "x", Err: timeoutError{}}, 504, "WECHAT_TIMEOUT"},
		{"unreachable", &wxpayv3.TransportError{Op: "x", Err: errors.New("connection refused")}, 502, "WECHAT_UNREACHABLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ge := gateway.ErrorFor(callError(tt.err))
			if ge.Status != tt.status || ge.Code != tt.code {
				t.Fatalf("%d %s, want %d %s (%v)", ge.Status, ge.Code, tt.status, tt.code, ge)
			}
		})
	}
	if ge := gateway.ErrorFor(notFoundAs(callError(&wxpayv3.APIError{Status: 404, Code: "RESOURCE_NOT_EXISTS"}), "REFUNDNOTEXIST")); ge.Code != "REFUNDNOTEXIST" {
		t.Fatalf("a refund not found: %s", ge.Code)
	}
	if ge := gateway.ErrorFor(callError(&wxpayv3.APIError{Status: 401, Code: "SIGN_ERROR"})); !strings.Contains(ge.Message, "private_key or mch_serial") {
		t.Fatalf("SIGN_ERROR's message: %s", ge.Message)
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// APIv3 takes notifications with its headers or a JSON body (its headers
// lost on the way: refused for their lack, not read as XML), API v2 the
// rest; replies are 204 without a body, or the JSON failure.
func TestNotificationsAndReplies(t *testing.T) {
	p := New(Config{Client: &wxpayv3.Client{MchID: "1"}})
	v2 := apiv2.New(&wxpay.Client{MchID: "1"})
	signed := http.Header{"Wechatpay-Signature": {"x"}}
	for _, tt := range []struct {
		name string
		h    http.Header
		body string
		v3   bool
	}{
		{"API v2's XML", http.Header{}, "<xml><return_code>SUCCESS</return_code></xml>", false},
		{"XML after white space", http.Header{}, "\n <xml></xml>", false},
		{"an empty body", http.Header{}, "", false},
		{"APIv3's, signed", signed, `{"id":"EV-1"}`, true},
		{"Wechatpay-Signature on anything", signed, "<xml></xml>", true},
		{"APIv3's JSON, its headers stripped", http.Header{}, ` {"id":"EV-1","resource":{}}`, true},
	} {
		if got := p.TakesNotification(tt.h, []byte(tt.body)); got != tt.v3 {
			t.Errorf("%s: APIv3 takes it: %v", tt.name, got)
		}
		if got := v2.TakesNotification(tt.h, []byte(tt.body)); got == tt.v3 {
			t.Errorf("%s: API v2 takes it: %v", tt.name, got)
		}
	}
	if r := p.NotifyReply(http.StatusOK, ""); r.Status != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("received: %+v", r)
	}
	r := p.NotifyReply(http.StatusBadRequest, `bad "sign"`)
	if r.Status != 400 || r.ContentType != "application/json" || string(r.Body) != `{"code":"FAIL","message":"bad \"sign\""}` {
		t.Fatalf("refused: %d %s %s", r.Status, r.ContentType, r.Body)
	}
}

// APIv3's limits, checked before anything happens to an order (its
// out_trade_no is 6 to 32 characters of [0-9A-Za-z_-|*]; description at
// most 127 characters; attach at most 128).
func TestValidateOrder(t *testing.T) {
	p := New(Config{Client: &wxpayv3.Client{MchID: "1230000109"}})
	ok := gateway.Order{OrderRequest: gateway.OrderRequest{OutTradeNo: "abc123", TotalFee: 1, Body: "b", TradeType: "NATIVE",
		AppID: "wx1"}, NotifyURL: "https://pay.example.com/wxpay/notify"}
	tests := []struct {
		name   string
		mutate func(o *gateway.Order)
		field  string // "" valid
	}{
		{"valid", func(*gateway.Order) {}, ""},
		{"32 characters", func(o *gateway.Order) { o.OutTradeNo = strings.Repeat("a", 32) }, ""},
		{"5 characters", func(o *gateway.Order) { o.OutTradeNo = "abc12" }, "out_trade_no"},
		{"33 characters", func(o *gateway.Order) { o.OutTradeNo = strings.Repeat("a", 33) }, "out_trade_no"},
		{"a dot", func(o *gateway.Order) { o.OutTradeNo = "abc.123" }, "out_trade_no"},
		{"zero fee", func(o *gateway.Order) { o.TotalFee = 0 }, "total_fee"},
		{"no body", func(o *gateway.Order) { o.Body = "" }, "body"},
		{"127 characters of body", func(o *gateway.Order) { o.Body = strings.Repeat("商", 127) }, ""},
		{"128 characters of body", func(o *gateway.Order) { o.Body = strings.Repeat("商", 128) }, "body"},
		{"129 characters of attach", func(o *gateway.Order) { o.Attach = strings.Repeat("a", 129) }, "attach"},
		{"JSAPI without openid", func(o *gateway.Order) { o.TradeType = "JSAPI" }, "openid"},
	}
	for _, tt := range tests {
		o := ok
		tt.mutate(&o)
		err := p.ValidateOrder(&o)
		var ge *gateway.Error
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.field != "" && (!errors.As(err, &ge) || ge.Status != http.StatusBadRequest || !strings.HasPrefix(ge.Message, tt.field)):
			t.Errorf("%s: err = %v, want a 400 naming %s", tt.name, err, tt.field)
		}
	}
}
