package caddymodule_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// merchantV3Key is the demo merchant's APIv3 public key, which verifies
// the pay parameters it signs.
func merchantV3Key(t testing.TB) *rsa.PublicKey {
	t.Helper()
	b, err := os.ReadFile("../demo/v3/apiclient_cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wxpayv3.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// The whole loop on APIv3, in each of WeChat's signing modes, through a
// real Caddy: the caller's JSON and the backend's events are the same as
// on v2; WeChat saw v3 calls; the pay parameters are RSA-signed.
func TestV3WholeLoop(t *testing.T) {
	for _, mode := range []string{"public_key", "certificates", "migration"} {
		t.Run(mode, func(t *testing.T) {
			g := startGateway(t, gatewayOptions{v3: mode})
			pub := merchantV3Key(t)
			for i, tt := range []map[string]any{
				{"trade_type": "JSAPI", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "attach": "中文 attach"},
				{"trade_type": "APP", "app_id": testAppID2},
				{"trade_type": "NATIVE", "product_id": "sku-42"},
				{"trade_type": "MWEB", "scene_info": `{"h5_info":{"type":"Wap","wap_url":"https://shop.example.com","wap_name":"shop"}}`},
			} {
				no := fmt.Sprintf("v3%s%d%d", mode[:2], i, time.Now().UnixNano()%1e9)
				order := map[string]any{"out_trade_no": no, "total_fee": 201 + i, "body": "测试商品"}
				for k, v := range tt {
					order[k] = v
				}
				status, out := g.post("/wxpay/orders", testToken, order)
				if status != http.StatusOK {
					t.Fatalf("%s: place: %d %v", tt["trade_type"], status, out)
				}
				o, ok := g.sim.Order(testMchID, no)
				if !ok || o.APIVersion != 3 || o.TotalFee != int64(201+i) {
					t.Fatalf("%s: WeChat's order: %+v, %v", tt["trade_type"], o, ok)
				}
				checkV3PayParams(t, tt["trade_type"].(string), out, pub)
				before := len(g.backend.got())
				pay, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{OutTradeNo: no, MchID: testMchID})
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the event at the backend", 5*time.Second, func() bool { return len(g.backend.got()) > before })
				ev := checkEvent(t, g.backend.got()[before])
				if ev["type"] != "payment.succeeded" || ev["id"] != event.PaymentID(testMchID, pay.TransactionID, no) || ev["order_checked"] != true {
					t.Fatalf("event %v", ev)
				}
				data := ev["data"].(map[string]any)
				if data["total_fee"] != json.Number(fmt.Sprint(201+i)) || data["out_trade_no"] != no || data["mch_id"] != testMchID ||
					data["transaction_id"] != pay.TransactionID || data["trade_type"] != tt["trade_type"] || data["result_code"] != "SUCCESS" {
					t.Errorf("%s: data in v2 names: %v", tt["trade_type"], data)
				}
				if w, ok := data["wechat"].(map[string]any); !ok || w["transaction_id"] != pay.TransactionID {
					t.Errorf("%s: data.wechat: %v", tt["trade_type"], data["wechat"])
				}
				waitFor(t, "the acknowledgement", 5*time.Second, func() bool { return acked(g.sim, no) })
				rec := notificationFor(g.sim, no)
				if last := rec.Attempts[len(rec.Attempts)-1]; last.StatusCode != http.StatusNoContent || rec.APIVersion != 3 {
					t.Errorf("WeChat got %d (API v%d)", last.StatusCode, rec.APIVersion)
				}
			}
		})
	}
}

// checkV3PayParams checks APIv3's client pay parameters and their RSA
// signature, made with the merchant's key.
func checkV3PayParams(t *testing.T, tradeType string, out map[string]any, pub *rsa.PublicKey) {
	t.Helper()
	pp, _ := out["pay_params"].(map[string]any)
	switch tradeType {
	case "JSAPI":
		msg := wxpayv3.Message(fmt.Sprint(pp["appId"]), fmt.Sprint(pp["timeStamp"]), fmt.Sprint(pp["nonceStr"]), fmt.Sprint(pp["package"]))
		if pp["signType"] != "RSA" || pp["package"] != "prepay_id="+fmt.Sprint(out["prepay_id"]) {
			t.Errorf("JSAPI pay_params %v", pp)
		}
		if err := wxpayv3.VerifySHA256WithRSA(pub, msg, fmt.Sprint(pp["paySign"])); err != nil {
			t.Errorf("JSAPI paySign: %v", err)
		}
	case "APP":
		msg := wxpayv3.Message(fmt.Sprint(pp["appid"]), fmt.Sprint(pp["timestamp"]), fmt.Sprint(pp["noncestr"]), fmt.Sprint(pp["prepayid"]))
		if pp["package"] != "Sign=WXPay" || pp["partnerid"] != testMchID || pp["appid"] != testAppID2 {
			t.Errorf("APP pay_params %v", pp)
		}
		if err := wxpayv3.VerifySHA256WithRSA(pub, msg, fmt.Sprint(pp["sign"])); err != nil {
			t.Errorf("APP sign: %v", err)
		}
	case "NATIVE":
		if u, _ := out["code_url"].(string); !strings.HasPrefix(u, "weixin://") || pp != nil {
			t.Errorf("NATIVE answer %v", out)
		}
	case "MWEB":
		if u, _ := out["mweb_url"].(string); !strings.HasPrefix(u, "https://") || pp != nil {
			t.Errorf("MWEB answer %v", out)
		}
	}
}

// The order API's other routes on APIv3 answer the JSON they answer on
// v2: query (a lost payment recovered), close, refunds and their
// notification, refund query, the day's bill; in each of WeChat's
// signing modes.
func TestV3Routes(t *testing.T) {
	for _, mode := range []string{"public_key", "certificates", "migration"} {
		t.Run(mode, func(t *testing.T) { testV3Routes(t, mode) })
	}
}

func testV3Routes(t *testing.T, mode string) {
	g := startGateway(t, gatewayOptions{v3: mode, global: "reconcile off"})
	ctx := context.Background()
	place := func(no string, fee int) {
		t.Helper()
		if status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": no, "total_fee": fee, "body": "b", "trade_type": "APP"}); status != 200 {
			t.Fatalf("place %s: %d %v", no, status, out)
		}
	}
	place("v3q0001", 88)
	if status, st := g.get("/wxpay/orders/v3q0001"); status != 200 || st["trade_state"] != "NOTPAY" {
		t.Fatalf("unpaid: %d %v", status, st)
	}
	pay, err := g.sim.Pay(ctx, wxpaysim.PayOptions{OutTradeNo: "v3q0001", MchID: testMchID, Lost: true})
	if err != nil {
		t.Fatal(err)
	}
	status, st := g.get("/wxpay/orders/v3q0001")
	if status != 200 || st["trade_state"] != "SUCCESS" || st["total_fee"] != float64(88) || st["transaction_id"] != pay.TransactionID ||
		len(fmt.Sprint(st["time_end"])) != 14 {
		t.Fatalf("paid: %d %v", status, st)
	}
	waitFor(t, "the recovered payment", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
	if ev := checkEvent(t, g.backend.got()[0]); ev["id"] != event.PaymentID(testMchID, pay.TransactionID, "v3q0001") {
		t.Fatalf("recovered payment's event %v", ev)
	}
	if status, out := g.get("/wxpay/orders/v3nope01"); status != http.StatusNotFound {
		t.Fatalf("unknown order: %d %v", status, out)
	}

	place("v3c0001", 5)
	if status, out := g.post("/wxpay/orders/v3c0001/close", testToken, ""); status != 200 || out["trade_state"] != "CLOSED" {
		t.Fatalf("close: %d %v", status, out)
	}
	if status, out := g.post("/wxpay/orders/v3q0001/close", testToken, ""); status != http.StatusConflict {
		t.Fatalf("close paid: %d %v", status, out)
	}

	refund := map[string]any{"out_trade_no": "v3q0001", "out_refund_no": "v3rf01", "total_fee": 88, "refund_fee": 40, "refund_desc": "退货"}
	status, out := g.post("/wxpay/refunds", testToken, refund)
	if status != 200 || out["refund_id"] == "" || out["status"] != "PROCESSING" || out["refund_fee"] != float64(40) {
		t.Fatalf("refund: %d %v", status, out)
	}
	if status, again := g.post("/wxpay/refunds", testToken, refund); status != 200 || again["refund_id"] != out["refund_id"] {
		t.Fatalf("the same refund again: %d %v", status, again)
	}
	status, more := g.post("/wxpay/refunds", testToken, map[string]any{"out_trade_no": "v3q0001", "out_refund_no": "v3rf02", "total_fee": 88, "refund_fee": 60})
	if status != http.StatusConflict {
		t.Fatalf("refunding more than is left: %d %v", status, more)
	}
	status, more = g.post("/wxpay/refunds", testToken, map[string]any{"out_trade_no": "v3nope01", "out_refund_no": "v3rfnope", "total_fee": 88, "refund_fee": 1})
	if code, _ := more["error"].(map[string]any)["code"].(string); status != http.StatusNotFound || code != "ORDERNOTEXIST" {
		t.Fatalf("refunding an order WeChat does not know: %d %v", status, more)
	}
	waitFor(t, "the refund event", 10*time.Second, func() bool { return len(eventsOfType(g, t, "refund.succeeded")) == 1 })
	data := eventsOfType(g, t, "refund.succeeded")[0]["data"].(map[string]any)
	if data["out_refund_no"] != "v3rf01" || data["refund_id"] != out["refund_id"] || data["refund_fee"] != json.Number("40") ||
		data["refund_status"] != "SUCCESS" || data["mch_id"] != testMchID || data["wechat"] == nil {
		t.Fatalf("refund event data %v", data)
	}
	// The settlement amounts, which APIv3's notification lacks, are the
	// refund query's (the simulator's: no coupon, the amounts themselves).
	if data["settlement_refund_fee"] != json.Number("40") || data["settlement_total_fee"] != json.Number("88") {
		t.Fatalf("refund event's settlement amounts %v / %v", data["settlement_refund_fee"], data["settlement_total_fee"])
	}
	status, rq := g.get("/wxpay/refunds/v3rf01")
	refunds, _ := rq["refunds"].([]any)
	if status != 200 || len(refunds) != 1 || refunds[0].(map[string]any)["refund_status"] != "SUCCESS" {
		t.Fatalf("refund query: %d %v", status, rq)
	}
	// The query speaks the events' (API v2's) names.
	if acct := refunds[0].(map[string]any)["refund_recv_accout"]; acct == nil || acct == "" || acct != data["refund_recv_accout"] {
		t.Fatalf("refund query's refund_recv_accout %v, the event's %v", acct, data["refund_recv_accout"])
	}
	if status, out := g.get("/wxpay/refunds/v3nope01"); status != http.StatusNotFound {
		t.Fatalf("unknown refund: %d %v", status, out)
	}
	// Refunds WeChat ends otherwise: closed (REFUND.CLOSED: the amount is
	// refundable again), then abnormal (REFUND.ABNORMAL), each reaching the
	// backend under v2's names with WeChat's resource under data.wechat.
	for _, end := range []struct{ sim, no, event, v2, v3 string }{
		{wxpaysim.RefundStatusClosed, "v3rf03", "refund.closed", "REFUNDCLOSE", "CLOSED"},
		{wxpaysim.RefundStatusChange, "v3rf04", "refund.changed", "CHANGE", "ABNORMAL"},
	} {
		if err := g.sim.EndNextRefunds(1, end.sim); err != nil {
			t.Fatal(err)
		}
		if status, out := g.post("/wxpay/refunds", testToken, map[string]any{"out_trade_no": "v3q0001", "out_refund_no": end.no, "total_fee": 88, "refund_fee": 48}); status != 200 {
			t.Fatalf("refund %s: %d %v", end.no, status, out)
		}
		waitFor(t, "the "+end.event+" event", 10*time.Second, func() bool { return len(eventsOfType(g, t, end.event)) == 1 })
		data := eventsOfType(g, t, end.event)[0]["data"].(map[string]any)
		wechat, _ := data["wechat"].(map[string]any)
		if data["out_refund_no"] != end.no || data["refund_status"] != end.v2 || wechat["refund_status"] != end.v3 {
			t.Fatalf("%s event data %v", end.event, data)
		}
	}

	// A bill is ready the next morning, and APIv3's calls must carry a
	// timestamp within 5 minutes of WeChat's clock: pay an order 36 hours
	// ago (in the simulator's time), then ask for that day's bill now.
	place("v3b0001", 123)
	g.simAhead.Store(int64(-36 * time.Hour))
	if _, err := g.sim.Pay(ctx, wxpaysim.PayOptions{OutTradeNo: "v3b0001", MchID: testMchID, Lost: true}); err != nil {
		t.Fatal(err)
	}
	g.simAhead.Store(0)
	day := time.Now().Add(-36 * time.Hour).In(time.FixedZone("CST", 8*3600)).Format("20060102")
	req, _ := http.NewRequest(http.MethodGet, g.base+"/wxpay/bills/"+day, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bill, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(bill), "v3b0001") {
		t.Fatalf("bill: %d %s", resp.StatusCode, bill)
	}
}

// A merchant switched from v2 to v3 by reloading its configuration: an
// order placed and paid under v2, queried under v3, is one event; a v2
// notification still arriving for it is taken (the merchant kept api_key)
// and is a duplicate.
func TestV3SwitchFromV2(t *testing.T) {
	g := startGateway(t, gatewayOptions{global: "reconcile off"})
	pay := g.placeAndPay(t, "sw0001", 77, wxpaysim.PayOptions{})
	waitFor(t, "the v2 payment's event", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
	first := checkEvent(t, g.backend.got()[0])

	t.Setenv("WXPAY_TEST_API_V3_KEY", testV3Key)
	if err := g.sim.SetV3Signing(testMchID, true, false); err != nil {
		t.Fatal(err)
	}
	v3cfg := strings.Replace(g.cfg, "client_cert ", v3Lines("public_key")+"\n\t\t\tclient_cert ", 1)
	loadCaddyfile(t, v3cfg)
	status, st := g.get("/wxpay/orders/sw0001")
	if status != 200 || st["trade_state"] != "SUCCESS" || st["transaction_id"] != pay.TransactionID {
		t.Fatalf("query under v3: %d %v", status, st)
	}
	if err := g.sim.SendNotification(context.Background(), testMchID, "sw0001"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the v2 notification's second acknowledgement", 5*time.Second, func() bool {
		n := 0
		for _, r := range g.sim.Notifications() {
			if r.OutTradeNo == "sw0001" && r.Acknowledged {
				n++
			}
		}
		return n == 2
	})
	time.Sleep(200 * time.Millisecond)
	if n := len(g.backend.got()); n != 1 {
		t.Fatalf("the backend got %d events, want 1 (%v)", n, first["id"])
	}
	// A new order is placed with APIv3.
	if status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "sw0002", "total_fee": 5, "body": "b", "trade_type": "APP"}); status != 200 {
		t.Fatalf("place under v3: %d %v", status, out)
	}
	if o, _ := g.sim.Order(testMchID, "sw0002"); o.APIVersion != 3 {
		t.Fatalf("placed with API v%d", o.APIVersion)
	}
}

// Bad APIv3 notifications are refused (WeChat retries) and nothing is
// stored or forwarded; WeChat's SIGNTEST probe is logged as the probe it
// is.
func TestV3BadNotifications(t *testing.T) {
	g := startGateway(t, gatewayOptions{v3: "public_key"})
	for i, fault := range wxpaysim.V3Faults() {
		t.Run(string(fault), func(t *testing.T) {
			no := fmt.Sprintf("bad%02d%d", i, time.Now().UnixNano()%1e6)
			if status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": no, "total_fee": 5, "body": "b", "trade_type": "APP"}); status != 200 {
				t.Fatalf("%d %v", status, out)
			}
			before := len(g.backend.got())
			if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{OutTradeNo: no, MchID: testMchID, V3Fault: fault}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "two refused attempts", 5*time.Second, func() bool {
				r := notificationFor(g.sim, no)
				return r != nil && len(r.Attempts) >= 2
			})
			r := notificationFor(g.sim, no)
			for _, a := range r.Attempts {
				if a.StatusCode < 400 || !strings.Contains(a.Body, `"code":"FAIL"`) {
					t.Fatalf("attempt answered %d %s", a.StatusCode, a.Body)
				}
			}
			if n := len(g.backend.got()); n != before {
				t.Fatal("a refused notification was forwarded")
			}
		})
	}
	probe := logEntries(t, g, "WeChat's signature probe (WECHATPAY/SIGNTEST) refused, as it must be")
	if len(probe) == 0 || probe[0]["level"] != "info" {
		t.Errorf("the SIGNTEST probe was not logged as such, at info level: %v", probe)
	}
}

// In certificate mode, WeChat rotating its platform certificate is
// followed at once: the first answer signed with the new certificate
// makes the gateway download the list (and wait for it), and verifies.
// A restart loads the certificates from Caddy's storage without
// downloading them.
func TestV3CertificateRotationAndRestart(t *testing.T) {
	g := startGateway(t, gatewayOptions{v3: "certificates"})
	place := func(no string) {
		t.Helper()
		if status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": no, "total_fee": 5, "body": "b", "trade_type": "APP"}); status != 200 {
			t.Fatalf("place %s: %d %v", no, status, out)
		}
	}
	place("rot0001")
	if n := g.sim.CertificateDownloads(testMchID); n != 1 {
		t.Fatalf("%d downloads at start, want 1", n)
	}
	pc, err := wxpaysim.GeneratePlatformCertificate(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.sim.RotatePlatformCertificate(testMchID, pc); err != nil {
		t.Fatal(err)
	}
	place("rot0002")
	if n := g.sim.CertificateDownloads(testMchID); n != 2 {
		t.Fatalf("%d downloads after the rotation, want 2", n)
	}
	before := len(g.backend.got())
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{OutTradeNo: "rot0002", MchID: testMchID}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the payment signed with the new certificate", 5*time.Second, func() bool { return len(g.backend.got()) > before })
	// The worker may deliver before the handler has answered WeChat, who
	// records its attempt once it has the answer.
	waitFor(t, "the notification answered", 5*time.Second, func() bool { return acked(g.sim, "rot0002") })
	if r := notificationFor(g.sim, "rot0002"); r.Attempts[0].Serial != wxpaysim.CertificateSerial(pc.Certificate) || r.Attempts[0].StatusCode != http.StatusNoContent {
		t.Fatalf("first attempt %+v", r.Attempts[0])
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	loadCaddyfile(t, g.cfg)
	place("rot0003")
	if n := g.sim.CertificateDownloads(testMchID); n != 2 {
		t.Fatalf("%d downloads after a restart, want still 2 (loaded from storage)", n)
	}
}

// v3Notification is an APIv3 notification as WeChat would send it in
// public key mode for the demo merchant: resource encrypted with the APIv3
// key, headers signed with the WeChat Pay public key's private half.
func v3Notification(t *testing.T, eventType string, resource map[string]any, at time.Time) (http.Header, []byte) {
	t.Helper()
	plain, err := json.Marshal(resource)
	if err != nil {
		t.Fatal(err)
	}
	res, err := wxpayv3.EncryptResource(testV3Key, "", "transaction", plain)
	if err != nil {
		t.Fatal(err)
	}
	res.OriginalType = "transaction"
	body, err := json.Marshal(wxpayv3.Notification{ID: "EV-" + fmt.Sprint(at.UnixNano()), CreateTime: at.Format(time.RFC3339),
		EventType: eventType, ResourceType: "encrypt-resource", Summary: "支付成功", Resource: *res})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../demo/v3/sim_pub_key_private.pem")
	if err != nil {
		t.Fatal(err)
	}
	key, err := wxpayv3.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	ts, nonce := fmt.Sprint(at.Unix()), wxpayv3.NonceStr()
	sig, err := wxpayv3.SignSHA256WithRSA(key, wxpayv3.Message(ts, nonce, string(body)))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(wxpayv3.HeaderTimestamp, ts)
	h.Set(wxpayv3.HeaderNonce, nonce)
	h.Set(wxpayv3.HeaderSignature, sig)
	h.Set(wxpayv3.HeaderSerial, testPubKeyID)
	h.Set(wxpayv3.HeaderSignatureType, wxpayv3.AuthScheme)
	return h, body
}

// Notifications that verify but must not be believed, and malformed ones,
// through a real Caddy: refused with nothing stored, or, for an amount
// that disagrees with the order placed, stored and delivered only as
// payment.mismatch.
func TestV3NotificationChecks(t *testing.T) {
	g := startGateway(t, gatewayOptions{v3: "public_key"})
	if status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "chk0001", "total_fee": 300, "body": "b", "trade_type": "APP"}); status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	tx := func(mutate func(map[string]any)) map[string]any {
		r := map[string]any{"appid": testAppID, "mchid": testMchID, "out_trade_no": "chk0001", "transaction_id": fmt.Sprint(4200000000000 + time.Now().UnixNano()%1e9),
			"trade_type": "APP", "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
			"success_time": time.Now().In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339), "payer": map[string]any{"openid": "o1"},
			"amount": map[string]any{"total": 300, "payer_total": 300, "currency": "CNY", "payer_currency": "CNY"}}
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	post := func(h http.Header, body []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, g.base+"/wxpay/notify", strings.NewReader(string(body)))
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	type tc struct {
		name   string
		build  func() (http.Header, []byte)
		status int
	}
	now := time.Now()
	tests := []tc{
		{"another mchid in the resource", func() (http.Header, []byte) {
			return v3Notification(t, "TRANSACTION.SUCCESS", tx(func(r map[string]any) { r["mchid"] = "10000999" }), now)
		}, 400},
		{"an appid not the merchant's", func() (http.Header, []byte) {
			return v3Notification(t, "TRANSACTION.SUCCESS", tx(func(r map[string]any) { r["appid"] = "wx0000000000000000" }), now)
		}, 400},
		{"a refund's event on the payment route", func() (http.Header, []byte) {
			return v3Notification(t, "REFUND.SUCCESS", tx(nil), now)
		}, 400},
		{"no Wechatpay-Nonce", func() (http.Header, []byte) {
			h, b := v3Notification(t, "TRANSACTION.SUCCESS", tx(nil), now)
			h.Del(wxpayv3.HeaderNonce)
			return h, b
		}, 400},
		{"no Wechatpay-Serial", func() (http.Header, []byte) {
			h, b := v3Notification(t, "TRANSACTION.SUCCESS", tx(nil), now)
			h.Del(wxpayv3.HeaderSerial)
			return h, b
		}, 400},
		{"over 64 KiB", func() (http.Header, []byte) {
			h, _ := v3Notification(t, "TRANSACTION.SUCCESS", tx(nil), now)
			return h, []byte(`{"id":"` + strings.Repeat("x", 70<<10) + `"}`)
		}, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(g.backend.got())
			status, body := post(tt.build())
			if status != tt.status || !strings.Contains(body, "FAIL") {
				t.Fatalf("%d %s", status, body)
			}
			time.Sleep(50 * time.Millisecond)
			if len(g.backend.got()) != before {
				t.Fatal("a refused notification was forwarded")
			}
		})
	}
	t.Run("an amount that disagrees with the order", func(t *testing.T) {
		before := len(g.backend.got())
		h, b := v3Notification(t, "TRANSACTION.SUCCESS", tx(func(r map[string]any) {
			r["amount"] = map[string]any{"total": 1, "payer_total": 1, "currency": "CNY"}
		}), now)
		if status, body := post(h, b); status != http.StatusNoContent {
			t.Fatalf("%d %s", status, body)
		}
		waitFor(t, "the mismatch event", 5*time.Second, func() bool { return len(g.backend.got()) > before })
		ev := checkEvent(t, g.backend.got()[before])
		if ev["type"] != "payment.mismatch" || ev["order_checked"] != true {
			t.Fatalf("event %v", ev)
		}
	})
}

// The same payment and refund, made under v2 and under v3, reach the
// backend with the same fields in data: every v2 field but the few APIv3
// has nothing for (README), the refund's appid included.
func TestV3EventsKeepTheV2Fields(t *testing.T) {
	noV3 := map[string]bool{"nonce_str": true, "is_subscribe": true, "refund_account": true, "refund_request_source": true}
	fields := map[string]map[string]map[string]any{} // version → event type → data
	for _, v3 := range []string{"", "public_key"} {
		g := startGateway(t, gatewayOptions{v3: v3})
		g.placeAndPay(t, "fields01", 88, wxpaysim.PayOptions{})
		waitFor(t, "the payment's event", 5*time.Second, func() bool { return len(eventsOfType(g, t, "payment.succeeded")) == 1 })
		if status, out := g.post("/wxpay/refunds", testToken, map[string]any{"out_trade_no": "fields01", "out_refund_no": "fields01r", "total_fee": 88, "refund_fee": 40}); status != 200 {
			t.Fatalf("refund: %d %v", status, out)
		}
		waitFor(t, "the refund's event", 10*time.Second, func() bool { return len(eventsOfType(g, t, "refund.succeeded")) == 1 })
		fields[v3] = map[string]map[string]any{}
		for _, typ := range []string{"payment.succeeded", "refund.succeeded"} {
			fields[v3][typ] = eventsOfType(g, t, typ)[0]["data"].(map[string]any)
		}
	}
	for typ, v2 := range fields[""] {
		v3 := fields["public_key"][typ]
		for k, v := range v2 {
			if _, ok := v3[k]; !ok && !noV3[k] {
				t.Errorf("%s: the v2 event has %s (%v), the v3 one has not", typ, k, v)
			}
		}
		if v3["appid"] != testAppID || v3["mch_id"] != testMchID || v3["wechat"] == nil {
			t.Errorf("%s on v3: appid %v, mch_id %v, wechat %v", typ, v3["appid"], v3["mch_id"], v3["wechat"] != nil)
		}
	}
}

// A gateway configured for the migration (public key and platform
// certificates) whose merchant WeChat has already moved to public key
// mode: WeChat answers /v3/certificates 404 RESOURCE_NOT_EXISTS. Start-up
// goes on, says so once at info level, and asks no more before the
// refresh period; orders and notifications are verified with the public
// key.
func TestV3MigrationConfigInPublicKeyMode(t *testing.T) {
	g := startGateway(t, gatewayOptions{v3: "migration", simV3: "public_key"})
	g.placeAndPay(t, "pkmode01", 30, wxpaysim.PayOptions{})
	waitFor(t, "the payment's event", 5*time.Second, func() bool { return len(eventsOfType(g, t, "payment.succeeded")) == 1 })
	const msg = "WeChat has no platform certificates for this merchant (public key mode): the public key verifies it"
	waitFor(t, "the start-up's download answered", 5*time.Second, func() bool { return len(logEntries(t, g, msg)) > 0 })
	time.Sleep(200 * time.Millisecond) // anything logged after it
	said := logEntries(t, g, msg)
	if len(said) != 1 || said[0]["level"] != "info" {
		t.Fatalf("the 404 logged %d times: %v", len(said), said)
	}
	for _, msg := range []string{"platform certificates not loaded yet; they are fetched again when WeChat names an unknown serial"} {
		if n := len(logEntries(t, g, msg)); n != 0 {
			t.Fatalf("%q logged %d times", msg, n)
		}
	}
	b, err := os.ReadFile(g.logFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "RESOURCE_NOT_EXISTS"); n > 1 {
		t.Fatalf("RESOURCE_NOT_EXISTS in %d log entries", n)
	}
}

// Each notification is taken only by an API version the merchant has the
// credentials for: an APIv3 notification (its headers, or only its JSON:
// a proxy that strips Wechatpay-* headers) at a merchant on API v2, and an
// API v2 notification, correctly signed, at a merchant on APIv3 without
// api_key, are refused as such; nothing is stored or forwarded.
func TestNotificationOfAnotherAPIVersionRefused(t *testing.T) {
	const reason = "no API version of the merchant takes this notification"
	v3Body := []byte(`{"id":"EV-2018022511223320873","create_time":"2015-05-20T13:29:35+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","resource":{"algorithm":"AEAD_AES_256_GCM","ciphertext":"AAAA","nonce":"abcdefghijkl","associated_data":"transaction"}}`)
	refused := func(g *gateway, n int) {
		t.Helper()
		waitFor(t, "the refusal logged", 5*time.Second, func() bool {
			count := 0
			for _, e := range logEntries(t, g, "notification refused; WeChat will retry") {
				if e["reason"] == reason {
					count++
				}
			}
			return count == n
		})
		if got := g.backend.got(); len(got) != 0 {
			t.Fatalf("forwarded: %v", got)
		}
	}

	t.Run("APIv3's at a merchant on API v2", func(t *testing.T) {
		g := startGateway(t, gatewayOptions{})
		for i, headers := range []map[string]string{
			{"Wechatpay-Signature": "c2lnbmF0dXJl", "Wechatpay-Serial": testPubKeyID, "Wechatpay-Timestamp": strconv.FormatInt(time.Now().Unix(), 10), "Wechatpay-Nonce": "n"},
			{}, // stripped on the way
		} {
			req, _ := http.NewRequest(http.MethodPost, g.base+"/wxpay/notify", bytes.NewReader(v3Body))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("answered %d", resp.StatusCode)
			}
			refused(g, i+1)
		}
	})

	t.Run("API v2's at a merchant on APIv3 without api_key", func(t *testing.T) {
		g := startGateway(t, gatewayOptions{v3: "public_key"})
		cfg := strings.Replace(g.cfg, "api_key     {env.WXPAY_TEST_API_KEY}\n", "", 1)
		if cfg == g.cfg {
			t.Fatal("no api_key line to remove")
		}
		loadCaddyfile(t, cfg)
		p := wxpay.Params{{Name: "appid", Value: testAppID}, {Name: "bank_type", Value: "CFT"}, {Name: "cash_fee", Value: "1"},
			{Name: "mch_id", Value: testMchID}, {Name: "nonce_str", Value: "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"},
			{Name: "openid", Value: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, {Name: "out_trade_no", Value: "v2only01"},
			{Name: "result_code", Value: "SUCCESS"}, {Name: "return_code", Value: "SUCCESS"}, {Name: "time_end", Value: "20261207101010"},
			{Name: "total_fee", Value: "1"}, {Name: "trade_type", Value: "JSAPI"}, {Name: "transaction_id", Value: "4200000000202612070000000001"}}
		sign, err := wxpay.Sign(p, wxpay.APIKey(testKey), wxpay.SignTypeMD5)
		if err != nil {
			t.Fatal(err)
		}
		body, err := wxpay.EncodeXML(append(p, wxpay.Param{Name: "sign", Value: sign}))
		if err != nil {
			t.Fatal(err)
		}
		if status, reply := g.postRaw("/wxpay/notify", "text/xml", body); status != http.StatusBadRequest {
			t.Fatalf("answered %d %s", status, reply)
		}
		refused(g, 1)
	})
}

// During the migration WeChat signs each notification with either key:
// the gateway verifies each with the key its serial names, the public key
// or the platform certificate (each forced in turn, not left to chance).
func TestV3MigrationVerifiesEitherKey(t *testing.T) {
	g := startGateway(t, gatewayOptions{v3: "migration"})
	b, err := os.ReadFile("../demo/v3/sim_platform_cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := wxpayv3.ParseCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, tt := range []struct{ signer, serial string }{
		{wxpaysim.SignerPublicKey, testPubKeyID},
		{wxpaysim.SignerCertificate, wxpaysim.CertificateSerial(cert)},
	} {
		if err := g.sim.SetV3NotificationSigner(testMchID, tt.signer); err != nil {
			t.Fatal(err)
		}
		no := fmt.Sprintf("mix%05d", i)
		g.placeAndPay(t, no, 20+i, wxpaysim.PayOptions{})
		waitFor(t, "the notification answered", 5*time.Second, func() bool { return acked(g.sim, no) })
		r := notificationFor(g.sim, no)
		if len(r.Attempts) != 1 || r.Attempts[0].Serial != tt.serial || r.Attempts[0].StatusCode != http.StatusNoContent {
			t.Fatalf("%s: attempts %+v, want one signed %s and taken", tt.signer, r.Attempts, tt.serial)
		}
		waitFor(t, "the event", 5*time.Second, func() bool { return len(eventsOfType(g, t, "payment.succeeded")) == i+1 })
	}
}

// APIv3's close answers "202 USER_PAYING" while the payer enters the
// password: the order is not closed (409 USERPAYING to the caller), stays
// payable, and its payment reaches the backend.
func TestV3CloseWhileUserPaying(t *testing.T) {
	g := startGateway(t, gatewayOptions{v3: "public_key"})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "upay0001", "total_fee": 5, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("place: %d %v", status, out)
	}
	g.sim.FailNext(wxpaysim.APIV3Close, 1, "USER_PAYING")
	if status, answer := g.post("/wxpay/orders/upay0001/close", testToken, ""); status != http.StatusConflict || answer["error"].(map[string]any)["code"] != "USERPAYING" {
		t.Fatalf("close while the payer pays: %d %v", status, answer)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string)}); err != nil {
		t.Fatalf("the order is no longer payable: %v", err)
	}
	waitFor(t, "the payment's event", 5*time.Second, func() bool { return len(eventsOfType(g, t, "payment.succeeded")) == 1 })
	if status, st := g.get("/wxpay/orders/upay0001"); status != 200 || st["trade_state"] != "SUCCESS" {
		t.Fatalf("after the payment: %d %v", status, st)
	}
}
