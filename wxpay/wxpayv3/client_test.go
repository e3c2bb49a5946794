package wxpayv3

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPrepay(t *testing.T) {
	w := newFakeWeChat(t)
	c := w.client()
	for _, tt := range []struct {
		tradeType string
		req       PrepayRequest
		wantBody  string
		answer    any
		want      PrepayResponse
	}{
		{
			TradeTypeJSAPI,
			PrepayRequest{AppID: "wxd678efh567hg6787", Description: "Image形象店-深圳腾大-QQ公仔", OutTradeNo: "1217752501201407033233368018",
				NotifyURL: "https://example.com/notify?a=1&b=<2>", Amount: Amount{Total: 100, Currency: "CNY"}, Payer: &Payer{OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
				TimeExpire: "2026-01-01T10:34:56+08:00", Attach: "自定义", Detail: json.RawMessage(`{"cost_price":608800}`)},
			`{"appid":"wxd678efh567hg6787","mchid":"1900009191","description":"Image形象店-深圳腾大-QQ公仔","out_trade_no":"1217752501201407033233368018","time_expire":"2026-01-01T10:34:56+08:00","attach":"自定义","notify_url":"https://example.com/notify?a=1&b=<2>","amount":{"total":100,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"detail":{"cost_price":608800}}`,
			map[string]string{"prepay_id": "wx26112221580621e9b071c00d9e093b0000"},
			PrepayResponse{PrepayID: "wx26112221580621e9b071c00d9e093b0000"},
		},
		{
			TradeTypeNative,
			PrepayRequest{AppID: "wx1", Description: "d", OutTradeNo: "N1", NotifyURL: "https://e/n", Amount: Amount{Total: 1}, GoodsTag: "WXG"},
			`{"appid":"wx1","mchid":"1900009191","description":"d","out_trade_no":"N1","notify_url":"https://e/n","goods_tag":"WXG","amount":{"total":1}}`,
			map[string]string{"code_url": "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"},
			PrepayResponse{CodeURL: "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"},
		},
		{
			TradeTypeApp,
			PrepayRequest{AppID: "wx1", MchID: "1900009191", Description: "d", OutTradeNo: "A1", NotifyURL: "https://e/n", Amount: Amount{Total: 2}},
			`{"appid":"wx1","mchid":"1900009191","description":"d","out_trade_no":"A1","notify_url":"https://e/n","amount":{"total":2}}`,
			map[string]string{"prepay_id": "wx2"},
			PrepayResponse{PrepayID: "wx2"},
		},
		{
			TradeTypeH5,
			PrepayRequest{AppID: "wx1", Description: "d", OutTradeNo: "H1", NotifyURL: "https://e/n", Amount: Amount{Total: 3},
				SceneInfo: &SceneInfo{PayerClientIP: "203.0.113.7", H5Info: &H5Info{Type: "Wap", AppName: "shop"}}},
			`{"appid":"wx1","mchid":"1900009191","description":"d","out_trade_no":"H1","notify_url":"https://e/n","amount":{"total":3},"scene_info":{"payer_client_ip":"203.0.113.7","h5_info":{"type":"Wap","app_name":"shop"}}}`,
			map[string]string{"h5_url": "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx3"},
			PrepayResponse{H5URL: "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx3"},
		},
	} {
		t.Run(tt.tradeType, func(t *testing.T) {
			var got *seenRequest
			w.handle(func(r *seenRequest) *reply {
				got = r
				return jsonReply(t, tt.answer)
			})
			req := tt.req
			resp, err := c.Prepay(context.Background(), tt.tradeType, &req)
			if err != nil {
				t.Fatal(err)
			}
			if *resp != tt.want {
				t.Fatalf("answer %+v", *resp)
			}
			if got.Method != "POST" || got.URI != "/v3/pay/transactions/"+tt.tradeType {
				t.Fatalf("%s %s", got.Method, got.URI)
			}
			if string(got.Body) != tt.wantBody {
				t.Fatalf("body\n%s\nwant\n%s", got.Body, tt.wantBody)
			}
			if got.Header.Get("Wechatpay-Serial") != w.f.v.PublicKeyID || got.Header.Get("User-Agent") != DefaultUserAgent {
				t.Fatalf("headers %v", got.Header)
			}
			if req.MchID != tt.req.MchID {
				t.Fatal("Prepay changed the caller's request")
			}
		})
	}
}

func TestPrepayRefusedBeforeSending(t *testing.T) {
	w := newFakeWeChat(t)
	c := w.client()
	good := func() PrepayRequest {
		return PrepayRequest{AppID: "wx1", Description: "d", OutTradeNo: "O1", NotifyURL: "https://e/n", Amount: Amount{Total: 1}, Payer: &Payer{OpenID: "o"}}
	}
	for _, tt := range []struct {
		name      string
		tradeType string
		change    func(r *PrepayRequest)
		field     string
	}{
		{"unknown trade type", "JSAPI", func(*PrepayRequest) {}, ""},
		{"no appid", TradeTypeJSAPI, func(r *PrepayRequest) { r.AppID = "" }, "appid"},
		{"no description", TradeTypeNative, func(r *PrepayRequest) { r.Description = "" }, "description"},
		{"no out_trade_no", TradeTypeNative, func(r *PrepayRequest) { r.OutTradeNo = "" }, "out_trade_no"},
		{"no notify_url", TradeTypeApp, func(r *PrepayRequest) { r.NotifyURL = "" }, "notify_url"},
		{"zero amount", TradeTypeApp, func(r *PrepayRequest) { r.Amount.Total = 0 }, "amount.total"},
		{"jsapi without payer", TradeTypeJSAPI, func(r *PrepayRequest) { r.Payer = nil }, "payer.openid"},
		{"h5 without scene", TradeTypeH5, func(*PrepayRequest) {}, "scene_info.payer_client_ip"},
		{"h5 without h5_info", TradeTypeH5, func(r *PrepayRequest) { r.SceneInfo = &SceneInfo{PayerClientIP: "1.2.3.4"} }, "scene_info.h5_info.type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := good()
			tt.change(&r)
			_, err := c.Prepay(context.Background(), tt.tradeType, &r)
			if err == nil {
				t.Fatal("accepted")
			}
			var fe *FieldError
			if tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field) {
				t.Fatalf("err = %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
	if _, err := c.Prepay(context.Background(), TradeTypeJSAPI, nil); err == nil {
		t.Fatal("nil request")
	}
	if n := len(w.requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func TestPrepayAnswerWithoutPrepayID(t *testing.T) {
	w := newFakeWeChat(t)
	w.handle(func(*seenRequest) *reply { return jsonReply(t, map[string]string{"code_url": "x"}) })
	_, err := w.client().Prepay(context.Background(), TradeTypeJSAPI, &PrepayRequest{AppID: "wx1", Description: "d", OutTradeNo: "O1", NotifyURL: "https://e/n", Amount: Amount{Total: 1}, Payer: &Payer{OpenID: "o"}})
	var re *ResponseError
	if !errors.As(err, &re) || re.Status != 200 {
		t.Fatalf("err = %v", err)
	}
	errorContains(t, err, "prepay O1", "prepay_id: is missing")
	if !OutcomeUnknown(err) {
		t.Error("a prepay without prepay_id is not an unknown outcome")
	}
}

const txJSON = `{"appid":"wxd678efh567hg6787","mchid":"1900009191","out_trade_no":"A|B*C 1","transaction_id":"4200000000202601010000000001",` +
	`"trade_type":"JSAPI","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"CMC","attach":"at","success_time":"2026-01-01T08:00:00+08:00",` +
	`"payer":{"openid":"o1"},"amount":{"total":100,"payer_total":90,"currency":"CNY","payer_currency":"CNY"},"scene_info":{"device_id":"013467007045764"},` +
	`"promotion_detail":[{"coupon_id":"109519","amount":10}],"future_field":{"x":1}}`

func TestQueryTransaction(t *testing.T) {
	w := newFakeWeChat(t)
	c := w.client()
	var got *seenRequest
	w.handle(func(r *seenRequest) *reply {
		got = r
		return &reply{status: 200, body: []byte(txJSON)}
	})
	want := Transaction{
		AppID: "wxd678efh567hg6787", MchID: "1900009191", OutTradeNo: "A|B*C 1", TransactionID: "4200000000202601010000000001",
		TradeType: "JSAPI", TradeState: TradeStateSuccess, TradeStateDesc: "支付成功", BankType: "CMC", Attach: "at",
		SuccessTime: "2026-01-01T08:00:00+08:00", Payer: &Payer{OpenID: "o1"},
		Amount:          &Amount{Total: 100, PayerTotal: 90, Currency: "CNY", PayerCurrency: "CNY"},
		SceneInfo:       &SceneInfo{DeviceID: "013467007045764"},
		PromotionDetail: json.RawMessage(`[{"coupon_id":"109519","amount":10}]`),
		Raw:             json.RawMessage(txJSON),
	}

	tx, err := c.QueryByOutTradeNo(context.Background(), "A|B*C 1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*tx, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", *tx, want)
	}
	// The number is one escaped path segment; the fake checked the
	// signature over this very target.
	if got.Method != "GET" || got.URI != "/v3/pay/transactions/out-trade-no/A%7CB%2AC%201?mchid=1900009191" || len(got.Body) != 0 {
		t.Fatalf("%s %s %q", got.Method, got.URI, got.Body)
	}
	if got.Header.Get("Content-Type") != "" {
		t.Fatal("a GET with a Content-Type")
	}

	tx, err = c.QueryByTransactionID(context.Background(), "4200000000202601010000000001")
	if err != nil {
		t.Fatal(err)
	}
	if got.URI != "/v3/pay/transactions/id/4200000000202601010000000001?mchid=1900009191" || tx.OutTradeNo != "A|B*C 1" {
		t.Fatalf("%s %+v", got.URI, tx)
	}

	// An answer about another order or merchant is refused.
	for _, tt := range []struct {
		call func() error
		msg  string
	}{
		{func() error { _, err := c.QueryByOutTradeNo(context.Background(), "OTHER"); return err }, `out_trade_no "A|B*C 1"`},
		{func() error { _, err := c.QueryByTransactionID(context.Background(), "4200"); return err }, "transaction_id"},
	} {
		var re *ResponseError
		if err := tt.call(); !errors.As(err, &re) {
			t.Fatalf("err = %v", err)
		} else {
			errorContains(t, err, tt.msg)
		}
	}
	w.handle(func(*seenRequest) *reply {
		return &reply{status: 200, body: []byte(strings.Replace(txJSON, `"mchid":"1900009191"`, `"mchid":"1900000000"`, 1))}
	})
	_, err = c.QueryByOutTradeNo(context.Background(), "A|B*C 1")
	errorContains(t, err, `mchid "1900000000"`)
	if _, err := c.QueryByOutTradeNo(context.Background(), ""); err == nil {
		t.Fatal("empty number")
	}
}

func TestCloseIs204OverEmptyBody(t *testing.T) {
	w := newFakeWeChat(t)
	var got *seenRequest
	w.handle(func(r *seenRequest) *reply {
		got = r
		return &reply{status: http.StatusNoContent}
	})
	if err := w.client().Close(context.Background(), "1217752501201407033233368018"); err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" || got.URI != "/v3/pay/transactions/out-trade-no/1217752501201407033233368018/close" || string(got.Body) != `{"mchid":"1900009191"}` {
		t.Fatalf("%s %s %s", got.Method, got.URI, got.Body)
	}
	// The same 204 with a signature over something else is refused.
	w.handle(func(*seenRequest) *reply { return &reply{status: http.StatusNoContent, badSig: true} })
	err := w.client().Close(context.Background(), "1217752501201407033233368018")
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Status != 204 || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("err = %v", err)
	}
	errorContains(t, err, "close order 1217752501201407033233368018")
}

func TestRefund(t *testing.T) {
	w := newFakeWeChat(t)
	c := w.client()
	const answer = `{"refund_id":"50000000382019052709732678859","out_refund_no":"R1","transaction_id":"4200","out_trade_no":"O1",` +
		`"channel":"ORIGINAL","user_received_account":"招商银行信用卡0403","success_time":"","create_time":"2026-01-01T09:00:00+08:00",` +
		`"status":"PROCESSING","funds_account":"AVAILABLE","amount":{"total":100,"refund":40,"payer_total":100,"payer_refund":40,` +
		`"settlement_refund":40,"settlement_total":100,"discount_refund":0,"currency":"CNY","from":[]},"promotion_detail":[]}`
	var got *seenRequest
	w.handle(func(r *seenRequest) *reply {
		got = r
		return &reply{status: 200, body: []byte(answer)}
	})
	req := &RefundRequest{OutTradeNo: "O1", OutRefundNo: "R1", Reason: "商品已售完", NotifyURL: "https://e/refund", Amount: RefundAmount{Refund: 40, Total: 100}}
	r, err := c.Refund(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" || got.URI != "/v3/refund/domestic/refunds" {
		t.Fatalf("%s %s", got.Method, got.URI)
	}
	if want := `{"out_trade_no":"O1","out_refund_no":"R1","reason":"商品已售完","notify_url":"https://e/refund","amount":{"refund":40,"total":100,"currency":"CNY"}}`; string(got.Body) != want {
		t.Fatalf("body\n%s\nwant\n%s", got.Body, want)
	}
	if req.Amount.Currency != "" {
		t.Fatal("Refund changed the caller's request")
	}
	want := Refund{RefundID: "50000000382019052709732678859", OutRefundNo: "R1", TransactionID: "4200", OutTradeNo: "O1", Channel: "ORIGINAL",
		UserReceivedAccount: "招商银行信用卡0403", CreateTime: "2026-01-01T09:00:00+08:00", Status: RefundStatusProcessing, FundsAccount: "AVAILABLE",
		Amount: RefundAmount{Refund: 40, Total: 100, Currency: "CNY", PayerTotal: 100, PayerRefund: 40, SettlementRefund: amount(40), SettlementTotal: amount(100)},
		Raw:    json.RawMessage(answer)}
	if !reflect.DeepEqual(*r, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", *r, want)
	}

	r, err = c.QueryRefund(context.Background(), "R1")
	if err != nil || r.Status != RefundStatusProcessing {
		t.Fatal(err)
	}
	if got.Method != "GET" || got.URI != "/v3/refund/domestic/refunds/R1" || len(got.Body) != 0 {
		t.Fatalf("%s %s", got.Method, got.URI)
	}
	_, err = c.QueryRefund(context.Background(), "R2")
	errorContains(t, err, "query refund R2", `out_refund_no "R1"`)

	n := len(w.requests())
	for _, bad := range []*RefundRequest{
		nil,
		{OutTradeNo: "O1", Amount: RefundAmount{Refund: 1, Total: 1}},
		{OutRefundNo: "R", Amount: RefundAmount{Refund: 1, Total: 1}},
		{TransactionID: "T", OutRefundNo: "R", Amount: RefundAmount{Refund: 0, Total: 1}},
		{TransactionID: "T", OutRefundNo: "R", Amount: RefundAmount{Refund: 2, Total: 1}},
	} {
		if _, err := c.Refund(context.Background(), bad); err == nil {
			t.Errorf("refund %+v accepted", bad)
		}
	}
	if len(w.requests()) != n {
		t.Fatal("an invalid refund was sent")
	}
}

func TestAPIError(t *testing.T) {
	w := newFakeWeChat(t)
	c := w.client()
	for _, tt := range []struct {
		status    int
		body      string
		code, msg string
		detail    string
		retry     bool
	}{
		{400, `{"code":"PARAM_ERROR","message":"参数错误","detail":{"field":"/amount/total","value":0,"issue":"must be positive","location":"body"}}`,
			"PARAM_ERROR", "参数错误", `{"field":"/amount/total","value":0,"issue":"must be positive","location":"body"}`, false},
		{404, `{"code":"ORDER_NOT_EXIST","message":"订单不存在"}`, "ORDER_NOT_EXIST", "订单不存在", "", false},
		{429, `{"code":"FREQUENCY_LIMITED","message":"频率超限"}`, "FREQUENCY_LIMITED", "频率超限", "", true},
		{500, `{"code":"SYSTEM_ERROR","message":"系统错误"}`, "SYSTEM_ERROR", "系统错误", "", true},
		{502, `<html>bad gateway</html>`, "", "answer is not a JSON error object (24 bytes)", "", true},
	} {
		w.handle(func(*seenRequest) *reply { return &reply{status: tt.status, body: []byte(tt.body)} })
		_, err := c.QueryByOutTradeNo(context.Background(), "O1")
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%d: err = %v", tt.status, err)
		}
		if ae.Status != tt.status || ae.Code != tt.code || ae.Message != tt.msg || string(ae.Detail) != tt.detail ||
			ae.RequestID != "08F78BB5AF0610D302A1C2E1A1A1A1A1" || ae.Op != "GET /v3/pay/transactions/out-trade-no/O1" {
			t.Errorf("%d: %+v", tt.status, ae)
		}
		if ae.Retryable() != tt.retry {
			t.Errorf("%d: Retryable = %v", tt.status, ae.Retryable())
		}
		if OutcomeUnknown(err) != (tt.status >= 500) {
			t.Errorf("%d: OutcomeUnknown = %v", tt.status, OutcomeUnknown(err))
		}
		errorContains(t, err, "query order O1", itoa(int64(tt.status)))
	}
}

// Every answer is verified before it is used, whatever its status.
func TestAnswersThatDoNotVerify(t *testing.T) {
	w := newFakeWeChat(t)
	c := w.client()
	ok := []byte(`{"prepay_id":"wx1"}`)
	errBody := []byte(`{"code":"SIGN_ERROR","message":"签名错误"}`)
	var (
		missing *MissingHeaderError
		stale   *TimestampError
		unknown *UnknownSerialError
	)
	for _, tt := range []struct {
		name   string
		rep    reply
		is     func(error) bool
		code   string
		status int
	}{
		{"bad signature", reply{status: 200, body: ok, badSig: true}, func(err error) bool { return errors.Is(err, ErrBadSignature) }, "", 200},
		{"stale", reply{status: 200, body: ok, skew: -6 * time.Minute}, func(err error) bool { return errors.As(err, &stale) }, "", 200},
		{"future", reply{status: 200, body: ok, skew: 6 * time.Minute}, func(err error) bool { return errors.As(err, &stale) }, "", 200},
		{"unknown serial", reply{status: 200, body: ok, serial: "PUB_KEY_ID_0000"}, func(err error) bool { return errors.As(err, &unknown) }, "", 200},
		{"platform key not configured", reply{status: 200, body: ok, signKey: w.f.platformKey, serial: w.f.v.Serials["platform"]}, func(err error) bool { return errors.As(err, &unknown) }, "", 200},
		{"signed by another key", reply{status: 200, body: ok, signKey: w.f.rogueKey}, func(err error) bool { return errors.Is(err, ErrBadSignature) }, "", 200},
		{"SIGNTEST", reply{status: 200, body: ok, signTest: true}, func(err error) bool { return errors.Is(err, ErrSignTest) }, "", 200},
		{"unsigned", reply{status: 200, body: ok, unsigned: true}, func(err error) bool { return errors.As(err, &missing) }, "", 200},
		{"unsigned 401", reply{status: 401, body: errBody, unsigned: true}, func(err error) bool { return errors.As(err, &missing) }, "SIGN_ERROR", 401},
		{"error with a bad signature", reply{status: 404, body: []byte(`{"code":"ORDER_NOT_EXIST","message":"x"}`), badSig: true}, func(err error) bool { return errors.Is(err, ErrBadSignature) }, "ORDER_NOT_EXIST", 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := tt.rep
			w.handle(func(*seenRequest) *reply { return &rep })
			resp, err := c.Prepay(context.Background(), TradeTypeNative, &PrepayRequest{AppID: "wx1", Description: "d", OutTradeNo: "O1", NotifyURL: "https://e/n", Amount: Amount{Total: 1}})
			if resp != nil {
				t.Fatal("an answer came with the error")
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || !tt.is(err) {
				t.Fatalf("err = %v", err)
			}
			if ve.Status != tt.status || ve.Code != tt.code || ve.Op != "POST /v3/pay/transactions/native" {
				t.Fatalf("%+v", ve)
			}
			var ae *APIError
			if errors.As(err, &ae) {
				t.Fatal("an unverified answer became an APIError")
			}
			if !OutcomeUnknown(err) {
				t.Fatal("not an unknown outcome")
			}
			errorContains(t, err, "prepay O1", "not verified")
		})
	}
}

func TestTimeouts(t *testing.T) {
	w := newFakeWeChat(t)
	w.handle(func(*seenRequest) *reply { return &reply{wait: true} })

	c := w.client()
	c.Timeout = 50 * time.Millisecond
	start := time.Now()
	_, err := c.QueryRefund(context.Background(), "R1")
	var te *TransportError
	if !errors.As(err, &te) || !te.Timeout() || !IsTimeout(err) {
		t.Fatalf("Client.Timeout: err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}

	c = w.client()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = c.Close(ctx, "O1")
	if !IsTimeout(err) || !OutcomeUnknown(err) {
		t.Fatalf("context deadline: err = %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	err = c.Close(ctx, "O1")
	if !errors.As(err, &te) || te.Timeout() || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: err = %v", err)
	}
	// A server that is not there.
	c.Endpoint = "http://127.0.0.1:1"
	c.HTTPClient = nil
	if err := c.Close(context.Background(), "O1"); !errors.As(err, &te) {
		t.Fatalf("no server: err = %v", err)
	}
}

func TestAnswerTooLarge(t *testing.T) {
	w := newFakeWeChat(t)
	big := append(append([]byte(`{"prepay_id":"`), bytes.Repeat([]byte("x"), MaxResponseSize)...), `"}`...)
	w.handle(func(*seenRequest) *reply { return &reply{status: 200, body: big} })
	err := w.client().Do(context.Background(), "GET", "/v3/x", nil, nil, nil)
	var re *ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v", err)
	}
	errorContains(t, err, "larger than 4194304 bytes")
}

func TestDo(t *testing.T) {
	w := newFakeWeChat(t)
	var got *seenRequest
	w.handle(func(r *seenRequest) *reply {
		got = r
		if r.Path == "/v3/notjson" {
			return &reply{status: 200, body: []byte("<xml/>")}
		}
		return jsonReply(t, map[string]any{"echo": r.Query.Get("q"), "n": 7})
	})
	c := w.client()
	c.UserAgent = "shop/1.0"
	c.WechatpaySerial = ""
	c.Nonce = func() string { return "fixednonce" }
	var out struct {
		Echo string `json:"echo"`
		N    int    `json:"n"`
	}
	if err := c.Do(context.Background(), "POST", "/v3/echo", map[string][]string{"q": {"a b&c"}, "a": {"1"}}, map[string]int{"x": 1}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Echo != "a b&c" || out.N != 7 {
		t.Fatalf("%+v", out)
	}
	if got.URI != "/v3/echo?a=1&q=a+b%26c" || string(got.Body) != `{"x":1}` || got.Header.Get("User-Agent") != "shop/1.0" ||
		got.Header.Get("Wechatpay-Serial") != "" || got.Auth.NonceStr != "fixednonce" || got.Auth.Timestamp != itoa(w.f.v.Now) {
		t.Fatalf("%s %s %v %+v", got.URI, got.Body, got.Header, got.Auth)
	}
	// out nil: the answer is verified and dropped. With a serial
	// function (platform certificates only), the header is its answer.
	c.WechatpaySerialFunc = func() string { return "5157F09EFDC096DE15EBE81A47057A7232F1B8E1" }
	if err := c.Do(context.Background(), "GET", "/v3/echo", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if s := got.Header.Get("Wechatpay-Serial"); s != "5157F09EFDC096DE15EBE81A47057A7232F1B8E1" {
		t.Fatalf("Wechatpay-Serial from the function: %q", s)
	}
	var re *ResponseError
	if err := c.Do(context.Background(), "GET", "/v3/notjson", nil, nil, &out); !errors.As(err, &re) {
		t.Fatalf("not JSON: %v", err)
	}
	if err := c.Do(context.Background(), "POST", "/v3/x", nil, func() {}, nil); err == nil || !strings.Contains(err.Error(), "encode request") {
		t.Fatalf("unencodable body: %v", err)
	}
	n := len(w.requests())
	for _, bad := range []string{"v3/echo", ".evil.example.com/v3/echo", "/v3/echo?a=1", "/v3/echo#x", ""} {
		if err := c.Do(context.Background(), "GET", bad, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "path must start with /") {
			t.Errorf("path %q: %v", bad, err)
		}
	}
	noVerifier := w.client()
	noVerifier.Verifier = nil
	if err := noVerifier.Do(context.Background(), "GET", "/v3/echo", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "no Verifier") {
		t.Fatalf("no verifier: %v", err)
	}
	noSigner := w.client()
	noSigner.Signer = nil
	if err := noSigner.Do(context.Background(), "GET", "/v3/echo", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "no Signer") {
		t.Fatalf("no signer: %v", err)
	}
	if len(w.requests()) != n {
		t.Fatal("a request left without a verifier or signer")
	}
}

func TestTradeBillAndDownload(t *testing.T) {
	w := newFakeWeChat(t)
	c := w.client()
	bill := []byte("交易时间,公众账号ID,商户号\n`2026-01-01 08:00:00,`wxd678efh567hg6787,`1900009191\n")
	sum := sha1.Sum(bill)
	info := BillInfo{HashType: "SHA1", HashValue: hex.EncodeToString(sum[:]), DownloadURL: w.srv.URL + "/v3/billdownload/file?token=6XIv5TUPto7pByrTQKhd6kwvyKLG2uY2wMMR8cNXqaA_Cv_isgaUtBzp4QtiozLO"}
	var got *seenRequest
	billRoutes := func(r *seenRequest) *reply {
		got = r
		switch r.Path {
		case "/v3/bill/tradebill":
			return jsonReply(t, info)
		case "/v3/billdownload/file":
			return &reply{stream: func(rw http.ResponseWriter, _ *http.Request) { rw.Write(bill) }}
		}
		return nil
	}
	w.handle(billRoutes)
	gotInfo, err := c.TradeBill(context.Background(), "2026-01-01", "ALL", "")
	if err != nil {
		t.Fatal(err)
	}
	if *gotInfo != info || got.URI != "/v3/bill/tradebill?bill_date=2026-01-01&bill_type=ALL" {
		t.Fatalf("%+v %s", gotInfo, got.URI)
	}
	if gi, err := c.TradeBill(context.Background(), "2026-01-01", "", "GZIP"); err != nil || got.URI != "/v3/bill/tradebill?bill_date=2026-01-01&tar_type=GZIP" || gi.TarType != "GZIP" {
		t.Fatalf("%v %s %+v", err, got.URI, gi)
	}
	if _, err := c.TradeBill(context.Background(), "20260101", "", ""); err == nil {
		t.Fatal("bad date accepted")
	}

	read := func(info BillInfo) ([]byte, error) {
		rc, err := c.DownloadBill(context.Background(), &info)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	b, err := read(info)
	if err != nil || !bytes.Equal(b, bill) {
		t.Fatalf("good hash: %v %q", err, b)
	}
	if got.URI != "/v3/billdownload/file?token=6XIv5TUPto7pByrTQKhd6kwvyKLG2uY2wMMR8cNXqaA_Cv_isgaUtBzp4QtiozLO" || got.Method != "GET" {
		t.Fatalf("%s %s", got.Method, got.URI)
	}
	upper := info
	upper.HashValue = strings.ToUpper(info.HashValue)
	upper.HashType = "sha1"
	if _, err := read(upper); err != nil {
		t.Fatalf("uppercase hash: %v", err)
	}
	for _, tt := range []struct {
		name   string
		change func(i *BillInfo)
		msg    string
	}{
		{"other hash", func(i *BillInfo) { i.HashValue = strings.Repeat("0", 40) }, "truncated or altered"},
		{"MD5", func(i *BillInfo) { i.HashType = "MD5" }, `hash_type is "MD5"`},
		{"no hash", func(i *BillInfo) { i.HashType, i.HashValue = "", "" }, "hash_type"},
		{"hash not hex", func(i *BillInfo) { i.HashValue = "zz" }, "not a hex SHA-1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			i := info
			tt.change(&i)
			b, err := read(i)
			if !errors.Is(err, ErrBillHash) {
				t.Fatalf("err = %v", err)
			}
			if !bytes.Equal(b, bill) {
				t.Fatal("the stream was not passed through")
			}
			errorContains(t, err, tt.msg)
		})
	}

	// A GZIP bill (tar_type=GZIP): streamed compressed, its hash_value
	// that of the bill decompressed, as WeChat documents it
	// (原始账单（gzip需要解压缩）的摘要值; sum above is sha1 of the plain
	// bill, the compressed bytes are compress/gzip's).
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	zw.Write(bill)
	zw.Close()
	zipped := zbuf.Bytes()
	serve := func(body []byte) {
		w.handle(func(r *seenRequest) *reply {
			return &reply{stream: func(rw http.ResponseWriter, _ *http.Request) { rw.Write(body) }}
		})
	}
	gz := info
	gz.TarType = "GZIP"
	serve(zipped)
	if b, err := read(gz); err != nil || !bytes.Equal(b, zipped) {
		t.Fatalf("GZIP bill: %v (passed through unchanged: %v)", err, bytes.Equal(b, zipped))
	}
	zsum := sha1.Sum(zipped)
	for _, tt := range []struct {
		name string
		body []byte
		hash string
		msg  string
	}{
		{"hash of the compressed bytes", zipped, hex.EncodeToString(zsum[:]), "truncated or altered"},
		{"not gzip", bill, info.HashValue, "does not decompress"},
		{"truncated", zipped[:len(zipped)/2], info.HashValue, "does not decompress"},
		{"bytes after the stream", append(append([]byte{}, zipped...), "junk"...), info.HashValue, "does not decompress"},
	} {
		t.Run("GZIP "+tt.name, func(t *testing.T) {
			serve(tt.body)
			i := gz
			i.HashValue = tt.hash
			_, err := read(i)
			if !errors.Is(err, ErrBillHash) {
				t.Fatalf("err = %v", err)
			}
			errorContains(t, err, tt.msg)
		})
	}
	// Closed before its end: the decompression stops with it.
	serve(zipped)
	rc, err := c.DownloadBill(context.Background(), &gz)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	w.handle(billRoutes)

	// A download URL elsewhere is refused before anything is sent.
	n := len(w.requests())
	for _, u := range []string{
		"https://evil.example.com/v3/billdownload/file?token=x",
		strings.Replace(w.srv.URL, "http://", "https://", 1) + "/v3/billdownload/file",
		"http://user@" + strings.TrimPrefix(w.srv.URL, "http://") + "/v3/billdownload/file",
		"/v3/billdownload/file",
		"",
	} {
		if _, err := c.DownloadBill(context.Background(), &BillInfo{HashType: "SHA1", DownloadURL: u}); err == nil {
			t.Errorf("download from %q accepted", u)
		}
	}
	if len(w.requests()) != n {
		t.Fatal("a signed request left for another host")
	}

	// An error answer of the download is verified and decoded.
	w.handle(func(*seenRequest) *reply {
		return &reply{status: 400, body: []byte(`{"code":"INVALID_REQUEST","message":"token expired"}`)}
	})
	_, err = c.DownloadBill(context.Background(), &info)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "INVALID_REQUEST" {
		t.Fatalf("err = %v", err)
	}
	w.handle(func(*seenRequest) *reply {
		return &reply{status: 400, body: []byte(`{"code":"INVALID_REQUEST","message":"token expired"}`), badSig: true}
	})
	_, err = c.DownloadBill(context.Background(), &info)
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
}

func TestDownloadBillTimeout(t *testing.T) {
	w := newFakeWeChat(t)
	w.handle(func(*seenRequest) *reply {
		return &reply{stream: func(rw http.ResponseWriter, r *http.Request) {
			rw.Write([]byte("part"))
			rw.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}}
	})
	c := w.client()
	c.Timeout = 100 * time.Millisecond
	rc, err := c.DownloadBill(context.Background(), &BillInfo{HashType: "SHA1", HashValue: strings.Repeat("0", 40), DownloadURL: w.srv.URL + "/v3/billdownload/file"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if !IsTimeout(err) || errors.Is(err, ErrBillHash) {
		t.Fatalf("err = %v", err)
	}
}

// A bill that keeps coming takes as long as it takes: Timeout bounds each
// stall of the download, not the whole of it.
func TestDownloadBillSlowStream(t *testing.T) {
	w := newFakeWeChat(t)
	var bill []byte
	for i := range 10 {
		bill = append(bill, fmt.Sprintf("part %d\n", i)...)
	}
	w.handle(func(*seenRequest) *reply {
		return &reply{stream: func(rw http.ResponseWriter, r *http.Request) {
			for i := range 10 { // 40 ms apart: 400 ms in all
				if i > 0 {
					time.Sleep(40 * time.Millisecond)
				}
				fmt.Fprintf(rw, "part %d\n", i)
				rw.(http.Flusher).Flush()
			}
		}}
	})
	sum := sha1.Sum(bill)
	c := w.client()
	c.Timeout = 200 * time.Millisecond
	rc, err := c.DownloadBill(context.Background(), &BillInfo{HashType: "SHA1", HashValue: hex.EncodeToString(sum[:]), DownloadURL: w.srv.URL + "/v3/billdownload/file"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, bill) {
		t.Fatalf("a bill arriving for twice Timeout: %d bytes, %v", len(got), err)
	}
}

func TestClientDefaults(t *testing.T) {
	w := newFakeWeChat(t)
	var got *seenRequest
	w.handle(func(r *seenRequest) *reply {
		got = r
		return &reply{status: http.StatusNoContent}
	})
	c := w.client()
	c.MchID = ""              // falls back to the Signer's
	c.Endpoint += "/"         // a trailing slash is dropped
	c.Now, c.Nonce = nil, nil // the real clock and NonceStr
	w.clock.Set(time.Now())
	c.Verifier.Now = nil
	if err := c.Close(context.Background(), "O1"); err != nil {
		t.Fatal(err)
	}
	if got.URI != "/v3/pay/transactions/out-trade-no/O1/close" || string(got.Body) != `{"mchid":"1900009191"}` || len(got.Auth.NonceStr) != 32 {
		t.Fatalf("%s %s %+v", got.URI, got.Body, got.Auth)
	}
	if (&Client{}).endpoint() != DefaultEndpoint || DefaultEndpoint != "https://api.mch.weixin.qq.com" {
		t.Fatal("default endpoint")
	}
	hc := NewHTTPClient(0)
	if hc.CheckRedirect == nil || hc.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Fatal("the default HTTP client follows redirects")
	}
	if (&Client{}).httpClient() == nil {
		t.Fatal("no default HTTP client")
	}
}

// A redirect is not followed: the answer is verified as it is, and a 302
// is not WeChat's.
func TestRedirectNotFollowed(t *testing.T) {
	w := newFakeWeChat(t)
	w.handle(func(r *seenRequest) *reply {
		return &reply{status: http.StatusFound, unsigned: true, header: map[string]string{"Location": "https://evil.example.com/"}}
	})
	c := w.client()
	c.HTTPClient = NewHTTPClient(2)
	_, err := c.QueryRefund(context.Background(), "R1")
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Status != http.StatusFound {
		t.Fatalf("err = %v", err)
	}
	if len(w.requests()) != 1 {
		t.Fatal("redirect followed")
	}
}

// 关闭订单 (pay.weixin.qq.com/doc/v3/merchant/4012556398) documents
// "202 USER_PAYING 用户支付中，需要输入密码": the order is not closed and
// may still be paid. Close reports it as WeChat's refusal, not as closed.
func TestCloseWhileUserPaying(t *testing.T) {
	for _, body := range []string{`{"code":"USER_PAYING","message":"用户支付中，需要输入密码"}`, ""} {
		w := newFakeWeChat(t)
		w.handle(func(*seenRequest) *reply { return &reply{status: http.StatusAccepted, body: []byte(body)} })
		err := w.client().Close(context.Background(), "1217752501201407033233368018")
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != CodeUserPaying || ae.Status != http.StatusAccepted {
			t.Errorf("202 %q: Close = %v, want an *APIError %s", body, err, CodeUserPaying)
		}
	}
}

// amount is a pointer to n, for optional amounts.
func amount(n int64) *int64 { return &n }
