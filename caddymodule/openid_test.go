package caddymodule_test

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
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

// An official account's page gets its payer's openid token through
// WeChat's web authorisation: start → WeChat (the simulator) → callback →
// back to the page with the token, which pays into that openid. A page
// elsewhere, a callback without the browser's cookie or with another
// state, are refused.
func TestWebAuthorisationOpenID(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	page := g.base + "/shop/pay/?item=42"
	resp, err := client.Get(g.base + "/wxpay/oauth/start?redirect=" + url.QueryEscape(page))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	final := resp.Request.URL
	token := final.Query().Get("openid_token")
	if resp.StatusCode != 200 || final.Path != "/shop/pay/" || final.Query().Get("item") != "42" || token == "" {
		t.Fatalf("after the authorisation: %d at %s", resp.StatusCode, final)
	}
	if status, out := g.post("/wxpay/orders", testToken, map[string]any{
		"out_trade_no": "web1", "total_fee": 5, "body": "b", "trade_type": "JSAPI", "openid_token": token}); status != 200 {
		t.Fatalf("order with the token: %d %v", status, out)
	}
	if o, _ := g.sim.Order(testMchID, "web1"); o.Params.Get("openid") != wxpaysim.OpenIDFor(testAppID, wxpaysim.OAuthUser) {
		t.Fatalf("WeChat's order has openid %q", o.Params.Get("openid"))
	}

	noRedirect := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(c *http.Client, path string) int {
		resp, err := c.Get(g.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get(noRedirect, "/wxpay/oauth/start?redirect="+url.QueryEscape("https://evil.example.com/")); s != 400 {
		t.Errorf("a page on another host: %d, want 400", s)
	}
	if s := get(noRedirect, "/wxpay/oauth/start?redirect=/relative"); s != 400 {
		t.Errorf("a relative page: %d, want 400", s)
	}
	if s := get(&http.Client{}, "/wxpay/oauth/callback?code=web.1&state=x"); s != 400 {
		t.Errorf("a callback without the cookie: %d, want 400", s)
	}
	if s := get(noRedirect, "/wxpay/oauth/start?redirect="+url.QueryEscape(page)); s != http.StatusFound {
		t.Fatalf("start: %d", s)
	}
	if s := get(noRedirect, "/wxpay/oauth/callback?code=web.99&state=another"); s != 400 {
		t.Errorf("a callback with another state: %d, want 400", s)
	}
	// The state WeChat is sent is of the characters its docs allow
	// (a-zA-Z0-9, at most 128 bytes), every time.
	for range 40 {
		resp, err := noRedirect.Get(g.base + "/wxpay/oauth/start?redirect=" + url.QueryEscape(page))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		if st := loc.Query().Get("state"); !regexp.MustCompile(`^[a-zA-Z0-9]{1,128}$`).MatchString(st) {
			t.Fatalf("state %q in %s", st, loc)
		}
	}
}
