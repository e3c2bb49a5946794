package wxpaysim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

const testKey wxpay.APIKey = "192006250b4c09247ec02edce69f6a2d"

const (
	testMchID  = "10000100"
	appA       = "wxd930ea5d5a258f4f"
	appB       = "wx2421b1c4370ec43b"
	testOpenID = "oUpF8uMEb4qRXf22hE3X68TekukE"
)

// t0 is the simulated time of most tests: 2024-05-01 12:00:00 in Beijing.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, wxpay.Beijing)

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a simulator served by a real HTTP server.
type env struct {
	sim *Simulator
	srv *httptest.Server
}

// newEnv starts a simulator that knows the test merchant. Create notify
// servers before it, so that the simulator is closed first.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	if cfg.Merchants == nil {
		cfg.Merchants = []Merchant{{MchID: testMchID, Key: testKey, AppIDs: []string{appA, appB}}}
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	sim := New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close) // runs before srv.Close
	return &env{sim: sim, srv: srv}
}

func (e *env) client(st wxpay.SignType) *wxpay.Client {
	return &wxpay.Client{
		MchID: testMchID, Key: testKey, SignType: st,
		Endpoint: e.srv.URL, HTTPClient: e.srv.Client(), Timeout: 5 * time.Second,
	}
}

// post sends a raw request to the simulator.
func (e *env) post(t *testing.T, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := e.srv.Client().Post(e.srv.URL+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading: %v", path, err)
	}
	return resp.StatusCode, b
}

func (e *env) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := e.srv.Client().Get(e.srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", path, err)
	}
	return resp, b
}

// notifyServer is a merchant's notify_url that records what it receives.
type notifyServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int, w http.ResponseWriter, r *http.Request)
}

type received struct {
	body        []byte
	contentType string
	at          time.Time
}

// newNotifyServer starts a notify server; answer (nil: acknowledge) writes
// the answer to the n-th delivery (from 1).
func newNotifyServer(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *notifyServer {
	t.Helper()
	ns := &notifyServer{answer: answer}
	ns.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		ns.mu.Lock()
		ns.got = append(ns.got, received{body: body, contentType: r.Header.Get("Content-Type"), at: time.Now()})
		n := len(ns.got)
		ns.mu.Unlock()
		if ns.answer == nil {
			_, _ = io.WriteString(w, string(wxpay.NotifyReplySuccess))
			return
		}
		ns.answer(n, w, r)
	}))
	t.Cleanup(ns.srv.Close)
	return ns
}

func (ns *notifyServer) URL() string { return ns.srv.URL + "/wxpay/notify" }

func (ns *notifyServer) received() []received {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return append([]received(nil), ns.got...)
}

func (ns *notifyServer) count() int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return len(ns.got)
}

// waitFor polls cond every few milliseconds for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// newOrder returns a valid order of the given trade type.
func newOrder(tradeType, outTradeNo, notifyURL string) *wxpay.UnifiedOrderRequest {
	r := &wxpay.UnifiedOrderRequest{
		AppID: appA, Body: "腾讯充值中心-QQ会员充值", OutTradeNo: outTradeNo, TotalFee: 888,
		SpbillCreateIP: "123.12.12.123", NotifyURL: notifyURL, TradeType: tradeType, Attach: "支付测试",
	}
	switch tradeType {
	case wxpay.TradeTypeJSAPI:
		r.OpenID = testOpenID
	case wxpay.TradeTypeNative:
		r.ProductID = "12235413214070356458058"
	case wxpay.TradeTypeMWEB:
		r.SceneInfo = `{"h5_info":{"type":"Wap","wap_url":"https://pay.qq.com","wap_name":"腾讯充值"}}`
	}
	return r
}

// params builds a document from name, value pairs.
func params(kv ...string) wxpay.Params {
	p := make(wxpay.Params, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		p = append(p, wxpay.Param{Name: kv[i], Value: kv[i+1]})
	}
	return p
}

// baseParams is a valid JSAPI unifiedorder request without the fields the
// client adds.
func baseParams(outTradeNo string) wxpay.Params {
	return params(
		"appid", appA, "body", "test", "out_trade_no", outTradeNo, "total_fee", "888",
		"spbill_create_ip", "123.12.12.123", "notify_url", "https://example.com/wxpay/notify",
		"trade_type", "JSAPI", "openid", testOpenID,
	)
}

// signedXML signs p with key and encodes it.
func signedXML(t *testing.T, p wxpay.Params, key wxpay.APIKey, st wxpay.SignType) []byte {
	t.Helper()
	sign, err := wxpay.Sign(p, key, st)
	if err != nil {
		t.Fatal(err)
	}
	p = append(p.Clone(), wxpay.Param{Name: "sign", Value: sign})
	b, err := wxpay.EncodeXML(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func apiError(t *testing.T, err error) *wxpay.APIError {
	t.Helper()
	var ae *wxpay.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v (%T), want a *wxpay.APIError", err, err)
	}
	return ae
}

var (
	prepayIDPattern      = regexp.MustCompile(`^wx20240501120000[0-9a-f]{20}$`)
	codeURLPattern       = regexp.MustCompile(`^weixin://wxpay/bizpayurl\?pr=[0-9A-Za-z]{7}$`)
	transactionIDPattern = regexp.MustCompile(`^4200[0-9]{24}$`)
)

func TestUnifiedOrderSuccess(t *testing.T) {
	tradeTypes := []string{wxpay.TradeTypeJSAPI, wxpay.TradeTypeNative, wxpay.TradeTypeAPP, wxpay.TradeTypeMWEB}
	signTypes := []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256}
	e := newEnv(t, Config{Now: newClock(t0).Now})
	for _, st := range signTypes {
		for _, tt := range tradeTypes {
			t.Run(string(st)+"/"+tt, func(t *testing.T) {
				outTradeNo := strings.ReplaceAll(fmt.Sprintf("%s-%s", st, tt), "HMAC-SHA256", "HMAC")
				req := newOrder(tt, outTradeNo, "https://example.com/wxpay/notify")
				// The client verifies the answer's signature with st.
				resp, err := e.client(st).UnifiedOrder(context.Background(), req)
				if err != nil {
					t.Fatalf("UnifiedOrder: %v", err)
				}
				if !prepayIDPattern.MatchString(resp.PrepayID) || len(resp.PrepayID) != 36 {
					t.Errorf("prepay_id = %q, want wx20240501120000 + 20 hex digits", resp.PrepayID)
				}
				if resp.TradeType != tt || resp.AppID != appA {
					t.Errorf("trade_type, appid = %q, %q", resp.TradeType, resp.AppID)
				}
				switch tt {
				case wxpay.TradeTypeNative:
					if !codeURLPattern.MatchString(resp.CodeURL) {
						t.Errorf("code_url = %q", resp.CodeURL)
					}
				case wxpay.TradeTypeMWEB:
					want := regexp.MustCompile(`^https://wx\.tenpay\.com/cgi-bin/mmpayweb-bin/checkmweb\?prepay_id=` + resp.PrepayID + `&package=[0-9]{10}$`)
					if !want.MatchString(resp.MWebURL) {
						t.Errorf("mweb_url = %q", resp.MWebURL)
					}
				}
				if tt != wxpay.TradeTypeNative && resp.CodeURL != "" || tt != wxpay.TradeTypeMWEB && resp.MWebURL != "" {
					t.Errorf("unexpected code_url %q / mweb_url %q", resp.CodeURL, resp.MWebURL)
				}
				// Signed with the request's sign type, which the answer
				// does not name.
				if err := wxpay.Verify(resp.Raw, testKey, st); err != nil {
					t.Errorf("answer does not verify with %s: %v", st, err)
				}
				other := wxpay.SignTypeMD5
				if st == wxpay.SignTypeMD5 {
					other = wxpay.SignTypeHMACSHA256
				}
				if wxpay.Verify(resp.Raw, testKey, other) == nil {
					t.Errorf("answer also verifies with %s", other)
				}
				for _, f := range []string{"return_code", "result_code"} {
					if resp.Raw.Get(f) != "SUCCESS" {
						t.Errorf("%s = %q", f, resp.Raw.Get(f))
					}
				}
				if resp.Raw.Get("mch_id") != testMchID || resp.Raw.Get("nonce_str") == "" {
					t.Errorf("mch_id %q, nonce_str %q", resp.Raw.Get("mch_id"), resp.Raw.Get("nonce_str"))
				}
				if _, ok := resp.Raw.Lookup("sign_type"); ok {
					t.Errorf("answer names sign_type")
				}
				o, ok := e.sim.Order(testMchID, outTradeNo)
				if !ok {
					t.Fatal("order not recorded")
				}
				if o.State != StateNotPay || o.PrepayID != resp.PrepayID || o.SignType != st || o.TotalFee != 888 ||
					o.TradeType != tt || o.AppID != appA || !o.CreatedAt.Equal(t0) || o.Params.Get("body") != req.Body {
					t.Errorf("order = %+v", o)
				}
			})
		}
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, Config{Now: newClock(t0).Now})
	valid := func() wxpay.Params {
		return append(baseParams("R1"), params("mch_id", testMchID, "nonce_str", "ibuaiVcKdpRxkhJA")...)
	}
	big := append([]byte("<xml><body><![CDATA["), bytes.Repeat([]byte("a"), MaxRequestSize)...)
	big = append(big, "]]></body></xml>"...)
	tests := []struct {
		name    string
		method  string
		body    []byte
		wantMsg string
	}{
		{"GET", http.MethodGet, nil, MsgNotPost},
		{"PUT", http.MethodPut, signedXML(t, valid(), testKey, wxpay.SignTypeMD5), MsgNotPost},
		{"empty body", http.MethodPost, nil, MsgEmptyBody},
		{"blank body", http.MethodPost, []byte(" \r\n"), MsgEmptyBody},
		{"too large", http.MethodPost, big, MsgBadXML},
		{"not XML", http.MethodPost, []byte(`{"appid":"x"}`), MsgBadXML},
		{"unterminated", http.MethodPost, []byte(`<xml><appid>x</appid>`), MsgBadXML},
		{"DOCTYPE", http.MethodPost, []byte(`<!DOCTYPE xml [<!ENTITY a "b">]><xml><appid>&a;</appid></xml>`), MsgBadXML},
		{"nested", http.MethodPost, []byte(`<xml><detail><a>1</a></detail></xml>`), MsgBadXML},
		{"not UTF-8", http.MethodPost, []byte("<xml><body>\xb2\xe2\xca\xd4</body></xml>"), MsgNotUTF8},
		{"no mch_id", http.MethodPost, signedXML(t, baseParams("R1"), testKey, wxpay.SignTypeMD5), MsgMissingMchID},
		{"unknown mch_id", http.MethodPost, func() []byte {
			p := valid()
			p.Set("mch_id", "1900000109")
			return signedXML(t, p, testKey, wxpay.SignTypeMD5)
		}(), MsgUnknownMchID},
		{"unknown sign_type", http.MethodPost, func() []byte {
			p := valid()
			p.Set("sign_type", "SHA1")
			return signedXML(t, p, testKey, wxpay.SignTypeMD5)
		}(), MsgBadSignType},
		{"wrong key", http.MethodPost, signedXML(t, valid(), "00000000000000000000000000000000", wxpay.SignTypeMD5), MsgInvalidSign},
		{"no sign", http.MethodPost, func() []byte {
			b, err := wxpay.EncodeXML(valid())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}(), MsgInvalidSign},
		{"HMAC without sign_type", http.MethodPost, signedXML(t, valid(), testKey, wxpay.SignTypeHMACSHA256), MsgInvalidSign},
		{"MD5 named HMAC", http.MethodPost, func() []byte {
			p := valid()
			p.Set("sign_type", string(wxpay.SignTypeHMACSHA256))
			return signedXML(t, p, testKey, wxpay.SignTypeMD5)
		}(), MsgInvalidSign},
		{"field changed after signing", http.MethodPost, bytes.Replace(signedXML(t, valid(), testKey, wxpay.SignTypeMD5), []byte("888"), []byte("1"), 1), MsgInvalidSign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, e.srv.URL+"/pay/unifiedorder", bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status = %d, want 200 (WeChat answers refusals with 200)", resp.StatusCode)
			}
			p, err := wxpay.DecodeXML(body)
			if err != nil {
				t.Fatalf("answer %q: %v", body, err)
			}
			if p.Get("return_code") != "FAIL" || p.Get("return_msg") != tc.wantMsg {
				t.Errorf("answer = %q, want return_code FAIL, return_msg %q", body, tc.wantMsg)
			}
			for _, f := range []string{"sign", "result_code", "prepay_id"} {
				if _, ok := p.Lookup(f); ok {
					t.Errorf("refusal carries %s: %q", f, body)
				}
			}
		})
	}
	if orders := e.sim.Orders(); len(orders) != 0 {
		t.Errorf("refused requests created orders: %+v", orders)
	}
}

func TestWrongKeyThroughClient(t *testing.T) {
	e := newEnv(t, Config{})
	for _, st := range []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256} {
		t.Run(string(st), func(t *testing.T) {
			c := e.client(st)
			c.Key = "0123456789abcdef0123456789abcdef"
			_, err := c.UnifiedOrder(context.Background(), newOrder(wxpay.TradeTypeAPP, "K1", "https://example.com/n"))
			ae := apiError(t, err)
			if ae.ReturnCode != "FAIL" || ae.ReturnMsg != "签名错误" || ae.Code() != wxpay.ReturnFail {
				t.Errorf("error = %+v, want return_code FAIL, return_msg 签名错误", ae)
			}
			c = e.client(st)
			c.MchID = "1900000109"
			_, err = c.UnifiedOrder(context.Background(), newOrder(wxpay.TradeTypeAPP, "K1", "https://example.com/n"))
			if ae := apiError(t, err); ae.ReturnCode != "FAIL" || ae.ReturnMsg != MsgUnknownMchID {
				t.Errorf("unknown mch_id: error = %+v", ae)
			}
		})
	}
	if _, ok := e.sim.Order(testMchID, "K1"); ok {
		t.Error("a refused order was recorded")
	}
}

func TestBusinessErrors(t *testing.T) {
	set := func(kv ...string) func(*wxpay.Params) {
		return func(p *wxpay.Params) {
			for i := 0; i+1 < len(kv); i += 2 {
				p.Set(kv[i], kv[i+1])
			}
		}
	}
	del := func(name string) func(*wxpay.Params) { return func(p *wxpay.Params) { p.Delete(name) } }
	tests := []struct {
		name     string
		change   func(*wxpay.Params)
		wantCode string // "" for success
		wantDes  string // a substring of err_code_des
	}{
		{"valid JSAPI", set(), "", ""},
		{"other app of the merchant", set("appid", appB), "", ""},
		{"allowed characters", set("out_trade_no", "Ab_0-9|x*"), "", ""},
		{"32-character out_trade_no", set("out_trade_no", strings.Repeat("9", 32)), "", ""},
		{"IPv6 client", set("spbill_create_ip", "2001:db8::1"), "", ""},
		{"http notify_url with port", set("notify_url", "http://example.com:8080/n"), "", ""},
		{"future time_expire", set("time_start", "20240501120000", "time_expire", "20240501121500"), "", ""},
		{"127-byte attach", set("attach", strings.Repeat("a", 127)), "", ""},
		{"128-byte body", set("body", strings.Repeat("a", 128)), "", ""},
		{"empty optional field", set("attach", ""), "", ""},

		{"appid of another merchant", set("appid", "wx0000000000000000"), "APPID_MCHID_NOT_MATCH", ""},

		{"no appid", del("appid"), "LACK_PARAMS", "appid"},
		{"empty nonce_str", set("nonce_str", ""), "LACK_PARAMS", "nonce_str"},
		{"no body", del("body"), "LACK_PARAMS", "body"},
		{"no out_trade_no", del("out_trade_no"), "LACK_PARAMS", "out_trade_no"},
		{"no total_fee", del("total_fee"), "LACK_PARAMS", "total_fee"},
		{"no spbill_create_ip", del("spbill_create_ip"), "LACK_PARAMS", "spbill_create_ip"},
		{"no notify_url", del("notify_url"), "LACK_PARAMS", "notify_url"},
		{"no trade_type", del("trade_type"), "LACK_PARAMS", "trade_type"},

		{"33-character nonce_str", set("nonce_str", strings.Repeat("n", 33)), "PARAM_ERROR", "nonce_str"},
		{"129-byte body", set("body", strings.Repeat("测", 43)), "PARAM_ERROR", "body"},
		{"33-character out_trade_no", set("out_trade_no", strings.Repeat("9", 33)), "PARAM_ERROR", "out_trade_no"},
		{"out_trade_no with a space", set("out_trade_no", "a b"), "PARAM_ERROR", "out_trade_no"},
		{"out_trade_no in Chinese", set("out_trade_no", "订单1"), "PARAM_ERROR", "out_trade_no"},
		{"total_fee zero", set("total_fee", "0"), "PARAM_ERROR", "total_fee"},
		{"total_fee negative", set("total_fee", "-1"), "PARAM_ERROR", "total_fee"},
		{"total_fee leading zero", set("total_fee", "0888"), "PARAM_ERROR", "total_fee"},
		{"total_fee in yuan", set("total_fee", "8.88"), "PARAM_ERROR", "total_fee"},
		{"total_fee with plus", set("total_fee", "+888"), "PARAM_ERROR", "total_fee"},
		{"total_fee overflow", set("total_fee", "99999999999999999999"), "PARAM_ERROR", "total_fee"},
		{"spbill_create_ip a name", set("spbill_create_ip", "localhost"), "PARAM_ERROR", "spbill_create_ip"},
		{"spbill_create_ip short", set("spbill_create_ip", "1.2.3"), "PARAM_ERROR", "spbill_create_ip"},
		{"spbill_create_ip with zone", set("spbill_create_ip", "fe80::1%eth0"), "PARAM_ERROR", "spbill_create_ip"},
		{"notify_url relative", set("notify_url", "/wxpay/notify"), "PARAM_ERROR", "notify_url"},
		{"notify_url without scheme", set("notify_url", "example.com/n"), "PARAM_ERROR", "notify_url"},
		{"notify_url ftp", set("notify_url", "ftp://example.com/n"), "PARAM_ERROR", "notify_url"},
		{"notify_url with query", set("notify_url", "https://example.com/n?order=1"), "PARAM_ERROR", "notify_url"},
		{"notify_url with empty query", set("notify_url", "https://example.com/n?"), "PARAM_ERROR", "notify_url"},
		{"notify_url too long", set("notify_url", "https://example.com/"+strings.Repeat("n", 240)), "PARAM_ERROR", "notify_url"},
		{"unknown trade_type", set("trade_type", "MICROPAY"), "PARAM_ERROR", "trade_type"},
		{"lowercase trade_type", set("trade_type", "jsapi"), "PARAM_ERROR", "trade_type"},
		{"JSAPI without openid", del("openid"), "PARAM_ERROR", "openid"},
		{"NATIVE without product_id", set("trade_type", "NATIVE"), "PARAM_ERROR", "product_id"},
		{"MWEB without scene_info", set("trade_type", "MWEB"), "PARAM_ERROR", "scene_info"},
		{"128-byte attach", set("attach", strings.Repeat("a", 128)), "PARAM_ERROR", "attach"},
		{"time_expire with dashes", set("time_expire", "2024-05-01 12:15"), "PARAM_ERROR", "time_expire"},
		{"time_expire too short", set("time_expire", "202405011215"), "PARAM_ERROR", "time_expire"},
		{"time_expire impossible", set("time_expire", "20241301121500"), "PARAM_ERROR", "time_expire"},
		{"time_expire past", set("time_expire", "20240501115959"), "PARAM_ERROR", "time_expire"},
		{"time_expire now", set("time_expire", "20240501120000"), "PARAM_ERROR", "time_expire"},
		{"time_expire in UTC", set("time_expire", "20240501041500"), "PARAM_ERROR", "time_expire"},
		{"time_start malformed", set("time_start", "yesterday"), "PARAM_ERROR", "time_start"},
	}
	e := newEnv(t, Config{Now: newClock(t0).Now})
	for i, tc := range tests {
		for _, st := range []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256} {
			t.Run(tc.name+"/"+string(st), func(t *testing.T) {
				outTradeNo := fmt.Sprintf("B%d%s", i, st[:1])
				p := baseParams(outTradeNo)
				tc.change(&p)
				answer, err := e.client(st).Call(context.Background(), "unifiedorder", "/pay/unifiedorder", p)
				if tc.wantCode == "" {
					if err != nil {
						t.Fatalf("Call: %v", err)
					}
					if !prepayIDPattern.MatchString(answer.Get("prepay_id")) {
						t.Errorf("prepay_id = %q", answer.Get("prepay_id"))
					}
					if _, ok := e.sim.Order(testMchID, p.Get("out_trade_no")); !ok {
						t.Error("order not recorded")
					}
					return
				}
				// Call returns an APIError for result_code FAIL only
				// after the answer's signature verified.
				ae := apiError(t, err)
				if ae.ReturnCode != "SUCCESS" || ae.ResultCode != "FAIL" || ae.ErrCode != tc.wantCode {
					t.Errorf("error = %+v, want result_code FAIL, err_code %s", ae, tc.wantCode)
				}
				if !strings.Contains(ae.ErrCodeDes, tc.wantDes) || ae.ErrCodeDes == "" {
					t.Errorf("err_code_des = %q, want it to name %q", ae.ErrCodeDes, tc.wantDes)
				}
				if _, ok := e.sim.Order(testMchID, p.Get("out_trade_no")); ok {
					t.Error("a refused order was recorded")
				}
			})
		}
	}
}

// TestFailAnswerSigned checks a result_code FAIL answer on the wire: signed,
// with appid, mch_id, nonce_str, err_code and err_code_des.
func TestFailAnswerSigned(t *testing.T) {
	e := newEnv(t, Config{})
	p := append(baseParams("F1"), params("mch_id", testMchID, "nonce_str", "ibuaiVcKdpRxkhJA", "sign_type", "HMAC-SHA256")...)
	p.Delete("body")
	status, body := e.post(t, "/pay/unifiedorder", "text/xml", signedXML(t, p, testKey, wxpay.SignTypeHMACSHA256))
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	a, err := wxpay.DecodeXML(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := wxpay.Verify(a, testKey, wxpay.SignTypeHMACSHA256); err != nil {
		t.Errorf("FAIL answer does not verify: %v: %s", err, body)
	}
	want := map[string]string{
		"return_code": "SUCCESS", "result_code": "FAIL", "err_code": "LACK_PARAMS",
		"appid": appA, "mch_id": testMchID,
	}
	for k, v := range want {
		if a.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, a.Get(k), v)
		}
	}
	if a.Get("nonce_str") == "" || a.Get("nonce_str") == "ibuaiVcKdpRxkhJA" || !strings.Contains(a.Get("err_code_des"), "body") {
		t.Errorf("answer = %s", body)
	}
}

func TestSameOutTradeNo(t *testing.T) {
	clk := newClock(t0)
	e := newEnv(t, Config{Now: clk.Now})
	ctx := context.Background()
	md5, hmac := e.client(wxpay.SignTypeMD5), e.client(wxpay.SignTypeHMACSHA256)

	first, err := md5.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeNative, "S1", "https://example.com/n"))
	if err != nil {
		t.Fatal(err)
	}
	// Same content, another nonce, client IP and sign type: the same
	// prepay_id and code_url.
	again := newOrder(wxpay.TradeTypeNative, "S1", "https://example.com/n")
	again.SpbillCreateIP = "10.0.0.1"
	clk.Advance(PrepayIDLifetime - time.Second)
	second, err := hmac.UnifiedOrder(ctx, again)
	if err != nil {
		t.Fatalf("same order again: %v", err)
	}
	if second.PrepayID != first.PrepayID || second.CodeURL != first.CodeURL {
		t.Errorf("second answer %s %s, want %s %s", second.PrepayID, second.CodeURL, first.PrepayID, first.CodeURL)
	}
	if first.Raw.Get("nonce_str") == second.Raw.Get("nonce_str") {
		t.Error("answers share a nonce_str")
	}

	changes := []struct {
		name   string
		change func(*wxpay.UnifiedOrderRequest)
	}{
		{"amount", func(r *wxpay.UnifiedOrderRequest) { r.TotalFee = 889 }},
		{"body", func(r *wxpay.UnifiedOrderRequest) { r.Body = "another" }},
		{"attach dropped", func(r *wxpay.UnifiedOrderRequest) { r.Attach = "" }},
		{"field added", func(r *wxpay.UnifiedOrderRequest) { r.GoodsTag = "WXG" }},
		{"appid", func(r *wxpay.UnifiedOrderRequest) { r.AppID = appB }},
	}
	for _, c := range changes {
		t.Run("changed "+c.name, func(t *testing.T) {
			r := newOrder(wxpay.TradeTypeNative, "S1", "https://example.com/n")
			c.change(r)
			_, err := md5.UnifiedOrder(ctx, r)
			if ae := apiError(t, err); ae.ErrCode != "OUT_TRADE_NO_USED" {
				t.Errorf("err_code = %s, want OUT_TRADE_NO_USED", ae.ErrCode)
			}
		})
	}

	t.Run("prepay_id expired", func(t *testing.T) {
		clk.Advance(time.Second)
		_, err := md5.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeNative, "S1", "https://example.com/n"))
		if ae := apiError(t, err); ae.ErrCode != "OUT_TRADE_NO_USED" {
			t.Errorf("err_code = %s, want OUT_TRADE_NO_USED", ae.ErrCode)
		}
	})

	t.Run("paid", func(t *testing.T) {
		r := newOrder(wxpay.TradeTypeAPP, "S2", "http://127.0.0.1:1/n")
		resp, err := md5.UnifiedOrder(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Pay(ctx, PayOptions{PrepayID: resp.PrepayID}); err != nil {
			t.Fatal(err)
		}
		_, err = md5.UnifiedOrder(ctx, r)
		if ae := apiError(t, err); ae.ErrCode != "ORDERPAID" {
			t.Errorf("err_code = %s, want ORDERPAID", ae.ErrCode)
		}
	})

	t.Run("closed", func(t *testing.T) {
		r := newOrder(wxpay.TradeTypeAPP, "S3", "https://example.com/n")
		if _, err := md5.UnifiedOrder(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := e.sim.CloseOrder(testMchID, "S3"); err != nil {
			t.Fatal(err)
		}
		_, err := md5.UnifiedOrder(ctx, r)
		if ae := apiError(t, err); ae.ErrCode != "ORDERCLOSED" {
			t.Errorf("err_code = %s, want ORDERCLOSED", ae.ErrCode)
		}
		if o, _ := e.sim.Order(testMchID, "S3"); o.State != StateClosed {
			t.Errorf("state = %s", o.State)
		}
	})
}

func TestFailNext(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	c := e.client(wxpay.SignTypeHMACSHA256)
	order := newOrder(wxpay.TradeTypeJSAPI, "FN1", "https://example.com/n")

	e.sim.FailNext("unifiedorder", 2, "SYSTEMERROR")
	// A request refused before a signed answer does not use a fault.
	bad := e.client(wxpay.SignTypeMD5)
	bad.Key = "0123456789abcdef0123456789abcdef"
	if _, err := bad.UnifiedOrder(ctx, order); apiError(t, err).ReturnMsg != MsgInvalidSign {
		t.Fatalf("bad key: %v", err)
	}
	for i := range 2 {
		_, err := c.UnifiedOrder(ctx, order)
		ae := apiError(t, err)
		if ae.ErrCode != "SYSTEMERROR" || ae.ErrCodeDes != "系统错误" || !ae.Retryable() {
			t.Errorf("call %d: error = %+v, want a retryable SYSTEMERROR", i+1, ae)
		}
	}
	if _, ok := e.sim.Order(testMchID, "FN1"); ok {
		t.Error("a failed call placed the order")
	}
	// Retried with the same parameters, as WeChat asks.
	if _, err := c.UnifiedOrder(ctx, order); err != nil {
		t.Fatalf("third call: %v", err)
	}

	// Faults queue in order; an empty code is SYSTEMERROR; 0 clears.
	e.sim.FailNext("unifiedorder", 1, "FREQUENCY_LIMITED")
	e.sim.FailNext("/pay/unifiedorder", 1, "")
	for _, want := range []string{"FREQUENCY_LIMITED", "SYSTEMERROR"} {
		_, err := c.UnifiedOrder(ctx, order)
		if ae := apiError(t, err); ae.ErrCode != want {
			t.Errorf("err_code = %s, want %s", ae.ErrCode, want)
		}
	}
	e.sim.FailNext("unifiedorder", 5, "SYSTEMERROR")
	e.sim.FailNext("unifiedorder", 0, "")
	if _, err := c.UnifiedOrder(ctx, order); err != nil {
		t.Errorf("after clearing: %v", err)
	}
}

func TestDelayNext(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	c := e.client(wxpay.SignTypeMD5)
	c.Timeout = 100 * time.Millisecond
	order := newOrder(wxpay.TradeTypeAPP, "D1", "https://example.com/n")

	e.sim.DelayNext("unifiedorder", 1, 10*time.Second)
	start := time.Now()
	_, err := c.UnifiedOrder(ctx, order)
	if !wxpay.IsTimeout(err) {
		t.Fatalf("error = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the timed-out call took %v", d)
	}
	// The delayed call was processed: the answer was lost, not the order.
	o, ok := e.sim.Order(testMchID, "D1")
	if !ok {
		t.Fatal("the delayed call placed no order")
	}
	// The fault is used up; retrying gets the same prepay_id.
	resp, err := c.UnifiedOrder(ctx, order)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if resp.PrepayID != o.PrepayID {
		t.Errorf("retry prepay_id %s, want %s", resp.PrepayID, o.PrepayID)
	}

	// A delay shorter than the timeout only slows the answer.
	e.sim.DelayNext("unifiedorder", 1, 30*time.Millisecond)
	c.Timeout = 5 * time.Second
	start = time.Now()
	if _, err := c.UnifiedOrder(ctx, order); err != nil {
		t.Fatalf("short delay: %v", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("answer came after %v, want at least 30ms", d)
	}
}

func TestPayNotification(t *testing.T) {
	for _, st := range []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256} {
		for _, tt := range []string{wxpay.TradeTypeJSAPI, wxpay.TradeTypeNative} {
			t.Run(string(st)+"/"+tt, func(t *testing.T) {
				ns := newNotifyServer(t, nil)
				e := newEnv(t, Config{Now: newClock(t0).Now})
				ctx := context.Background()
				resp, err := e.client(st).UnifiedOrder(ctx, newOrder(tt, "P1", ns.URL()))
				if err != nil {
					t.Fatal(err)
				}
				pay, err := e.sim.Pay(ctx, PayOptions{
					PrepayID: resp.PrepayID,
					Extra:    params("settlement_total_fee", "888", "zz_new_field", "新字段"),
				})
				if err != nil {
					t.Fatalf("Pay: %v", err)
				}
				if !transactionIDPattern.MatchString(pay.TransactionID) {
					t.Errorf("transaction_id = %q", pay.TransactionID)
				}
				if *pay != (Payment{MchID: testMchID, AppID: appA, OutTradeNo: "P1", TransactionID: pay.TransactionID, TotalFee: 888}) {
					t.Errorf("payment = %+v", pay)
				}
				waitFor(t, "the notification", func() bool { return ns.count() >= 1 })
				got := ns.received()[0]
				if !strings.HasPrefix(got.contentType, "text/xml") {
					t.Errorf("Content-Type = %q", got.contentType)
				}
				n, err := wxpay.VerifyNotification(got.body, testKey)
				if err != nil {
					t.Fatalf("VerifyNotification: %v\n%s", err, got.body)
				}
				if n.SignType != st {
					t.Errorf("signed with %s, want %s", n.SignType, st)
				}
				openID := OpenIDOther
				if tt == wxpay.TradeTypeJSAPI {
					openID = testOpenID
				}
				want := map[string]string{
					"return_code": "SUCCESS", "result_code": "SUCCESS", "appid": appA, "mch_id": testMchID,
					"out_trade_no": "P1", "transaction_id": pay.TransactionID, "total_fee": "888",
					"cash_fee": "888", "fee_type": "CNY", "bank_type": "CMC", "is_subscribe": "N",
					"trade_type": tt, "openid": openID, "attach": "支付测试", "time_end": "20240501120000",
					"settlement_total_fee": "888", "zz_new_field": "新字段",
				}
				for k, v := range want {
					if n.Get(k) != v {
						t.Errorf("%s = %q, want %q", k, n.Get(k), v)
					}
				}
				if len(n.Get("nonce_str")) == 0 || len(n.Get("nonce_str")) > 32 {
					t.Errorf("nonce_str = %q", n.Get("nonce_str"))
				}
				// WeChat names no sign_type in a notification, whatever
				// the order's: an HMAC-SHA256 order's is told by its sign.
				if name, ok := n.Params.Lookup("sign_type"); ok {
					t.Errorf("sign_type = %q in the notification", name)
				}
				if n.SignType != st || (st == wxpay.SignTypeHMACSHA256) != (len(n.Get("sign")) == 64) {
					t.Errorf("signed %s with a sign of %d digits, want %s", n.SignType, len(n.Get("sign")), st)
				}
				// The extra fields are signed.
				tampered := bytes.Replace(got.body, []byte("新字段"), []byte("旧字段"), 1)
				if _, err := wxpay.VerifyNotification(tampered, testKey); !errors.Is(err, wxpay.ErrInvalidSignature) {
					t.Errorf("tampered extra field: err = %v, want ErrInvalidSignature", err)
				}

				waitFor(t, "the acknowledgement", func() bool {
					recs := e.sim.Notifications()
					return len(recs) == 1 && recs[0].Acknowledged
				})
				rec := e.sim.Notifications()[0]
				if !bytes.Equal(rec.Body, got.body) || rec.MchID != testMchID || rec.OutTradeNo != "P1" ||
					rec.TransactionID != pay.TransactionID || rec.URL != ns.URL() || rec.GaveUp {
					t.Errorf("record = %+v", rec)
				}
				if len(rec.Attempts) != 1 || !rec.Attempts[0].Acked || rec.Attempts[0].StatusCode != 200 ||
					rec.Attempts[0].Body != string(wxpay.NotifyReplySuccess) || rec.Attempts[0].Err != "" || !rec.Attempts[0].At.Equal(t0) {
					t.Errorf("attempts = %+v", rec.Attempts)
				}
				o, _ := e.sim.Order(testMchID, "P1")
				if o.State != StateSuccess || o.TransactionID != pay.TransactionID {
					t.Errorf("order = %+v", o)
				}
			})
		}
	}
}

func TestNotificationRetries(t *testing.T) {
	ns := newNotifyServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 1:
			_, _ = w.Write(wxpay.NotifyReplyFail("database down"))
		case 2:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, string(wxpay.NotifyReplySuccess))
		default:
			_, _ = io.WriteString(w, string(wxpay.NotifyReplySuccess))
		}
	})
	e := newEnv(t, Config{TimeScale: 0.001})
	ctx := context.Background()
	if _, err := e.client(wxpay.SignTypeMD5).UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "T1", ns.URL())); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "T1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the acknowledgement", func() bool { return e.sim.Notifications()[0].Acknowledged })
	// Long enough for two more retries (15ms, 30ms) if one were scheduled.
	time.Sleep(100 * time.Millisecond)

	got := ns.received()
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	for i := 1; i < len(got); i++ {
		if !bytes.Equal(got[i].body, got[0].body) {
			t.Errorf("delivery %d differs from the first:\n%s\n%s", i+1, got[i].body, got[0].body)
		}
		// 15s and 15s, scaled by 0.001.
		if gap := got[i].at.Sub(got[i-1].at); gap < 15*time.Millisecond {
			t.Errorf("delivery %d came %v after the previous one, want at least 15ms", i+1, gap)
		}
	}
	rec := e.sim.Notifications()[0]
	if len(rec.Attempts) != 3 || !rec.Acknowledged || rec.GaveUp {
		t.Fatalf("record = %+v", rec)
	}
	wantStatus := []int{200, 500, 200}
	for i, a := range rec.Attempts {
		if a.Acked != (i == 2) || a.StatusCode != wantStatus[i] || (a.Err == "") != (i == 2) {
			t.Errorf("attempt %d = %+v", i+1, a)
		}
	}
	if !strings.Contains(rec.Attempts[0].Body, "database down") {
		t.Errorf("attempt 1 body = %q", rec.Attempts[0].Body)
	}
}

// TestAcknowledgement checks which answers acknowledge a notification: only
// HTTP 200 with an XML body whose return_code is SUCCESS.
func TestAcknowledgement(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		acked  bool
	}{
		{"WeChat's reply", 200, string(wxpay.NotifyReplySuccess), true},
		// WeChat takes only its exact reply: anything else is sent again
		// (wechatpay-protocol: "Reply exactly …", "extra whitespace").
		{"without CDATA", 200, "<xml><return_code>SUCCESS</return_code></xml>", false},
		{"with whitespace", 200, "<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n</xml>\n", false},
		{"a trailing newline", 200, string(wxpay.NotifyReplySuccess) + "\n", false},
		{"another return_msg", 200, "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[签名失败]]></return_msg></xml>", false},
		{"FAIL", 200, string(wxpay.NotifyReplyFail("no")), false},
		{"lowercase success", 200, "<xml><return_code>success</return_code></xml>", false},
		{"plain text", 200, "SUCCESS", false},
		{"JSON", 200, `{"code":"SUCCESS"}`, false},
		{"empty", 200, "", false},
		{"204", 204, "", false},
		{"500 with SUCCESS", 500, string(wxpay.NotifyReplySuccess), false},
		{"redirect", 302, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNotifyServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				if tc.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			// Real time: the first retry would come after 15s.
			e := newEnv(t, Config{})
			ctx := context.Background()
			if _, err := e.client(wxpay.SignTypeMD5).UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "A1", ns.URL())); err != nil {
				t.Fatal(err)
			}
			if _, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "A1", MchID: testMchID}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the first attempt", func() bool { return len(e.sim.Notifications()[0].Attempts) == 1 })
			rec := e.sim.Notifications()[0]
			a := rec.Attempts[0]
			if a.Acked != tc.acked || rec.Acknowledged != tc.acked || a.StatusCode != tc.status || a.Body != tc.body {
				t.Errorf("attempt = %+v, acknowledged %v; want acked %v", a, rec.Acknowledged, tc.acked)
			}
			if ns.count() != 1 {
				t.Errorf("%d deliveries (the redirect must not be followed)", ns.count())
			}
		})
	}
}

func TestDuplicate(t *testing.T) {
	ns := newNotifyServer(t, nil)
	e := newEnv(t, Config{})
	ctx := context.Background()
	resp, err := e.client(wxpay.SignTypeHMACSHA256).UnifiedOrder(ctx, newOrder(wxpay.TradeTypeJSAPI, "DUP1", ns.URL()))
	if err != nil {
		t.Fatal(err)
	}
	pay, err := e.sim.Pay(ctx, PayOptions{PrepayID: resp.PrepayID, Duplicate: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two deliveries", func() bool { return ns.count() == 2 })
	got := ns.received()
	if !bytes.Equal(got[0].body, got[1].body) {
		t.Errorf("the two deliveries differ:\n%s\n%s", got[0].body, got[1].body)
	}
	if _, err := wxpay.VerifyNotification(got[0].body, testKey); err != nil {
		t.Error(err)
	}
	waitFor(t, "two acknowledgements", func() bool {
		recs := e.sim.Notifications()
		return len(recs) == 2 && recs[0].Acknowledged && recs[1].Acknowledged
	})
	for _, rec := range e.sim.Notifications() {
		if rec.TransactionID != pay.TransactionID || len(rec.Attempts) != 1 || !bytes.Equal(rec.Body, got[0].body) {
			t.Errorf("record = %+v", rec)
		}
	}
}

func TestGiveUp(t *testing.T) {
	ns := newNotifyServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	// The whole 24h4m schedule in about 90ms.
	e := newEnv(t, Config{TimeScale: 1e-6})
	ctx := context.Background()
	if _, err := e.client(wxpay.SignTypeMD5).UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "G1", ns.URL())); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "G1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "giving up", func() bool { return e.sim.Notifications()[0].GaveUp })
	rec := e.sim.Notifications()[0]
	want := 1 + len(RetrySchedule())
	if len(rec.Attempts) != want || ns.count() != want || rec.Acknowledged {
		t.Errorf("%d attempts, %d deliveries, acknowledged %v; want %d, %d, false", len(rec.Attempts), ns.count(), rec.Acknowledged, want, want)
	}
	for i, a := range rec.Attempts {
		if a.StatusCode != http.StatusServiceUnavailable || a.Acked || !strings.Contains(a.Err, "503") {
			t.Errorf("attempt %d = %+v", i+1, a)
		}
	}
	var total time.Duration
	for _, d := range RetrySchedule() {
		total += d
	}
	if total != 24*time.Hour+4*time.Minute {
		t.Errorf("schedule totals %v, want 24h4m", total)
	}
}

// simGoroutines counts the goroutines running the simulator's code.
func simGoroutines() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "wxpaysim.(*Simulator).deliver") {
			count++
		}
	}
	return count
}

func TestCloseStopsRetries(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ns := newNotifyServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/hang") {
			// An attempt in flight when the simulator closes.
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		http.Error(w, "down", http.StatusInternalServerError)
	})
	e := newEnv(t, Config{TimeScale: 1}) // the first retry would come after 15s
	ctx := context.Background()
	c := e.client(wxpay.SignTypeMD5)
	if _, err := c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "C1", ns.URL())); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "C2", ns.srv.URL+"/hang")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "C1", Duplicate: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "C2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first attempts", func() bool {
		recs := e.sim.Notifications()
		return len(recs[0].Attempts) == 1 && len(recs[1].Attempts) == 1 && ns.count() == 3
	})
	if n := simGoroutines(); n != 3 {
		t.Errorf("%d delivery goroutines before Close, want 3", n)
	}

	start := time.Now()
	e.sim.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	// A goroutine may still be returning from its deferred wg.Done.
	waitFor(t, "no delivery goroutines", func() bool { return simGoroutines() == 0 })
	before := e.sim.Notifications()
	if len(before) != 3 {
		t.Fatalf("%d records", len(before))
	}
	hung := before[2]
	if len(hung.Attempts) != 1 || hung.Attempts[0].StatusCode != 0 || hung.Attempts[0].Err == "" || hung.Acknowledged {
		t.Errorf("the attempt in flight: %+v", hung)
	}
	for _, rec := range before {
		if rec.GaveUp || rec.Acknowledged {
			t.Errorf("record after Close = %+v", rec)
		}
	}

	// Nothing more happens, and the simulator refuses to pay.
	time.Sleep(50 * time.Millisecond)
	after := e.sim.Notifications()
	for i := range after {
		if len(after[i].Attempts) != len(before[i].Attempts) {
			t.Errorf("record %d got attempts after Close", i)
		}
	}
	if ns.count() != 3 {
		t.Errorf("%d deliveries after Close, want 3", ns.count())
	}
	if _, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "C1"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Pay after Close: %v, want ErrClosed", err)
	}
	e.sim.Close() // idempotent
}

func TestCloseEndsDelays(t *testing.T) {
	e := newEnv(t, Config{})
	e.sim.DelayNext("unifiedorder", 1, time.Minute)
	done := make(chan error, 1)
	go func() {
		_, err := e.client(wxpay.SignTypeMD5).UnifiedOrder(context.Background(), newOrder(wxpay.TradeTypeAPP, "CD1", "https://example.com/n"))
		done <- err
	}()
	waitFor(t, "the delayed order", func() bool { _, ok := e.sim.Order(testMchID, "CD1"); return ok })
	e.sim.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("delayed call after Close: %v, want the answer", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the delayed answer did not come after Close")
	}
}

func TestPayErrors(t *testing.T) {
	clk := newClock(t0)
	other := Merchant{MchID: "1900000109", Key: "8934e7d15453e97507ef794cf7b0519d", AppIDs: []string{appA}}
	e := newEnv(t, Config{Now: clk.Now, Merchants: []Merchant{
		{MchID: testMchID, Key: testKey, AppIDs: []string{appA, appB}}, other,
	}})
	ctx := context.Background()
	c := e.client(wxpay.SignTypeMD5)
	place := func(outTradeNo string, change func(*wxpay.UnifiedOrderRequest)) string {
		t.Helper()
		r := newOrder(wxpay.TradeTypeAPP, outTradeNo, "http://127.0.0.1:1/n")
		if change != nil {
			change(r)
		}
		resp, err := c.UnifiedOrder(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return resp.PrepayID
	}
	paid := place("E-paid", nil)
	if _, err := e.sim.Pay(ctx, PayOptions{PrepayID: paid}); err != nil {
		t.Fatal(err)
	}
	place("E-closed", nil)
	if err := e.sim.CloseOrder(testMchID, "E-closed"); err != nil {
		t.Fatal(err)
	}
	place("E-expire", func(r *wxpay.UnifiedOrderRequest) { r.TimeExpire = "20240501120500" })
	open := place("E-open", nil)
	shared := place("E-shared", nil)
	oc := &wxpay.Client{MchID: other.MchID, Key: other.Key, Endpoint: e.srv.URL, HTTPClient: e.srv.Client()}
	if _, err := oc.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "E-shared", "http://127.0.0.1:1/n")); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	tests := []struct {
		name string
		ctx  context.Context
		opts PayOptions
		want error
	}{
		{"unknown prepay_id", ctx, PayOptions{PrepayID: "wx20240501120000aaaaaaaaaaaaaaaaaaaa"}, ErrUnknownOrder},
		{"unknown out_trade_no", ctx, PayOptions{OutTradeNo: "nope"}, ErrUnknownOrder},
		{"unknown for this merchant", ctx, PayOptions{OutTradeNo: "E-open", MchID: other.MchID}, ErrUnknownOrder},
		{"no order named", ctx, PayOptions{}, ErrInvalidPayOptions},
		{"prepay_id of another order", ctx, PayOptions{PrepayID: open, OutTradeNo: "E-paid"}, ErrInvalidPayOptions},
		{"out_trade_no of two merchants", ctx, PayOptions{OutTradeNo: "E-shared"}, ErrInvalidPayOptions},
		{"extra sets sign", ctx, PayOptions{PrepayID: open, Extra: params("sign", "X")}, ErrInvalidPayOptions},
		{"extra bad name", ctx, PayOptions{PrepayID: open, Extra: params("a b", "X")}, ErrInvalidPayOptions},
		{"negative total_fee", ctx, PayOptions{PrepayID: open, TotalFee: -1}, ErrInvalidPayOptions},
		{"already paid", ctx, PayOptions{PrepayID: paid}, ErrOrderPaid},
		{"closed", ctx, PayOptions{OutTradeNo: "E-closed", MchID: testMchID}, ErrOrderClosed},
		{"cancelled context", cancelled, PayOptions{PrepayID: open}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.sim.Pay(tc.ctx, tc.opts)
			if !errors.Is(err, tc.want) || p != nil {
				t.Errorf("Pay = %+v, %v; want %v", p, err, tc.want)
			}
		})
	}
	if o, _ := e.sim.Order(testMchID, "E-open"); o.State != StateNotPay || o.TransactionID != "" {
		t.Errorf("failed Pay calls changed the order: %+v", o)
	}

	// The shared number is payable once the merchant is named.
	if p, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "E-shared", MchID: other.MchID}); err != nil || p.MchID != other.MchID {
		t.Errorf("Pay with mch_id = %+v, %v", p, err)
	}
	if o, _ := e.sim.Order(testMchID, "E-shared"); o.State != StateNotPay || o.PrepayID != shared {
		t.Errorf("the other merchant's order changed: %+v", o)
	}

	// time_expire passes, then the prepay_id's 2 hours.
	clk.Advance(5 * time.Minute)
	if _, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "E-expire"}); !errors.Is(err, ErrOrderExpired) {
		t.Errorf("after time_expire: %v, want ErrOrderExpired", err)
	}
	if _, err := e.sim.Pay(ctx, PayOptions{PrepayID: open, Fail: true}); err != nil {
		t.Errorf("before 2 hours: %v", err)
	}
	clk.Advance(PrepayIDLifetime)
	if _, err := e.sim.Pay(ctx, PayOptions{PrepayID: open}); !errors.Is(err, ErrOrderExpired) {
		t.Errorf("after 2 hours: %v, want ErrOrderExpired", err)
	}
}

func TestPayFailThenSucceed(t *testing.T) {
	ns := newNotifyServer(t, nil)
	e := newEnv(t, Config{})
	ctx := context.Background()
	resp, err := e.client(wxpay.SignTypeMD5).UnifiedOrder(ctx, newOrder(wxpay.TradeTypeJSAPI, "PF1", ns.URL()))
	if err != nil {
		t.Fatal(err)
	}
	failed, err := e.sim.Pay(ctx, PayOptions{PrepayID: resp.PrepayID, Fail: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failure notification", func() bool { return ns.count() == 1 })
	n, err := wxpay.VerifyNotification(ns.received()[0].body, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if n.Succeeded() || n.Get("result_code") != "FAIL" || n.Get("err_code") == "" || n.Get("err_code_des") == "" || n.Get("return_code") != "SUCCESS" {
		t.Errorf("failure notification = %v", n.Params.Map())
	}
	if o, _ := e.sim.Order(testMchID, "PF1"); o.State != StatePayError {
		t.Errorf("state = %s, want PAYERROR", o.State)
	}
	// The user tries again and pays.
	ok, err := e.sim.Pay(ctx, PayOptions{PrepayID: resp.PrepayID})
	if err != nil {
		t.Fatalf("paying after a failure: %v", err)
	}
	if ok.TransactionID == failed.TransactionID {
		t.Error("the two payments share a transaction_id")
	}
	waitFor(t, "the success notification", func() bool { return ns.count() == 2 })
	n, err = wxpay.VerifyNotification(ns.received()[1].body, testKey)
	if err != nil || !n.Succeeded() || n.TransactionID() != ok.TransactionID {
		t.Errorf("success notification: %v, %v", n, err)
	}
	if o, _ := e.sim.Order(testMchID, "PF1"); o.State != StateSuccess {
		t.Errorf("state = %s, want SUCCESS", o.State)
	}
}

func TestPayTotalFeeOverride(t *testing.T) {
	ns := newNotifyServer(t, nil)
	e := newEnv(t, Config{})
	ctx := context.Background()
	if _, err := e.client(wxpay.SignTypeMD5).UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "TF1", ns.URL())); err != nil {
		t.Fatal(err)
	}
	p, err := e.sim.Pay(ctx, PayOptions{OutTradeNo: "TF1", TotalFee: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p.TotalFee != 1 {
		t.Errorf("payment total_fee = %d", p.TotalFee)
	}
	waitFor(t, "the notification", func() bool { return ns.count() == 1 })
	n, err := wxpay.VerifyNotification(ns.received()[0].body, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if fee, err := n.TotalFee(); err != nil || fee != 1 || n.Get("cash_fee") != "1" {
		t.Errorf("total_fee %d (%v), cash_fee %q; want 1", fee, err, n.Get("cash_fee"))
	}
	if o, _ := e.sim.Order(testMchID, "TF1"); o.TotalFee != 888 {
		t.Errorf("order total_fee = %d, want 888", o.TotalFee)
	}
}

func TestControlRoutes(t *testing.T) {
	ns := newNotifyServer(t, nil)
	e := newEnv(t, Config{})
	ctx := context.Background()
	c := e.client(wxpay.SignTypeMD5)
	resp, err := c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeJSAPI, "CR1", ns.URL()))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("pay", func(t *testing.T) {
		status, body := e.post(t, "/sim/pay", "application/json", []byte(`{"out_trade_no":"CR1","mch_id":"10000100","extra":{"b_field":"2","a_field":"1"}}`))
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if p["mch_id"] != testMchID || p["appid"] != appA || p["out_trade_no"] != "CR1" || p["total_fee"] != 888.0 ||
			!transactionIDPattern.MatchString(fmt.Sprint(p["transaction_id"])) {
			t.Errorf("payment = %s", body)
		}
		waitFor(t, "the notification", func() bool { return ns.count() == 1 })
		n, err := wxpay.VerifyNotification(ns.received()[0].body, testKey)
		if err != nil || n.Get("a_field") != "1" || n.Get("b_field") != "2" || n.TransactionID() != p["transaction_id"] {
			t.Errorf("notification %v, %v", n, err)
		}
	})

	t.Run("pay errors", func(t *testing.T) {
		tests := []struct {
			name, body string
			status     int
		}{
			{"already paid", `{"prepay_id":"` + resp.PrepayID + `"}`, http.StatusConflict},
			{"unknown", `{"out_trade_no":"nope"}`, http.StatusNotFound},
			{"nothing named", `{}`, http.StatusBadRequest},
			{"unknown field", `{"out_trade_no":"CR1","amount":1}`, http.StatusBadRequest},
			{"not JSON", `out_trade_no=CR1`, http.StatusBadRequest},
			{"two values", `{"out_trade_no":"CR1"}{}`, http.StatusBadRequest},
		}
		for _, tc := range tests {
			status, body := e.post(t, "/sim/pay", "application/json", []byte(tc.body))
			var m map[string]string
			if status != tc.status || json.Unmarshal(body, &m) != nil || m["error"] == "" {
				t.Errorf("%s: %d %s, want %d with an error", tc.name, status, body, tc.status)
			}
		}
		r, body := e.get(t, "/sim/pay")
		if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "POST" {
			t.Errorf("GET /sim/pay: %d %s", r.StatusCode, body)
		}
	})

	t.Run("faults", func(t *testing.T) {
		status, body := e.post(t, "/sim/faults", "application/json", []byte(`{"api":"unifiedorder","count":1,"err_code":"SYSTEMERROR"}`))
		if status != http.StatusNoContent {
			t.Fatalf("status %d: %s", status, body)
		}
		_, err := c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "CR2", ns.URL()))
		if ae := apiError(t, err); ae.ErrCode != "SYSTEMERROR" {
			t.Errorf("err_code = %s", ae.ErrCode)
		}

		status, body = e.post(t, "/sim/faults", "application/json", []byte(`{"api":"unifiedorder","delay":"10s"}`))
		if status != http.StatusNoContent {
			t.Fatalf("status %d: %s", status, body)
		}
		slow := e.client(wxpay.SignTypeMD5)
		slow.Timeout = 100 * time.Millisecond
		if _, err := slow.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "CR2", ns.URL())); !wxpay.IsTimeout(err) {
			t.Errorf("after a delay fault: %v, want a timeout", err)
		}

		for _, bad := range []string{
			`{"api":"micropay","err_code":"SYSTEMERROR"}`,
			`{"api":"unifiedorder"}`,
			`{"api":"unifiedorder","delay":"soon"}`,
			`{"api":"unifiedorder","delay":"-1s"}`,
			`{"api":"unifiedorder","count":-1,"err_code":"SYSTEMERROR"}`,
			`{"api":"unifiedorder","errcode":"SYSTEMERROR"}`,
		} {
			if status, body := e.post(t, "/sim/faults", "application/json", []byte(bad)); status != http.StatusBadRequest {
				t.Errorf("%s: %d %s, want 400", bad, status, body)
			}
		}
		if _, err := c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "CR3", ns.URL())); err != nil {
			t.Errorf("refused faults were queued: %v", err)
		}
	})

	t.Run("notifications", func(t *testing.T) {
		waitFor(t, "the acknowledgement", func() bool { return e.sim.Notifications()[0].Acknowledged })
		r, body := e.get(t, "/sim/notifications")
		if r.StatusCode != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%d %s", r.StatusCode, body)
		}
		var recs []struct {
			MchID      string `json:"mch_id"`
			OutTradeNo string `json:"out_trade_no"`
			Body       string `json:"body"`
			Attempts   []struct {
				StatusCode int    `json:"status_code"`
				Body       string `json:"body"`
				Acked      bool   `json:"acked"`
			} `json:"attempts"`
			Acknowledged bool `json:"acknowledged"`
			GaveUp       bool `json:"gave_up"`
		}
		if err := json.Unmarshal(body, &recs); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if len(recs) != 1 || recs[0].Body != string(ns.received()[0].body) || recs[0].OutTradeNo != "CR1" ||
			!recs[0].Acknowledged || len(recs[0].Attempts) != 1 || !recs[0].Attempts[0].Acked || recs[0].Attempts[0].StatusCode != 200 {
			t.Errorf("notifications = %s", body)
		}
	})

	t.Run("orders", func(t *testing.T) {
		r, body := e.get(t, "/sim/orders")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", r.StatusCode, body)
		}
		var orders []map[string]any
		if err := json.Unmarshal(body, &orders); err != nil {
			t.Fatal(err)
		}
		// CR2 was placed by the delayed call, whose answer was lost.
		if len(orders) != 3 {
			t.Fatalf("orders = %s", body)
		}
		o := orders[0]
		if o["out_trade_no"] != "CR1" || o["state"] != StateSuccess || o["prepay_id"] != resp.PrepayID || o["total_fee"] != 888.0 ||
			o["sign_type"] != "MD5" || o["trade_type"] != "JSAPI" || o["notify_url"] != ns.URL() {
			t.Errorf("order = %v", o)
		}
		for _, hidden := range []string{"params", "Params"} {
			if _, ok := o[hidden]; ok {
				t.Errorf("orders list the request params: %s", body)
			}
		}
		for i, want := range []string{"CR2", "CR3"} {
			if orders[i+1]["out_trade_no"] != want || orders[i+1]["state"] != StateNotPay {
				t.Errorf("order %d = %v, want %s NOTPAY", i+2, orders[i+1], want)
			}
		}
	})

	t.Run("unknown paths", func(t *testing.T) {
		for _, p := range []string{"/", "/pay/micropay", "/pay/unifiedorder/", "/sim", "/sim/pay/x", "/pay/refund", "/secapi/pay/reverse"} {
			r, body := e.get(t, p)
			if r.StatusCode != http.StatusNotFound || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("GET %s: %d %q %s", p, r.StatusCode, r.Header.Get("Content-Type"), body)
			}
		}
	})
}

func TestAddMerchant(t *testing.T) {
	e := newEnv(t, Config{Merchants: []Merchant{}})
	ctx := context.Background()
	c := e.client(wxpay.SignTypeMD5)
	_, err := c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "AM1", "https://example.com/n"))
	if ae := apiError(t, err); ae.ReturnMsg != MsgUnknownMchID {
		t.Fatalf("before AddMerchant: %+v", ae)
	}
	appIDs := []string{appA}
	e.sim.AddMerchant(Merchant{MchID: testMchID, Key: testKey, AppIDs: appIDs})
	appIDs[0] = "wx-changed-by-caller" // the simulator keeps its own copy
	if _, err := c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "AM1", "https://example.com/n")); err != nil {
		t.Fatalf("after AddMerchant: %v", err)
	}
	// Replacing the merchant changes its key and app ids.
	newKey := wxpay.APIKey("8934e7d15453e97507ef794cf7b0519d")
	e.sim.AddMerchant(Merchant{MchID: testMchID, Key: newKey, AppIDs: []string{appB}})
	_, err = c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "AM2", "https://example.com/n"))
	if ae := apiError(t, err); ae.ReturnMsg != MsgInvalidSign {
		t.Errorf("old key: %+v", ae)
	}
	c.Key = newKey
	_, err = c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeAPP, "AM2", "https://example.com/n"))
	if ae := apiError(t, err); ae.ErrCode != "APPID_MCHID_NOT_MATCH" {
		t.Errorf("old app id: %+v", ae)
	}
	r := newOrder(wxpay.TradeTypeAPP, "AM2", "https://example.com/n")
	r.AppID = appB
	if _, err := c.UnifiedOrder(ctx, r); err != nil {
		t.Errorf("new key and app id: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	ns := newNotifyServer(t, nil)
	e := newEnv(t, Config{TimeScale: 0.001, Logf: func(string, ...any) {}})
	ctx := context.Background()
	const workers, perWorker = 8, 6
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		prepays  = map[string]bool{}
		failures []error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client(wxpay.SignTypeHMACSHA256)
			for i := range perWorker {
				otn := fmt.Sprintf("CC%d-%d", w, i)
				resp, err := c.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeJSAPI, otn, ns.URL()))
				if err == nil {
					_, err = e.sim.Pay(ctx, PayOptions{PrepayID: resp.PrepayID, Duplicate: i%2 == 0})
				}
				_ = e.sim.Notifications()
				_ = e.sim.Orders()
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					prepays[resp.PrepayID] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) != 0 {
		t.Fatalf("failures: %v", failures)
	}
	if len(prepays) != workers*perWorker {
		t.Errorf("%d distinct prepay_ids, want %d", len(prepays), workers*perWorker)
	}
	want := workers * (perWorker + perWorker/2)
	waitFor(t, "every acknowledgement", func() bool {
		recs := e.sim.Notifications()
		for _, r := range recs {
			if !r.Acknowledged {
				return false
			}
		}
		return len(recs) == want
	})
	txIDs := map[string]bool{}
	for _, o := range e.sim.Orders() {
		if o.State != StateSuccess || txIDs[o.TransactionID] {
			t.Errorf("order %s: state %s, transaction_id %s", o.OutTradeNo, o.State, o.TransactionID)
		}
		txIDs[o.TransactionID] = true
	}
	if ns.count() != want {
		t.Errorf("%d deliveries, want %d", ns.count(), want)
	}
}

func TestRetryScheduleIsACopy(t *testing.T) {
	s := RetrySchedule()
	s[0] = time.Hour
	if got := RetrySchedule(); got[0] != 15*time.Second || len(got) != 15 {
		t.Errorf("RetrySchedule() = %v after a caller changed its copy", got)
	}
}
