package caddymodule_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// logEntries are the entries of the gateway's log with message msg.
func logEntries(t *testing.T, g *gateway, msg string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(g.logFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// One structured entry per order (placed, or refused with WeChat's code
// and, on APIv3, its Request-ID), per notification and per delivery, each
// with the out_trade_no; the refused order is not logged twice.
func TestOneLogEntryPerOrderNotificationDelivery(t *testing.T) {
	for _, v3 := range []string{"", "public_key"} {
		t.Run("api"+map[string]string{"": "v2", "public_key": "v3"}[v3], func(t *testing.T) {
			g := startGateway(t, gatewayOptions{v3: v3})
			g.placeAndPay(t, "logok1", 21, wxpaysim.PayOptions{})
			api := wxpaysim.APIUnifiedOrder
			if v3 != "" {
				api = wxpaysim.APIV3Prepay
			}
			g.sim.FailNext(api, 1, "SYSTEMERROR")
			if status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "logno2", "total_fee": 1, "body": "b", "trade_type": "APP"}); status < 500 {
				t.Fatalf("an order WeChat refused: %d %v", status, out)
			}
			// The notification handler logs before it answers WeChat, and the
			// worker may deliver (and log) the event before that: the entry
			// is there once the simulator has the answer.
			waitFor(t, "the notification answered", 5*time.Second, func() bool { return acked(g.sim, "logok1") })
			waitFor(t, "the delivery", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
			waitFor(t, "the delivery logged", 5*time.Second, func() bool { return len(logEntries(t, g, "event delivered")) == 1 })

			placed := logEntries(t, g, "order placed")
			if len(placed) != 1 || placed[0]["out_trade_no"] != "logok1" || placed[0]["trade_type"] != "APP" || placed[0]["total_fee"] != 21.0 {
				t.Fatalf("order placed entries: %v", placed)
			}
			failed := logEntries(t, g, "order not placed")
			if len(failed) != 1 || failed[0]["out_trade_no"] != "logno2" || failed[0]["code"] != "SYSTEMERROR" {
				t.Fatalf("order not placed entries: %v", failed)
			}
			if v3 != "" {
				if id, _ := failed[0]["request_id"].(string); len(id) < 20 {
					t.Fatalf("no Request-ID in the APIv3 refusal's entry: %v", failed[0])
				}
			}
			if n := len(logEntries(t, g, "request failed")); n != 0 {
				t.Fatalf("the refused order was logged again (%d request failed entries)", n)
			}
			stored := logEntries(t, g, "notification stored")
			if len(stored) != 1 || stored[0]["out_trade_no"] != "logok1" || stored[0]["event_id"] == "" {
				t.Fatalf("notification stored entries: %v", stored)
			}
			delivered := logEntries(t, g, "event delivered")
			if delivered[0]["out_trade_no"] != "logok1" || delivered[0]["event_id"] != stored[0]["event_id"] {
				t.Fatalf("event delivered entry: %v", delivered[0])
			}
		})
	}
}
