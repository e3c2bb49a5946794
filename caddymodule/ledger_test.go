package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// placeAndPay places an APP order through the gateway and pays it.
func (g *gateway) placeAndPay(t *testing.T, outTradeNo string, fee int, opts wxpaysim.PayOptions) *wxpaysim.Payment {
	t.Helper()
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": outTradeNo, "total_fee": fee, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("place %s: %d %v", outTradeNo, status, out)
	}
	opts.PrepayID = out["prepay_id"].(string)
	p, err := g.sim.Pay(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (g *gateway) adminDo(t *testing.T, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, g.admin+path, nil)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json") // as caddy wxpay sends it
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// The wxpay admin routes are served by Caddy's admin endpoint, under its
// origin checks: with enforce_origin, a state-changing request from
// another origin is refused even with a JSON content type, and one from an
// allowed origin (as caddy wxpay sends it) is taken.
func TestAdminRoutesHonourOrigins(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true, adminOpts: "origins {addr}\nenforce_origin"})
	pause := func(origin string) int {
		req, _ := http.NewRequest(http.MethodPost, g.admin+"/wxpay/delivery/pause", nil)
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, origin := range []string{"http://attacker.example", ""} {
		if status := pause(origin); status != http.StatusForbidden {
			t.Fatalf("a pause from origin %q: %d, want 403", origin, status)
		}
	}
	paused := func() bool {
		req, _ := http.NewRequest(http.MethodGet, g.admin+"/wxpay/delivery", nil)
		req.Header.Set("Origin", g.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("status: %d %s", resp.StatusCode, body)
		}
		return bytes.Contains(body, []byte(`"paused": true`))
	}
	if paused() {
		t.Fatal("a refused pause paused delivery")
	}
	if status := pause(g.admin); status != 200 || !paused() {
		t.Fatalf("a pause from the allowed origin: %d", status)
	}
}

// With the ledger (the default), WeChat hears SUCCESS once the event is
// stored, before the backend has it; the gateway then delivers it with
// retries while the backend is down.
func TestStoredAckThenDeliveryWithRetries(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	var mu sync.Mutex
	down := true
	g.backend.setStatus(func(int) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	g.placeAndPay(t, "stored1", 15, wxpaysim.PayOptions{})
	waitFor(t, "WeChat's acknowledgement", 5*time.Second, func() bool { return acked(g.sim, "stored1") })
	if rec := notificationFor(g.sim, "stored1"); len(rec.Attempts) != 1 {
		t.Fatalf("WeChat needed %d attempts although the event was stored at once", len(rec.Attempts))
	}
	waitFor(t, "a failed delivery", 5*time.Second, func() bool { return len(g.backend.got()) >= 1 })

	// The operator sees it pending, with the backend's answer.
	status, body := g.adminDo(t, http.MethodGet, "/wxpay/events?state=pending")
	var list []map[string]any
	if status != 200 || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0]["out_trade_no"] != "stored1" {
		t.Fatalf("pending events: %d %s", status, body)
	}
	id := list[0]["id"].(string)
	// The attempt is recorded just after the backend answered.
	waitFor(t, "the failed attempt in the event's log", 5*time.Second, func() bool {
		status, body = g.adminDo(t, http.MethodGet, "/wxpay/events/"+id)
		return status == 200 && bytes.Contains(body, []byte(`"last_status": 503`)) && bytes.Contains(body, []byte(`"attempt_log"`))
	})

	mu.Lock()
	down = false
	mu.Unlock()
	waitFor(t, "the retry to get through", 15*time.Second, func() bool {
		got := g.backend.got()
		return len(got) >= 2
	})
	time.Sleep(200 * time.Millisecond)
	got := g.backend.got()
	if len(got) != 2 {
		t.Fatalf("backend saw %d attempts, want 2 (one refused, one taken)", len(got))
	}
	if got[0].Header.Get("Wxpay-Event-Id") != id || got[1].Header.Get("Wxpay-Event-Id") != id || !bytes.Equal(got[0].Body, got[1].Body) {
		t.Fatal("a retry changed the event id or body")
	}
	checkEvent(t, got[1])

	// Replay: the same event again, same id and payload.
	status, body = g.adminDo(t, http.MethodPost, "/wxpay/events/"+id+"/replay")
	if status != 200 {
		t.Fatalf("replay: %d %s", status, body)
	}
	waitFor(t, "the replay", 5*time.Second, func() bool { return len(g.backend.got()) == 3 })
	if r := g.backend.got()[2]; r.Header.Get("Wxpay-Event-Id") != id || !bytes.Equal(r.Body, got[0].Body) {
		t.Fatal("the replay changed the event")
	}
	// The admin API says when it was replayed.
	var replayed struct {
		ReplayedAt *time.Time `json:"replayed_at"`
	}
	if status, body = g.adminDo(t, http.MethodGet, "/wxpay/events/"+id); status != 200 || json.Unmarshal(body, &replayed) != nil ||
		replayed.ReplayedAt == nil || time.Since(*replayed.ReplayedAt) > time.Minute {
		t.Fatalf("the replayed event: %d %s", status, body)
	}

	// A state-changing request shaped as a cross-site page can send it
	// (no JSON content type) is refused, and changes nothing.
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		req, _ := http.NewRequest(http.MethodPost, g.admin+"/wxpay/delivery/pause", strings.NewReader(""))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		req.Header.Set("Origin", "http://attacker.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a pause with Content-Type %q was taken: %d", ct, resp.StatusCode)
		}
	}
	if _, body := g.adminDo(t, http.MethodGet, "/wxpay/delivery"); !bytes.Contains(body, []byte(`"paused": false`)) {
		t.Fatalf("a refused pause paused delivery: %s", body)
	}

	// Pause holds deliveries back; resume lets them go.
	if status, body := g.adminDo(t, http.MethodPost, "/wxpay/delivery/pause"); status != 200 || !bytes.Contains(body, []byte(`"paused": true`)) ||
		!bytes.Contains(body, []byte(`"delivering": false`)) || !bytes.Contains(body, []byte(`"not_delivering": "paused`)) {
		t.Fatalf("pause: %d %s", status, body)
	}
	g.placeAndPay(t, "stored2", 16, wxpaysim.PayOptions{})
	waitFor(t, "WeChat's acknowledgement", 5*time.Second, func() bool { return acked(g.sim, "stored2") })
	time.Sleep(300 * time.Millisecond)
	if n := len(g.backend.got()); n != 3 {
		t.Fatalf("delivered while paused: %d", n)
	}
	if status, _ := g.adminDo(t, http.MethodPost, "/wxpay/delivery/resume"); status != 200 {
		t.Fatal("resume failed")
	}
	waitFor(t, "delivery after resume", 5*time.Second, func() bool { return len(g.backend.got()) == 4 })
	if status, _ := g.adminDo(t, http.MethodGet, "/wxpay/events/evt_nonexistent"); status != 404 {
		t.Fatalf("unknown event: %d", status)
	}
}

// One transaction notified twice by the simulator and 20 times at once by
// hand makes one event, delivered once.
func TestDuplicateAndConcurrentNotificationsOneEvent(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	p := g.placeAndPay(t, "dup1", 7, wxpaysim.PayOptions{Duplicate: true})
	waitFor(t, "both acknowledgements", 5*time.Second, func() bool {
		n := 0
		for _, r := range g.sim.Notifications() {
			if r.OutTradeNo == "dup1" && r.Acknowledged {
				n++
			}
		}
		return n == 2
	})
	body := notificationFor(g.sim, "dup1").Body
	var wg sync.WaitGroup
	replies := make([]string, 20)
	for i := range replies {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Post(g.base+"/wxpay/notify", "text/xml", bytes.NewReader(body))
			if err != nil {
				replies[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			replies[i] = string(b)
		}(i)
	}
	wg.Wait()
	for i, r := range replies {
		if r != wxpay.NotifyReplySuccess {
			t.Errorf("concurrent duplicate %d answered %q", i, r)
		}
	}
	waitFor(t, "the delivery", 5*time.Second, func() bool { return len(g.backend.got()) >= 1 })
	time.Sleep(300 * time.Millisecond)
	if got := g.backend.got(); len(got) != 1 {
		t.Fatalf("backend got %d deliveries for one transaction, want 1", len(got))
	}
	_, list := g.adminDo(t, http.MethodGet, "/wxpay/events")
	if n := strings.Count(string(list), p.TransactionID); n != 1 {
		t.Fatalf("ledger lists transaction %s %d times:\n%s", p.TransactionID, n, list)
	}
}

// A notification whose amount disagrees with the order is never forwarded
// as a success: it arrives as payment.mismatch with both figures.
func TestAmountMismatchNotForwardedAsSuccess(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	g.placeAndPay(t, "mis1", 10000, wxpaysim.PayOptions{TotalFee: 1})
	// The handler logs the mismatch after the commit that wakes the
	// worker, before it answers WeChat: wait for the answer.
	waitFor(t, "the notification answered", 5*time.Second, func() bool { return acked(g.sim, "mis1") })
	waitFor(t, "the event", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
	ev := checkEvent(t, g.backend.got()[0])
	if ev["type"] != "payment.mismatch" {
		t.Fatalf("type = %v, want payment.mismatch", ev["type"])
	}
	m := ev["data"].(map[string]any)["mismatch"].(map[string]any)["total_fee"].(map[string]any)
	if m["order"] != json.Number("10000") || m["notification"] != json.Number("1") {
		t.Fatalf("mismatch figures %v", m)
	}
	logged := logEntries(t, g, "notification disagrees with the order: forwarded as payment.mismatch, not as a success")
	if len(logged) != 1 || logged[0]["level"] != "error" || logged[0]["event_id"] != ev["id"] || logged[0]["out_trade_no"] != "mis1" {
		t.Fatalf("the mismatch was not logged at error level with its ids: %v", logged)
	}
}

// Placing the same order again within the prepay_id's life answers the
// recorded prepay_id with fresh pay parameters, without calling WeChat;
// other content under the same number is refused.
func TestOrderIdempotency(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	order := map[string]any{"out_trade_no": "idem1", "total_fee": 300, "body": "书", "trade_type": "JSAPI", "openid": "o1"}
	status, first := g.post("/wxpay/orders", testToken, order)
	if status != 200 {
		t.Fatalf("%d %v", status, first)
	}
	// Any call to WeChat from now on would fail: the answers below must
	// come from the ledger.
	g.sim.FailNext("unifiedorder", 10, "SYSTEMERROR")
	defer g.sim.FailNext("unifiedorder", 0, "")
	time.Sleep(1100 * time.Millisecond) // a new second: a new timeStamp in the pay parameters
	status, again := g.post("/wxpay/orders", testToken, order)
	if status != 200 || again["prepay_id"] != first["prepay_id"] {
		t.Fatalf("same order again: %d %v, want prepay_id %v", status, again, first["prepay_id"])
	}
	p1, p2 := first["pay_params"].(map[string]any), again["pay_params"].(map[string]any)
	if p1["nonceStr"] == p2["nonceStr"] || p1["timeStamp"] == p2["timeStamp"] {
		t.Fatalf("pay parameters were not signed afresh: %v %v", p1, p2)
	}
	if len(g.sim.Orders()) != 1 {
		t.Fatalf("WeChat saw %d orders", len(g.sim.Orders()))
	}
	order["total_fee"] = 1
	status, out := g.post("/wxpay/orders", testToken, order)
	if code, _ := errorOf(out); status != http.StatusConflict || code != "OUT_TRADE_NO_USED" {
		t.Fatalf("other content, same number: %d %v", status, out)
	}
	// Once the payment's notification is in, the order is paid.
	order["total_fee"] = 300
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: first["prepay_id"].(string)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the notification", 5*time.Second, func() bool { return acked(g.sim, "idem1") })
	status, out = g.post("/wxpay/orders", testToken, order)
	// The gateway's own words, not WeChat's "该订单已支付": the ledger
	// marked the order paid in the notification's transaction, and WeChat
	// was not asked.
	if code, msg := errorOf(out); status != http.StatusConflict || code != "ORDERPAID" || msg != "the order is already paid" {
		t.Fatalf("a paid order placed again: %d %v", status, out)
	}
}

// A reload to a configuration without an upstream stops the shared worker
// from delivering with the old one: events wait in the ledger, the status
// says why, and a configuration with an upstream again delivers them.
func TestReloadWithoutUpstream(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	var mu sync.Mutex
	down := true
	g.backend.setStatus(func(int) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	g.placeAndPay(t, "noup1", 15, wxpaysim.PayOptions{})
	waitFor(t, "a failed delivery", 5*time.Second, func() bool { return len(g.backend.got()) >= 1 })

	noUpstream := regexp.MustCompile(`(?s)\n\t\tupstream [^\n]*\{.*?\n\t\t\}`).ReplaceAllString(g.cfg, "")
	noUpstream = strings.Replace(noUpstream, "\twxpay\n\twxpay hmac {\n\t\tbase_path /hmac\n\t}\n", "\twxpay_checkout\n", 1)
	if noUpstream == g.cfg || strings.Contains(noUpstream, "upstream ") {
		t.Fatalf("could not remove the upstream:\n%s", noUpstream)
	}
	loadCaddyfile(t, noUpstream)
	seen := len(g.backend.got())
	mu.Lock()
	down = false
	mu.Unlock()
	time.Sleep(2500 * time.Millisecond) // past the first retry's backoff
	if n := len(g.backend.got()); n != seen {
		t.Fatalf("delivered with the old configuration's upstream after a reload without one (%d attempts, %d before)", n, seen)
	}
	status, body := g.adminDo(t, http.MethodGet, "/wxpay/delivery")
	if status != 200 || !bytes.Contains(body, []byte(`"delivering": false`)) || !bytes.Contains(body, []byte(`no upstream`)) {
		t.Fatalf("status without an upstream: %d %s", status, body)
	}

	loadCaddyfile(t, g.cfg)
	waitFor(t, "delivery with an upstream again", 10*time.Second, func() bool {
		for _, r := range g.backend.got()[seen:] {
			if strings.Contains(string(r.Body), `"noup1"`) {
				return true
			}
		}
		return false
	})
}
