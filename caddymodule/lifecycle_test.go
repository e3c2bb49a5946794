package caddymodule_test

import (
	"os"
	"path/filepath"

	"bytes"
	"compress/gzip"
	"context"
	"golang.org/x/crypto/bcrypt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

func (g *gateway) get(path string) (int, map[string]any) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	return doJSON(g.t, req)
}

func eventsOfType(g *gateway, t *testing.T, typ string) []map[string]any {
	var out []map[string]any
	for _, r := range g.backend.got() {
		ev := checkEvent(t, r)
		if ev["type"] == typ {
			out = append(out, ev)
		}
	}
	return out
}

// Query an order whose notification was lost: the gateway records and
// forwards the payment itself, and the late notification is a duplicate.
func TestQueryOrderRecoversLostNotification(t *testing.T) {
	g := startGateway(t, gatewayOptions{global: "reconcile off"})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "q1", "total_fee": 88, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	if status, st := g.get("/wxpay/orders/q1"); status != 200 || st["trade_state"] != "NOTPAY" {
		t.Fatalf("unpaid: %d %v", status, st)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string), Lost: true}); err != nil {
		t.Fatal(err)
	}
	status, st := g.get("/wxpay/orders/q1")
	if status != 200 || st["trade_state"] != "SUCCESS" || st["total_fee"] != float64(88) || st["transaction_id"] == "" {
		t.Fatalf("paid: %d %v", status, st)
	}
	waitFor(t, "the recovered payment", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
	ev := checkEvent(t, g.backend.got()[0])
	data := ev["data"].(map[string]any)
	if ev["type"] != "payment.succeeded" || data["transaction_id"] != st["transaction_id"] {
		t.Fatalf("event %v", ev)
	}
	if _, bad := data["trade_state"]; bad {
		t.Error("the event carries orderquery's own fields")
	}
	// Query again, then the late notification: nothing new.
	g.get("/wxpay/orders/q1")
	if err := g.sim.SendNotification(context.Background(), testMchID, "q1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late notification's acknowledgement", 5*time.Second, func() bool { return acked(g.sim, "q1") })
	time.Sleep(200 * time.Millisecond)
	if n := len(g.backend.got()); n != 1 {
		t.Fatalf("backend got %d deliveries, want 1", n)
	}
	if status, out := g.get("/wxpay/orders/nonexistent1"); status != 404 {
		t.Fatalf("unknown order: %d %v", status, out)
	}
}

func TestCloseOrder(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	for _, no := range []string{"c1", "c2"} {
		if status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": no, "total_fee": 5, "body": "b", "trade_type": "APP"}); status != 200 {
			t.Fatalf("%d %v", status, out)
		}
	}
	status, out := g.post("/wxpay/orders/c1/close", testToken, "")
	if status != 200 || out["trade_state"] != "CLOSED" {
		t.Fatalf("close: %d %v", status, out)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{OutTradeNo: "c1", MchID: testMchID}); err == nil {
		t.Fatal("a closed order could be paid")
	}
	if status, st := g.get("/wxpay/orders/c1"); status != 200 || st["trade_state"] != "CLOSED" {
		t.Fatalf("query closed: %d %v", status, st)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{OutTradeNo: "c2", MchID: testMchID}); err != nil {
		t.Fatal(err)
	}
	status, out = g.post("/wxpay/orders/c2/close", testToken, "")
	if code, _ := errorOf(out); status != http.StatusConflict || code != "ORDERPAID" {
		t.Fatalf("close paid: %d %v", status, out)
	}
	status, out = g.post("/wxpay/orders/nope1/close", testToken, "")
	if code, _ := errorOf(out); status != http.StatusNotFound || code != "ORDERNOTEXIST" {
		t.Fatalf("close unknown: %d %v", status, out)
	}
	if status, _ := g.post("/wxpay/orders/c1/close", "", ""); status != 401 {
		t.Fatalf("close without token: %d", status)
	}
	// A closed order cannot be placed again.
	status, out = g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "c1", "total_fee": 5, "body": "b", "trade_type": "APP"})
	if code, _ := errorOf(out); status != http.StatusConflict || code != "ORDERCLOSED" {
		t.Fatalf("placing a closed order: %d %v", status, out)
	}
	// WeChat's rate limit reaches the caller as 429.
	g.sim.FailNext("orderquery", 1, "FREQUENCY_LIMITED")
	if status, out := g.get("/wxpay/orders/c2"); status != http.StatusTooManyRequests {
		t.Fatalf("rate limited: %d %v", status, out)
	}
}

// With close_expired, reconciliation closes an order still unpaid at its
// time_expire.
func TestReconciliationClosesExpired(t *testing.T) {
	g := startGateway(t, gatewayOptions{global: "reconcile {\n\t\t\tdelay 200ms\n\t\t\tclose_expired on\n\t\t}"})
	expire := time.Now().Add(3 * time.Second).In(wxpay.Beijing).Format(wxpay.TimeLayout)
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "exp1", "total_fee": 5, "body": "b", "trade_type": "APP", "time_expire": expire})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	waitFor(t, "the expired order closed at WeChat", 15*time.Second, func() bool {
		o, ok := g.sim.Order(testMchID, "exp1")
		return ok && o.State == wxpaysim.StateClosed
	})
	if len(g.backend.got()) != 0 {
		t.Fatal("closing an order forwarded an event")
	}
}

// A refund over mutual TLS, retried safely, and its encrypted notification
// forwarded as refund.succeeded.
func TestRefundLifecycle(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	g.placeAndPay(t, "r1", 100, wxpaysim.PayOptions{})
	waitFor(t, "the payment event", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })

	refund := map[string]any{"out_trade_no": "r1", "out_refund_no": "rf1", "total_fee": 100, "refund_fee": 40, "refund_desc": "退货"}
	// WeChat's SYSTEMERROR is retried with the same out_refund_no: one refund.
	g.sim.FailNext("refund", 1, "SYSTEMERROR")
	status, out := g.post("/wxpay/refunds", testToken, refund)
	if status != 200 || out["refund_id"] == "" || out["status"] != "PROCESSING" || out["refund_fee"] != float64(40) {
		t.Fatalf("refund: %d %v", status, out)
	}
	status, again := g.post("/wxpay/refunds", testToken, refund)
	if status != 200 || again["refund_id"] != out["refund_id"] {
		t.Fatalf("same out_refund_no again: %d %v, want refund_id %v", status, again, out["refund_id"])
	}
	if n := len(g.sim.Refunds()); n != 1 {
		t.Fatalf("WeChat made %d refunds, want 1", n)
	}
	refund["refund_fee"] = 41
	status, out2 := g.post("/wxpay/refunds", testToken, refund)
	if code, _ := errorOf(out2); status != http.StatusConflict || code != "OUT_REFUND_NO_USED" {
		t.Fatalf("same out_refund_no, other amount: %d %v", status, out2)
	}
	status, out2 = g.post("/wxpay/refunds", testToken, map[string]any{"out_trade_no": "r1", "out_refund_no": "rf2", "total_fee": 100, "refund_fee": 70})
	// WeChat: INVALID_REQUEST "refund_fee大于可退金额".
	if code, msg := errorOf(out2); status != http.StatusConflict || code != "INVALID_REQUEST" || msg != wxpaysim.DesRefundFeeTooHigh {
		t.Fatalf("refunding more than is left: %d %v", status, out2)
	}
	// More than the order's total: refused by the gateway, WeChat not asked.
	status, out2 = g.post("/wxpay/refunds", testToken, map[string]any{"out_trade_no": "r1", "out_refund_no": "rf2", "total_fee": 100, "refund_fee": 101})
	if code, msg := errorOf(out2); status != http.StatusBadRequest || code != "INVALID_REQUEST" || !strings.Contains(msg, "refund_fee") {
		t.Fatalf("refunding more than the total: %d %v", status, out2)
	}

	waitFor(t, "the refund event", 10*time.Second, func() bool { return len(eventsOfType(g, t, "refund.succeeded")) == 1 })
	ev := eventsOfType(g, t, "refund.succeeded")[0]
	data := ev["data"].(map[string]any)
	if data["out_refund_no"] != "rf1" || data["refund_id"] != out["refund_id"] || data["mch_id"] != testMchID {
		t.Fatalf("refund event data %v", data)
	}
	status, st := g.get("/wxpay/refunds/rf1")
	refunds, _ := st["refunds"].([]any)
	if status != 200 || len(refunds) != 1 || refunds[0].(map[string]any)["refund_status"] != "SUCCESS" {
		t.Fatalf("refund query: %d %v", status, st)
	}
	// The query speaks the events' (API v2's) names.
	if acct := refunds[0].(map[string]any)["refund_recv_accout"]; acct == nil || acct == "" || acct != data["refund_recv_accout"] {
		t.Fatalf("refund query's refund_recv_accout %v, the event's %v", acct, data["refund_recv_accout"])
	}
	if status, out := g.get("/wxpay/refunds/nope"); status != 404 {
		t.Fatalf("unknown refund: %d %v", status, out)
	}
	if status, st := g.get("/wxpay/orders/r1"); status != 200 || st["trade_state"] != "REFUND" {
		t.Fatalf("order after refund: %d %v", status, st)
	}
	// The rest, then one fen more: the order is refunded in full, and
	// WeChat answers ERROR "订单已全额退款".
	if status, out := g.post("/wxpay/refunds", testToken, map[string]any{"out_trade_no": "r1", "out_refund_no": "rf3", "total_fee": 100, "refund_fee": 60}); status != 200 {
		t.Fatalf("refunding what is left: %d %v", status, out)
	}
	status, out2 = g.post("/wxpay/refunds", testToken, map[string]any{"out_trade_no": "r1", "out_refund_no": "rf4", "total_fee": 100, "refund_fee": 1})
	if code, msg := errorOf(out2); status != http.StatusConflict || code != "ERROR" || msg != wxpaysim.DesFullyRefunded {
		t.Fatalf("refunding an order refunded in full: %d %v", status, out2)
	}
	if n := len(g.sim.Refunds()); n != 2 {
		t.Fatalf("WeChat made %d refunds, want 2", n)
	}
}

func TestRefundNeedsClientCertificate(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	status, out := g.post("/hmac/refunds", testToken, map[string]any{"out_trade_no": "x1", "out_refund_no": "rx1", "total_fee": 100, "refund_fee": 1})
	if code, msg := errorOf(out); status != http.StatusNotImplemented || code != "NO_CLIENT_CERT" || !strings.Contains(msg, "client_cert") {
		t.Fatalf("%d %v", status, out)
	}
}

func TestRefundNotifyRefusesBadInput(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	good, err := wxpay.EncryptRefundInfo(wxpay.Params{{Name: "out_refund_no", Value: "z"}}, testKey)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := wxpay.EncryptRefundInfo(wxpay.Params{{Name: "out_refund_no", Value: "z"}, {Name: "refund_id", Value: "1"},
		{Name: "out_trade_no", Value: "o"}, {Name: "refund_status", Value: "SUCCESS"}, {Name: "refund_fee", Value: "1"}, {Name: "total_fee", Value: "1"}}, testHMACKey)
	for name, body := range map[string]string{
		"not xml":      "refund",
		"no req_info":  "<xml><return_code>SUCCESS</return_code><mch_id>10000100</mch_id><appid>wxd930ea5d5a258f4f</appid></xml>",
		"other key":    "<xml><return_code>SUCCESS</return_code><mch_id>10000100</mch_id><appid>wxd930ea5d5a258f4f</appid><req_info>" + otherKey + "</req_info></xml>",
		"fields short": "<xml><return_code>SUCCESS</return_code><mch_id>10000100</mch_id><appid>wxd930ea5d5a258f4f</appid><req_info>" + good + "</req_info></xml>",
	} {
		resp, err := http.Post(g.base+"/wxpay/notify/refund", "text/xml", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if p, err := wxpay.DecodeXML(b); resp.StatusCode != 400 || err != nil || p.Get("return_code") != "FAIL" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(g.backend.got()); n != 0 {
		t.Fatalf("a refused refund notification was forwarded")
	}
}

// Reconciliation finds a payment whose notification was lost, once.
func TestReconciliationRecoversLostNotification(t *testing.T) {
	g := startGateway(t, gatewayOptions{global: "reconcile {\n\t\t\tdelay 200ms\n\t\t}"})
	g.placeAndPay(t, "rec1", 66, wxpaysim.PayOptions{Lost: true})
	waitFor(t, "reconciliation to forward the payment", 10*time.Second, func() bool { return len(g.backend.got()) == 1 })
	ev := checkEvent(t, g.backend.got()[0])
	if ev["type"] != "payment.succeeded" || ev["data"].(map[string]any)["out_trade_no"] != "rec1" {
		t.Fatalf("event %v", ev)
	}
	time.Sleep(600 * time.Millisecond) // further rounds must not forward it again
	if err := g.sim.SendNotification(context.Background(), testMchID, "rec1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late notification's acknowledgement", 5*time.Second, func() bool { return acked(g.sim, "rec1") })
	time.Sleep(200 * time.Millisecond)
	if n := len(g.backend.got()); n != 1 {
		t.Fatalf("backend got %d deliveries, want exactly 1", n)
	}
}

// The day's bill, plain and gzip, on API v2 and APIv3 (where the
// download's SHA-1 is checked against the tradebill answer, on the bill
// decompressed for gzip, as WeChat computes it); on APIv3 a bill altered
// on its way reaches the caller cut short, never as a clean 200.
func TestDownloadBill(t *testing.T) {
	for _, tc := range []struct{ name, v3 string }{{"v2", ""}, {"v3", "public_key"}} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, gatewayOptions{v3: tc.v3})
			status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "bill000001", "total_fee": 123, "body": "b", "trade_type": "APP"})
			if status != 200 {
				t.Fatalf("place: %d %v", status, out)
			}
			// Paid yesterday, 36 hours ago: WeChat makes a day's bill the
			// next morning. (The simulator's clock goes back for the
			// payment only: APIv3 refuses requests signed 36 hours off.)
			g.simAhead.Store(int64(-36 * time.Hour))
			if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string), Lost: true}); err != nil {
				t.Fatal(err)
			}
			g.simAhead.Store(0)
			day := time.Now().Add(-36 * time.Hour).In(wxpay.Beijing).Format("20060102")
			download := func(query string) (*http.Response, []byte, error) {
				req, _ := http.NewRequest(http.MethodGet, g.base+"/wxpay/bills/"+day+query, nil)
				req.Header.Set("Authorization", "Bearer "+testToken)
				req.Header.Set("Accept-Encoding", "identity")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				return resp, body, err
			}
			resp, csv, err := download("")
			if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || !bytes.Contains(csv, []byte("bill000001")) {
				t.Fatalf("bill: %d %s %v\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), err, csv)
			}
			resp, zipped, err := download("?gzip=1")
			if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" {
				t.Fatalf("gzip bill: %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
			}
			zr, err := gzip.NewReader(bytes.NewReader(zipped))
			if err != nil {
				t.Fatalf("gzip bill: %v", err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(plain, csv) {
				t.Fatalf("the gzip bill differs from the plain one (%v)", err)
			}
			if tc.v3 != "" {
				for _, query := range []string{"", "?gzip=1"} {
					g.sim.AlterNextBills(1)
					resp, body, err := download(query)
					if resp.StatusCode != 200 || err == nil {
						t.Fatalf("an altered bill%s: %d, read %d bytes, error %v; want the body cut short", query, resp.StatusCode, len(body), err)
					}
				}
				if _, body, err := download(""); err != nil || !bytes.Equal(body, csv) {
					t.Fatalf("the bill after the altered ones: %v", err)
				}
			}
			if status, out := g.get("/wxpay/bills/20000101"); status != 404 {
				t.Fatalf("a day without a bill: %d %v", status, out)
			}
			if status, _ := g.get("/wxpay/bills/2026-01-01"); status != 400 {
				t.Fatalf("a malformed date: %d", status)
			}
		})
	}
}

// A site's own try_files (a single-page app's, which rewrites every path
// to /index.html) and basic_auth do not shadow the gateway: wxpay is
// ordered before them, so WeChat's notification reaches it and is
// answered, while the site's other paths are still the site's, behind its
// password.
func TestSiteDirectivesDoNotShadowTheGateway(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("<html>spa</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("app-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gatewayOptions{extraSite: "root * " + root + "\n\ttry_files {path} /index.html\n\tbasic_auth {\n\t\tuser " + string(hash) + "\n\t}"})
	g.placeAndPay(t, "spa-order-1", 15, wxpaysim.PayOptions{})
	waitFor(t, "the notification through a site with try_files", 10*time.Second, func() bool { return len(g.backend.got()) == 1 })
	req, _ := http.NewRequest(http.MethodGet, g.base+"/some/app/page", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the app's own path without its password: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req.SetBasicAuth("user", "app-password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "site" { // the harness's site answers "site"
		t.Fatalf("the app's own path: %d %q", resp.StatusCode, body)
	}
}
