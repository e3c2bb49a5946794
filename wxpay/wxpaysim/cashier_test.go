package wxpaysim

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// cashierClient does not follow redirects: the tests look at them.
func cashierClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func cashierDo(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := cashierClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// submit posts the payment sheet's form as a browser does.
func submit(t *testing.T, mweb, redirect, action string) (*http.Response, string) {
	t.Helper()
	u, err := url.Parse(mweb)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"prepay_id": {u.Query().Get("prepay_id")}, "package": {u.Query().Get("package")}, "redirect_url": {redirect}, "action": {action}}
	u.RawQuery = ""
	req, _ := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return cashierDo(t, req)
}

func cashierGet(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return cashierDo(t, req)
}

// The H5 payment sheet: the mweb_url an MWEB order answers opens it when
// CashierURL is set; confirm pays (the merchant is notified) and returns
// the browser to the merchant's redirect_url; cancel returns it with the
// order unpaid; a link the simulator did not issue, an expired one (5
// minutes, WeChat's documented lifetime of mweb_url) and a redirect_url
// that is not an http(s) URL are refused.
func TestCashier(t *testing.T) {
	ns := newNotifyServer(t, nil)
	clock := newClock(t0)
	e := newEnv(t, Config{Now: clock.Now})
	ctx := context.Background()
	place := func(no string) string {
		t.Helper()
		resp, err := e.client(wxpay.SignTypeMD5).UnifiedOrder(ctx, newOrder(wxpay.TradeTypeMWEB, no, ns.URL()))
		if err != nil {
			t.Fatal(err)
		}
		return resp.MWebURL
	}
	if u := place("C0"); !strings.HasPrefix(u, defaultMWebBase+"?prepay_id=") {
		t.Fatalf("without CashierURL, mweb_url = %q, want WeChat's address", u)
	}
	e.sim.SetCashierURL(e.srv.URL + "/sim/cashier")
	mweb := place("C1")
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(e.srv.URL) + `/sim/cashier\?prepay_id=wx[0-9]{14}[0-9a-f]{20}&package=[0-9]{10}$`).MatchString(mweb) {
		t.Fatalf("mweb_url = %q, want the cashier with WeChat's prepay_id and package", mweb)
	}
	const back = "https://shop.example.com/result?out_trade_no=C1"
	resp, page := cashierGet(t, mweb+"&redirect_url="+url.QueryEscape(back))
	if resp.StatusCode != 200 || !strings.Contains(page, "8.88") || !strings.Contains(page, "腾讯充值中心-QQ会员充值") || !strings.Contains(page, `id="confirm"`) {
		t.Fatalf("sheet: %d\n%s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}

	// Cancel: back to the merchant, nothing paid, nothing notified.
	resp, _ = submit(t, mweb, back, "cancel")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != back {
		t.Fatalf("cancel: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if o, _ := e.sim.Order(testMchID, "C1"); o.State != StateNotPay {
		t.Fatalf("after cancel the order is %s", o.State)
	}
	// Pay: back to the merchant, paid, notified.
	resp, _ = submit(t, mweb, back, "pay")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != back {
		t.Fatalf("pay: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if o, _ := e.sim.Order(testMchID, "C1"); o.State != StateSuccess || o.TransactionID == "" {
		t.Fatalf("after pay the order is %+v", o)
	}
	waitFor(t, "the pay notification", func() bool { return ns.count() == 1 })
	if n, err := wxpay.DecodeXML(ns.received()[0].body); err != nil || n.Get("out_trade_no") != "C1" || n.Get("result_code") != "SUCCESS" {
		t.Fatalf("notification: %v %v", n, err)
	}
	// Paying twice is refused; the sheet now says paid.
	if resp, page := submit(t, mweb, back, "pay"); resp.StatusCode != http.StatusConflict || !strings.Contains(page, "ORDERPAID") && !strings.Contains(page, "paid") {
		t.Fatalf("second pay: %d\n%s", resp.StatusCode, page)
	}
	if resp, page := cashierGet(t, mweb); resp.StatusCode != 200 || !strings.Contains(page, `id="done"`) || strings.Contains(page, `id="confirm"`) {
		t.Fatalf("sheet of a paid order: %d\n%s", resp.StatusCode, page)
	}
	// Without redirect_url the sheet says what happened.
	mweb2 := place("C2")
	if resp, page := submit(t, mweb2, "", "pay"); resp.StatusCode != 200 || !strings.Contains(page, "支付成功") {
		t.Fatalf("pay without redirect_url: %d\n%s", resp.StatusCode, page)
	}

	mweb3 := place("C3")
	u3, _ := url.Parse(mweb3)
	prepay3 := u3.Query().Get("prepay_id")
	for _, tc := range []struct {
		name, link string
		status     int
		want       string
	}{
		{"unknown prepay_id", e.srv.URL + "/sim/cashier?prepay_id=wx20240501120000aaaaaaaaaaaaaaaaaaaa&package=1234567890", 404, "no order has this prepay_id"},
		{"wrong package", e.srv.URL + "/sim/cashier?prepay_id=" + prepay3 + "&package=0000000000", 400, "not an mweb_url the simulator issued"},
		{"no package", e.srv.URL + "/sim/cashier?prepay_id=" + prepay3, 400, "not an mweb_url the simulator issued"},
		{"javascript redirect", mweb3 + "&redirect_url=" + url.QueryEscape("javascript:alert(1)"), 400, "redirect_url must be an absolute http(s) URL"},
		{"relative redirect", mweb3 + "&redirect_url=%2Fresult", 400, "redirect_url must be an absolute http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, page := cashierGet(t, tc.link)
			if resp.StatusCode != tc.status || !strings.Contains(page, tc.want) {
				t.Fatalf("%d, want %d with %q\n%s", resp.StatusCode, tc.status, tc.want, page)
			}
		})
	}
	if resp, page := submit(t, mweb3, back, "refund"); resp.StatusCode != 400 || !strings.Contains(page, "action must be pay or cancel") {
		t.Fatalf("unknown action: %d\n%s", resp.StatusCode, page)
	}
	// A JSAPI order's prepay_id opens no sheet.
	jsapi, err := e.client(wxpay.SignTypeMD5).UnifiedOrder(ctx, newOrder(wxpay.TradeTypeJSAPI, "C4", ns.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := cashierGet(t, e.srv.URL+"/sim/cashier?prepay_id="+jsapi.PrepayID+"&package="); resp.StatusCode != 400 {
		t.Fatalf("a JSAPI prepay_id: %d", resp.StatusCode)
	}
	// Five minutes on, the link has expired, for showing and for paying.
	clock.Advance(MWebURLLifetime)
	if resp, page := cashierGet(t, mweb3); resp.StatusCode != http.StatusGone || !strings.Contains(page, "expired") {
		t.Fatalf("expired sheet: %d\n%s", resp.StatusCode, page)
	}
	if resp, _ := submit(t, mweb3, back, "pay"); resp.StatusCode != http.StatusGone {
		t.Fatalf("paying an expired sheet: %d", resp.StatusCode)
	}
	if o, _ := e.sim.Order(testMchID, "C3"); o.State != StateNotPay {
		t.Fatalf("the expired order is %s", o.State)
	}
	// Placed again (the same content), the order gets a new link for the
	// same prepay_id, valid five minutes from now; the old one opens
	// nothing.
	fresh := place("C3")
	if fresh == mweb3 || !strings.Contains(fresh, "prepay_id="+url.QueryEscape(mustQuery(t, mweb3, "prepay_id"))) {
		t.Fatalf("placed again: %s, before %s", fresh, mweb3)
	}
	if resp, _ := cashierGet(t, mweb3); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the link before: %d", resp.StatusCode)
	}
	clock.Advance(MWebURLLifetime - time.Second)
	if resp, page := cashierGet(t, fresh); resp.StatusCode != http.StatusOK {
		t.Fatalf("the new link: %d\n%s", resp.StatusCode, page)
	}
	waitFor(t, "C2's notification", func() bool { return ns.count() >= 2 })
	for _, n := range ns.received()[1:] {
		if p, _ := wxpay.DecodeXML(n.body); p.Get("out_trade_no") != "C2" {
			t.Fatalf("a notification of %s, want C2's only", p.Get("out_trade_no"))
		}
	}
}

// mustQuery is the query parameter name of the URL u.
func mustQuery(t *testing.T, u, name string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil || p.Query().Get(name) == "" {
		t.Fatalf("%s has no %s: %v", u, name, err)
	}
	return p.Query().Get(name)
}
