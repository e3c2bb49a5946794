package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// A caller that gives up (its own timeout, a disconnect) while WeChat is
// slow is not WeChat being unreachable: the call's outcome is "canceled",
// the order's CLIENT_CLOSED, logged at info, and no outage is counted.
func TestCallerGivingUpIsNotAnOutage(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	before := scrapeMetrics(t, g)
	g.sim.DelayNext(wxpaysim.APIUnifiedOrder, 1, 2*time.Second)
	body, _ := json.Marshal(map[string]any{"out_trade_no": "cancel1", "total_fee": 1, "body": "b", "trade_type": "APP"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.base+"/wxpay/orders", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the caller was answered %d", resp.StatusCode)
	}
	var entries []map[string]any
	waitFor(t, "the order logged", 5*time.Second, func() bool {
		entries = logEntries(t, g, "order not placed: the caller went away")
		return len(entries) == 1
	})
	if entries[0]["level"] != "info" || entries[0]["code"] != "CLIENT_CLOSED" {
		t.Errorf("a caller that gave up, logged: %v", entries[0])
	}
	after := scrapeMetrics(t, g)
	for _, s := range []string{
		sample("wxpay_wechat_request_duration_seconds_count", "api", "unifiedorder", "merchant", "default", "outcome", "unreachable"),
		sample("wxpay_orders_total", "merchant", "default", "outcome", "WECHAT_UNREACHABLE", "trade_type", "APP"),
	} {
		if d := after[s] - before[s]; d != 0 {
			t.Errorf("%s went up by %v for a caller that gave up", s, d)
		}
	}
	canceled := sample("wxpay_wechat_request_duration_seconds_count", "api", "unifiedorder", "merchant", "default", "outcome", "canceled")
	if d := after[canceled] - before[canceled]; d != 1 {
		t.Errorf("%s went up by %v, want 1", canceled, d)
	}
}

// ack upstream: a verified payment the backend refused is logged with what
// names it, since no ledger keeps it.
func TestRefusedVerifiedNotificationNamesThePayment(t *testing.T) {
	g := startGateway(t, gatewayOptions{ack: "upstream"})
	g.backend.setStatus(func(n int) int {
		if n <= 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "ackdown1", "total_fee": 5, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "WeChat's retry to get through", 10*time.Second, func() bool { return acked(g.sim, "ackdown1") })
	refused := logEntries(t, g, "notification refused; WeChat will retry")
	if len(refused) != 1 {
		t.Fatalf("refused entries: %v", refused)
	}
	for _, f := range []string{"out_trade_no", "transaction_id", "event_id"} {
		if refused[0][f] == nil || refused[0][f] == "" {
			t.Errorf("the refusal of a verified payment has no %s: %v", f, refused[0])
		}
	}
}

// A refund WeChat refused names the refund, and a business refusal
// (PARAM_ERROR) is the request's fault, not an outage: warn, not error.
func TestRefundFailureNamesTheRefund(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	g.placeAndPay(t, "obsr1", 100, wxpaysim.PayOptions{})
	g.sim.FailNext(wxpaysim.APIRefund, 1, "PARAM_ERROR")
	refund := map[string]any{"out_trade_no": "obsr1", "out_refund_no": "obsrf1", "total_fee": 100, "refund_fee": 40}
	if status, out := g.post("/wxpay/refunds", testToken, refund); status != http.StatusBadGateway {
		t.Fatalf("refund WeChat refused: %d %v", status, out)
	}
	failed := logEntries(t, g, "request failed")
	if len(failed) != 1 || failed[0]["out_refund_no"] != "obsrf1" || failed[0]["out_trade_no"] != "obsr1" || failed[0]["level"] != "warn" {
		t.Fatalf("request failed entries: %v", failed)
	}
}

// Counters survive reloads (each configuration its registry's view of the
// same collectors), neither reset nor doubled.
func TestMetricsAcrossReloads(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	ok := sample("wxpay_orders_total", "merchant", "default", "outcome", "ok", "trade_type", "APP")
	before := scrapeMetrics(t, g)
	g.placeAndPay(t, "rl1", 1, wxpaysim.PayOptions{})
	loadCaddyfile(t, g.cfg+"\n# reload\n")
	g.placeAndPay(t, "rl2", 1, wxpaysim.PayOptions{})
	loadCaddyfile(t, g.cfg+"\n# reload 2\n")
	after := scrapeMetrics(t, g)
	if d := after[ok] - before[ok]; d != 2 {
		t.Errorf("%s went up by %v across reloads, want 2", ok, d)
	}
	if _, ok := after[sample("wxpay_outbox_events", "state", "pending")]; !ok {
		t.Errorf("no outbox gauge after reloads")
	}
}

// A refund notification refused before it is read (too large) counts as a
// refund notification.
func TestOversizedRefundNotificationCountsAsARefund(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	before := scrapeMetrics(t, g)
	if status, _ := g.postRaw("/wxpay/notify/refund", "text/xml", bytes.Repeat([]byte("x"), 70<<10)); status < 400 {
		t.Fatalf("a 70 KiB refund notification answered %d", status)
	}
	after := scrapeMetrics(t, g)
	refund := sample("wxpay_notifications_total", "kind", "refund", "merchant", "default", "reason", "bad request", "result", "refused")
	payment := sample("wxpay_notifications_total", "kind", "payment", "merchant", "default", "reason", "bad request", "result", "refused")
	if after[refund]-before[refund] != 1 || after[payment]-before[payment] != 0 {
		t.Fatalf("refused as a refund %v, as a payment %v", after[refund]-before[refund], after[payment]-before[payment])
	}
}
