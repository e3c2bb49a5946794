package caddymodule_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// hmacHex is the event signature computed here with crypto/hmac directly,
// independently of the event package under test.
func hmacHex(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// checkEvent verifies a delivery byte for byte against its HMAC and returns
// the decoded event.
func checkEvent(t *testing.T, r received) map[string]any {
	t.Helper()
	ts := r.Header.Get("Wxpay-Timestamp")
	if want := hmacHex(testSecret, ts, r.Body); r.Header.Get("Wxpay-Signature") != want {
		t.Fatalf("Wxpay-Signature = %q, want %q", r.Header.Get("Wxpay-Signature"), want)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("Wxpay-Timestamp %q is not now", ts)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	var ev map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("event is not JSON: %v: %s", err, r.Body)
	}
	if ev["id"] != r.Header.Get("Wxpay-Event-Id") || !strings.HasPrefix(r.Header.Get("Wxpay-Event-Id"), "evt_") {
		t.Fatalf("event id %v does not match header %q", ev["id"], r.Header.Get("Wxpay-Event-Id"))
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(ev["created"])); err != nil {
		t.Fatalf("created %v is not RFC 3339", ev["created"])
	}
	return ev
}

func TestWholeLoopEveryTradeType(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	tests := []struct {
		merchantPath string
		mchID        string
		key          wxpay.APIKey
		signType     wxpay.SignType
		order        map[string]any
	}{
		{"/wxpay", testMchID, testKey, wxpay.SignTypeMD5, map[string]any{"trade_type": "JSAPI", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "attach": "中文 attach ]]> &"}},
		{"/wxpay", testMchID, testKey, wxpay.SignTypeMD5, map[string]any{"trade_type": "APP", "app_id": testAppID2}},
		{"/wxpay", testMchID, testKey, wxpay.SignTypeMD5, map[string]any{"trade_type": "NATIVE", "product_id": "sku-42"}},
		{"/wxpay", testMchID, testKey, wxpay.SignTypeMD5, map[string]any{"trade_type": "MWEB", "scene_info": `{"h5_info":{"type":"Wap","wap_url":"https://shop.example.com","wap_name":"shop"}}`}},
		{"/hmac", testHMACMch, testHMACKey, wxpay.SignTypeHMACSHA256, map[string]any{"trade_type": "JSAPI", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}},
		{"/hmac", testHMACMch, testHMACKey, wxpay.SignTypeHMACSHA256, map[string]any{"trade_type": "APP"}},
	}
	for i, tt := range tests {
		name := fmt.Sprintf("%s-%s", tt.signType, tt.order["trade_type"])
		t.Run(name, func(t *testing.T) {
			outTradeNo := fmt.Sprintf("loop%d%d", i, time.Now().UnixNano())
			order := map[string]any{"out_trade_no": outTradeNo, "total_fee": 101 + i, "body": "测试商品-" + name}
			for k, v := range tt.order {
				order[k] = v
			}
			status, out := g.post(tt.merchantPath+"/orders", testToken, order)
			if status != http.StatusOK {
				t.Fatalf("place order: %d %v", status, out)
			}
			prepayID, _ := out["prepay_id"].(string)
			if !strings.HasPrefix(prepayID, "wx") || out["out_trade_no"] != outTradeNo || out["trade_type"] != tt.order["trade_type"] {
				t.Fatalf("answer: %v", out)
			}
			// What WeChat received: the sign type in HMAC mode, the
			// caller's IP as spbill_create_ip, the merchant's notify_url.
			o, ok := g.sim.Order(tt.mchID, outTradeNo)
			if !ok {
				t.Fatal("the simulator never saw the order")
			}
			if got := o.Params.Get("sign_type"); (tt.signType == wxpay.SignTypeHMACSHA256) != (got == "HMAC-SHA256") {
				t.Errorf("unifiedorder sign_type = %q with merchant sign type %s", got, tt.signType)
			}
			if ip := o.Params.Get("spbill_create_ip"); ip != "127.0.0.1" {
				t.Errorf("spbill_create_ip = %q, want the client's 127.0.0.1", ip)
			}
			if o.Params.Get("attach") != fmt.Sprint(tt.order["attach"]) && tt.order["attach"] != nil {
				t.Errorf("attach arrived as %q", o.Params.Get("attach"))
			}
			checkPayParams(t, tt.order["trade_type"].(string), out, prepayID, tt.mchID, tt.key, tt.signType)

			before := len(g.backend.got())
			if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: prepayID}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the event at the backend", 5*time.Second, func() bool { return len(g.backend.got()) > before })
			ev := checkEvent(t, g.backend.got()[before])
			if ev["type"] != "payment.succeeded" {
				t.Fatalf("type = %v", ev["type"])
			}
			data := ev["data"].(map[string]any)
			if data["total_fee"] != json.Number(strconv.Itoa(101+i)) || data["cash_fee"] != json.Number(strconv.Itoa(101+i)) {
				t.Errorf("amounts are not the JSON integers of the order: total_fee %#v cash_fee %#v", data["total_fee"], data["cash_fee"])
			}
			if _, has := data["sign"]; has {
				t.Error("the event carries WeChat's sign")
			}
			if data["out_trade_no"] != outTradeNo || data["mch_id"] != tt.mchID || data["transaction_id"] == "" {
				t.Errorf("data: %v", data)
			}
			// WeChat was told SUCCESS in exactly its format.
			waitFor(t, "the acknowledgement", 5*time.Second, func() bool { return acked(g.sim, outTradeNo) })
			rec := notificationFor(g.sim, outTradeNo)
			last := rec.Attempts[len(rec.Attempts)-1]
			if last.Body != wxpay.NotifyReplySuccess || last.StatusCode != 200 {
				t.Errorf("WeChat got %d %q", last.StatusCode, last.Body)
			}
		})
	}
}

func notificationFor(sim *wxpaysim.Simulator, outTradeNo string) *wxpaysim.NotificationRecord {
	for _, n := range sim.Notifications() {
		if n.OutTradeNo == outTradeNo {
			return &n
		}
	}
	return nil
}

func acked(sim *wxpaysim.Simulator, outTradeNo string) bool {
	n := notificationFor(sim, outTradeNo)
	return n != nil && n.Acknowledged
}

// checkPayParams checks the client pay parameters against the values the
// client SDKs take, and their signature.
func checkPayParams(t *testing.T, tradeType string, out map[string]any, prepayID, mchID string, key wxpay.APIKey, st wxpay.SignType) {
	t.Helper()
	switch tradeType {
	case "JSAPI", "APP":
	case "NATIVE":
		if u, _ := out["code_url"].(string); !strings.HasPrefix(u, "weixin://wxpay/bizpayurl") {
			t.Errorf("code_url = %v", out["code_url"])
		}
		return
	case "MWEB":
		if u, _ := out["mweb_url"].(string); !strings.HasPrefix(u, "https://wx.tenpay.com/") {
			t.Errorf("mweb_url = %v", out["mweb_url"])
		}
		return
	}
	pp, ok := out["pay_params"].(map[string]any)
	if !ok {
		t.Fatalf("no pay_params: %v", out)
	}
	var p wxpay.Params
	var sign string
	switch tradeType {
	case "JSAPI":
		for _, k := range []string{"appId", "timeStamp", "nonceStr", "package", "signType"} {
			v, ok := pp[k].(string)
			if !ok || v == "" {
				t.Fatalf("pay_params.%s = %#v, want a non-empty string", k, pp[k])
			}
			p = append(p, wxpay.Param{Name: k, Value: v})
		}
		if pp["package"] != "prepay_id="+prepayID || pp["signType"] != string(st) {
			t.Errorf("pay_params: %v", pp)
		}
		sign, _ = pp["paySign"].(string)
	case "APP":
		for _, k := range []string{"appid", "partnerid", "prepayid", "package", "noncestr", "timestamp"} {
			v, ok := pp[k].(string)
			if !ok || v == "" {
				t.Fatalf("pay_params.%s = %#v", k, pp[k])
			}
			p = append(p, wxpay.Param{Name: k, Value: v})
		}
		if pp["package"] != "Sign=WXPay" || pp["prepayid"] != prepayID || pp["partnerid"] != mchID {
			t.Errorf("pay_params: %v", pp)
		}
		sign, _ = pp["sign"].(string)
	}
	if len(pp) != len(p)+1 {
		t.Errorf("pay_params has %d values, want %d: %v", len(pp), len(p)+1, pp)
	}
	p = append(p, wxpay.Param{Name: "sign", Value: sign})
	if err := wxpay.Verify(p, key, st); err != nil {
		t.Errorf("pay_params signature: %v", err)
	}
}

// Without a ledger (ack upstream) every order goes to WeChat, so WeChat's own
// refusals are what the caller sees.
func TestOrderErrors(t *testing.T) {
	g := startGateway(t, gatewayOptions{timeout: "300ms", ack: "upstream"})
	valid := func(no string) map[string]any {
		return map[string]any{"out_trade_no": no, "total_fee": 100, "body": "book", "trade_type": "NATIVE", "product_id": "p1"}
	}
	with := func(k string, v any) map[string]any {
		o := valid("e" + strconv.FormatInt(time.Now().UnixNano(), 10))
		if v == nil {
			delete(o, k)
		} else {
			o[k] = v
		}
		return o
	}
	tests := []struct {
		name   string
		token  string
		body   any
		status int
		code   string
		says   string
	}{
		{"no token", "", valid("t1"), 401, "UNAUTHORIZED", "token"},
		{"wrong token", "test-token-3f9a8b7c6d5e4f3b", valid("t2"), 401, "UNAUTHORIZED", "token"},
		{"negative fee", testToken, with("total_fee", -1), 400, "INVALID_REQUEST", "total_fee"},
		{"zero fee", testToken, with("total_fee", 0), 400, "INVALID_REQUEST", "total_fee"},
		{"fractional fee", testToken, with("total_fee", 1.5), 400, "INVALID_REQUEST", "total_fee"},
		{"string fee", testToken, with("total_fee", "100"), 400, "INVALID_REQUEST", "total_fee"},
		{"missing fee", testToken, with("total_fee", nil), 400, "INVALID_REQUEST", "total_fee"},
		{"missing body", testToken, with("body", nil), 400, "INVALID_REQUEST", "body"},
		{"numeric body", testToken, with("body", 5), 400, "INVALID_REQUEST", "body"},
		{"bad trade type", testToken, with("trade_type", "CASH"), 400, "INVALID_REQUEST", "trade_type"},
		{"jsapi without openid", testToken, with("trade_type", "JSAPI"), 400, "INVALID_REQUEST", "openid"},
		{"foreign app id", testToken, with("app_id", "wx0000000000000000"), 400, "INVALID_REQUEST", "app_id"},
		{"unknown field", testToken, with("total_fees", 100), 400, "INVALID_REQUEST", "total_fees"},
		{"bad out_trade_no", testToken, with("out_trade_no", "has space"), 400, "INVALID_REQUEST", "out_trade_no"},
		{"bad ip", testToken, with("spbill_create_ip", "not-an-ip"), 400, "INVALID_REQUEST", "spbill_create_ip"},
		{"bad time_expire", testToken, with("time_expire", "2026-01-01"), 400, "INVALID_REQUEST", "time_expire"},
		{"not json", testToken, "out_trade_no=1", 400, "INVALID_REQUEST", "JSON"},
		{"too large", testToken, `{"body":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "TOO_LARGE", "larger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(g.sim.Orders())
			status, out := g.post("/wxpay/orders", tt.token, tt.body)
			code, msg := errorOf(out)
			if status != tt.status || code != tt.code || !strings.Contains(msg, tt.says) {
				t.Fatalf("got %d %s %q, want %d %s mentioning %q", status, code, msg, tt.status, tt.code, tt.says)
			}
			if n := len(g.sim.Orders()); n != before {
				t.Fatalf("a refused order reached WeChat")
			}
		})
	}

	t.Run("wrong method", func(t *testing.T) {
		for _, c := range []struct{ method, path, allow string }{
			{http.MethodGet, "/wxpay/orders", "POST"},
			{http.MethodPost, "/wxpay/orders/o1", "GET"},
			{http.MethodHead, "/wxpay/orders/o1", "GET"}, // a GET route does not serve HEAD (it would call WeChat)
			{http.MethodGet, "/wxpay/orders/o1/close", "POST"},
			{http.MethodDelete, "/wxpay/refunds", "POST"},
			{http.MethodHead, "/wxpay/bills/20261201", "GET"},
			{http.MethodGet, "/wxpay/notify", "POST"},
		} {
			req, _ := http.NewRequest(c.method, g.base+c.path, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != c.allow {
				t.Errorf("%s %s = %d, Allow %q; want 405, Allow %s", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), c.allow)
			}
		}
		if n := len(g.sim.Orders()); n != 0 {
			t.Fatalf("a refused method reached WeChat (%d orders)", n)
		}
	})
	t.Run("unknown routes", func(t *testing.T) {
		for _, c := range []struct {
			path   string
			token  bool
			status int
		}{
			{"/wxpay/nope", false, 404}, {"/wxpay", false, 404}, {"/wxpay/orders/a/b/c", true, 404},
			{"/wxpay/orders/a/b/c", false, 401}, {"/wxpay/refunds/r1/x", false, 401},
		} {
			req, _ := http.NewRequest(http.MethodGet, g.base+c.path, nil)
			if c.token {
				req.Header.Set("Authorization", "Bearer "+testToken)
			}
			status, out := doJSON(t, req)
			if code, _ := errorOf(out); status != c.status || (status == 404 && code != "NOT_FOUND") {
				t.Errorf("GET %s = %d %v, want %d", c.path, status, out, c.status)
			}
		}
	})

	// WeChat's own refusals.
	t.Run("ORDERPAID", func(t *testing.T) {
		o := valid("paid1")
		status, out := g.post("/wxpay/orders", testToken, o)
		if status != 200 {
			t.Fatalf("%d %v", status, out)
		}
		if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string)}); err != nil {
			t.Fatal(err)
		}
		status, out = g.post("/wxpay/orders", testToken, o)
		if code, _ := errorOf(out); status != http.StatusConflict || code != "ORDERPAID" {
			t.Fatalf("placing a paid order again: %d %v", status, out)
		}
	})
	t.Run("OUT_TRADE_NO_USED", func(t *testing.T) {
		o := valid("used1")
		if status, out := g.post("/wxpay/orders", testToken, o); status != 200 {
			t.Fatalf("%d %v", status, out)
		}
		o["total_fee"] = 1
		status, out := g.post("/wxpay/orders", testToken, o)
		if code, _ := errorOf(out); status != http.StatusConflict || code != "OUT_TRADE_NO_USED" {
			t.Fatalf("same number, other amount: %d %v", status, out)
		}
	})
	t.Run("SYSTEMERROR", func(t *testing.T) {
		g.sim.FailNext("unifiedorder", 1, "SYSTEMERROR")
		status, out := g.post("/wxpay/orders", testToken, valid("sys1"))
		if code, _ := errorOf(out); status != http.StatusBadGateway || code != "SYSTEMERROR" {
			t.Fatalf("%d %v", status, out)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		g.sim.DelayNext("unifiedorder", 1, 2*time.Second)
		start := time.Now()
		status, out := g.post("/wxpay/orders", testToken, valid("slow1"))
		if code, _ := errorOf(out); status != http.StatusGatewayTimeout || code != "WECHAT_TIMEOUT" {
			t.Fatalf("%d %v", status, out)
		}
		if time.Since(start) > 1500*time.Millisecond {
			t.Fatalf("the 300ms timeout took %s", time.Since(start))
		}
	})
}

func TestNotifyRefusesBadInput(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	good := func(mchID string, extra ...wxpay.Param) wxpay.Params {
		p := wxpay.Params{
			{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"},
			{Name: "appid", Value: testAppID}, {Name: "mch_id", Value: mchID}, {Name: "nonce_str", Value: "n0nce"},
			{Name: "openid", Value: "o1"}, {Name: "trade_type", Value: "JSAPI"}, {Name: "bank_type", Value: "CMC"},
			{Name: "total_fee", Value: "100"}, {Name: "cash_fee", Value: "100"}, {Name: "fee_type", Value: "CNY"},
			{Name: "transaction_id", Value: "4200000000000000000000000001"}, {Name: "out_trade_no", Value: "bad1"},
			{Name: "time_end", Value: "20261127120000"},
		}
		return append(p, extra...)
	}
	valid := signedDoc(t, good(testMchID), testKey, wxpay.SignTypeMD5)
	tamper := bytes.Replace(valid, []byte("<total_fee><![CDATA[100]]>"), []byte("<total_fee><![CDATA[1]]>"), 1)
	if bytes.Equal(tamper, valid) {
		t.Fatal("tampering did not change the document")
	}
	noFee := good(testMchID)
	noFee.Delete("total_fee")
	tests := []struct {
		name   string
		body   []byte
		status int
		path   string // default /wxpay/notify
	}{
		// The hmac merchant pins notify_sign_type HMAC-SHA256.
		{name: "MD5 for a merchant pinned to HMAC-SHA256", body: signedDoc(t, good(testHMACMch), testHMACKey, wxpay.SignTypeMD5), status: 400, path: "/hmac/notify"},
		{name: "MD5 labelled for a merchant pinned to HMAC-SHA256", body: signedDoc(t, good(testHMACMch, wxpay.Param{Name: "sign_type", Value: "MD5"}), testHMACKey, wxpay.SignTypeMD5), status: 400, path: "/hmac/notify"},
		{"malformed", []byte("<xml><return_code>SUCCESS</xml>"), 400, ""},
		{"doctype", []byte(`<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><a>&x;</a></xml>`), 400, ""},
		{"1 MiB", append([]byte("<xml><a><![CDATA["), bytes.Repeat([]byte("x"), 1<<20)...), 413, ""},
		{"wrong sign", tamper, 400, ""},
		{"signed with another key", signedDoc(t, good(testMchID), testHMACKey, wxpay.SignTypeMD5), 400, ""},
		{"another mch_id", signedDoc(t, good("10000999"), testKey, wxpay.SignTypeMD5), 400, ""},
		{"another appid", signedDoc(t, append(good(testMchID)[:2:2], append(wxpay.Params{{Name: "appid", Value: "wx0000000000000000"}}, good(testMchID)[3:]...)...), testKey, wxpay.SignTypeMD5), 400, ""},
		{"missing total_fee", signedDoc(t, noFee, testKey, wxpay.SignTypeMD5), 400, ""},
		{"negative total_fee", signedDoc(t, append(noFee.Clone(), wxpay.Param{Name: "total_fee", Value: "-100"}), testKey, wxpay.SignTypeMD5), 400, ""},
		{"non-integer total_fee", signedDoc(t, append(noFee.Clone(), wxpay.Param{Name: "total_fee", Value: "1.00"}), testKey, wxpay.SignTypeMD5), 400, ""},
		{"no sign", func() []byte { d, _ := wxpay.EncodeXML(good(testMchID)); return d }(), 400, ""},
		{"empty", nil, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(g.backend.got())
			path := cmp.Or(tt.path, "/wxpay/notify")
			resp, err := http.Post(g.base+path, "text/xml", bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			p, err := wxpay.DecodeXML(body)
			if err != nil || p.Get("return_code") != "FAIL" || p.Get("return_msg") == "" {
				t.Errorf("answer %q is not a FAIL with a reason", body)
			}
			if n := len(g.backend.got()); n != before {
				t.Errorf("a refused notification was forwarded")
			}
		})
	}
	// The control: the same document untampered is accepted.
	resp, err := http.Post(g.base+"/wxpay/notify", "text/xml", bytes.NewReader(valid))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != wxpay.NotifyReplySuccess {
		t.Fatalf("valid notification: %d %q", resp.StatusCode, body)
	}
	waitFor(t, "the valid notification's event", 5*time.Second, func() bool { return len(g.backend.got()) >= 1 })
	time.Sleep(100 * time.Millisecond) // a wrongly stored event would be on its way too
	if got := g.backend.got(); len(got) != 1 {
		t.Fatalf("backend got %d events, want 1", len(got))
	}
}

// With `ack upstream`, a backend that is down makes the gateway answer FAIL,
// so WeChat retries on its schedule; once the backend is back the payment
// arrives, with the same event id on every attempt.
func TestAckUpstreamRetriedWhileBackendDown(t *testing.T) {
	g := startGateway(t, gatewayOptions{ack: "upstream"})
	g.backend.setStatus(func(n int) int {
		if n <= 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "down1", "total_fee": 5, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "WeChat's retries to get through", 10*time.Second, func() bool { return acked(g.sim, "down1") })
	got := g.backend.got()
	if len(got) != 4 {
		t.Fatalf("backend saw %d attempts, want 4", len(got))
	}
	for _, r := range got[1:] {
		if r.Header.Get("Wxpay-Event-Id") != got[0].Header.Get("Wxpay-Event-Id") {
			t.Fatalf("event id changed across retries")
		}
	}
	rec := notificationFor(g.sim, "down1")
	if len(rec.Attempts) != 4 {
		t.Fatalf("WeChat made %d attempts, want 4", len(rec.Attempts))
	}
	for _, a := range rec.Attempts[:3] {
		p, err := wxpay.DecodeXML([]byte(a.Body))
		if err != nil || p.Get("return_code") != "FAIL" {
			t.Fatalf("while the backend was down WeChat got %q", a.Body)
		}
	}
}

// The simulator's "send twice" with `ack upstream`: both deliveries carry
// one event id.
func TestAckUpstreamDuplicateOneEventID(t *testing.T) {
	g := startGateway(t, gatewayOptions{ack: "upstream"})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "dup1", "total_fee": 7, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string), Duplicate: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two deliveries", 5*time.Second, func() bool { return len(g.backend.got()) == 2 })
	got := g.backend.got()
	if a, b := got[0].Header.Get("Wxpay-Event-Id"), got[1].Header.Get("Wxpay-Event-Id"); a != b || a == "" {
		t.Fatalf("duplicate notifications carried ids %q and %q", a, b)
	}
}

// A notification with a field WeChat added later still verifies, and the
// field reaches the backend.
func TestNotifyKeepsUnknownFields(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "new1", "total_fee": 9, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	extra := wxpay.Params{{Name: "promotion_detail_new", Value: "新字段"}, {Name: "coupon_fee_0", Value: "3"}, {Name: "coupon_fee", Value: "3"}}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string), Extra: extra}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
	data := checkEvent(t, g.backend.got()[0])["data"].(map[string]any)
	if data["promotion_detail_new"] != "新字段" || data["coupon_fee_0"] != json.Number("3") || data["coupon_fee"] != json.Number("3") {
		t.Fatalf("data: %v", data)
	}
}

// A failed payment is forwarded as payment.failed.
func TestNotifyFailedPayment(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "fail1", "total_fee": 9, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string), Fail: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
	if ev := checkEvent(t, g.backend.got()[0]); ev["type"] != "payment.failed" {
		t.Fatalf("type = %v", ev["type"])
	}
}
