package apiv2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// WeChat's API v2 failures classified for the gateway, which answers each
// kind with one status (see gateway.ErrorFor).
func TestCallErrorKinds(t *testing.T) {
	refusal := func(code, des string) error {
		return fmt.Errorf("unifiedorder o1: %w", &wxpay.APIError{Op: "unifiedorder", ReturnCode: "SUCCESS", ResultCode: "FAIL", ErrCode: code, ErrCodeDes: des})
	}
	timeout := &wxpay.TransportError{Op: "orderquery", Err: &net.OpError{Op: "read", Err: timeoutErr{}}}
	tests := []struct {
		name string
		err  error
		kind gateway.CallErrorKind
		code string
	}{
		{"ORDERPAID", refusal("ORDERPAID", "该订单已支付"), gateway.Conflict, "ORDERPAID"},
		{"OUT_TRADE_NO_USED", refusal("OUT_TRADE_NO_USED", "商户订单号重复"), gateway.Conflict, "OUT_TRADE_NO_USED"},
		{"ORDERCLOSED", refusal("ORDERCLOSED", "订单已关闭"), gateway.Conflict, "ORDERCLOSED"},
		{"NOTENOUGH", refusal("NOTENOUGH", "余额不足"), gateway.Conflict, "NOTENOUGH"},
		{"TRADE_STATE_ERROR", refusal("TRADE_STATE_ERROR", "订单状态错误"), gateway.Conflict, "TRADE_STATE_ERROR"},
		{"REFUND_FEE_MISMATCH", refusal("REFUND_FEE_MISMATCH", "订单金额不匹配"), gateway.Conflict, "REFUND_FEE_MISMATCH"},
		{"ORDERNOTEXIST", refusal("ORDERNOTEXIST", "订单不存在"), gateway.NotFound, "ORDERNOTEXIST"},
		{"REFUNDNOTEXIST", refusal("REFUNDNOTEXIST", "退款订单查询失败"), gateway.NotFound, "REFUNDNOTEXIST"},
		{"FREQUENCY_LIMITED", refusal("FREQUENCY_LIMITED", "频率限制"), gateway.RateLimited, "FREQUENCY_LIMITED"},
		{"SYSTEMERROR", refusal("SYSTEMERROR", "系统错误"), gateway.Refused, "SYSTEMERROR"},
		{"return_code FAIL", &wxpay.APIError{Op: "unifiedorder", ReturnCode: "FAIL", ReturnMsg: "签名错误"}, gateway.Refused, wxpay.ReturnFail},
		{"No Bill Exist", &wxpay.APIError{Op: "downloadbill", ReturnCode: "FAIL", ReturnMsg: "No Bill Exist", ErrCode: "20002"}, gateway.NotFound, "20002"},
		{"timeout", timeout, gateway.Timeout, ""},
		{"unreachable", &wxpay.TransportError{Op: "orderquery", Err: errors.New("connection refused")}, gateway.Unreachable, ""},
		{"bad signature", &wxpay.ResponseError{Op: "orderquery", Err: wxpay.ErrInvalidSignature}, gateway.BadSignature, ""},
		{"unsigned", &wxpay.ResponseError{Op: "orderquery", Err: wxpay.ErrMissingSign}, gateway.BadSignature, ""},
		{"bad reply", &wxpay.ResponseError{Op: "orderquery", Err: errors.New("answer has no prepay_id")}, gateway.BadReply, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ce *gateway.CallError
			if err := callError(tt.err); !errors.As(err, &ce) || ce.Kind != tt.kind || ce.Code != tt.code || !errors.Is(err, tt.err) {
				t.Fatalf("callError = %#v, want kind %d code %q wrapping the cause", err, tt.kind, tt.code)
			}
		})
	}
	// A request the client refuses to send is the caller's 400.
	fe := callError(fmt.Errorf("orderquery x: %w", &wxpay.FieldError{Field: "out_trade_no", Reason: "is longer than 32 characters"}))
	if e := gateway.ErrorFor(fe); e.Status != http.StatusBadRequest || e.Message != "out_trade_no is longer than 32 characters" {
		t.Fatalf("a field error: %+v", e)
	}
	if callError(nil) != nil {
		t.Fatal("callError(nil) is not nil")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// For refunds, WeChat's INVALID_REQUEST (more than is left to refund) and
// ERROR (refunded in full) conflict with the order's state.
func TestRefundConflicts(t *testing.T) {
	fake := &wxpay.Client{MchID: "10000100", Key: "192006250b4c09247ec02edce69f6a2d"}
	for _, code := range []string{"INVALID_REQUEST", "ERROR"} {
		err := callError(&wxpay.APIError{Op: "refund", ReturnCode: "SUCCESS", ResultCode: "FAIL", ErrCode: code, ErrCodeDes: "x"})
		var ce *gateway.CallError
		if !errors.As(err, &ce) || ce.Kind != gateway.Refused {
			t.Fatalf("%s outside a refund: %v", code, err)
		}
	}
	// The refund path itself is exercised against the simulator (the
	// gateway's and caddymodule's tests); here, only that a client without
	// a certificate is refused before anything is sent.
	p := New(fake)
	err := p.ValidateRefund(&gateway.RefundRequest{AppID: "wx1", OutTradeNo: "o1", OutRefundNo: "r1", TotalFee: 10, RefundFee: 5})
	if e := gateway.ErrorFor(err); e.Status != http.StatusNotImplemented || e.Code != "NO_CLIENT_CERT" {
		t.Fatalf("no client certificate: %+v", e)
	}
	if e := gateway.ErrorFor(p.ValidateRefund(&gateway.RefundRequest{AppID: "wx1", OutRefundNo: "r1", TotalFee: 10, RefundFee: 5})); e.Status != http.StatusBadRequest {
		t.Fatalf("no order named: %+v", e)
	}
}

// A notification's fields become the event's data: every field but sign,
// under WeChat's names, the amounts as integers (coupon_fee_<n> included).
func TestEventData(t *testing.T) {
	p := wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "total_fee", Value: "100"}, {Name: "cash_fee", Value: "90"},
		{Name: "coupon_fee_0", Value: "10"}, {Name: "coupon_count", Value: "1"}, {Name: "attach", Value: "中文"},
		{Name: "settlement_total_fee", Value: "100"}, {Name: "sign", Value: "ABC"}}
	got, err := eventData(nil, p)
	want := map[string]any{"return_code": "SUCCESS", "total_fee": int64(100), "cash_fee": int64(90), "coupon_fee_0": int64(10),
		"coupon_count": "1", "attach": "中文", "settlement_total_fee": int64(100)}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("eventData = %v, %v\nwant %v", got, err, want)
	}
	if _, err := eventData(nil, wxpay.Params{{Name: "total_fee", Value: "1.5"}}); err == nil {
		t.Fatal("a non-integer amount was accepted")
	}
}

// A paid order's query answer carries the payment as its notification
// would have: without the query's own fields, with return_code and
// result_code SUCCESS.
func TestQueriedPayment(t *testing.T) {
	p, err := payment(wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"},
		{Name: "mch_id", Value: "10000100"}, {Name: "appid", Value: "wx1"}, {Name: "out_trade_no", Value: "o1"},
		{Name: "transaction_id", Value: "4200"}, {Name: "total_fee", Value: "100"}})
	if err != nil || !p.Succeeded || !p.HasTotalFee || p.TotalFee != 100 || p.MchID != "10000100" || p.TransactionID != "4200" {
		t.Fatalf("payment %+v, %v", p, err)
	}
	failed, err := payment(wxpay.Params{{Name: "result_code", Value: "FAIL"}, {Name: "out_trade_no", Value: "o1"}})
	if err != nil || failed.Succeeded || failed.HasTotalFee {
		t.Fatalf("a failed payment without an amount: %+v, %v", failed, err)
	}
}

// WeChat's replies: the exact SUCCESS document, or FAIL with the reason.
func TestNotifyReply(t *testing.T) {
	p := New(&wxpay.Client{})
	ok := p.NotifyReply(http.StatusOK, "")
	if ok.Status != 200 || string(ok.Body) != `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>` {
		t.Fatalf("success reply %d %s", ok.Status, ok.Body)
	}
	fail := p.NotifyReply(http.StatusServiceUnavailable, "storage failure")
	doc, err := wxpay.DecodeXML(fail.Body)
	if fail.Status != 503 || err != nil || doc.Get("return_code") != "FAIL" || doc.Get("return_msg") != "storage failure" {
		t.Fatalf("failure reply %d %s", fail.Status, fail.Body)
	}
}

// An order that breaks API v2's limits is refused naming the field,
// before anything is sent.
func TestValidateOrder(t *testing.T) {
	p := New(&wxpay.Client{MchID: "10000100", Key: "192006250b4c09247ec02edce69f6a2d", Endpoint: "http://127.0.0.1:1"})
	o := &gateway.Order{NotifyURL: "https://pay.example.com/wxpay/notify", OrderRequest: gateway.OrderRequest{
		AppID: "wx1", OutTradeNo: "o1", TotalFee: 1, Body: "b", TradeType: gateway.TradeTypeJSAPI, SpbillCreateIP: "127.0.0.1"}}
	if e := gateway.ErrorFor(p.ValidateOrder(o)); e.Status != http.StatusBadRequest || !strings.HasPrefix(e.Message, "openid ") {
		t.Fatalf("JSAPI without openid: %+v", e)
	}
	o.OpenID = "x"
	if err := p.ValidateOrder(o); err != nil {
		t.Fatalf("a valid order: %v", err)
	}
	if _, err := p.Prepay(context.Background(), o); gateway.ErrorFor(err).Code != "WECHAT_UNREACHABLE" {
		t.Fatalf("WeChat unreachable: %v", err)
	}
}

// A query's payment is the configured merchant's: an answer for another
// mch_id is refused (it could give one payment two event ids), and one
// that omits it gets the merchant's.
func TestQueriedPaymentMerchant(t *testing.T) {
	const key = wxpay.APIKey("192006250b4c09247ec02edce69f6a2d")
	answer := func(mch string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			p := wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"},
				{Name: "appid", Value: "wx1"}, {Name: "nonce_str", Value: "n"}, {Name: "out_trade_no", Value: "o1"},
				{Name: "trade_state", Value: "SUCCESS"}, {Name: "transaction_id", Value: "4200"}, {Name: "total_fee", Value: "100"}}
			if mch != "" {
				p = append(p, wxpay.Param{Name: "mch_id", Value: mch})
			}
			sign, _ := wxpay.Sign(p, key, wxpay.SignTypeMD5)
			doc, _ := wxpay.EncodeXML(append(p, wxpay.Param{Name: "sign", Value: sign}))
			_, _ = w.Write(doc)
		}
	}
	for _, tc := range []struct {
		mch  string
		kind gateway.CallErrorKind
		ok   bool
	}{{"10000100", 0, true}, {"", 0, true}, {"10000999", gateway.BadReply, false}} {
		srv := httptest.NewServer(answer(tc.mch))
		p := New(&wxpay.Client{MchID: "10000100", Key: key, Endpoint: srv.URL, FailoverEndpoint: ""})
		q, err := p.QueryOrder(context.Background(), "wx1", "o1")
		srv.Close()
		var ce *gateway.CallError
		switch {
		case tc.ok && (err != nil || q.Payment == nil || q.Payment.MchID != "10000100" || q.Payment.Data["mch_id"] != "10000100"):
			t.Fatalf("answer with mch_id %q: %+v, %v", tc.mch, q, err)
		case !tc.ok && (!errors.As(err, &ce) || ce.Kind != tc.kind):
			t.Fatalf("answer for another merchant: %v", err)
		}
	}
}

// A merchant that pins its notifications' sign type (notify_sign_type)
// refuses one signed MD5, labelled or not, however valid its signature,
// and takes one signed HMAC-SHA256, labelled or not (WeChat leaves
// sign_type out of an HMAC-SHA256 order's notifications); without the pin
// every one with a valid signature is accepted.
//
// The signatures were computed outside this code, with Python's hashlib
// and hmac over WeChat's layout (fields with values, sorted by name,
// k=v joined by &, then &key=<key>; MD5 or HMAC-SHA256 keyed with the key,
// upper-case hex):
//
//	s = '&'.join(f'{k}={f[k]}' for k in sorted(f)) + '&key=' + key
//	hashlib.md5(s.encode()).hexdigest().upper()
//	hmac.new(key.encode(), s.encode(), hashlib.sha256).hexdigest().upper()
func TestNotifySignTypePinned(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	notification := func(signType, sign string) []byte {
		st := ""
		if signType != "" {
			st = "<sign_type>" + signType + "</sign_type>"
		}
		return []byte(`<xml><appid>wxd930ea5d5a258f4f</appid><mch_id>10000100</mch_id><nonce_str>5K8264ILTKCH16CQ</nonce_str>` +
			`<out_trade_no>o1</out_trade_no><result_code>SUCCESS</result_code><return_code>SUCCESS</return_code>` + st +
			`<total_fee>100</total_fee><transaction_id>4200000001</transaction_id><sign>` + sign + `</sign></xml>`)
	}
	tests := []struct {
		name     string
		body     []byte
		pinned   string // the error with the pin; "" accepted
		unpinned bool   // accepted without it
	}{
		{"MD5 without sign_type", notification("", "9CF9D47138618CC8AD0D2FCC08425186"), "signed MD5", true},
		// As WeChat sends an HMAC-SHA256 order's notifications: no
		// sign_type, a 64-digit sign.
		{"HMAC-SHA256 without sign_type", notification("", "0FEF52016CC7DADBC131184F2E7B4DB320CDD2C13EBBFCC3D820676A7D25B48C"), "", true},
		{"HMAC-SHA256 without sign_type, a wrong sign", notification("", "0FEF52016CC7DADBC131184F2E7B4DB320CDD2C13EBBFCC3D820676A7D25B48D"), "signature", false},
		{"MD5 labelled", notification("MD5", "48FD363453EE3D21361A084E3B456F77"), "signed MD5", true},
		{"HMAC-SHA256", notification("HMAC-SHA256", "9D868B0D0AD1A1BE765AE03847BBC8288AF3AF6834B0A3F10DCF54261F9818DF"), "", true},
		{"HMAC-SHA256 with a wrong sign", notification("HMAC-SHA256", "9D868B0D0AD1A1BE765AE03847BBC8288AF3AF6834B0A3F10DCF54261F9818DE"), "signature", false},
	}
	client := &wxpay.Client{MchID: "10000100", Key: key, SignType: wxpay.SignTypeHMACSHA256}
	pinned, free := New(client, RequireNotifySignType(wxpay.SignTypeHMACSHA256)), New(client)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := pinned.ParsePaymentNotification(nil, tc.body)
			switch {
			case tc.pinned == "" && (err != nil || p.OutTradeNo != "o1" || p.TotalFee != 100):
				t.Fatalf("pinned: %+v, %v", p, err)
			case tc.pinned != "" && (err == nil || !strings.Contains(err.Error(), tc.pinned)):
				t.Fatalf("pinned: accepted or wrong error: %v, want %q", err, tc.pinned)
			}
			if _, err := free.ParsePaymentNotification(nil, tc.body); (err == nil) != tc.unpinned {
				t.Fatalf("without the pin: %v", err)
			}
		})
	}
}
