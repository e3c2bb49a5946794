package caddymodule_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// A mini program's login code becomes its user's openid token (the app's
// secret stays in the gateway); an order placed with the token pays into
// that openid at WeChat; a refused code, a reused one, a forged or
// foreign token are refused with what is wrong.
func TestMiniProgramOpenID(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	openid := func(code, app string) (int, map[string]any) {
		q := url.Values{"code": {code}}
		if app != "" {
			q.Set("app_id", app)
		}
		resp, err := http.Get(g.base + "/wxpay/openid/miniprogram?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, out := openid("alice.1", "")
	token, _ := out["openid_token"].(string)
	if status != 200 || token == "" || out["app_id"] != testAppID || out["expires_at"] == nil {
		t.Fatalf("openid: %d %v", status, out)
	}
	status, placed := g.post("/wxpay/orders", testToken, map[string]any{
		"out_trade_no": "oid1", "total_fee": 5, "body": "b", "trade_type": "JSAPI", "openid_token": token})
	if status != 200 {
		t.Fatalf("order with the token: %d %v", status, placed)
	}
	o, ok := g.sim.Order(testMchID, "oid1")
	if want := wxpaysim.OpenIDFor(testAppID, "alice"); !ok || o.Params.Get("openid") != want {
		t.Fatalf("WeChat's order has openid %q, want alice's %q", o.Params.Get("openid"), want)
	}

	for _, c := range []struct {
		name, code, app string
		status          int
		errCode         string
	}{
		{"the same code again", "alice.1", "", 400, "INVALID_CODE"},
		{"a code WeChat refuses", "invalid-code", "", 400, "INVALID_CODE"},
		{"no code", "", "", 400, "INVALID_REQUEST"},
		{"an app without a secret", "bob.1", testAppID2, 501, "NO_APP_SECRET"},
		{"an app not the merchant's", "bob.2", "wx0000000000000000", 400, "INVALID_REQUEST"},
	} {
		status, out := openid(c.code, c.app)
		e, _ := out["error"].(map[string]any)
		if status != c.status || e["code"] != c.errCode {
			t.Errorf("%s: %d %v, want %d %s", c.name, status, out, c.status, c.errCode)
		}
	}
	_, bob := openid("bob.3", "")
	bobToken, _ := bob["openid_token"].(string)
	forged := bobToken[:len(bobToken)-2] + "AA"
	for _, c := range []struct {
		name  string
		order map[string]any
	}{
		{"a forged token", map[string]any{"openid_token": forged}},
		{"a token and an openid", map[string]any{"openid_token": bobToken, "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}},
		{"a token of another app", map[string]any{"openid_token": bobToken, "app_id": testAppID2}},
	} {
		body := map[string]any{"out_trade_no": "oid2", "total_fee": 5, "body": "b", "trade_type": "JSAPI"}
		for k, v := range c.order {
			body[k] = v
		}
		if status, out := g.post("/wxpay/orders", testToken, body); status != 400 {
			t.Errorf("%s: %d %v, want 400", c.name, status, out)
		}
	}
}
