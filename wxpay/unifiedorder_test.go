package wxpay

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const sceneInfo = `{"h5_info":{"type":"Wap","wap_url":"https://pay.qq.com","wap_name":"腾讯充值"}}`

// validOrder is a valid request of the given trade type.
func validOrder(tradeType string) UnifiedOrderRequest {
	r := UnifiedOrderRequest{
		AppID:          "wxd930ea5d5a258f4f",
		Body:           "腾讯充值中心-QQ会员充值",
		OutTradeNo:     "20150806125346",
		TotalFee:       88,
		SpbillCreateIP: "123.12.12.123",
		NotifyURL:      "https://pay.example.com/wxpay/notify",
		TradeType:      tradeType,
	}
	switch tradeType {
	case TradeTypeJSAPI:
		r.OpenID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
	case TradeTypeNative:
		r.ProductID = "12235413214070356458058"
	case TradeTypeMWEB:
		r.SceneInfo = sceneInfo
	}
	return r
}

func TestUnifiedOrderValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*UnifiedOrderRequest)
	}{
		{"JSAPI", func(r *UnifiedOrderRequest) {}},
		{"NATIVE", func(r *UnifiedOrderRequest) { *r = validOrder(TradeTypeNative) }},
		{"APP", func(r *UnifiedOrderRequest) { *r = validOrder(TradeTypeAPP) }},
		{"MWEB", func(r *UnifiedOrderRequest) { *r = validOrder(TradeTypeMWEB) }},
		{"body with tab and line breaks", func(r *UnifiedOrderRequest) { r.Body = "line 1\r\n\tline 2" }},
		{"APP with scene_info", func(r *UnifiedOrderRequest) {
			*r = validOrder(TradeTypeAPP)
			r.SceneInfo = `{"store_info":{"id":"SZTX001"}}`
		}},
		{"out_trade_no 32 characters, every allowed symbol", func(r *UnifiedOrderRequest) { r.OutTradeNo = "aZ09_-|*" + strings.Repeat("x", 24) }},
		{"total_fee 1", func(r *UnifiedOrderRequest) { r.TotalFee = 1 }},
		{"body 128 bytes", func(r *UnifiedOrderRequest) { r.Body = strings.Repeat("测", 42) + "ab" }},
		{"IPv6", func(r *UnifiedOrderRequest) { r.SpbillCreateIP = "2001:db8::1" }},
		{"notify_url http with port", func(r *UnifiedOrderRequest) { r.NotifyURL = "http://pay.example.com:8080/wxpay/notify" }},
		{"attach 127 bytes", func(r *UnifiedOrderRequest) { r.Attach = strings.Repeat("a", 127) }},
		{"time_start and time_expire", func(r *UnifiedOrderRequest) { r.TimeStart = "20091225091010"; r.TimeExpire = "20091227091010" }},
		{"limit_pay no_credit", func(r *UnifiedOrderRequest) { r.LimitPay = "no_credit" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validOrder(TradeTypeJSAPI)
			tt.mutate(&r)
			if err := r.Validate(); err != nil {
				t.Fatalf("Validate(%+v) = %v", r, err)
			}
		})
	}
}

func TestUnifiedOrderValidateRefuses(t *testing.T) {
	tests := []struct {
		name   string
		base   string // trade type of the valid request mutated
		mutate func(*UnifiedOrderRequest)
		field  string
	}{
		{"appid missing", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.AppID = "" }, "app_id"},
		// Characters XML cannot carry: refused by name before anything is
		// recorded or sent.
		{"body with a control character", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.Body = "book\x01" }, "body"},
		{"body with NUL", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.Body = "book\x00" }, "body"},
		{"attach with U+FFFE", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.Attach = "a\uFFFE" }, "attach"},
		{"detail not UTF-8", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.Detail = "d\xff" }, "detail"},
		{"openid with a vertical tab", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.OpenID = "o\x0b" }, "openid"},
		{"out_trade_no missing", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.OutTradeNo = "" }, "out_trade_no"},
		{"out_trade_no 33 characters", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.OutTradeNo = strings.Repeat("1", 33) }, "out_trade_no"},
		{"out_trade_no with #", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.OutTradeNo = "2015#0806" }, "out_trade_no"},
		{"out_trade_no with a space", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.OutTradeNo = "2015 0806" }, "out_trade_no"},
		{"out_trade_no Chinese", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.OutTradeNo = "订单1" }, "out_trade_no"},
		{"total_fee 0", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TotalFee = 0 }, "total_fee"},
		{"total_fee negative", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TotalFee = -88 }, "total_fee"},
		{"body missing", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.Body = "" }, "body"},
		// 43 characters, but 129 bytes of UTF-8.
		{"body 129 bytes of Chinese", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.Body = strings.Repeat("测", 43) }, "body"},
		{"spbill_create_ip missing", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.SpbillCreateIP = "" }, "spbill_create_ip"},
		{"spbill_create_ip short", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.SpbillCreateIP = "123.12.12" }, "spbill_create_ip"},
		{"spbill_create_ip host name", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.SpbillCreateIP = "example.com" }, "spbill_create_ip"},
		{"spbill_create_ip with port", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.SpbillCreateIP = "123.12.12.123:80" }, "spbill_create_ip"},
		{"spbill_create_ip with zone", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.SpbillCreateIP = "fe80::1%eth0" }, "spbill_create_ip"},
		{"notify_url ftp", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.NotifyURL = "ftp://pay.example.com/wxpay/notify" }, "notify_url"},
		{"notify_url missing", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.NotifyURL = "" }, "notify_url"},
		{"notify_url with query", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.NotifyURL = "https://pay.example.com/wxpay/notify?order=1" }, "notify_url"},
		{"notify_url with empty query", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.NotifyURL = "https://pay.example.com/wxpay/notify?" }, "notify_url"},
		{"notify_url relative", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.NotifyURL = "/wxpay/notify" }, "notify_url"},
		{"notify_url without scheme", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.NotifyURL = "pay.example.com/wxpay/notify" }, "notify_url"},
		{"notify_url 257 bytes", TradeTypeJSAPI, func(r *UnifiedOrderRequest) {
			r.NotifyURL = "https://pay.example.com/" + strings.Repeat("n", 257-len("https://pay.example.com/"))
		}, "notify_url"},
		{"trade_type missing", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TradeType = "" }, "trade_type"},
		{"trade_type unknown", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TradeType = "H5" }, "trade_type"},
		{"trade_type lowercase", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TradeType = "jsapi" }, "trade_type"},
		{"JSAPI without openid", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.OpenID = "" }, "openid"},
		{"NATIVE without product_id", TradeTypeNative, func(r *UnifiedOrderRequest) { r.ProductID = "" }, "product_id"},
		{"MWEB without scene_info", TradeTypeMWEB, func(r *UnifiedOrderRequest) { r.SceneInfo = "" }, "scene_info"},
		{"MWEB scene_info not JSON", TradeTypeMWEB, func(r *UnifiedOrderRequest) { r.SceneInfo = "h5_info=wap" }, "scene_info"},
		{"APP scene_info not JSON", TradeTypeAPP, func(r *UnifiedOrderRequest) { r.SceneInfo = `{"store_info":` }, "scene_info"},
		{"scene_info 257 bytes", TradeTypeMWEB, func(r *UnifiedOrderRequest) { r.SceneInfo = `"` + strings.Repeat("s", 255) + `"` }, "scene_info"},
		{"openid 129 bytes", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.OpenID = strings.Repeat("o", 129) }, "openid"},
		{"product_id 33 bytes", TradeTypeNative, func(r *UnifiedOrderRequest) { r.ProductID = strings.Repeat("p", 33) }, "product_id"},
		{"attach 128 bytes", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.Attach = strings.Repeat("a", 128) }, "attach"},
		{"attach 129 bytes of Chinese", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.Attach = strings.Repeat("附", 43) }, "attach"},
		{"time_expire with separators", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TimeExpire = "2009-12-27 09:10" }, "time_expire"},
		{"time_expire month 13", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TimeExpire = "20091327091010" }, "time_expire"},
		{"time_expire without seconds", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TimeExpire = "200912270910" }, "time_expire"},
		{"time_expire Unix seconds", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TimeExpire = "1414561699" }, "time_expire"},
		{"time_start bad", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.TimeStart = "2009122509101" }, "time_start"},
		{"limit_pay unknown", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.LimitPay = "credit" }, "limit_pay"},
		{"goods_tag 33 bytes", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.GoodsTag = strings.Repeat("g", 33) }, "goods_tag"},
		{"device_info 33 bytes", TradeTypeJSAPI, func(r *UnifiedOrderRequest) { r.DeviceInfo = strings.Repeat("d", 33) }, "device_info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validOrder(tt.base)
			if err := r.Validate(); err != nil {
				t.Fatalf("the base request is invalid: %v", err)
			}
			tt.mutate(&r)
			err := r.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v (%T), want a *FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Fatalf("Validate = %v: names %q, want %q", err, fe.Field, tt.field)
			}
			if fe.Reason == "" || !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("error %q does not explain itself", err)
			}
		})
	}
}

func TestUnifiedOrderParams(t *testing.T) {
	r := validOrder(TradeTypeJSAPI)
	r.Attach = "说明"
	r.TimeExpire = "20091227091010"
	r.DeviceInfo = "WEB"
	r.LimitPay = "no_credit"
	want := Params{
		{"appid", "wxd930ea5d5a258f4f"},
		{"device_info", "WEB"},
		{"body", "腾讯充值中心-QQ会员充值"},
		{"attach", "说明"},
		{"out_trade_no", "20150806125346"},
		{"total_fee", "88"},
		{"spbill_create_ip", "123.12.12.123"},
		{"time_expire", "20091227091010"},
		{"notify_url", "https://pay.example.com/wxpay/notify"},
		{"trade_type", "JSAPI"},
		{"limit_pay", "no_credit"},
		{"openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
	}
	if got := r.Params(); !reflect.DeepEqual(got, want) {
		t.Errorf("Params =\n%q\nwant\n%q", got, want)
	}
	for _, tt := range []string{TradeTypeJSAPI, TradeTypeNative, TradeTypeAPP, TradeTypeMWEB} {
		r := validOrder(tt)
		p := r.Params()
		for _, f := range p {
			if f.Value == "" {
				t.Errorf("%s: Params has the empty field %s", tt, f.Name)
			}
		}
		for _, name := range []string{"appid", "body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type"} {
			if p.Get(name) == "" {
				t.Errorf("%s: Params lacks %s", tt, name)
			}
		}
		perType := map[string]string{TradeTypeJSAPI: "openid", TradeTypeNative: "product_id", TradeTypeMWEB: "scene_info"}[tt]
		if perType != "" && p.Get(perType) == "" {
			t.Errorf("%s: Params lacks %s", tt, perType)
		}
		for _, name := range []string{"mch_id", "nonce_str", "sign", "sign_type"} {
			if _, ok := p.Lookup(name); ok {
				t.Errorf("%s: Params carries %s, which the Client adds", tt, name)
			}
		}
	}
}

// fakeWeChat is a small hand-written stand-in for WeChat's /pay/unifiedorder:
// it decodes the request, checks its sign with refSign (independent of
// sign.go) under the sign_type the request names, and answers as the test
// says, signing its answer like WeChat with the request's sign type.
type fakeWeChat struct {
	t     *testing.T
	key   APIKey
	mchID string
	// answer returns the fields of the answer, to be signed; or, when it
	// writes to w itself, nil.
	answer func(w http.ResponseWriter, r *http.Request, req Params) Params
	// badSign makes the answer's sign wrong.
	badSign bool

	mu       sync.Mutex
	requests []Params
}

func (f *fakeWeChat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	if r.Method != http.MethodPost || r.URL.Path != "/pay/unifiedorder" {
		t.Errorf("request %s %s, want POST /pay/unifiedorder", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") {
		t.Errorf("Content-Type %q", ct)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("reading the request: %v", err)
		return
	}
	req, err := DecodeXML(body)
	if err != nil {
		t.Errorf("request does not decode: %v\n%s", err, body)
		w.Write(xmlDoc("xml", Params{{"return_code", "FAIL"}, {"return_msg", "XML格式错误"}}))
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()

	var st SignType
	switch req.Get("sign_type") {
	case "", "MD5":
		st = SignTypeMD5
	case "HMAC-SHA256":
		st = SignTypeHMACSHA256
	default:
		t.Errorf("request sign_type %q", req.Get("sign_type"))
		return
	}
	if want := refSign(req, f.key, st); req.Get("sign") != want {
		t.Errorf("request sign %q, want %s %s", req.Get("sign"), st, want)
		w.Write(xmlDoc("xml", Params{{"return_code", "FAIL"}, {"return_msg", "签名错误"}}))
		return
	}
	for _, name := range []string{"appid", "mch_id", "nonce_str", "body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type"} {
		if req.Get(name) == "" {
			t.Errorf("request lacks %s", name)
		}
	}
	if req.Get("mch_id") != f.mchID {
		t.Errorf("request mch_id %q, want %q", req.Get("mch_id"), f.mchID)
	}
	ans := f.answer(w, r, req)
	if ans == nil {
		return
	}
	if ans.Get("return_code") == "SUCCESS" {
		sign := refSign(ans, f.key, st)
		if f.badSign {
			sign = refSign(ans, "192006250b4c09247ec02edce69f6a2e", st)
		}
		ans = append(ans, Param{"sign", sign})
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Write(xmlDoc("xml", ans))
}

func (f *fakeWeChat) lastRequest() Params {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil
	}
	return f.requests[len(f.requests)-1]
}

func prepayAnswer(req Params) Params {
	p := Params{
		{"return_code", "SUCCESS"}, {"return_msg", "OK"},
		{"appid", req.Get("appid")}, {"mch_id", req.Get("mch_id")},
		{"nonce_str", "IITRi8Iabbblz1Jc"}, {"result_code", "SUCCESS"},
		{"prepay_id", "wx201411101639507cbf6ffd8b0779950874"}, {"trade_type", req.Get("trade_type")},
	}
	switch req.Get("trade_type") {
	case TradeTypeNative:
		p = append(p, Param{"code_url", "weixin://wxpay/bizpayurl/up?pr=NwY5Mz9&groupid=00"})
	case TradeTypeMWEB:
		p = append(p, Param{"mweb_url", "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx2016121516420242444321ca0631331346&package=1405458241"})
	}
	return p
}

func newFake(t *testing.T, answer func(http.ResponseWriter, *http.Request, Params) Params) (*fakeWeChat, *httptest.Server) {
	f := &fakeWeChat{t: t, key: officialKey, mchID: "10000100", answer: answer}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func fakeClient(srv *httptest.Server, st SignType) *Client {
	return &Client{MchID: "10000100", Key: officialKey, SignType: st, Endpoint: srv.URL, HTTPClient: srv.Client()}
}

// The request the client sends is signed over the fields it carries,
// sign_type included. The signs were computed outside this code with the
// python command of notify_test.go over:
//
//	HMAC-SHA256: appid=wxd930ea5d5a258f4f&body=腾讯充值中心-QQ会员充值&mch_id=10000100&nonce_str=5K8264ILTKCH16CQ2502SI8ZNMTM67VS&notify_url=https://pay.example.com/wxpay/notify&openid=oUpF8uMuAJO_M2pxb1Q9zNjWeS6o&out_trade_no=20150806125346&sign_type=HMAC-SHA256&spbill_create_ip=123.12.12.123&total_fee=88&trade_type=JSAPI&key=192006250b4c09247ec02edce69f6a2d
//	MD5:         appid=wxd930ea5d5a258f4f&body=腾讯充值中心-QQ会员充值&mch_id=10000100&nonce_str=5K8264ILTKCH16CQ2502SI8ZNMTM67VS&notify_url=https://pay.example.com/wxpay/notify&openid=oUpF8uMuAJO_M2pxb1Q9zNjWeS6o&out_trade_no=20150806125346&spbill_create_ip=123.12.12.123&total_fee=88&trade_type=JSAPI&key=192006250b4c09247ec02edce69f6a2d
func TestClientCallSignsRequest(t *testing.T) {
	tests := []struct {
		st       SignType
		signType string // sign_type the request must carry
		sign     string
	}{
		{SignTypeHMACSHA256, "HMAC-SHA256", "4CE0DDFACA830932067D61086E29D4ACD6F747C494CB36C6EF1D907A356902F2"},
		{SignTypeMD5, "", "18A4C0F13A87754E63BA4381FFEAC661"},
		{"", "", "18A4C0F13A87754E63BA4381FFEAC661"}, // the zero SignType is MD5
	}
	for _, tt := range tests {
		t.Run("SignType="+string(tt.st), func(t *testing.T) {
			fake, srv := newFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return prepayAnswer(req) })
			c := fakeClient(srv, tt.st)
			r := validOrder(TradeTypeJSAPI)
			req := r.Params()
			req.Set("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS")
			got, err := c.Call(context.Background(), "unifiedorder", "/pay/unifiedorder", req)
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			if got.Get("prepay_id") != "wx201411101639507cbf6ffd8b0779950874" {
				t.Errorf("answer %v", got.Map())
			}
			sent := fake.lastRequest()
			if sent.Get("sign_type") != tt.signType {
				t.Errorf("request sign_type = %q, want %q", sent.Get("sign_type"), tt.signType)
			}
			if sent.Get("sign") != tt.sign {
				t.Errorf("request sign = %s, want %s", sent.Get("sign"), tt.sign)
			}
			if sent.Get("nonce_str") != "5K8264ILTKCH16CQ2502SI8ZNMTM67VS" {
				t.Errorf("the caller's nonce_str was replaced by %q", sent.Get("nonce_str"))
			}
			// The caller's Params are not modified.
			if _, ok := req.Lookup("sign"); ok {
				t.Error("Call added sign to the caller's Params")
			}
		})
	}
}

func TestClientUnifiedOrder(t *testing.T) {
	for _, st := range []SignType{SignTypeMD5, SignTypeHMACSHA256} {
		for _, tradeType := range []string{TradeTypeJSAPI, TradeTypeNative, TradeTypeAPP, TradeTypeMWEB} {
			t.Run(string(st)+"/"+tradeType, func(t *testing.T) {
				fake, srv := newFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return prepayAnswer(req) })
				r := validOrder(tradeType)
				resp, err := fakeClient(srv, st).UnifiedOrder(context.Background(), &r)
				if err != nil {
					t.Fatalf("UnifiedOrder: %v", err)
				}
				if resp.PrepayID != "wx201411101639507cbf6ffd8b0779950874" || resp.TradeType != tradeType || resp.AppID != r.AppID {
					t.Errorf("response %+v", resp)
				}
				if (resp.CodeURL != "") != (tradeType == TradeTypeNative) || (resp.MWebURL != "") != (tradeType == TradeTypeMWEB) {
					t.Errorf("code_url %q, mweb_url %q for %s", resp.CodeURL, resp.MWebURL, tradeType)
				}
				sent := fake.lastRequest()
				// A fresh nonce, within WeChat's 32 characters.
				if n := sent.Get("nonce_str"); n == "" || len(n) > 32 {
					t.Errorf("nonce_str %q", n)
				}
				for _, f := range r.Params() {
					if sent.Get(f.Name) != f.Value {
						t.Errorf("request %s = %q, want %q", f.Name, sent.Get(f.Name), f.Value)
					}
				}
			})
		}
	}
}

func TestClientCallErrors(t *testing.T) {
	slowDone := make(chan struct{})
	t.Cleanup(func() { close(slowDone) })
	tests := []struct {
		name    string
		answer  func(http.ResponseWriter, *http.Request, Params) Params
		badSign bool
		timeout time.Duration
		check   func(t *testing.T, err error)
	}{
		{
			name:    "answer with a bad signature",
			answer:  func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return prepayAnswer(req) },
			badSign: true,
			check: func(t *testing.T, err error) {
				var re *ResponseError
				if !errors.As(err, &re) || !errors.Is(err, ErrInvalidSignature) {
					t.Fatalf("err = %v (%T), want a *ResponseError wrapping ErrInvalidSignature", err, err)
				}
			},
		},
		{
			name: "unsigned SUCCESS answer",
			answer: func(w http.ResponseWriter, _ *http.Request, req Params) Params {
				w.Write(xmlDoc("xml", prepayAnswer(req)))
				return nil
			},
			check: func(t *testing.T, err error) {
				var re *ResponseError
				if !errors.As(err, &re) || !errors.Is(err, ErrMissingSign) {
					t.Fatalf("err = %v (%T), want a *ResponseError wrapping ErrMissingSign", err, err)
				}
			},
		},
		{
			name: "answer for another merchant",
			answer: func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
				p := prepayAnswer(req)
				p.Set("mch_id", "10000101")
				return p
			},
			check: func(t *testing.T, err error) {
				var re *ResponseError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), "10000101") {
					t.Fatalf("err = %v (%T), want a *ResponseError naming the other mch_id", err, err)
				}
			},
		},
		{
			name: "return_code FAIL",
			answer: func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
				return Params{{"return_code", "FAIL"}, {"return_msg", "签名错误"}}
			},
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Code() != ReturnFail || ae.Code() != "RETURN_FAIL" {
					t.Fatalf("err = %v (%T), want an *APIError with Code RETURN_FAIL", err, err)
				}
				if ae.Message() != "签名错误" || ae.ReturnCode != "FAIL" || ae.Op != "unifiedorder" || ae.Retryable() {
					t.Errorf("APIError %+v", ae)
				}
			},
		},
		{
			name: "result_code FAIL ORDERPAID",
			answer: func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
				return Params{
					{"return_code", "SUCCESS"}, {"return_msg", "OK"},
					{"appid", req.Get("appid")}, {"mch_id", req.Get("mch_id")}, {"nonce_str", "IITRi8Iabbblz1Jc"},
					{"result_code", "FAIL"}, {"err_code", "ORDERPAID"}, {"err_code_des", "该订单已支付"},
				}
			},
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Code() != "ORDERPAID" {
					t.Fatalf("err = %v (%T), want an *APIError with Code ORDERPAID", err, err)
				}
				if ae.Message() != "该订单已支付" || ae.ResultCode != "FAIL" || ae.Retryable() {
					t.Errorf("APIError %+v", ae)
				}
			},
		},
		{
			name: "result_code FAIL SYSTEMERROR is retryable",
			answer: func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
				return Params{
					{"return_code", "SUCCESS"}, {"mch_id", req.Get("mch_id")}, {"nonce_str", "IITRi8Iabbblz1Jc"},
					{"result_code", "FAIL"}, {"err_code", "SYSTEMERROR"}, {"err_code_des", "系统错误"},
				}
			},
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Code() != "SYSTEMERROR" || !ae.Retryable() {
					t.Fatalf("err = %v (%T), want a retryable *APIError SYSTEMERROR", err, err)
				}
			},
		},
		{
			name: "HTTP 500",
			answer: func(w http.ResponseWriter, _ *http.Request, _ Params) Params {
				w.WriteHeader(http.StatusInternalServerError)
				return nil
			},
			check: func(t *testing.T, err error) {
				var te *TransportError
				if !errors.As(err, &te) || te.StatusCode != http.StatusInternalServerError {
					t.Fatalf("err = %v (%T), want a *TransportError with status 500", err, err)
				}
				if IsTimeout(err) {
					t.Error("HTTP 500 reported as a timeout")
				}
			},
		},
		{
			name: "answer not XML",
			answer: func(w http.ResponseWriter, _ *http.Request, _ Params) Params {
				w.Write([]byte("<html>502 Bad Gateway</html>"))
				return nil
			},
			check: func(t *testing.T, err error) {
				var re *ResponseError
				var xe *XMLError
				if !errors.As(err, &re) || !errors.As(err, &xe) {
					t.Fatalf("err = %v (%T), want a *ResponseError wrapping an *XMLError", err, err)
				}
			},
		},
		{
			name: "slow server",
			answer: func(_ http.ResponseWriter, r *http.Request, _ Params) Params {
				select {
				case <-r.Context().Done():
				case <-slowDone:
				}
				return nil
			},
			timeout: 50 * time.Millisecond,
			check: func(t *testing.T, err error) {
				var te *TransportError
				if !errors.As(err, &te) || !IsTimeout(err) {
					t.Fatalf("err = %v (%T), want a *TransportError that IsTimeout", err, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newFake(t, tt.answer)
			fake.badSign = tt.badSign
			c := fakeClient(srv, SignTypeHMACSHA256)
			c.Timeout = tt.timeout
			r := validOrder(TradeTypeJSAPI)
			start := time.Now()
			p, err := c.Call(context.Background(), "unifiedorder", "/pay/unifiedorder", r.Params())
			if err == nil {
				t.Fatalf("Call succeeded: %v", p.Map())
			}
			if p != nil {
				t.Errorf("Call returned fields with the error %v", err)
			}
			if tt.timeout > 0 && time.Since(start) > 5*time.Second {
				t.Errorf("Call took %v with Timeout %v", time.Since(start), tt.timeout)
			}
			if fake.lastRequest() == nil {
				t.Fatal("the fake received no request")
			}
			tt.check(t, err)
		})
	}
}

func TestClientUnifiedOrderChecksAnswer(t *testing.T) {
	tests := []struct {
		name      string
		tradeType string
		answer    func(req Params) Params
		want      string
	}{
		{"no prepay_id", TradeTypeJSAPI, func(req Params) Params { p := prepayAnswer(req); p.Delete("prepay_id"); return p }, "prepay_id"},
		{"another appid", TradeTypeJSAPI, func(req Params) Params { p := prepayAnswer(req); p.Set("appid", "wx0000000000000000"); return p }, "appid"},
		{"NATIVE without code_url", TradeTypeNative, func(req Params) Params { p := prepayAnswer(req); p.Delete("code_url"); return p }, "code_url"},
		{"MWEB without mweb_url", TradeTypeMWEB, func(req Params) Params { p := prepayAnswer(req); p.Delete("mweb_url"); return p }, "mweb_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return tt.answer(req) })
			r := validOrder(tt.tradeType)
			resp, err := fakeClient(srv, SignTypeMD5).UnifiedOrder(context.Background(), &r)
			var re *ResponseError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("UnifiedOrder = %+v, %v; want a *ResponseError about %s", resp, err, tt.want)
			}
		})
	}
}

func TestClientUnifiedOrderValidatesFirst(t *testing.T) {
	fake, srv := newFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return prepayAnswer(req) })
	r := validOrder(TradeTypeJSAPI)
	r.TotalFee = 0
	_, err := fakeClient(srv, SignTypeMD5).UnifiedOrder(context.Background(), &r)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "total_fee" {
		t.Fatalf("err = %v, want a *FieldError for total_fee", err)
	}
	if fake.lastRequest() != nil {
		t.Error("an invalid order was sent to WeChat")
	}
}
